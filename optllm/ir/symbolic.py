"""Symbolic dimensions: small canonical integer expressions over named symbols.

Dynamic batch and sequence sizes appear in shapes as symbols (``B``, ``S``) and expressions
over them (``B*S``, ``S+1``, ``floordiv(S,2)``). An expression is kept as a canonical
polynomial so that equal expressions compare and hash equal (``S*B == B*S``); floor
division and modulo by something that does not divide exactly, and max/min, become opaque
atoms inside the polynomial.

A ``Dim`` is either a plain ``int`` or a non-constant ``SymExpr``; every operation here
returns plain ``int`` as soon as the result is constant.

Every symbol stands for a size of at least 1 (the executor rejects empty dynamic dims), so a
polynomial with positive coefficients over plain symbols is at least the sum of its
coefficients; ``min``/``max`` against a constant use that bound (``min(1, S) == 1``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

# A monomial is a sorted tuple of atoms (repeated for powers); the empty tuple is 1.
Atom = Union[str, "SymCall"]
Monomial = tuple[Atom, ...]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CALLS = ("floordiv", "mod", "max", "min")


def _atom_key(atom: Atom) -> tuple[int, str]:
    return (0, atom) if isinstance(atom, str) else (1, str(atom))


def _mono_key(mono: Monomial) -> tuple[int, list[tuple[int, str]]]:
    return (-len(mono), [_atom_key(a) for a in mono])


@dataclass(frozen=True)
class SymCall:
    """An opaque function atom: ``floordiv(a,b)``, ``mod(a,b)``, ``max(a,b)``, ``min(a,b)``."""

    fn: str
    args: tuple[Dim, ...]

    def __str__(self) -> str:
        return f"{self.fn}({','.join(str(a) for a in self.args)})"

    def evaluate(self, env: Mapping[str, int]) -> int:
        vals = [evaluate(a, env) for a in self.args]
        if self.fn == "floordiv":
            return vals[0] // vals[1]
        if self.fn == "mod":
            return vals[0] % vals[1]
        if self.fn == "max":
            return max(vals)
        return min(vals)


@dataclass(frozen=True)
class SymExpr:
    """A canonical polynomial with integer coefficients: ``terms`` maps monomial -> coeff."""

    terms: tuple[tuple[Monomial, int], ...]

    # -- construction -------------------------------------------------------------------
    @staticmethod
    def symbol(name: str) -> SymExpr:
        if not _IDENT.match(name):
            raise ValueError(f"invalid symbol name {name!r}")
        return SymExpr((((name,), 1),))

    @staticmethod
    def _from_dict(d: Mapping[Monomial, int]) -> Dim:
        items = sorted(((m, c) for m, c in d.items() if c != 0), key=lambda mc: _mono_key(mc[0]))
        if not items:
            return 0
        if len(items) == 1 and items[0][0] == ():
            return items[0][1]
        return SymExpr(tuple(items))

    def _dict(self) -> dict[Monomial, int]:
        return dict(self.terms)

    # -- arithmetic ---------------------------------------------------------------------
    def __add__(self, other: Dim) -> Dim:
        d = self._dict()
        for m, c in _as_dict(other).items():
            d[m] = d.get(m, 0) + c
        return SymExpr._from_dict(d)

    __radd__ = __add__

    def __neg__(self) -> Dim:
        return SymExpr._from_dict({m: -c for m, c in self.terms})

    def __sub__(self, other: Dim) -> Dim:
        return self + (-other)

    def __rsub__(self, other: Dim) -> Dim:
        return (-self) + other

    def __mul__(self, other: Dim) -> Dim:
        d: dict[Monomial, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in _as_dict(other).items():
                m = tuple(sorted(m1 + m2, key=_atom_key))
                d[m] = d.get(m, 0) + c1 * c2
        return SymExpr._from_dict(d)

    __rmul__ = __mul__

    def __floordiv__(self, other: Dim) -> Dim:
        return floordiv(self, other)

    def __rfloordiv__(self, other: Dim) -> Dim:
        return floordiv(other, self)

    def __mod__(self, other: Dim) -> Dim:
        return mod(self, other)

    def __rmod__(self, other: Dim) -> Dim:
        return mod(other, self)

    # -- queries ------------------------------------------------------------------------
    def symbols(self) -> set[str]:
        out: set[str] = set()
        for mono, _ in self.terms:
            for atom in mono:
                if isinstance(atom, str):
                    out.add(atom)
                else:
                    for arg in atom.args:
                        out |= symbols_of(arg)
        return out

    def is_symbol(self) -> bool:
        return len(self.terms) == 1 and self.terms[0][1] == 1 and len(self.terms[0][0]) == 1 and isinstance(self.terms[0][0][0], str)

    def evaluate(self, env: Mapping[str, int]) -> int:
        total = 0
        for mono, coeff in self.terms:
            v = coeff
            for atom in mono:
                if isinstance(atom, str):
                    if atom not in env:
                        raise KeyError(f"symbol {atom!r} is not bound")
                    v *= env[atom]
                else:
                    v *= atom.evaluate(env)
            total += v
        return total

    def __str__(self) -> str:
        parts: list[str] = []
        for mono, coeff in self.terms:
            body = "*".join(str(a) for a in mono)
            if not body:
                text = str(abs(coeff))
            elif abs(coeff) == 1:
                text = body
            else:
                text = f"{abs(coeff)}*{body}"
            if not parts:
                parts.append(text if coeff > 0 else f"-{text}")
            else:
                parts.append(f"+{text}" if coeff > 0 else f"-{text}")
        return "".join(parts)

    def __repr__(self) -> str:
        return f"SymExpr({self})"


Dim = int | SymExpr


def _as_dict(x: Dim) -> dict[Monomial, int]:
    if isinstance(x, SymExpr):
        return x._dict()
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"not a dimension: {x!r}")
    return {(): x} if x else {}


def _call(fn: str, *args: Dim) -> Dim:
    return SymExpr((((SymCall(fn, tuple(args)),), 1),))


def _mono_divides(small: Monomial, big: Monomial) -> Monomial | None:
    """``big / small`` when ``small``'s atoms are a sub-multiset of ``big``'s, else None."""
    rest = list(big)
    for atom in small:
        if atom not in rest:
            return None
        rest.remove(atom)
    return tuple(rest)


def _leading(d: Mapping[Monomial, int], order: Mapping[Atom, int]) -> Monomial:
    """The leading monomial under graded lex order (degree first, then exponents in ``order``).

    Any monomial order works for the division below; graded lex is one."""
    def key(m: Monomial) -> tuple[int, tuple[int, ...]]:
        exps = [0] * len(order)
        for atom in m:
            exps[order[atom]] += 1
        return (len(m), tuple(exps))

    return max(d, key=key)


def exact_quotient(a: Dim, b: Dim) -> Dim | None:
    """``q`` with ``a == q * b`` as polynomials over integers, or None when there is none.

    Multivariate division by one polynomial: ``{b}`` is a Groebner basis of the ideal it
    generates, so the division algorithm leaves remainder 0 exactly when ``b`` divides ``a``;
    it stops at the first leading term that ``b``'s leading term does not divide (that term
    would stay in the remainder). Opaque atoms (``floordiv(..)``, ``max(..)``) act as variables.
    """
    if b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a // b if a % b == 0 else None
    rem = dict(_as_dict(a))
    div = _as_dict(b)
    atoms = sorted({x for m in list(rem) + list(div) for x in m}, key=_atom_key)
    order = {x: i for i, x in enumerate(atoms)}
    lead_b = _leading(div, order)
    coeff_b = div[lead_b]
    quot: dict[Monomial, int] = {}
    for _ in range(10_000):  # the leading monomial strictly decreases; the bound only guards bugs
        if not rem:
            return SymExpr._from_dict(quot)
        lead = _leading(rem, order)
        factor = _mono_divides(lead_b, lead)
        if factor is None or rem[lead] % coeff_b:
            return None
        c = rem[lead] // coeff_b
        quot[factor] = quot.get(factor, 0) + c
        for m, k in div.items():
            t = tuple(sorted(factor + m, key=_atom_key))
            rem[t] = rem.get(t, 0) - c * k
            if rem[t] == 0:
                del rem[t]
    return None


def _split_multiple(a: SymExpr, b: int) -> tuple[Dim, int] | None:
    """``(k, c)`` with ``a == b*k + c``, when every non-constant coefficient of ``a`` is a
    multiple of ``b`` (then ``a // b == k + c // b`` and ``a % b == c % b`` for integer symbols)."""
    d = a._dict()
    c = d.pop((), 0)
    if any(v % b for v in d.values()):
        return None
    return SymExpr._from_dict({m: v // b for m, v in d.items()}), c


def floordiv(a: Dim, b: Dim) -> Dim:
    """``a // b`` (floor): exact when ``b`` divides ``a`` as a polynomial (``floordiv(B*S,B)``
    is ``S``), or when ``b`` is a constant dividing every non-constant coefficient
    (``floordiv(2*S+1,2)`` is ``S``); an opaque atom otherwise."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    if b == 1:
        return a
    if isinstance(b, int) and b != 0 and isinstance(a, SymExpr):
        split = _split_multiple(a, b)
        if split is not None:
            return split[0] + split[1] // b  # type: ignore[operator]
    if isinstance(b, SymExpr):
        q = exact_quotient(a, b)
        if q is not None:
            return q
    return _call("floordiv", a, b)


def mod(a: Dim, b: Dim) -> Dim:
    """``a % b``: 0 when ``b`` divides ``a`` as a polynomial (``mod(B*S,S)`` is 0), the
    constant's residue when a constant ``b`` divides every other coefficient."""
    if isinstance(a, int) and isinstance(b, int):
        return a % b
    if b == 1 or b == -1:
        return 0
    if isinstance(b, int) and b != 0 and isinstance(a, SymExpr):
        split = _split_multiple(a, b)
        if split is not None:
            return split[1] % b
    if isinstance(b, SymExpr) and exact_quotient(a, b) is not None:
        return 0
    return _call("mod", a, b)


def lower_bound(d: Dim) -> int | None:
    """A proven lower bound of ``d`` given that every symbol is >= 1, or None: the sum of the
    coefficients when all are positive and every atom is a plain symbol."""
    if isinstance(d, int):
        return d
    if any(c <= 0 or any(not isinstance(a, str) for a in mono) for mono, c in d.terms):
        return None
    return sum(c for _, c in d.terms)


def _ordered(a: Dim, b: Dim) -> tuple[Dim, Dim] | None:
    """(smaller, larger) when provable: a constant at or below the other's lower bound."""
    for lo, hi in ((a, b), (b, a)):
        bound = lower_bound(hi)
        if isinstance(lo, int) and bound is not None and lo <= bound:
            return lo, hi
    return None


def sym_max(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    if a == b:
        return a
    known = _ordered(a, b)
    if known is not None:
        return known[1]
    return _call("max", *sorted((a, b), key=str))


def sym_min(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    if a == b:
        return a
    known = _ordered(a, b)
    if known is not None:
        return known[0]
    return _call("min", *sorted((a, b), key=str))


def evaluate(d: Dim, env: Mapping[str, int]) -> int:
    """The integer value of ``d`` under the symbol bindings ``env``."""
    return d if isinstance(d, int) else d.evaluate(env)


def symbols_of(d: Dim) -> set[str]:
    return set() if isinstance(d, int) else d.symbols()


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def dim_str(d: Dim) -> str:
    return str(d)


def product(dims: tuple[Dim, ...] | list[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = out * d  # type: ignore[operator]
    return out


# -- parsing ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(.))")


class DimParseError(ValueError):
    """A malformed dimension expression; ``pos`` is the offset in the text."""

    def __init__(self, msg: str, pos: int) -> None:
        super().__init__(msg)
        self.pos = pos


class _DimParser:
    """Recursive descent over ``expr := term (('+'|'-') term)*``, ``term := factor ('*' factor)*``."""

    def __init__(self, text: str) -> None:
        self.toks: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                break
            if m.group(1):
                self.toks.append(("int", m.group(1), m.start(1)))
            elif m.group(2):
                self.toks.append(("id", m.group(2), m.start(2)))
            elif m.group(3) and not m.group(3).isspace():
                self.toks.append(("op", m.group(3), m.start(3)))
            pos = m.end()
        self.i = 0
        self.text = text

    def peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str) -> bool:
        t = self.peek()
        if t is not None and t[0] == "op" and t[1] == value:
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.take(value):
            t = self.peek()
            pos = t[2] if t else len(self.text)
            raise DimParseError(f"expected '{value}' in dimension expression", pos)

    def expr(self) -> Dim:
        out = self.term()
        while True:
            if self.take("+"):
                out = out + self.term()  # type: ignore[operator]
            elif self.take("-"):
                out = out - self.term()  # type: ignore[operator]
            else:
                return out

    def term(self) -> Dim:
        out = self.factor()
        while self.take("*"):
            out = out * self.factor()  # type: ignore[operator]
        return out

    def factor(self) -> Dim:
        t = self.peek()
        if t is None:
            raise DimParseError("expected a dimension", len(self.text))
        if t[0] == "op" and t[1] == "-":
            self.i += 1
            return -self.factor()  # type: ignore[operator]
        if t[0] == "op" and t[1] == "(":
            self.i += 1
            e = self.expr()
            self.expect(")")
            return e
        self.i += 1
        if t[0] == "int":
            return int(t[1])
        if t[0] == "id" and t[1] in _CALLS and self.take("("):
            a = self.expr()
            self.expect(",")
            b = self.expr()
            self.expect(")")
            return {"floordiv": floordiv, "mod": mod, "max": sym_max, "min": sym_min}[t[1]](a, b)
        if t[0] == "id":
            return SymExpr.symbol(t[1])
        raise DimParseError(f"unexpected {t[1]!r} in dimension expression", t[2])


def parse_dim(text: str) -> Dim:
    """Parse ``"B*S+1"`` into a canonical ``Dim``."""
    p = _DimParser(text)
    out = p.expr()
    t = p.peek()
    if t is not None:
        raise DimParseError(f"unexpected {t[1]!r} after dimension expression", t[2])
    return out
