"""Symbolic dims agree with integer arithmetic, are canonical, and print/parse back to themselves."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from optllm.ir.symbolic import Dim, SymExpr, evaluate, floordiv, mod, parse_dim, sym_max, sym_min

_SYMS = ("B", "S", "T")
# symbols are sizes: at least 1 (min/max simplify with that bound)
_ENV = st.fixed_dictionaries({s: st.integers(1, 20) for s in _SYMS})


def _combine(children: st.SearchStrategy[Dim]) -> st.SearchStrategy[Dim]:
    pos = st.integers(1, 5)
    return st.one_of(
        st.tuples(children, children).map(lambda p: p[0] + p[1]),
        st.tuples(children, children).map(lambda p: p[0] - p[1]),
        st.tuples(children, children).map(lambda p: p[0] * p[1]),
        st.tuples(children, pos).map(lambda p: floordiv(p[0], p[1])),
        st.tuples(children, pos).map(lambda p: mod(p[0], p[1])),
        st.tuples(children, children).map(lambda p: sym_max(p[0], p[1])),
        st.tuples(children, children).map(lambda p: sym_min(p[0], p[1])),
        children.map(lambda d: -d),
    )


dims: st.SearchStrategy[Dim] = st.recursive(
    st.one_of(st.integers(-6, 6), st.sampled_from(_SYMS).map(SymExpr.symbol)), _combine, max_leaves=8)


@given(dims, dims, _ENV)
def test_arithmetic_agrees_with_integers(a: Dim, b: Dim, env: dict[str, int]) -> None:
    x, y = evaluate(a, env), evaluate(b, env)
    assert evaluate(a + b, env) == x + y
    assert evaluate(a - b, env) == x - y
    assert evaluate(a * b, env) == x * y
    assert evaluate(sym_max(a, b), env) == max(x, y)
    assert evaluate(sym_min(a, b), env) == min(x, y)
    for k in (1, 2, 3, -2):
        assert evaluate(floordiv(a, k), env) == x // k
        assert evaluate(mod(a, k), env) == x % k


@given(dims, dims)
def test_canonical_forms(a: Dim, b: Dim) -> None:
    assert a + b == b + a and hash(a + b) == hash(b + a)
    assert a * b == b * a and hash(a * b) == hash(b * a)
    assert (a + b) - b == a
    assert sym_max(a, b) == sym_max(b, a)
    assert isinstance(a - a, int) and a - a == 0


@given(dims)
def test_print_parse_round_trip(d: Dim) -> None:
    assert parse_dim(str(d)) == d
    assert str(parse_dim(str(d))) == str(d)


# divisors that are sizes (never 0): products and sums of symbols with positive coefficients
_DIVISORS: st.SearchStrategy[Dim] = st.recursive(
    st.one_of(st.integers(1, 6), st.sampled_from(_SYMS).map(SymExpr.symbol)),
    lambda c: st.one_of(st.tuples(c, c).map(lambda p: p[0] * p[1]), st.tuples(c, c).map(lambda p: p[0] + p[1])),
    max_leaves=4)


@given(dims, _DIVISORS)
def test_exact_division_simplifies(a: Dim, b: Dim) -> None:
    """``floordiv(a*b, b)`` is ``a`` and ``mod(a*b, b)`` is 0 whatever ``a`` and ``b`` are
    (``floordiv(B*S,B)`` is ``S``, ``floordiv(B*S*4,4)`` is ``B*S``)."""
    assert floordiv(a * b, b) == a
    assert mod(a * b, b) == 0


@given(dims, _DIVISORS, _ENV)
def test_division_by_symbolic_sizes_agrees_with_integers(a: Dim, b: Dim, env: dict[str, int]) -> None:
    x, y = evaluate(a, env), evaluate(b, env)
    assert evaluate(floordiv(a, b), env) == x // y
    assert evaluate(mod(a, b), env) == x % y
    assert evaluate(floordiv(a * b + 3, b), env) == (x * y + 3) // y


@given(dims, st.integers(1, 5), st.integers(-9, 9), _ENV)
def test_constant_divisor_of_every_coefficient(a: Dim, k: int, c: int, env: dict[str, int]) -> None:
    """``floordiv(k*a + c, k)`` is ``a + c // k`` and its ``mod`` is ``c % k`` exactly."""
    assert floordiv(a * k + c, k) == a + c // k
    assert mod(a * k + c, k) == c % k
    assert evaluate(floordiv(a * k + c, k), env) == (evaluate(a, env) * k + c) // k
