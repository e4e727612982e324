"""Parser for the ``.oir`` text form (see ``printer.py`` for the grammar by example).

A character-level recursive descent parser; every error is a ``ParseError`` with
``line:col`` and what was expected. Types and attributes are checked against the op
declarations here; dominance and type inference are the verifier's job.
"""

from __future__ import annotations

import re
from typing import Any

from optllm.ir.attributes import AttrError, Dense
from optllm.ir.diagnostics import ParseError
from optllm.ir.graph import Graph, Module
from optllm.ir.ops import Operation, get_opdef
from optllm.ir.symbolic import DimParseError, parse_dim
from optllm.ir.types import DType, TensorType
from optllm.ir.values import Value

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_VALUE = re.compile(r"%([A-Za-z0-9_$.\-]+)")
_SYMBOL = re.compile(r"@([A-Za-z0-9_$.\-]+)")
_INT = re.compile(r"-?\d+\Z")
_FLOAT = re.compile(r"-?(\d+\.\d*([eE][+-]?\d+)?|\d+[eE][+-]?\d+|inf|nan)\Z")
_DTYPES = {d.value for d in DType}


class Parser:
    def __init__(self, text: str, filename: str = "<input>") -> None:
        self.text = text
        self.filename = filename
        self.pos = 0
        self.attr_pos: dict[str, tuple[int, int]] = {}  # key and value offsets of the last attr dict

    # -- diagnostics ---------------------------------------------------------------------------
    def error(self, msg: str, pos: int | None = None) -> ParseError:
        p = self.pos if pos is None else pos
        line = self.text.count("\n", 0, p) + 1
        start = self.text.rfind("\n", 0, p) + 1
        end = self.text.find("\n", p)
        src = self.text[start:] if end < 0 else self.text[start:end]
        return ParseError(msg, line, p - start + 1, self.filename, src)

    # -- lexical helpers --------------------------------------------------------------------------
    def ws(self) -> None:
        t, n = self.text, len(self.text)
        while self.pos < n:
            c = t[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif t.startswith("//", self.pos):
                nl = t.find("\n", self.pos)
                self.pos = n if nl < 0 else nl + 1
            else:
                return

    def at(self, s: str) -> bool:
        self.ws()
        return self.text.startswith(s, self.pos)

    def take(self, s: str) -> bool:
        if self.at(s):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str, what: str = "") -> None:
        if not self.take(s):
            found = self.text[self.pos:self.pos + 12].split("\n")[0] or "end of input"
            raise self.error(f"expected '{s}'{' ' + what if what else ''}, found '{found}'")

    def regex(self, rx: re.Pattern[str], what: str) -> re.Match[str]:
        self.ws()
        m = rx.match(self.text, self.pos)
        if m is None:
            found = self.text[self.pos:self.pos + 12].split("\n")[0] or "end of input"
            raise self.error(f"expected {what}, found '{found}'")
        self.pos = m.end()
        return m

    def ident(self, what: str = "an identifier") -> str:
        return self.regex(_IDENT, what).group(0)

    def string(self) -> str:
        self.ws()
        if not self.text.startswith('"', self.pos):
            raise self.error("expected a string literal")
        out: list[str] = []
        i = self.pos + 1
        while i < len(self.text):
            c = self.text[i]
            if c == '"':
                self.pos = i + 1
                return "".join(out)
            if c == "\\" and i + 1 < len(self.text):
                out.append({"n": "\n", "t": "\t"}.get(self.text[i + 1], self.text[i + 1]))
                i += 2
                continue
            if c == "\n":
                break
            out.append(c)
            i += 1
        raise self.error("unterminated string literal")

    def raw_until(self, stops: str) -> tuple[str, int]:
        """Text up to the next top-level character in ``stops`` (parentheses nest)."""
        self.ws()
        start, depth, i = self.pos, 0, self.pos
        while i < len(self.text):
            c = self.text[i]
            if c == "(":
                depth += 1
            elif c == ")" and depth > 0:
                depth -= 1
            elif depth == 0 and (c in stops or c == "\n"):
                break
            i += 1
        self.pos = i
        return self.text[start:i].strip(), start

    # -- types ------------------------------------------------------------------------------------
    def dim(self, stops: str) -> Any:
        text, start = self.raw_until(stops)
        if not text:
            raise self.error("expected a dimension", start)
        try:
            return parse_dim(text)
        except (DimParseError, ValueError) as e:
            raise self.error(f"bad dimension '{text}': {e}", start + getattr(e, "pos", 0)) from None

    def type(self) -> TensorType:
        self.ws()
        start = self.pos
        name = self.ident("a tensor type such as f32[B,S,768]")
        if name not in _DTYPES:
            raise self.error(f"unknown element type '{name}' (expected one of {', '.join(sorted(_DTYPES))})", start)
        self.expect("[", "after the element type")
        dims = []
        if not self.take("]"):
            while True:
                dims.append(self.dim(",]"))
                if self.take("]"):
                    break
                self.expect(",", "or ']' in the shape")
        try:
            return TensorType(tuple(dims), DType(name))
        except (TypeError, ValueError) as e:
            raise self.error(str(e), start) from None

    # -- attributes -------------------------------------------------------------------------------
    def attr_value(self) -> Any:
        self.ws()
        if self.at('"'):
            return self.string()
        if self.take("["):
            items: list[Any] = []
            if self.take("]"):
                return items
            while True:
                items.append(self.attr_value())
                if self.take("]"):
                    return items
                self.expect(",", "or ']' in the list")
        if self.take("dense<"):
            return self.dense()
        text, start = self.raw_until(",}]")
        return self.atom(text, start)

    def atom(self, text: str, start: int) -> Any:
        if not text:
            raise self.error("expected an attribute value", start)
        if _INT.match(text):
            return int(text)
        if _FLOAT.match(text) or text == "-inf":
            return float(text)
        if text in ("true", "false"):
            return text == "true"
        if text in _DTYPES:
            return DType(text)
        try:
            return parse_dim(text)
        except (DimParseError, ValueError):
            raise self.error(f"unrecognised attribute value '{text}'", start) from None

    def dense(self) -> Dense:
        import numpy as np

        start = self.pos
        ty = self.type()
        if not ty.is_static:
            raise self.error("dense<...> needs a static shape", start)
        self.expect(":", "after the dense type")
        splat = self.take("splat")
        values: list[Any] = []
        if splat or not self.at("["):
            text, vstart = self.raw_until(">")
            values = [self.dense_value(ty, text, vstart)]
        else:
            self.expect("[")
            if not self.take("]"):
                while True:
                    text, vstart = self.raw_until(",]")
                    values.append(self.dense_value(ty, text, vstart))
                    if self.take("]"):
                        break
                    self.expect(",", "or ']' in dense values")
        self.expect(">", "to close dense<...>")
        shape = tuple(int(d) for d in ty.shape)  # type: ignore[arg-type]
        n = int(np.prod(shape)) if shape else 1
        if splat or (ty.rank == 0 and len(values) == 1):
            values = values * n
        if len(values) != n:
            raise self.error(f"dense<{ty}> needs {n} values, got {len(values)}", start)
        try:
            # unsigned values past 2^63 would become float64 without their dtype (they are range-checked)
            arr = np.array(values, dtype=np.float64 if ty.dtype.is_float else
                           ty.dtype.to_numpy() if ty.dtype.is_unsigned else None)
            return Dense.from_array(arr.reshape(shape), ty.dtype)
        except (ValueError, TypeError, OverflowError) as e:
            raise self.error(f"bad dense values: {e}", start) from None

    def dense_value(self, ty: TensorType, text: str, start: int) -> Any:
        """One element of ``dense<ty: ...>``, checked to fit the element type exactly."""
        v = self.atom(text, start)
        dt = ty.dtype
        if dt is DType.bool:
            ok = isinstance(v, bool)
        elif dt.is_float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        else:
            ok = isinstance(v, int) and not isinstance(v, bool)
            info = _int_range(dt)
            if ok and not info[0] <= v <= info[1]:
                raise self.error(f"value {v} is out of range for {dt} [{info[0]}, {info[1]}]", start)
        if not ok:
            raise self.error(f"expected a {dt} value in dense<{ty}>, found '{text}'", start)
        return v

    def attr_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.expect("{")
        if self.take("}"):
            return out
        while True:
            self.ws()
            kpos = self.pos
            key = self.ident("an attribute name")
            if key in out:
                raise self.error(f"duplicate attribute '{key}'", kpos)
            self.expect("=", f"after attribute name '{key}'")
            self.ws()
            self.attr_pos[key] = (kpos, self.pos)
            out[key] = self.attr_value()
            if self.take("}"):
                return out
            self.expect(",", "or '}' in the attribute dictionary")

    # -- graphs -------------------------------------------------------------------------------------
    def use(self, scope: dict[str, Value]) -> Value:
        self.ws()
        start = self.pos
        name = self.regex(_VALUE, "a value such as %0").group(1)
        if name not in scope:
            raise self.error(f"use of undefined value '%{name}'", start)
        return scope[name]

    def define(self, scope: dict[str, Value], name: str, v: Value, pos: int) -> None:
        if name in scope:
            raise self.error(f"redefinition of value '%{name}'", pos)
        scope[name] = v

    def args(self, graph: Graph, scope: dict[str, Value]) -> None:
        self.expect("(")
        if self.take(")"):
            return
        while True:
            self.ws()
            start = self.pos
            name = self.regex(_VALUE, "an argument such as %x").group(1)
            self.expect(":", f"after argument '%{name}'")
            v = graph.add_input(self.type(), name)
            self.define(scope, name, v, start)
            if self.take(")"):
                return
            self.expect(",", "or ')' after an argument")

    def body(self, graph: Graph, scope: dict[str, Value]) -> None:
        while True:
            self.ws()
            if self.take("return"):
                outs: list[Value] = []
                self.ws()
                if self.at("%"):
                    outs.append(self.use(scope))
                    while self.take(","):
                        outs.append(self.use(scope))
                graph.set_outputs(outs)
                return
            if self.pos >= len(self.text) or self.at("}"):
                raise self.error("expected 'return' at the end of the graph body")
            graph.append(self.operation(scope))

    def operation(self, scope: dict[str, Value]) -> Operation:
        self.ws()
        names: list[tuple[str, int]] = []
        if self.at("%"):
            while True:
                self.ws()
                p = self.pos
                names.append((self.regex(_VALUE, "a result name").group(1), p))
                if not self.take(","):
                    break
            self.expect("=", "after the result names")
        self.ws()
        op_pos = self.pos
        op_name = self.ident("an op name such as core.add")
        try:
            opdef = get_opdef(op_name)
        except KeyError as e:
            raise self.error(str(e.args[0]), op_pos) from None
        operands: list[Value] = []
        self.ws()
        if self.at("%"):
            operands.append(self.use(scope))
            while self.take(","):
                operands.append(self.use(scope))
            if self.at("%"):
                raise self.error("expected ',' between operands")
        attrs: dict[str, Any] = {}
        self.ws()
        attr_pos = self.pos
        self.attr_pos = {}
        if self.at("{"):
            attrs = self.attr_dict()
        types: list[TensorType] = []
        if self.take(":"):
            types.append(self.type())
            while self.take(","):
                types.append(self.type())
        if len(types) != len(names):
            raise self.error(f"'{op_name}' has {len(names)} result names but {len(types)} result types", op_pos)
        if opdef.num_results is not None and len(names) != opdef.num_results:
            raise self.error(f"'{op_name}' produces {opdef.num_results} result(s), not {len(names)}", op_pos)
        try:
            attrs = opdef.check_attrs(attrs)
        except AttrError as e:
            bad = re.search(r"attribute '([^']+)'", str(e))
            kpos, vpos = self.attr_pos.get(bad.group(1) if bad else "", (attr_pos, attr_pos))
            raise self.error(f"'{op_name}': {e}", kpos if str(e).startswith("unknown") else vpos) from None
        regions: list[Graph] = []
        while self.at("{"):
            regions.append(self.region())
        loc = ""
        if self.take("loc"):
            self.expect("(")
            loc = self.string()
            self.expect(")")
        op = Operation(opdef, operands, types, attrs, loc, regions)
        for (name, p), r in zip(names, op.results):
            self.define(scope, name, r, p)
        return op

    def region(self) -> Graph:
        self.expect("{")
        self.expect("^", "to start the region's arguments")
        g = Graph("region")
        scope: dict[str, Value] = {}
        self.args(g, scope)
        self.expect(":", "after the region arguments")
        self.body(g, scope)
        self.expect("}", "to close the region")
        return g

    def func(self) -> Graph:
        self.expect("func")
        name = self.regex(_SYMBOL, "a function name such as @forward").group(1)
        g = Graph(name)
        scope: dict[str, Value] = {}
        self.args(g, scope)
        self.expect("->")
        self.expect("(")
        declared: list[TensorType] = []
        if not self.take(")"):
            declared.append(self.type())
            while self.take(","):
                declared.append(self.type())
            self.expect(")")
        self.expect("{")
        body_pos = self.pos
        self.body(g, scope)
        self.expect("}", "to close the function")
        got = [v.type for v in g.outputs]
        if got != declared:
            raise self.error(
                f"function @{name} declares results ({', '.join(map(str, declared))}) but returns "
                f"({', '.join(map(str, got))})", body_pos)
        return g

    def module(self) -> Module:
        self.expect("module", "at the start of the module")
        name = self.regex(_SYMBOL, "a module name such as @model").group(1)
        m = Module(name)
        if self.take("weights"):
            self.expect("(")
            m.weights_file = self.string()
            self.expect(")")
        self.expect("{")
        while not self.take("}"):
            self.ws()
            start = self.pos
            g = self.func()
            if g.name in m.graphs:
                raise self.error(f"duplicate function @{g.name}", start)
            m.add_graph(g)
        self.ws()
        if self.pos < len(self.text):
            raise self.error("unexpected text after the module")
        return m


def _int_range(dt: DType) -> tuple[int, int]:
    import numpy as np

    if dt is DType.i4:
        return -8, 7
    info = np.iinfo(dt.to_numpy())
    return int(info.min), int(info.max)


def parse_module(text: str, filename: str = "<input>") -> Module:
    """Parse ``.oir`` text into a ``Module`` (constants are not loaded; see ``ir.io``)."""
    return Parser(text, filename).module()


def parse_type(text: str) -> TensorType:
    p = Parser(text)
    t = p.type()
    p.ws()
    if p.pos != len(text):
        raise p.error("unexpected text after the type")
    return t
