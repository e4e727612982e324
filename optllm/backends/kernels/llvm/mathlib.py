"""Vectorisable elementary functions: small always-inline LLVM functions of arithmetic, selects and
bitcasts only (no libm calls), so a loop that uses them vectorises like one that adds.

Each function handles its special values with selects (NaN propagates, ``exp(-inf) = 0``,
``exp(x) = inf`` past overflow, ``log(0) = -inf``, ``log(x<0) = nan``, ``tanh/erf(+-inf) = +-1``,
``sin/cos(+-inf) = nan``, ``-0`` keeps its sign where the function is odd). Algorithms:

* ``exp``: Cody-Waite reduction ``x = n ln2 + r``, ``|r| <= ln2/2``; Cephes ``expf`` polynomial
  (f32) or the degree-13 Taylor polynomial (f64); ``2^n`` applied as two exact powers of two so
  results that are subnormal round once more (at most one subnormal ulp).
* ``log``: fdlibm/musl: mantissa normalised to ``[sqrt(2)/2, sqrt(2))``, ``s = f/(2+f)``,
  minimax polynomial in ``s^2``; subnormal inputs rescaled by ``2^23`` / ``2^54``.
* ``tanh``: odd polynomial (f32, Cephes ``tanhf``) or rational (f64, Cephes) for ``|x| < 0.625``,
  ``1 - 2 / (exp(2|x|) + 1)`` above, sign restored.
* ``erf``: f32: Cephes odd polynomial for ``|x| < 1``, Abramowitz-Stegun 7.1.26
  (``1 - t P(t) exp(-x^2)``, absolute error 1.5e-7) above. f64: the Taylor series (19 terms) for
  ``|x| < 1``; ``1 - exp(-x^2) erfcx(x)`` up to 6 with ``erfcx`` a Chebyshev series in ``1/x``
  (coefficients from mpmath); 1 beyond.
* ``sigmoid``: ``e = exp(-|x|)``; ``1 / (1 + e)`` for ``x >= 0``, ``e / (1 + e)`` below.
* ``sin``/``cos``: evaluated in f64 for both widths: ``x = n pi/2 + r`` with fdlibm's three-part
  pi/2 (exact while ``|n| < 2^20``, i.e. ``|x| < 1.6e6``; accuracy degrades beyond), fdlibm's
  kernel polynomials, quadrant by ``n mod 4``.

Measured against numpy in long double (erf: scipy's float64 erf, and mpmath for f64) by
``tests/unit/backends/kernels/test_llvm_mathlib.py``, which asserts bounds slightly above these;
vectorised loops on the AVX-512 host. Ranges: exp f32 [-110, 90], f64 [-750, 712]; log over all
positive floats (subnormals included); tanh, erf, sigmoid over their whole useful range and
beyond; sin/cos for |x| <= 1e5. "near 0": 1e-38 (f32) / 1e-300 (f64) <= x <= 0.1.

    ========  =========================  =========================  ==========
    function  f32 max error              f64 max error              near 0
    ========  =========================  =========================  ==========
    exp       0.98 ulp                   0.95 ulp                   0.5 ulp
    log       0.78 ulp                   0.76 ulp                   0.6 ulp
    tanh      1.24 ulp, 7.4e-8 abs       1.24 ulp                   0.5 ulp
    erf       2.98 ulp, 1.8e-7 abs       1.0 ulp (vs mpmath)        2.1 ulp
    sigmoid   2.45 ulp                   2.46 ulp                   0.9 ulp
    sin, cos  0.50 ulp                   2.15 ulp                   0.5 ulp
    ========  =========================  =========================  ==========
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TypeAlias

import llvmlite.ir as ir

from optllm.backends.kernels.kir import MATH_FUNCTIONS

FUNCTIONS = MATH_FUNCTIONS  # every one has a body in _BODIES (checked by test_llvm_mathlib_trig.py)

_F32, _F64 = ir.FloatType(), ir.DoubleType()


def get(module: ir.Module, op: str, ty: ir.Type) -> ir.Function:
    """The always-inline ``optllm.<op>.<f32|f64>`` of ``module``, defined on first use."""
    width = "f32" if isinstance(ty, ir.FloatType) else "f64"
    name = f"optllm.{op}.{width}"
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(ty, [ty]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    m = _M(module, ir.IRBuilder(fn.append_basic_block("entry")), ty)
    m.b.ret(_BODIES[op](m, fn.args[0]))
    return fn


Num: TypeAlias = "ir.Value | float | int"


class _M:
    """Terse float arithmetic over an IRBuilder; Python numbers become constants of ``ty``.
    No fast-math flags: the compensated sums below must be evaluated as written."""

    def __init__(self, module: ir.Module, b: ir.IRBuilder, ty: ir.Type):
        self.module, self.b, self.ty = module, b, ty
        self.f64 = isinstance(ty, ir.DoubleType)
        self.ity = ir.IntType(64 if self.f64 else 32)

    def k(self, x: Num) -> ir.Value:
        return x if isinstance(x, ir.Value) else ir.Constant(self.ty, float(x))

    def i(self, x: int) -> ir.Value:
        return ir.Constant(self.ity, x)

    def add(self, x: Num, y: Num) -> ir.Value:
        return self.b.fadd(self.k(x), self.k(y))

    def sub(self, x: Num, y: Num) -> ir.Value:
        return self.b.fsub(self.k(x), self.k(y))

    def mul(self, x: Num, y: Num) -> ir.Value:
        return self.b.fmul(self.k(x), self.k(y))

    def div(self, x: Num, y: Num) -> ir.Value:
        return self.b.fdiv(self.k(x), self.k(y))

    def intrinsic(self, name: str, *args: Num) -> ir.Value:
        sfx = "f64" if self.f64 else "f32"
        full = f"llvm.{name}.{sfx}"
        fn = self.module.globals.get(full) or ir.Function(
            self.module, ir.FunctionType(self.ty, [self.ty] * len(args)), name=full)
        return self.b.call(fn, [self.k(a) for a in args])

    def fma(self, x: Num, y: Num, z: Num) -> ir.Value:
        return self.intrinsic("fma", x, y, z)

    def poly(self, x: ir.Value, coeffs: Sequence[float]) -> ir.Value:
        """Horner with FMAs; ``coeffs`` from the highest degree down."""
        acc = self.k(coeffs[0])
        for c in coeffs[1:]:
            acc = self.fma(acc, x, c)
        return acc

    def cmp(self, op: str, x: Num, y: Num) -> ir.Value:
        return self.b.fcmp_ordered(op, self.k(x), self.k(y))

    def isnan(self, x: ir.Value) -> ir.Value:
        return self.b.fcmp_unordered("uno", x, x)

    def sel(self, cond: ir.Value, x: Num, y: Num) -> ir.Value:
        return self.b.select(cond, self.k(x), self.k(y))

    def abs(self, x: ir.Value) -> ir.Value:
        return self.intrinsic("fabs", x)

    def copysign(self, mag: Num, sign: Num) -> ir.Value:
        return self.intrinsic("copysign", mag, sign)

    def bits(self, x: ir.Value) -> ir.Value:
        return self.b.bitcast(x, self.ity)

    def from_bits(self, x: ir.Value) -> ir.Value:
        return self.b.bitcast(x, self.ty)

    def pow2(self, n: ir.Value) -> ir.Value:
        """``2.0 ** n`` for an integer ``n`` in the normal exponent range."""
        shift, bias = (52, 1023) if self.f64 else (23, 127)
        return self.from_bits(self.b.shl(self.b.add(n, self.i(bias)), self.i(shift)))


# --- exp ------------------------------------------------------------------------------------

_EXPF = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
_EXP_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(13, 1, -1))  # 1/13! .. 1/2!
_LN2_HI_F32, _LN2_LO_F32 = 0.693359375, -2.12194440e-4
_LN2_HI_F64, _LN2_LO_F64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10


def _exp(m: _M, x: ir.Value) -> ir.Value:
    lo, hi = (-746.0, 710.0) if m.f64 else (-104.0, 89.0)
    ln2_hi, ln2_lo = (_LN2_HI_F64, _LN2_LO_F64) if m.f64 else (_LN2_HI_F32, _LN2_LO_F32)
    xs = m.sel(m.isnan(x), 0.0, x)
    xs = m.sel(m.cmp(">", xs, hi), hi, m.sel(m.cmp("<", xs, lo), lo, xs))
    n = m.intrinsic("roundeven", m.mul(xs, 1.0 / math.log(2.0)))
    r = m.fma(n, -ln2_hi, xs)
    r = m.fma(n, -ln2_lo, r)
    e = m.add(m.fma(m.mul(r, r), m.poly(r, _EXP_TAYLOR if m.f64 else _EXPF), r), 1.0)
    ni = m.b.fptosi(n, m.ity)
    n1 = m.b.ashr(ni, m.i(1))
    n2 = m.b.sub(ni, n1)
    y = m.mul(m.mul(e, m.pow2(n1)), m.pow2(n2))
    return m.sel(m.isnan(x), x, y)


# --- log ------------------------------------------------------------------------------------

_LGF = (0.24279078841, 0.40000972152, 0.28498786688, 0.66666662693)  # Lg4, Lg2 | Lg3, Lg1
_LG = (1.479819860511658591e-01, 1.531383769920937332e-01, 1.818357216161805012e-01,
       2.222219843214978396e-01, 2.857142874366239149e-01, 3.999999999940941908e-01,
       6.666666666666735130e-01)  # Lg7 .. Lg1
_LN2_HI_LOG_F32, _LN2_LO_LOG_F32 = 6.9313812256e-01, 9.0580006145e-06


def _log(m: _M, x: ir.Value) -> ir.Value:
    b = m.b
    if m.f64:
        tiny, scale, scale_k, sqrt_half, shift, bias = 2.0**-1022, 2.0**54, 54, 0x3FE6A09E667F3BCD, 52, 1023
        one_bits, mant = 0x3FF0000000000000, (1 << 52) - 1
    else:
        tiny, scale, scale_k, sqrt_half, shift, bias = 2.0**-126, 2.0**23, 23, 0x3F3504F3, 23, 127
        one_bits, mant = 0x3F800000, (1 << 23) - 1
    sub = m.cmp("<", x, tiny)
    xs = m.sel(sub, m.mul(x, scale), x)
    ix = b.add(m.bits(xs), m.i(one_bits - sqrt_half))
    k = b.sub(b.ashr(ix, m.i(shift)), m.i(bias))
    k = b.select(sub, b.sub(k, m.i(scale_k)), k)
    f = m.sub(m.from_bits(b.add(b.and_(ix, m.i(mant)), m.i(sqrt_half))), 1.0)
    s = m.div(f, m.add(f, 2.0))
    z = m.mul(s, s)
    w = m.mul(z, z)
    if m.f64:
        t1 = m.mul(w, m.poly(w, (_LG[1], _LG[3], _LG[5])))
        t2 = m.mul(z, m.poly(w, (_LG[0], _LG[2], _LG[4], _LG[6])))
        ln2_hi, ln2_lo = _LN2_HI_F64, _LN2_LO_F64
    else:
        t1 = m.mul(w, m.poly(w, (_LGF[0], _LGF[1])))
        t2 = m.mul(z, m.poly(w, (_LGF[2], _LGF[3])))
        ln2_hi, ln2_lo = _LN2_HI_LOG_F32, _LN2_LO_LOG_F32
    r = m.add(t2, t1)
    hfsq = m.mul(m.mul(f, f), 0.5)
    dk = b.sitofp(k, m.ty)
    # s*(hfsq+R) + dk*ln2_lo - hfsq + f + dk*ln2_hi
    y = m.add(m.add(m.sub(m.fma(dk, ln2_lo, m.mul(s, m.add(hfsq, r))), hfsq), f), m.mul(dk, ln2_hi))
    y = m.sel(m.cmp("==", x, math.inf), x, y)
    y = m.sel(m.cmp("==", x, 0.0), -math.inf, y)
    return m.sel(b.fcmp_unordered("<", x, m.k(0.0)), math.nan, y)  # x < 0 or nan -> nan


# --- tanh, sigmoid, erf ---------------------------------------------------------------------

_TANHF = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1)
_TANH_P = (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3)
_TANH_Q = (1.0, 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)


def _tanh(m: _M, x: ir.Value) -> ir.Value:
    z = m.mul(x, x)
    if m.f64:
        small = m.fma(m.mul(x, z), m.div(m.poly(z, _TANH_P), m.poly(z, _TANH_Q)), x)
    else:
        small = m.fma(m.mul(x, z), m.poly(z, _TANHF), x)
    ax = m.abs(x)
    e = _exp(m, m.mul(ax, 2.0))
    big = m.copysign(m.sub(1.0, m.div(2.0, m.add(e, 1.0))), x)
    y = m.sel(m.cmp("<", ax, 0.625), m.copysign(small, x), big)  # copysign: tanh(-0) = -0
    return m.sel(m.isnan(x), x, y)


def _sigmoid(m: _M, x: ir.Value) -> ir.Value:
    # e = exp(-|x|) never overflows: 1/(1+e) for x >= 0, e/(1+e) below (subnormal results stay exact)
    e = _exp(m, m.b.fneg(m.abs(x)))
    d = m.div(1.0, m.add(1.0, e))
    return m.sel(m.isnan(x), x, m.sel(m.cmp(">=", x, 0.0), d, m.mul(e, d)))


_ERFF_SMALL = (7.853861353153693e-5, -8.010193625184903e-4, 5.188327685732524e-3, -2.685381193529856e-2,
               1.128358514861418e-1, -3.761262582423300e-1, 1.128379165726710e0)
_AS_7126 = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592, 0.0)


# erf(x) = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1)), n <= 18 (exact to 1e-18 for |x| < 1)
_ERF_TAYLOR = (4.763348040515068e-18, -9.063970842808673e-17, 1.6342614095367152e-15, -2.7835162072109215e-14,
               4.4632242632864775e-13, -6.7113668551641105e-12, 9.422759064650411e-11, -1.2290555301717928e-09,
               1.4807192815879218e-08, -1.6365844691234924e-07, 1.6462114365889248e-06, -1.492565035840625e-05,
               0.00012055332981789664, -0.0008548327023450853, 0.005223977625442188, -0.026866170645131252,
               0.11283791670955126, -0.37612638903183754, 1.1283791670955126)
# Chebyshev series of erfcx(1/u) = exp(x^2) erfc(x) for u = 1/x in [1/6, 1], computed with mpmath at
# 40 digits (relative error 9e-16 through Clenshaw in double).
_ERFCX_CHEB = (0.27477468589795284, 0.16699329119310397, -0.014778434908201299, 0.0004607660043734876,
               0.0001765796783540858, -5.026984064246909e-05, 7.4270133556075315e-06, -3.5188112192476504e-07,
               -1.715011288591872e-07, 6.706623053010447e-08, -1.4316589264944168e-08, 1.7595567908537462e-09,
               7.452123864183722e-11, -1.154378423893288e-10, 3.887349419745945e-11, -8.504873132252811e-12,
               1.127231358621847e-12, 4.3281674986669116e-14, -8.422061090702087e-14, 3.200374931249359e-14,
               -8.147174450338448e-15, 1.428065365589407e-15, -8.8005789744568e-17, -5.554056318187629e-17,
               3.036629892974433e-17, -9.766792921279475e-18, 2.3080284389102305e-18)


def _erf64(m: _M, x: ir.Value) -> ir.Value:
    ax = m.abs(x)
    z = m.mul(x, x)
    small = m.mul(x, m.poly(z, _ERF_TAYLOR))
    u = m.div(1.0, m.sel(m.cmp(">", ax, 6.0), 6.0, m.sel(m.cmp("<", ax, 1.0), 1.0, ax)))
    t = m.fma(u, 2.4, -1.4)  # [1/6, 1] -> [-1, 1]
    t2 = m.add(t, t)
    b1, b2 = m.k(0.0), m.k(0.0)
    for c in _ERFCX_CHEB[:0:-1]:  # Clenshaw
        b1, b2 = m.fma(t2, b1, m.sub(c, b2)), b1
    erfcx = m.fma(t, b1, m.sub(_ERFCX_CHEB[0], b2))
    big = m.copysign(m.sub(1.0, m.mul(_exp(m, m.b.fneg(z)), erfcx)), x)
    y = m.sel(m.cmp("<", ax, 1.0), small, m.sel(m.cmp(">=", ax, 6.0), m.copysign(1.0, x), big))
    return m.sel(m.isnan(x), x, y)


def _erf(m: _M, x: ir.Value) -> ir.Value:
    if m.f64:
        return _erf64(m, x)
    z = m.mul(x, x)
    small = m.mul(x, m.poly(z, _ERFF_SMALL))
    ax = m.abs(x)
    t = m.div(1.0, m.fma(ax, 0.3275911, 1.0))
    big = m.fma(m.b.fneg(m.poly(t, _AS_7126)), _exp(m, m.b.fneg(z)), 1.0)
    y = m.sel(m.cmp("<", ax, 1.0), small, m.copysign(big, x))
    return m.sel(m.isnan(x), x, y)


# --- sin, cos (evaluated in f64) ------------------------------------------------------------

_PIO2_1, _PIO2_2, _PIO2_3 = 1.57079632673412561417e00, 6.07710050630396597660e-11, 2.02226624879595063154e-21
_SIN = (1.58969099521155010221e-10, -2.50507602534068634195e-08, 2.75573137070700676789e-06,
        -1.98412698298579493134e-04, 8.33333333332248946124e-03, -1.66666666666666324348e-01)
_COS = (-1.13596475577881948265e-11, 2.08757232129817482790e-09, -2.75573143513906633035e-07,
        2.48015872894767294178e-05, -1.38888888888741095749e-03, 4.16666666666666019037e-02)


def _quadrant_sincos(d: _M, x: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value, ir.Value]:
    """The f64 reduction shared by sin, cos and tan: ``x = n*pi/2 + r`` (Cody-Waite, three
    parts of pi/2) and the fdlibm kernels ``s = sin(r)``, ``c = cos(r)``; returns (x is finite,
    n, s, c). A non-finite ``x`` is reduced as 0 (the callers substitute NaN)."""
    finite = d.cmp("<", d.abs(x), math.inf)
    xs = d.sel(finite, x, 0.0)
    n = d.intrinsic("roundeven", d.mul(xs, 2.0 / math.pi))
    r = d.fma(n, -_PIO2_1, xs)
    r = d.fma(n, -_PIO2_2, r)
    r = d.fma(n, -_PIO2_3, r)
    z = d.mul(r, r)
    s = d.fma(d.mul(z, r), d.poly(z, _SIN), r)
    hz = d.mul(z, 0.5)
    w = d.sub(1.0, hz)
    c = d.add(w, d.fma(d.mul(z, z), d.poly(z, _COS), d.sub(d.sub(1.0, w), hz)))
    return finite, n, s, c


def _sincos(m: _M, x: ir.Value, shift: int) -> ir.Value:
    """sin (``shift=0``) or cos (``shift=1``: cos(x) = sin(x + pi/2), one quadrant on)."""
    b = m.b
    d = _M(m.module, b, _F64)
    xd = x if m.f64 else b.fpext(x, _F64)
    finite, n, s, c = _quadrant_sincos(d, xd)
    nq = d.add(n, float(shift))
    q = d.sub(nq, d.mul(d.intrinsic("floor", d.mul(nq, 0.25)), 4.0))  # n mod 4 in floats: no int overflow
    y = d.sel(d.cmp("==", q, 1.0), c, d.sel(d.cmp("==", q, 2.0), b.fneg(s), d.sel(d.cmp("==", q, 3.0), b.fneg(c), s)))
    if shift == 0:
        y = d.sel(d.cmp("==", xd, 0.0), xd, y)  # sin(-0) = -0
    y = d.sel(finite, y, math.nan)
    y = d.sel(d.isnan(xd), xd, y)
    return y if m.f64 else b.fptrunc(y, _F32)


# --- tan, the inverse and hyperbolic functions (evaluated in f64) -------------------------------
# Each is built from the f64 exp/log/sqrt above and fdlibm's atan kernel; for f32 operands the
# f64 result is rounded once, so the f32 functions are within about one f32 ulp everywhere.


def _in_f64(m: _M, x: ir.Value, body: Callable[[_M, ir.Value], ir.Value]) -> ir.Value:
    """``body`` evaluated in f64 (``x`` widened first, the result narrowed back)."""
    if m.f64:
        return body(m, x)
    d = _M(m.module, m.b, _F64)
    return m.b.fptrunc(body(d, m.b.fpext(x, _F64)), _F32)


def _tan(d: _M, x: ir.Value) -> ir.Value:
    """sin(r)/cos(r) or -cos(r)/sin(r) by the parity of the quadrant (the reduction of ``_sincos``)."""
    b = d.b
    finite, n, s, c = _quadrant_sincos(d, x)
    odd = d.cmp("!=", d.sub(n, d.mul(d.intrinsic("floor", d.mul(n, 0.5)), 2.0)), 0.0)
    y = d.sel(odd, b.fneg(d.div(c, s)), d.div(s, c))
    y = d.sel(d.cmp("==", x, 0.0), x, y)  # tan(-0) = -0
    y = d.sel(finite, y, math.nan)
    return d.sel(d.isnan(x), x, y)


_ATAN_HI = (4.63647609000806093515e-01, 7.85398163397448278999e-01, 9.82793723247329054082e-01,
            1.57079632679489655800e00)
_ATAN_LO = (2.26987774529616870924e-17, 3.06161699786838301793e-17, 1.39033110312309984516e-17,
            6.12323399573676603587e-17)
_AT_ODD = (1.62858201153657823623e-02, 4.97687799461593236017e-02, 6.66107313738753120669e-02,
           9.09088713343650656196e-02, 1.42857142725034663711e-01, 3.33333333333329318027e-01)  # aT10 .. aT0
_AT_EVEN = (-3.65315727442169155270e-02, -5.83357013379057348645e-02, -7.69187620504482999495e-02,
            -1.11111104054623557880e-01, -1.99999999998764832476e-01)  # aT9 .. aT1


def _atan(d: _M, x: ir.Value) -> ir.Value:
    """fdlibm ``atan``: |x| reduced against atan(1/2), atan(1), atan(3/2) or pi/2 (chosen by
    selects, so it vectorises), then an odd polynomial of degree 23."""
    a = d.abs(x)
    r0 = a
    r1 = d.div(d.sub(d.mul(a, 2.0), 1.0), d.add(a, 2.0))
    r2 = d.div(d.sub(a, 1.0), d.add(a, 1.0))
    r3 = d.div(d.sub(a, 1.5), d.fma(a, 1.5, 1.0))
    r4 = d.div(-1.0, a)
    band = [d.cmp("<", a, 0.4375), d.cmp("<", a, 0.6875), d.cmp("<", a, 1.1875), d.cmp("<", a, 2.4375)]

    def pick(vals: Sequence[Num]) -> ir.Value:
        out = d.k(vals[4])
        for k in (3, 2, 1, 0):
            out = d.sel(band[k], vals[k], out)
        return out

    r = pick([r0, r1, r2, r3, r4])
    z = d.mul(r, r)
    w = d.mul(z, z)
    s1 = d.mul(z, d.poly(w, _AT_ODD))
    s2 = d.mul(w, d.poly(w, _AT_EVEN))
    t = d.mul(r, d.add(s1, s2))
    small = d.sub(r, t)
    hi = pick([0.0, *_ATAN_HI])
    lo = pick([0.0, *_ATAN_LO])
    big = d.sub(hi, d.sub(d.sub(t, lo), r))
    y = d.copysign(d.sel(band[0], small, big), x)
    return d.sel(d.isnan(x), x, y)


def _log1p(d: _M, u: ir.Value) -> ir.Value:
    """log(1 + u) to a few ulp (Goldberg: log(w) * u / (w - 1) with w = 1 + u rounded)."""
    w = d.add(u, 1.0)
    y = d.mul(_log(d, w), d.div(u, d.sub(w, 1.0)))
    y = d.sel(d.cmp("==", w, 1.0), u, y)
    return d.sel(d.cmp("==", u, math.inf), u, y)


_LN2 = math.log(2.0)
_HUGE = 1e150  # past this x*x would overflow: log(2x) = log(x) + ln 2 is exact to rounding


def _asin(d: _M, x: ir.Value) -> ir.Value:
    # asin x = atan(x / sqrt((1 - x)(1 + x))); |x| = 1 -> atan(+-inf) = +-pi/2; |x| > 1 -> nan
    return _atan(d, d.div(x, d.intrinsic("sqrt", d.mul(d.sub(1.0, x), d.add(1.0, x)))))


def _acos(d: _M, x: ir.Value) -> ir.Value:
    # acos x = 2 atan(sqrt((1 - x) / (1 + x))); x = -1 -> 2 atan(inf) = pi
    return d.mul(2.0, _atan(d, d.intrinsic("sqrt", d.div(d.sub(1.0, x), d.add(1.0, x)))))


# sinh a = sum a^(2n+1) / (2n+1)!, n <= 10: exact to rounding for |a| < 1 (no cancellation)
_SINH_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(21, 2, -2))


def _sinh(d: _M, x: ir.Value) -> ir.Value:
    a = d.abs(x)
    small = d.fma(d.mul(a, d.mul(a, a)), d.poly(d.mul(a, a), _SINH_TAYLOR), a)
    e = _exp(d, a)
    mid = d.mul(d.sub(e, d.div(1.0, e)), 0.5)
    h = _exp(d, d.mul(a, 0.5))  # exp(a) overflows before sinh(a): (h / 2) * h
    big = d.mul(d.mul(h, 0.5), h)
    y = d.sel(d.cmp("<", a, 1.0), small, d.sel(d.cmp("<", a, 22.0), mid, big))
    return d.sel(d.isnan(x), x, d.copysign(y, x))


def _cosh(d: _M, x: ir.Value) -> ir.Value:
    a = d.abs(x)
    e = _exp(d, a)
    mid = d.mul(d.add(e, d.div(1.0, e)), 0.5)
    h = _exp(d, d.mul(a, 0.5))
    y = d.sel(d.cmp("<", a, 22.0), mid, d.mul(d.mul(h, 0.5), h))
    return d.sel(d.isnan(x), x, y)


def _asinh(d: _M, x: ir.Value) -> ir.Value:
    # asinh a = log1p(a + a^2 / (1 + sqrt(1 + a^2))): no cancellation near 0
    a = d.abs(x)
    a2 = d.mul(a, a)
    y = _log1p(d, d.add(a, d.div(a2, d.add(1.0, d.intrinsic("sqrt", d.add(1.0, a2))))))
    y = d.sel(d.cmp(">", a, _HUGE), d.add(_log(d, a), _LN2), y)
    return d.sel(d.isnan(x), x, d.copysign(y, x))


def _acosh(d: _M, x: ir.Value) -> ir.Value:
    # acosh x = log1p(t + sqrt(t (t + 2))), t = x - 1 (exact near 1); x < 1 -> nan
    t = d.sub(x, 1.0)
    y = _log1p(d, d.add(t, d.intrinsic("sqrt", d.mul(t, d.add(t, 2.0)))))
    y = d.sel(d.cmp(">", x, _HUGE), d.add(_log(d, x), _LN2), y)
    return d.sel(d.cmp("<", x, 1.0), math.nan, y)


def _atanh(d: _M, x: ir.Value) -> ir.Value:
    # atanh a = log1p(2a / (1 - a)) / 2; a = 1 -> inf; a > 1 -> log1p(< -1) = nan
    a = d.abs(x)
    y = d.mul(_log1p(d, d.div(d.mul(a, 2.0), d.sub(1.0, a))), 0.5)
    return d.sel(d.isnan(x), x, d.copysign(y, x))


_BODIES: dict[str, Callable[[_M, ir.Value], ir.Value]] = {
    "exp": _exp, "log": _log, "tanh": _tanh, "sigmoid": _sigmoid, "erf": _erf,
    "sin": lambda m, x: _sincos(m, x, 0), "cos": lambda m, x: _sincos(m, x, 1),
    **{name: functools.partial(_in_f64, body=fn) for name, fn in (
        ("tan", _tan), ("asin", _asin), ("acos", _acos), ("atan", _atan), ("sinh", _sinh), ("cosh", _cosh),
        ("asinh", _asinh), ("acosh", _acosh), ("atanh", _atanh))},
}
