"""Elementary functions for the LLVM printer (placeholder: libm through LLVM intrinsics)."""

from __future__ import annotations

import llvmlite.ir as ir

FUNCTIONS = frozenset({"exp", "log", "tanh", "erf", "sigmoid", "sin", "cos"})


def _sfx(ty: ir.Type) -> str:
    return "f32" if isinstance(ty, ir.FloatType) else "f64"


def get(module: ir.Module, op: str, ty: ir.Type) -> ir.Function:
    name = f"optllm.{op}.{_sfx(ty)}"
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(ty, [ty]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    x = fn.args[0]

    def ext(n: str) -> ir.Function:
        if n in module.globals:
            return module.globals[n]
        return ir.Function(module, ir.FunctionType(ty, [ty]), name=n)

    if op in ("exp", "log", "sin", "cos"):
        b.ret(b.call(ext(f"llvm.{op}.{_sfx(ty)}"), [x]))
    elif op in ("tanh", "erf"):
        b.ret(b.call(ext(op + ("f" if isinstance(ty, ir.FloatType) else "")), [x]))
    else:
        e = b.call(get(module, "exp", ty), [b.fneg(x)])
        b.ret(b.fdiv(ir.Constant(ty, 1.0), b.fadd(ir.Constant(ty, 1.0), e)))
    return fn
