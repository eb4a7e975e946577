"""Compiling expressions to Python functions, the way Jinja compiles templates.

A visitor writes Python source for a checked expression tree; the source is
``compile()``d under a filename that names the definition (``<rule
rules/leads.rules:14>``) and run with no builtins: the only names it can
reach are the record, the evaluation context, constants the compiler made,
and the function library. Admin text is never ``eval``ed: strings reach the
generated code only as ``repr`` literals, and attribute names only after the
type checker has matched them to declared fields.

Empty fields are ``None``; an ordering comparison with an empty side is
false, arithmetic with an empty side is empty.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal

from ..definitions import nodes as n
from ..definitions.functions import FUNCTIONS
from . import arithmetic

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_UNITS = {"minutes": "minutes", "hours": "hours", "days": "days", "weeks": "weeks"}
_COMPARE = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ARITHMETIC = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}
# Kinds of expression used as a truth value: they return True or False.
_TRUTH_KINDS = ("condition", "guard")


class CompiledExpression(functools.partial):
    """A compiled function with the source it came from, for display and debugging.

    Calling it, ``expr(record, ctx)``, calls ``function`` directly: a ``partial``
    adds no Python frame, where a ``__call__`` method would double the cost of a
    simple condition (bench/conditions.py).
    """

    function: object
    python: str
    source: str
    filename: str

    def __new__(cls, function, python: str, source: str, filename: str):
        self = super().__new__(cls, function)
        self.function, self.python, self.source, self.filename = function, python, source, filename
        return self

    def __repr__(self) -> str:
        return f"<CompiledExpression {self.filename}>"


@dataclass
class _Emitter:
    subject: str
    constants: dict = field(default_factory=dict)
    temps: int = 0

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def constant(self, value) -> str:
        for name, existing in self.constants.items():
            if type(existing) is type(value) and existing == value:
                return name
        name = f"_c{len(self.constants) + 1}"
        self.constants[name] = value
        return name


class ExpressionCompiler:
    """Turns expression nodes into Python source and then into functions."""

    def __init__(self, subject: str):
        self.subject = subject

    def compile(self, expr: n.Expr, kind: str, where: str, source: str = "") -> CompiledExpression:
        """Compile ``expr`` into ``f(record, ctx)``; ``where`` names its definition."""
        emitter = _Emitter(self.subject)
        body = self._truth(expr, emitter) if kind in _TRUTH_KINDS else self._emit(expr, emitter)
        filename = f"<{kind} {where}>"
        comment = source.replace("\n", " ")
        python = f"def {kind}(record, ctx):\n    # {where}: {comment}\n    return {body}\n"
        namespace = {"__builtins__": {}, **emitter.constants, **_library()}
        exec(compile(python, filename, "exec"), namespace)  # noqa: S102 - generated from a checked tree
        return CompiledExpression(namespace[kind], python, source, filename)

    def _emit(self, node: n.Expr, e: _Emitter) -> str:
        return getattr(self, "_emit_" + type(node).__name__)(node, e)

    def _truth(self, node: n.Expr, e: _Emitter) -> str:
        """``node`` as True or False; an empty (None) true/false field counts as false,
        as it does under 'not'. Comparisons and the boolean operators are already
        True or False; a bare field or function call is tested with ``is True``."""
        code = self._emit(node, e)
        if isinstance(node, n.Compare | n.IsEmpty | n.BoolOp) or (isinstance(node, n.Unary) and node.op == "not"):
            return code
        if isinstance(node, n.Literal) and isinstance(node.value, bool):
            return code
        return f"({code} is True)"

    # --- leaves ---------------------------------------------------------

    def _emit_Literal(self, node: n.Literal, e: _Emitter) -> str:
        if isinstance(node.value, Decimal):
            return e.constant(node.value)
        return repr(node.value)

    def _emit_ListLiteral(self, node: n.ListLiteral, e: _Emitter) -> str:
        if all(isinstance(item, n.Literal) for item in node.items):
            return e.constant(tuple(item.value for item in node.items))
        return "(" + "".join(self._emit(item, e) + ", " for item in node.items) + ")"

    def _emit_Duration(self, node: n.Duration, e: _Emitter) -> str:
        return e.constant(dt.timedelta(**{_UNITS[node.unit]: node.amount}))

    def _emit_Now(self, node: n.Now, e: _Emitter) -> str:
        return "ctx.today()" if node.what == "today" else "ctx.now()"

    def _emit_Name(self, node: n.Name, e: _Emitter) -> str:
        parts = list(node.parts)
        if parts[0] == self.subject:
            parts.pop(0)
        for part in parts:
            # Defence in depth: the type checker admitted only declared fields.
            if not _IDENTIFIER.match(part):
                raise ValueError(f"refusing to compile attribute {part!r}")
        code = "record"
        for index, part in enumerate(parts):
            if index == 0:
                code = f"record.{part}"
            else:
                temp = e.temp()
                code = f"(None if ({temp} := {code}) is None else {temp}.{part})"
        return code

    def _emit_Call(self, node: n.Call, e: _Emitter) -> str:
        function = FUNCTIONS[node.function]
        args = [self._emit(arg, e) for arg in node.args]
        if function.needs_context:
            args.insert(0, "ctx")
        return f"_f_{function.name}({', '.join(args)})"

    # --- operators ------------------------------------------------------

    def _emit_Unary(self, node: n.Unary, e: _Emitter) -> str:
        operand = self._emit(node.operand, e)
        if node.op == "not":
            return f"(not {operand})"
        return f"_neg({operand})"

    def _emit_BoolOp(self, node: n.BoolOp, e: _Emitter) -> str:
        return "(" + f" {node.op} ".join(self._truth(o, e) for o in node.operands) + ")"

    def _emit_IsEmpty(self, node: n.IsEmpty, e: _Emitter) -> str:
        temp = e.temp()
        test = f"(({temp} := {self._emit(node.operand, e)}) is None or {temp} == '' or {temp} == [])"
        return f"(not {test})" if node.negated else test

    def _emit_Binary(self, node: n.Binary, e: _Emitter) -> str:
        return f"{_ARITHMETIC[node.op]}({self._emit(node.left, e)}, {self._emit(node.right, e)})"

    def _emit_Compare(self, node: n.Compare, e: _Emitter) -> str:
        op = node.op
        left = self._emit(node.left, e)
        literals = isinstance(node.right, n.ListLiteral) and all(isinstance(i, n.Literal) for i in node.right.items)
        if op in ("in", "not in") and literals:  # a literal list: test against a frozen set
            return f"({left} {op} {e.constant(frozenset(i.value for i in node.right.items))})"
        right = self._emit(node.right, e)
        if op in ("==", "!="):
            return f"({left} {op} {right})"
        if op in ("in", "not in"):
            if isinstance(node.right, n.ListLiteral):
                return f"({left} {op} {right})"
            # An empty list field holds nothing: 'in' is false and 'not in' true, as for [].
            temp = e.temp()
            if op == "in":
                return f"(({temp} := {right}) is not None and ({left} in {temp}))"
            return f"(({temp} := {right}) is None or ({left} not in {temp}))"
        guards = []
        left_value, guard = self._value(left, node.left, e)
        guards += guard
        right_value, guard = self._value(right, node.right, e)
        guards += guard
        if op == "contains":
            test = f"{right_value} in {left_value}"
        elif op == "starts_with":
            test = f"{left_value}.startswith({right_value})"
        elif op == "ends_with":
            test = f"{left_value}.endswith({right_value})"
        else:
            test = f"{left_value} {_COMPARE[op]} {right_value}"
        return "(" + " and ".join(guards + [test]) + ")"

    def _value(self, code: str, node: n.Expr, e: _Emitter) -> tuple[str, list[str]]:
        """A value to use once, with the guard that it is not empty (literals need none)."""
        if isinstance(node, n.Literal | n.ListLiteral | n.Duration | n.Now):
            return code, []
        temp = e.temp()
        return temp, [f"({temp} := {code}) is not None"]


def _library() -> dict:
    names = {f"_f_{name}": function.impl for name, function in FUNCTIONS.items()}
    names.update({
        "_add": arithmetic.add, "_sub": arithmetic.sub, "_mul": arithmetic.mul,
        "_div": arithmetic.div, "_mod": arithmetic.mod, "_neg": arithmetic.neg,
    })  # fmt: skip
    return names
