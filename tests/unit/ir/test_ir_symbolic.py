"""Symbolic dims: canonical polynomials over named symbols (B, S, B*S, floordiv(S,2), ...)."""

from __future__ import annotations

import pytest

from optllm.ir.symbolic import (
    DimParseError,
    SymExpr,
    evaluate,
    floordiv,
    mod,
    parse_dim,
    product,
    sym_max,
    sym_min,
    symbols_of,
)

B = SymExpr.symbol("B")
S = SymExpr.symbol("S")


def test_products_are_canonical() -> None:
    assert S * B == B * S
    assert hash(S * B) == hash(B * S)
    assert str(S * B) == "B*S"
    assert (B + S) * (B + S) == B * B + 2 * B * S + S * S


def test_sums_are_canonical_and_collapse_to_int() -> None:
    assert S + 1 == 1 + S
    assert str(1 + S) == "S+1"
    assert S - S == 0 and isinstance(S - S, int)
    assert (S + 3) - S == 3 and isinstance((S + 3) - S, int)
    assert 0 * S == 0 and isinstance(0 * S, int)
    assert S * 1 is not None and S * 1 == S


def test_negative_terms_print() -> None:
    assert str(-S) == "-S"
    assert str(2 - S) == "-S+2"
    assert str(B * S - 2 * S + 1) == "B*S-2*S+1"
    assert str(5 - S) == "-S+5"


def test_symbol_and_int_are_unequal() -> None:
    assert S != 4
    assert S != B
    assert S.is_symbol() and not (2 * S).is_symbol() and not (B * S).is_symbol()


def test_invalid_symbol_name() -> None:
    with pytest.raises(ValueError, match="invalid symbol"):
        SymExpr.symbol("2S")


def test_bool_is_not_a_dim() -> None:
    with pytest.raises(TypeError):
        S + True  # noqa: B018


def test_floordiv_exact_and_opaque() -> None:
    assert floordiv(4 * S, 2) == 2 * S
    assert (2 * S + 2) // 2 == S + 1
    opaque = floordiv(S, 2)
    assert str(opaque) == "floordiv(S,2)"
    assert S // 1 == S
    assert floordiv(7, 2) == 3
    assert evaluate(floordiv(S + 1, 2), {"S": 6}) == 3
    assert evaluate(floordiv(S + 1, 2), {"S": 7}) == 4
    # opaque atoms take part in the polynomial: 2*floordiv(S,2) - floordiv(S,2) == floordiv(S,2)
    assert 2 * opaque - opaque == opaque


def test_mod_and_min_max() -> None:
    assert mod(4 * S, 2) == 0
    assert evaluate(mod(S, 3), {"S": 10}) == 1
    assert evaluate(5 % S, {"S": 3}) == 2
    assert sym_max(S, 4) == sym_max(4, S)
    assert sym_min(S, S) == S
    assert sym_max(3, 4) == 4
    assert evaluate(sym_min(S, 4), {"S": 9}) == 4
    assert evaluate(sym_max(S, 4), {"S": 9}) == 9


def test_evaluate() -> None:
    e = B * S * 768 + S - 1
    assert evaluate(e, {"B": 2, "S": 5}) == 2 * 5 * 768 + 5 - 1
    assert evaluate(7, {}) == 7
    with pytest.raises(KeyError, match="'S' is not bound"):
        evaluate(S, {"B": 1})


def test_symbols_and_product() -> None:
    assert symbols_of(B * S + floordiv(S, 2)) == {"B", "S"}
    assert symbols_of(3) == set()
    assert product([B, S, 768]) == 768 * S * B
    assert product([2, 3]) == 6


@pytest.mark.parametrize("text", [
    "B", "S", "B*S", "S+1", "-S+2", "2*B*S", "B*S-2*S+1", "floordiv(S,2)", "mod(S+1,4)",
    "max(4,S)", "min(S,S-1)", "S*S", "3*floordiv(S,2)+1", "floordiv(B*S,-2)", "768",
])
def test_print_parse_round_trip(text: str) -> None:
    d = parse_dim(text)
    assert str(d) == text
    assert parse_dim(str(d)) == d


@pytest.mark.parametrize("text,canon", [
    ("S*B", "B*S"), (" B * S ", "B*S"), ("(S+1)*2", "2*S+2"), ("1+S", "S+1"), ("S-S+4", "4"),
    ("floordiv(4*S,2)", "2*S"), ("max(S,4)", "max(4,S)"), ("-(S-3)", "-S+3"),
])
def test_parse_canonicalises(text: str, canon: str) -> None:
    assert str(parse_dim(text)) == canon


@pytest.mark.parametrize("text,pos", [("", 0), ("S*", 2), ("S S", 2), ("(S+1", 4), ("S+$", 2),
                                      ("floordiv(S)", 10)])
def test_parse_errors_have_positions(text: str, pos: int) -> None:
    with pytest.raises(DimParseError) as ei:
        parse_dim(text)
    assert ei.value.pos == pos
