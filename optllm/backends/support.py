"""What a target can run, asked per op: ``supports(target, op)`` answers with a ``Support``
that is true, or false with the reason (which error messages quote and fusion passes may
consult before building something a target cannot lower)::

    >>> supports("cpu", "core.cumsum")
    Support(ok=True, reason='')
    >>> supports("a100", "core.add").reason
    "target 'a100' needs the CUDA backend ..., which is not implemented yet"

Each answer is derived from one table, never written down twice: the reference target from the
op declarations (an op runs there when it declares a numpy reference, holds a region, or is a
``core.weight`` the executor resolves), the cpu target from its lowering's handler table and
the scalar rules of the elementwise template (``optllm.backends.cpu.lower.supports``).
"""

from __future__ import annotations

from dataclasses import dataclass

from optllm.ir.ops import OpDef, Operation, get_opdef


@dataclass(frozen=True)
class Support:
    """``bool(support)`` is whether the op runs; ``reason`` says why not."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def reference_supports(op: str | Operation) -> Support:
    """The reference executor runs every declared op with a numpy reference (and regions,
    whose bodies it interprets, and ``core.weight``, which it reads from the constant table)."""
    name = op if isinstance(op, str) else op.name
    try:
        opdef = get_opdef(name)
    except KeyError as e:
        return Support(False, str(e.args[0]))
    if opdef.has_region or name == "core.weight" or type(opdef).reference is not OpDef.reference:
        if isinstance(op, Operation) and op.regions:
            for bop in op.regions[0]:
                inner = reference_supports(bop)
                if not inner:
                    return inner
        return Support(True)
    return Support(False, f"{name} declares no numpy reference implementation")
