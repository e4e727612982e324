"""A lowered program: storages, views over them, and the kernel calls of one graph at one shape.

The CPU lowering (``optllm/backends/cpu/lower.py``) produces a ``Program`` for the concrete
sizes of one call (B and S bound); the executor (``executor.py``) plans the arena, binds every
kernel's argument slots once, and replays the calls::

    Program
      storages: s0 input  i64[1,128]   s1 weight f32[30522,384]   s2 arena f32[1,128,384] ...
      steps:    0 k_3f2a..(o0=s2, a0=s0, g0=s1, d0=128, d1=384, ...)   # embedding + norm prologue
                1 k_91c0..(out=s3, x=s2, weight=s4, bias=s5, rows=128, n=384, eps=1e-12)
      outputs:  View(s9, off 0, [1,128,384], [49152,384,1])

Storage kinds: ``input`` and ``output`` storages are bound per call (the caller's arrays and
fresh result arrays), ``weight`` storages hold the module's constants (pre-packed once),
``arena`` storages get an offset in one planned arena, ``err`` is the shared error flag that
checked gathers write; ``unused`` marks a weight no step reads (re-packed in another layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optllm.backends.kernels.kir import Kernel
from optllm.runtime.views import View

STORAGE_KINDS = ("input", "output", "weight", "arena", "err", "unused")


@dataclass
class Storage:
    id: int
    kind: str
    nbytes: int
    array: np.ndarray | None = None  # weight data
    index: int = -1  # position among the graph inputs (input storages)
    inplace_of: int | None = None  # an arena storage this one may reuse in place
    what: str = ""  # for messages and plan listings


@dataclass(frozen=True)
class Arg:
    """One kernel argument: a buffer (a view's base element) or a scalar."""

    view: View | None = None
    value: int | float | None = None


@dataclass
class Step:
    kernel: Kernel
    args: dict[str, Arg]
    op: Any  # the IR operation, for messages
    err_code: int = 0  # nonzero: the kernel may report an out-of-range gather index with this code


@dataclass
class Program:
    storages: list[Storage] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    outputs: list[View] = field(default_factory=list)
    input_views: list[View] = field(default_factory=list)

    def new_storage(self, kind: str, nbytes: int, **kw: Any) -> Storage:
        s = Storage(len(self.storages), kind, int(nbytes), **kw)
        self.storages.append(s)
        return s

    def liveness(self) -> dict[int, tuple[int, int]]:
        """storage id -> (first step writing or reading it, last step reading it)."""
        out: dict[int, tuple[int, int]] = {}
        for i, st in enumerate(self.steps):
            for a in st.args.values():
                if a.view is not None:
                    s = a.view.storage
                    lo, _ = out.get(s, (i, i))
                    out[s] = (lo, i)
        return out
