"""Pattern rewriting: ``Pattern`` (match with a failure reason, then rewrite), ``Rewriter``
(every IR change goes through it so the worklist hears about it) and a greedy worklist driver.

    class MulOne(Pattern):
        # mul(x, 1) -> x
        name = "mul-one"
        root = "core.mul"

        def match(self, op: Operation) -> Match | str:
            if not is_splat(op.operands[1], 1.0):
                return "rhs is not a splat 1"
            if op.operands[0].type != op.result.type:
                return "mul broadcasts x"
            return Match(op, x=op.operands[0])

        def rewrite(self, m: Match, rewriter: Rewriter) -> None:
            rewriter.replace_op(m.op, m.x)

``match`` never mutates the IR; a string result is the reason the candidate failed, shown by
``opt-llm --debug-patterns=mul-one``. The driver applies patterns until nothing matches (a
fixpoint), at most ``max_iterations`` sweeps, and reports non-convergence.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from optllm.ir.builder import Builder
from optllm.ir.diagnostics import OptllmError
from optllm.ir.graph import Graph, Module
from optllm.ir.ops import Operation, Trait
from optllm.ir.printer import print_op_line
from optllm.ir.types import TensorType
from optllm.ir.values import Value
from optllm.passes.base import PassContext

log = logging.getLogger(__name__)


class RewriteError(OptllmError):
    """A pattern that broke the rewriter's rules, or (on request) a driver that did not converge."""


class Match:
    """A successful match: the root op plus named captures (``m.x``, ``m.perm``)."""

    def __init__(self, op: Operation, **captures: Any) -> None:
        self.op = op
        self.captures = captures

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["captures"][key]
        except KeyError:
            raise AttributeError(f"match of {self.op.name} has no capture '{key}'") from None


class Pattern:
    """A rewrite rooted at ops named ``root`` (``None``: any op)."""

    name: ClassVar[str] = ""
    root: ClassVar[str | None] = None

    def match(self, op: Operation) -> Match | str:
        raise NotImplementedError

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        raise NotImplementedError


def is_trivially_dead(op: Operation) -> bool:
    """A pure op none of whose results is read or returned."""
    if not op.has_trait(Trait.PURE) or op.parent is None:
        return False
    return all(not r.uses and not op.parent.is_output(r) for r in op.results)


class _Worklist:
    """FIFO of ops, each at most once."""

    def __init__(self) -> None:
        self._queue: deque[Operation] = deque()
        self._members: set[int] = set()

    def push(self, op: Operation | None) -> None:
        if op is None or id(op) in self._members:
            return
        self._members.add(id(op))
        self._queue.append(op)

    def pop(self) -> Operation | None:
        while self._queue:
            op = self._queue.popleft()
            self._members.discard(id(op))
            if op.parent is not None:  # skip ops erased since they were queued
                return op
        return None

    def __bool__(self) -> bool:
        return bool(self._queue)


class Rewriter:
    """The only way patterns change IR; tells the worklist which ops to look at again."""

    def __init__(self, worklist: _Worklist | None = None) -> None:
        self._worklist = worklist or _Worklist()
        self.changed = False

    def _notify_users(self, v: Value) -> None:
        for u in v.uses:
            self._worklist.push(u.op)

    def _notify_producers(self, op: Operation) -> None:
        for v in op.operands:
            self._worklist.push(v.owner)

    def create(self, before: Operation, name: str, operands: Sequence[Value],
               attrs: Mapping[str, Any] | None = None, *, loc: str | None = None,
               regions: Sequence[Graph] = (), result_types: Sequence[TensorType] | None = None) -> Operation:
        """Build an op before ``before`` through the ``Builder`` (types inferred, attributes
        checked); it inherits ``before``'s loc unless ``loc`` is given."""
        op = Builder.before_op(before, loc).create(name, operands, attrs, regions=regions,
                                                   result_types=result_types)
        self.changed = True
        self._worklist.push(op)
        return op

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Make every reader of ``old`` (graph outputs included) read ``new``; types must agree."""
        if old.type != new.type:
            raise RewriteError(f"cannot replace a {old.type} value with a {new.type} value")
        if old is new:
            return
        users = old.users
        old.replace_all_uses_with(new)
        self.changed = True
        for op in users:
            self._worklist.push(op)
        if old.owner is not None:
            self._worklist.push(old.owner)  # may now be dead

    def replace_op(self, op: Operation, new: Value | Sequence[Value]) -> None:
        """Replace every result of ``op`` with ``new`` (same count and types), then erase it."""
        values = [new] if isinstance(new, Value) else list(new)
        if len(values) != len(op.results):
            raise RewriteError(f"{op.name} has {len(op.results)} results, replaced with {len(values)} values")
        for old, v in zip(op.results, values):
            self.replace_all_uses(old, v)
        self.erase_op(op)

    def set_operand(self, op: Operation, index: int, value: Value) -> None:
        old = op.operands[index]
        op.set_operand(index, value)
        self.changed = True
        self._worklist.push(op)
        self._worklist.push(old.owner)

    def erase_op(self, op: Operation) -> None:
        """Erase ``op``, whose results must be unused; its producers are revisited."""
        assert op.parent is not None, f"{op.name} is not in a graph"
        producers = [v.owner for v in op.operands]
        op.parent.erase(op)
        self.changed = True
        for p in producers:
            self._worklist.push(p)


@dataclass(frozen=True)
class GreedyResult:
    changed: bool
    converged: bool
    iterations: int
    rewrites: int
    erased: int  # trivially dead ops removed on the way
    counts: Mapping[str, int]  # rewrites per pattern name


def _collect(target: Module | Graph | Iterable[Graph]) -> list[Graph]:
    if isinstance(target, Module):
        return list(target.graphs.values())
    if isinstance(target, Graph):
        return [target]
    return list(target)


def _try_patterns(op: Operation, patterns: Sequence[Pattern], rewriter: Rewriter,
                  ctx: PassContext | None) -> Pattern | None:
    """Apply the first pattern that matches ``op``; return it (None if none matched)."""
    for pat in patterns:
        result = pat.match(op)
        if isinstance(result, str):
            if ctx is not None and ctx.debugging(pat.name):
                ctx.debug(f"[{pat.name}] no match: {result}\n    {_where(op)}")
            continue
        if ctx is not None and ctx.debugging(pat.name):
            ctx.debug(f"[{pat.name}] rewriting\n    {_where(op)}")
        pat.rewrite(result, rewriter)
        return pat
    return None


def _where(op: Operation) -> str:
    return print_op_line(op)


def _index(patterns: Sequence[Pattern]) -> tuple[dict[str, list[Pattern]], list[Pattern]]:
    by_root: dict[str, list[Pattern]] = {}
    anywhere = [p for p in patterns if p.root is None]
    for p in patterns:
        if p.root is not None:
            by_root.setdefault(p.root, []).append(p)
    return by_root, anywhere


def apply_patterns_greedily(target: Module | Graph | Iterable[Graph], patterns: Sequence[Pattern], *,
                            max_iterations: int = 10, max_rewrites: int | None = None,
                            erase_dead: bool = True, ctx: PassContext | None = None) -> GreedyResult:
    """Rewrite until no pattern matches. Each sweep seeds the worklist with every op (nested
    regions included); the run has converged when a whole sweep changes nothing. At most
    ``max_iterations`` sweeps and ``max_rewrites`` rewrites per sweep (default: 100 per op);
    patterns that undo each other end there, reported as not converged."""
    by_root, anywhere = _index(patterns)
    graphs = _collect(target)
    counts: dict[str, int] = {}
    erased = rewrites = iterations = 0
    changed_any = changed = False
    limit = max_rewrites
    while iterations < max_iterations:
        iterations += 1
        worklist = _Worklist()
        count = 0
        for g in graphs:
            for each in g.walk():
                worklist.push(each)
                count += 1
        limit = max_rewrites if max_rewrites is not None else 100 * (count + 10)
        rewriter = Rewriter(worklist)
        sweep_rewrites = 0
        while sweep_rewrites < limit and (op := worklist.pop()) is not None:
            if erase_dead and is_trivially_dead(op):
                rewriter.erase_op(op)
                erased += 1
                continue
            pat = _try_patterns(op, by_root.get(op.name, []) + anywhere, rewriter, ctx)
            if pat is not None:
                sweep_rewrites += 1
                counts[pat.name] = counts.get(pat.name, 0) + 1
        rewrites += sweep_rewrites
        changed = rewriter.changed
        changed_any |= changed
        if not changed or sweep_rewrites >= limit:
            break
    converged = not changed
    return GreedyResult(changed_any, converged, iterations, rewrites, erased, counts)


def report_greedy(result: GreedyResult, ctx: PassContext, pass_name: str, *, fail: bool = False) -> None:
    """Count the driver's work in ``ctx`` and report non-convergence (a warning, or with ``fail``
    a ``RewriteError``)."""
    ctx.stat("num-rewrites", result.rewrites)
    ctx.stat("num-dead-erased", result.erased)
    ctx.stat("num-iterations", result.iterations)
    for name, n in sorted(result.counts.items()):
        ctx.stat(f"num-{name}", n)
    if result.converged:
        return
    ctx.stat("num-non-converged")
    msg = (f"{pass_name}: the greedy rewrite did not converge after {result.iterations} iteration(s) "
           f"and {result.rewrites} rewrite(s); patterns may be undoing each other "
           f"(raise max-iterations, or use --debug-patterns to watch them)")
    if fail:
        raise RewriteError(msg)
    ctx.warn(msg)


__all__ = ["GreedyResult", "Match", "Pattern", "RewriteError", "Rewriter", "apply_patterns_greedily",
           "is_trivially_dead", "report_greedy"]
