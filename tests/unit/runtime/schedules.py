"""Synthetic schedules for the arena planner: a transformer-like one and random ones."""

from __future__ import annotations

import random

from optllm.runtime.planner import BufferRequest


class ScheduleBuilder:
    """Records ops in order: each op reads buffers and writes new ones at the current step."""

    def __init__(self) -> None:
        self.step = 0
        self.sizes: dict[int, int] = {}
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.inplace: dict[int, int] = {}
        self.outputs: set[int] = set()

    def op(self, reads: tuple[int, ...], *writes: int, inplace_of: int | None = None) -> list[int]:
        """One step: read ``reads``, write buffers of the sizes ``writes``; the first may
        ask to reuse ``inplace_of`` in place. Returns the new ids."""
        for r in reads:
            self.last[r] = self.step
        ids = []
        for k, nbytes in enumerate(writes):
            i = len(self.sizes)
            self.sizes[i], self.first[i], self.last[i] = nbytes, self.step, self.step
            if k == 0 and inplace_of is not None:
                self.inplace[i] = inplace_of
            ids.append(i)
        self.step += 1
        return ids

    def requests(self) -> list[BufferRequest]:
        """The requests; outputs live to ``num_steps`` (= ``self.step``)."""
        return [
            BufferRequest(i, n, self.first[i], self.step if i in self.outputs else self.last[i], self.inplace.get(i))
            for i, n in self.sizes.items()
        ]


def transformer_schedule(
    layers: int = 12,
    batch: int = 1,
    seq: int = 128,
    hidden: int = 768,
    heads: int = 12,
    vocab: int = 50257,
    logits: bool = True,
) -> list[BufferRequest]:
    """GPT-2-like, fp32: embed, then per layer x -> norm -> qkv (3x) -> scores (heads*S*S)
    -> softmax in place -> ctx -> proj -> +x in place -> norm -> up (4x) -> gelu in place
    -> down -> +residual in place; a final norm and (optionally) a big logits output."""
    b = ScheduleBuilder()
    h = batch * seq * hidden * 4
    ids = b.op((), batch * seq * 8)[0]
    (x,) = b.op((ids,), h)
    for _ in range(layers):
        (n1,) = b.op((x,), h)
        (qkv,) = b.op((n1,), 3 * h)
        (scores,) = b.op((qkv,), batch * heads * seq * seq * 4)
        (probs,) = b.op((scores,), batch * heads * seq * seq * 4, inplace_of=scores)
        (ctx,) = b.op((probs, qkv), h)
        (p,) = b.op((ctx,), h)
        (x2,) = b.op((p, x), h, inplace_of=p)
        (n2,) = b.op((x2,), h)
        (u,) = b.op((n2,), 4 * h)
        (g,) = b.op((u,), 4 * h, inplace_of=u)
        (d,) = b.op((g,), h)
        (x,) = b.op((d, x2), h, inplace_of=d)
    (nf,) = b.op((x,), h)
    if logits:
        b.outputs.add(b.op((nf,), batch * seq * vocab * 4)[0])
    else:
        b.outputs.add(nf)
    return b.requests()


def random_schedule(rng: random.Random, num_ops: int) -> list[BufferRequest]:
    """A random DAG in topological order: each op reads 1-3 recent buffers and writes one or
    two of log-uniform size (64 B .. 4 MiB), the first sometimes in place of an input."""
    b = ScheduleBuilder()
    recent = b.op((), rng.choice((4096, 65536)))
    for _ in range(num_ops):
        reads = tuple(rng.sample(recent, min(len(recent), rng.randint(1, 3))))
        writes = [int(2 ** rng.uniform(6, 22)) for _ in range(rng.choice((1, 1, 1, 2)))]
        inplace = reads[0] if rng.random() < 0.3 else None
        if inplace is not None:
            writes[0] = b.sizes[inplace]
        recent = (recent + b.op(reads, *writes, inplace_of=inplace))[-6:]
    b.outputs.update(recent[-2:])
    return b.requests()
