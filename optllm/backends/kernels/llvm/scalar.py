"""Scalar operations of KIR in LLVM IR, with numpy's semantics (the leaves of ``codegen``).

* ``bool`` is ``i1`` in registers, a byte in buffers; ``u8`` is ``i8`` with unsigned division,
  comparison and widening; ``bf16`` is ``i16`` in buffers and ``float`` in registers, rounded to
  bfloat16 after every operation (:func:`round_bf16`).
* Integers wrap; ``div`` truncates, ``floordiv``/``mod`` floor; division by zero gives 0 and
  ``MIN / -1`` wraps instead of trapping (``x86`` raises SIGFPE on both).
* Floats: ``max``/``min`` propagate NaN as numpy's ``maximum``/``minimum``; ``mod``/``floordiv``
  follow ``npy_divmod``; ``round`` is half-to-even; float->int casts saturate (NaN -> 0) rather
  than produce poison; to ``bool`` is ``!= 0`` (NaN is true).
"""

from __future__ import annotations

from collections.abc import Sequence

import llvmlite.ir as ir

from optllm.backends.kernels.kir import BOOL, I64, KIRError, ScalarType
from optllm.backends.kernels.llvm import mathlib

BF16 = ScalarType.BF16

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)

FAST = ("reassoc", "contract")  # accumulator updates (Assign): lets reductions vectorise
CONTRACT = ("contract",)  # everything else: a*b+c may fuse; no algebraic rewrites that change NaN/inf

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_LLTYPES: dict[ScalarType, ir.Type] = {
    ScalarType.F64: ir.DoubleType(), ScalarType.F32: ir.FloatType(), ScalarType.F16: ir.HalfType(),
    ScalarType.BF16: ir.FloatType(),
    ScalarType.I64: _I64, ScalarType.I32: _I32, ScalarType.I16: ir.IntType(16), ScalarType.I8: _I8,
    ScalarType.U8: _I8, ScalarType.BOOL: _I1,
}


def lltype(t: ScalarType) -> ir.Type:
    """The register type of a KIR scalar type."""
    try:
        return _LLTYPES[t]
    except KeyError:
        raise KIRError(f"the LLVM printer does not support {t} yet") from None


def memtype(t: ScalarType) -> ir.Type:
    """The in-buffer type (``bool`` is a byte)."""
    return {BOOL: _I8, BF16: ir.IntType(16)}.get(t) or lltype(t)


def regbits(t: ScalarType) -> int:
    return 32 if t == BF16 else t.bits


# --- module-level declarations --------------------------------------------------------------


def declare(module: ir.Module, name: str, ret: ir.Type, args: Sequence[ir.Type]) -> ir.Function:
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(ret, list(args)), name=name)


def intrinsic(module: ir.Module, name: str, ty: ir.Type, nargs: int = 1) -> ir.Function:
    """``llvm.<name>.<f32|f64|...>`` taking ``nargs`` arguments of ``ty``."""
    return declare(module, f"llvm.{name}.{_suffix(ty)}", ty, [ty] * nargs)


def _suffix(ty: ir.Type) -> str:
    if isinstance(ty, ir.FloatType):
        return "f32"
    if isinstance(ty, ir.DoubleType):
        return "f64"
    if isinstance(ty, ir.HalfType):
        return "f16"
    return f"i{ty.width}"


def const(value: float | int | bool, t: ScalarType) -> ir.Constant:
    if t == BF16:
        import ml_dtypes
        import numpy as np

        return ir.Constant(ir.FloatType(), float(np.float32(value).astype(ml_dtypes.bfloat16)))
    if t.is_float:
        return ir.Constant(lltype(t), float(value))
    if t == BOOL:
        return _I1(int(bool(value)))
    return ir.Constant(lltype(t), int(value))


# --- scalar operations (numpy semantics) ----------------------------------------------------

_FCMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "=="}
_ICMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def float_unary(module: ir.Module, b: ir.IRBuilder, op: str, x: ir.Value, t: ScalarType) -> ir.Value:
    ty = x.type
    if op == "neg":
        return b.fneg(x)
    if op in ("abs", "sqrt", "floor", "ceil"):
        name = {"abs": "fabs"}.get(op, op)
        return b.call(intrinsic(module, name, ty), [x])
    if op == "round":
        return b.call(intrinsic(module, "roundeven", ty), [x])
    if op == "rsqrt":
        return b.fdiv(ir.Constant(ty, 1.0), b.call(intrinsic(module, "sqrt", ty), [x]))
    if op == "reciprocal":
        return b.fdiv(ir.Constant(ty, 1.0), x)
    if op == "isnan":
        return b.fcmp_unordered("uno", x, x)
    if op == "isinf":
        return b.fcmp_ordered("==", b.call(intrinsic(module, "fabs", ty), [x]), ir.Constant(ty, float("inf")))
    if op == "sign":  # nan -> nan, +-0 -> 0 (numpy.sign)
        one, zero = ir.Constant(ty, 1.0), ir.Constant(ty, 0.0)
        s = b.select(b.fcmp_ordered(">", x, zero), one,
                     b.select(b.fcmp_ordered("<", x, zero), ir.Constant(ty, -1.0), zero))
        return b.select(b.fcmp_unordered("uno", x, x), x, s)
    if op in mathlib.FUNCTIONS:
        if t == ScalarType.F16:  # evaluate in f32 and round once, as numpy does for float16
            wide = b.call(mathlib.get(module, op, ir.FloatType()), [b.fpext(x, ir.FloatType())])
            return b.fptrunc(wide, ty)
        return b.call(mathlib.get(module, op, ty), [x])
    raise KIRError(f"{op} is not defined on {t}")


def float_binary(module: ir.Module, b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value,
                 flags: tuple[str, ...] = CONTRACT) -> ir.Value:
    ty = x.type
    if op in ("add", "sub", "mul", "div"):
        return getattr(b, "f" + op)(x, y, flags=flags)
    if op in _FCMP:
        return b.fcmp_ordered(_FCMP[op], x, y)
    if op == "ne":
        return b.fcmp_unordered("!=", x, y)
    if op in ("max", "min") and "reassoc" in flags:
        # In a reduction: llvm.maximum/minimum (NaN-propagating; the vectoriser knows them). They
        # differ from numpy only in ordering -0 < +0, invisible to a max/min over values.
        return b.call(intrinsic(module, "maximum" if op == "max" else "minimum", ty, 2), [x, y])
    if op in ("max", "min"):  # numpy: (x >= y || isnan(x)) ? x : y
        keep_x = b.or_(b.fcmp_ordered(">=" if op == "max" else "<=", x, y), b.fcmp_unordered("uno", x, x))
        return b.select(keep_x, x, y)
    if op == "pow":
        return b.call(intrinsic(module, "pow", ty, 2), [x, y])
    if op in ("mod", "floordiv"):
        mod, div = _float_divmod(module, b, x, y)
        return mod if op == "mod" else div
    raise KIRError(f"{op} is not defined on floating types")


def _float_divmod(module: ir.Module, b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> tuple[ir.Value, ir.Value]:
    """numpy's ``npy_divmod``: the floored remainder (sign of the divisor) and quotient."""
    ty = x.type
    zero, one = ir.Constant(ty, 0.0), ir.Constant(ty, 1.0)
    copysign = intrinsic(module, "copysign", ty, 2)
    mod = b.frem(x, y)
    div = b.fdiv(b.fsub(x, mod), y)
    adjust = b.and_(b.fcmp_ordered("!=", mod, zero),
                    b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
    mod_nz = b.select(adjust, b.fadd(mod, y), mod)
    div = b.select(adjust, b.fsub(div, one), div)
    mod = b.select(b.fcmp_ordered("==", mod, zero), b.call(copysign, [zero, y]), mod_nz)
    fl = b.call(intrinsic(module, "floor", ty), [div])
    fl = b.select(b.fcmp_ordered(">", b.fsub(div, fl), ir.Constant(ty, 0.5)), b.fadd(fl, one), fl)
    quot = b.fdiv(x, y)
    floordiv = b.select(b.fcmp_ordered("==", div, zero), b.call(copysign, [zero, quot]), fl)
    by_zero = b.fcmp_ordered("==", y, zero)
    return b.select(by_zero, b.frem(x, y), mod), b.select(by_zero, quot, floordiv)


def int_unary(module: ir.Module, b: ir.IRBuilder, op: str, x: ir.Value, t: ScalarType) -> ir.Value:
    ty = x.type
    zero = ir.Constant(ty, 0)
    if op == "not":
        return b.xor(x, ir.Constant(ty, -1) if t != BOOL else _I1(1))
    if op in ("isnan", "isinf"):
        return _I1(0)
    if op in ("floor", "ceil", "round") or (op == "abs" and not t.is_signed):
        return x
    if t == BOOL:
        raise KIRError(f"{op} is not defined on bool")
    if op == "neg":
        return b.sub(zero, x)
    if op == "abs":
        return b.select(b.icmp_signed("<", x, zero), b.sub(zero, x), x)
    if op == "sign":
        one = ir.Constant(ty, 1)
        if not t.is_signed:
            return b.select(b.icmp_unsigned("!=", x, zero), one, zero)
        return b.select(b.icmp_signed(">", x, zero), one,
                        b.select(b.icmp_signed("<", x, zero), ir.Constant(ty, -1), zero))
    if op == "reciprocal":
        return int_binary(module, b, "div", ir.Constant(ty, 1), x, t)
    raise KIRError(f"{op} is not defined on {t}")


def int_binary(module: ir.Module, b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, t: ScalarType,
               nsw: bool = False) -> ir.Value:
    ty = x.type
    if t == BOOL:  # numpy: + is or, * is and, max/min are or/and
        op = {"add": "or", "mul": "and", "max": "or", "min": "and"}.get(op, op)
        if op not in ("and", "or", "xor", *_ICMP):
            raise KIRError(f"{op} is not defined on bool")
    flags = ["nsw"] if nsw and t == I64 else []
    if op in ("add", "sub", "mul"):
        return getattr(b, op)(x, y, flags=flags)
    if op in ("and", "or", "xor"):
        return getattr(b, op + "_" if op != "xor" else op)(x, y)
    if op in _ICMP:
        cmp = b.icmp_signed if t.is_signed else b.icmp_unsigned
        return cmp(_ICMP[op], x, y)
    if op in ("max", "min"):
        cmp = b.icmp_signed if t.is_signed else b.icmp_unsigned
        return b.select(cmp(">=" if op == "max" else "<=", x, y), x, y)
    if op in ("div", "floordiv", "mod"):
        return _int_div(b, op, x, y, t)
    if op == "pow":
        return b.call(_ipow(module, t, ty), [x, y])
    raise KIRError(f"{op} is not defined on {t}")


def _int_div(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, t: ScalarType) -> ir.Value:
    """Division without traps: ``x / 0 == 0`` and ``x % 0 == 0`` (numpy), ``MIN / -1`` wraps."""
    ty = x.type
    zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
    by_zero = b.icmp_unsigned("==", y, zero)
    if not t.is_signed:
        safe = b.select(by_zero, one, y)
        r = b.urem(x, safe) if op == "mod" else b.udiv(x, safe)
        return b.select(by_zero, zero, r)
    minus_one = b.icmp_signed("==", y, ir.Constant(ty, -1))
    safe = b.select(b.or_(by_zero, minus_one), one, y)
    q, r = b.sdiv(x, safe), b.srem(x, safe)
    if op != "div":  # floor: step toward -inf when the remainder's sign differs from the divisor's
        fix = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("<", b.xor(r, y), zero))
        q = b.select(fix, b.sub(q, one), q)
        r = b.select(fix, b.add(r, y), r)
    result = r if op == "mod" else b.select(minus_one, b.sub(zero, x), q)
    if op == "mod":
        result = b.select(minus_one, zero, result)
    return b.select(by_zero, zero, result)


def _ipow(module: ir.Module, t: ScalarType, ty: ir.IntType) -> ir.Function:
    """``x ** y`` on integers by squaring; a negative exponent gives ``1 / x**-y`` truncated."""
    name = f"optllm.ipow.{t}"
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(ty, [ty, ty]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    base0, exp0 = fn.args
    entry, loop, done = fn.append_basic_block("entry"), fn.append_basic_block("loop"), fn.append_basic_block("done")
    b = ir.IRBuilder(entry)
    zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
    b.cbranch(b.icmp_unsigned("==", exp0, zero), done, loop)
    b.position_at_end(loop)
    acc, base, e = b.phi(ty), b.phi(ty), b.phi(ty)
    acc2 = b.select(b.icmp_unsigned("!=", b.and_(e, one), zero), b.mul(acc, base), acc)
    base2 = b.mul(base, base)
    e2 = b.lshr(e, one)
    b.cbranch(b.icmp_unsigned("!=", e2, zero), loop, done)
    acc.add_incoming(one, entry)
    acc.add_incoming(acc2, loop)
    base.add_incoming(base0, entry)
    base.add_incoming(base2, loop)
    e.add_incoming(exp0, entry)
    e.add_incoming(e2, loop)
    b.position_at_end(done)
    res = b.phi(ty)
    res.add_incoming(one, entry)
    res.add_incoming(acc2, loop)
    if t.is_signed:  # 1 ** -k == 1, (-1) ** -k == +-1, anything else ** -k truncates to 0
        odd = b.icmp_unsigned("!=", b.and_(exp0, one), zero)
        neg = b.select(b.icmp_signed("==", base0, one), one,
                       b.select(b.icmp_signed("==", base0, ir.Constant(ty, -1)),
                                b.select(odd, ir.Constant(ty, -1), one), zero))
        b.ret(b.select(b.icmp_signed("<", exp0, zero), neg, res))
    else:
        b.ret(res)
    return fn


def cast(b: ir.IRBuilder, x: ir.Value, src: ScalarType, dst: ScalarType) -> ir.Value:
    """numpy ``astype``: float->int truncates (saturating, NaN -> 0, never poison); to bool is ``!= 0``."""
    if src == dst:
        return x
    if src == BF16:  # registers hold bf16 values as f32
        return cast(b, x, ScalarType.F32, dst)
    if dst == BF16:
        return round_bf16(b, cast(b, x, src, ScalarType.F32))
    ty = lltype(dst)
    if dst == BOOL:
        if src.is_float:
            return b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))
        return b.icmp_unsigned("!=", x, ir.Constant(x.type, 0))
    if src.is_float and dst.is_float:
        return b.fpext(x, ty) if dst.bits > src.bits else b.fptrunc(x, ty)
    if src.is_float:  # narrow ints go through i32 then wrap, like C's (int8_t)(int32_t)x
        wide = _I64 if dst == I64 else _I32
        module = b.module
        sat = declare(module, f"llvm.fptosi.sat.{_suffix(wide)}.{_suffix(x.type)}", wide, [x.type])
        v = b.call(sat, [x])
        return v if wide == ty else b.trunc(v, ty)
    if dst.is_float:
        return b.sitofp(x, ty) if src.is_signed else b.uitofp(x, ty)
    if dst.bits < src.bits:
        return b.trunc(x, ty)
    return b.sext(x, ty) if src.is_signed else b.zext(x, ty)


def round_bf16(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Round an f32 to the nearest bfloat16 (ties to even), kept in an f32; NaN stays a quiet NaN."""
    bits = b.bitcast(x, _I32)
    lsb = b.and_(b.lshr(bits, _I32(16)), _I32(1))
    rounded = b.and_(b.add(bits, b.add(lsb, _I32(0x7FFF))), _I32(-65536))
    quiet = b.and_(b.or_(bits, _I32(0x00400000)), _I32(-65536))
    isnan = b.fcmp_unordered("uno", x, x)
    return b.bitcast(b.select(isnan, quiet, rounded), ir.FloatType())
