"""Static types of expressions, checked against the entities' fields.

``TypeChecker.check(expr)`` returns the expression's type and reports every
misuse through the diagnostics: unknown fields and functions, a date compared
with a text, a number with a choice, a value outside a choice's options.
Only declared fields and the function library are reachable; anything else
is refused here, before code is generated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal

from ..errors import Location
from . import nodes as n
from .diagnostics import Diagnostics, did_you_mean, see_docs
from .functions import FUNCTIONS
from .model import EntityDef, FieldDef


@dataclass(frozen=True)
class Type:
    """A value kind, narrowed where it helps the checks."""

    kind: str  # string number boolean date datetime duration list user link any
    options: frozenset[str] | None = None  # choice/state/team values
    entity: str | None = None  # link target
    item: Type | None = None  # list items
    describe: str = ""  # e.g. "lead.country (a choice)"

    def words(self) -> str:
        return self.describe or _KIND_WORDS.get(self.kind, self.kind)


_KIND_WORDS = {
    "string": "a text", "number": "a number", "boolean": "true/false", "date": "a date",
    "datetime": "a date and time", "duration": "a duration", "list": "a list", "user": "a user",
    "link": "a record", "any": "a value",
}  # fmt: skip

ANY = Type("any")
BOOLEAN = Type("boolean")
NUMBER = Type("number")
STRING = Type("string")

_FIELD_KINDS = {
    "string": "string", "text": "string", "email": "string", "phone": "string", "url": "string",
    "choice": "string", "state": "string", "team": "string",
    "integer": "number", "decimal": "number", "money": "number", "percent": "number",
    "boolean": "boolean", "date": "date", "datetime": "datetime",
    "multi_choice": "list", "tags": "list", "link": "link", "user": "user",
}  # fmt: skip

SYSTEM_FIELD_TYPES = {"id": "integer", "created_at": "datetime", "updated_at": "datetime", "version": "integer"}


def field_type(field: FieldDef, owner: str, teams=()) -> Type:
    """The expression type of ``owner.field``."""
    kind = _FIELD_KINDS[field.type]
    describe = f"{owner}.{field.name} ({article(field.type)})"
    if field.type in ("choice", "state"):
        # No options: the stand-in of a workflow that failed to load; any value goes.
        return Type("string", frozenset(field.options) or None, describe=describe)
    if field.type == "team":
        return Type("string", frozenset(teams) or None, describe=describe)
    if field.type == "multi_choice":
        item = Type("string", frozenset(field.options), describe=f"an item of {describe}")
        return Type("list", item=item, describe=describe)
    if field.type == "tags":
        return Type("list", item=STRING, describe=describe)
    if field.type == "link":
        return Type("link", entity=field.entity, describe=describe)
    return Type(kind, describe=describe)


def article(word: str) -> str:
    """``word`` with its indefinite article: 'a choice', 'an email'."""
    word = word.replace("_", "-")
    return ("an " if word[0] in "aeiou" else "a ") + word


def lookup_field(entity: EntityDef, name: str) -> FieldDef | None:
    """A declared field, or one of the system fields every record has."""
    if name in entity.fields:
        return entity.fields[name]
    if name in SYSTEM_FIELD_TYPES:
        return FieldDef(name=name, type=SYSTEM_FIELD_TYPES[name], loc=entity.loc, label=name)
    return None


def field_candidates(entity: EntityDef) -> list[str]:
    return list(entity.fields) + list(SYSTEM_FIELD_TYPES)


class TypeChecker:
    """Checks expressions whose subject is one record of ``subject``."""

    def __init__(self, entities: dict[str, EntityDef], subject: EntityDef, diag: Diagnostics, teams=()):
        self.entities, self.subject, self.diag, self.teams = entities, subject, diag, tuple(teams)

    # --- entry points ---------------------------------------------------

    def check(self, expr: n.Expr) -> Type:
        """The type of ``expr``; problems are reported, and give type ``any``."""
        method = getattr(self, "visit_" + type(expr).__name__)
        return method(expr)

    def check_condition(self, expr: n.Expr, what: str = "a condition") -> None:
        """Check that ``expr`` is true/false."""
        result = self.check(expr)
        if result.kind not in ("boolean", "any"):
            self.diag.fail(
                f"{what} must be true or false, but this is {result.words()}",
                expr.loc,
                "compare it with something, e.g. lead.score >= 50",
            )

    def check_assignable(self, field: FieldDef, owner: str, expr: n.Expr) -> None:
        """Check that ``expr`` may be stored in ``field``."""
        value = self.check(expr)
        target = field_type(field, owner, self.teams)
        if value.kind == "any":
            return
        if field.type in ("integer",) and value.kind == "number":
            return
        if not _compatible(target, value) or (target.kind == "link" and value.entity != target.entity):
            self.diag.fail(f"cannot store {value.words()} in {target.words()}", expr.loc)
            return
        self._check_options(target, expr)

    def resolve(self, name: n.Name) -> tuple[Type, FieldDef | None]:
        """Resolve a dotted name to its type and the field it ends on."""
        parts = list(name.parts)
        entity = self.subject
        current = Type("link", entity=entity.name, describe=f"the {entity.name} record")
        column = name.loc.column
        if parts[0] == entity.name:
            column += len(parts.pop(0)) + 1
            if not parts:
                return current, None
        field = None
        for index, part in enumerate(parts):
            if current.kind != "link":
                self.diag.fail(
                    f"{current.words()} has no fields; only links lead to other records",
                    _at(name.loc, column),
                    "remove ." + ".".join(parts[index:]),
                )
                return ANY, None
            entity = self.entities.get(current.entity)
            if entity is None:
                return ANY, None
            field = lookup_field(entity, part)
            if field is None:
                self.diag.fail(
                    f"unknown field {part!r} on {entity.name}",
                    _at(name.loc, column),
                    did_you_mean(part, field_candidates(entity)) or see_docs("expressions"),
                )
                return ANY, None
            current = field_type(field, entity.name, self.teams)
            column += len(part) + 1
        return current, field

    # --- nodes ----------------------------------------------------------

    def visit_Literal(self, node: n.Literal) -> Type:
        value = node.value
        if isinstance(value, bool):
            return BOOLEAN
        if isinstance(value, int | Decimal):
            return NUMBER
        return Type("string", describe=f"the text {value!r}")

    def visit_ListLiteral(self, node: n.ListLiteral) -> Type:
        items = [self.check(item) for item in node.items]
        kinds = {t.kind for t in items} - {"any"}
        if len(kinds) > 1:
            self.diag.fail(
                "a list must hold values of one kind", node.loc, f"this one mixes {', '.join(sorted(kinds))}"
            )
            return Type("list", item=ANY)
        return Type("list", item=Type(kinds.pop()) if kinds else ANY)

    def visit_Duration(self, node: n.Duration) -> Type:
        return Type("duration")

    def visit_Now(self, node: n.Now) -> Type:
        return Type("date") if node.what == "today" else Type("datetime")

    def visit_Name(self, node: n.Name) -> Type:
        return self.resolve(node)[0]

    def visit_Call(self, node: n.Call) -> Type:
        function = FUNCTIONS.get(node.function)
        args = [self.check(arg) for arg in node.args]
        if function is None:
            self.diag.fail(
                f"unknown function {node.function!r}",
                node.loc,
                did_you_mean(node.function, FUNCTIONS) or f"functions: {', '.join(sorted(FUNCTIONS))}",
            )
            return ANY
        least, most = len(function.params) - function.optional, len(function.params)
        if not least <= len(args) <= most:
            count = str(most) if least == most else f"{least} to {most}"
            self.diag.fail(f"{node.function}() takes {count} argument(s), got {len(args)}", node.loc)
            return ANY
        for arg, node_arg, accepted in zip(args, node.args, function.params, strict=False):
            if arg.kind != "any" and arg.kind not in accepted:
                wanted = " or ".join(_KIND_WORDS[k] for k in sorted(accepted))
                self.diag.fail(f"{node.function}() expects {wanted}, got {arg.words()}", node_arg.loc)
        if function.returns is None:
            return replace(args[0], describe="") if args else ANY
        return Type(function.returns)

    def visit_Unary(self, node: n.Unary) -> Type:
        operand = self.check(node.operand)
        if node.op == "not":
            if operand.kind not in ("boolean", "any"):
                self.diag.fail(f"'not' needs true/false, got {operand.words()}", node.operand.loc)
            return BOOLEAN
        if operand.kind not in ("number", "any"):
            self.diag.fail(f"'-' needs a number, got {operand.words()}", node.operand.loc)
        return NUMBER

    def visit_BoolOp(self, node: n.BoolOp) -> Type:
        for operand in node.operands:
            kind = self.check(operand)
            if kind.kind not in ("boolean", "any"):
                self.diag.fail(
                    f"'{node.op}' joins conditions, but this is {kind.words()}",
                    operand.loc,
                    "compare it with something, e.g. lead.score >= 50",
                )
        return BOOLEAN

    def visit_IsEmpty(self, node: n.IsEmpty) -> Type:
        self.check(node.operand)
        return BOOLEAN

    def visit_Binary(self, node: n.Binary) -> Type:
        left, right = self.check(node.left), self.check(node.right)
        if "any" in (left.kind, right.kind):
            return ANY if node.op != "+" or left.kind != "string" else STRING
        kinds = (left.kind, right.kind)
        if kinds == ("number", "number"):
            return NUMBER
        if node.op in "+-" and left.kind in ("date", "datetime") and right.kind == "duration":
            if left.kind == "date" and getattr(node.right, "unit", "days") in ("minutes", "hours"):
                self.diag.fail(
                    "a date has no time of day; add days or weeks to it",
                    node.right.loc,
                    "use now instead of today to add hours or minutes",
                )
            return Type(left.kind)
        if node.op == "+" and kinds == ("duration", "date"):
            return Type("date")
        if node.op == "+" and kinds == ("string", "string"):
            return STRING
        hint = "use days_since(...) or days_until(...) to count days" if "date" in kinds else None
        self.diag.fail(f"cannot use '{node.op}' on {left.words()} and {right.words()}", node.loc, hint)
        return ANY

    def visit_Compare(self, node: n.Compare) -> Type:
        left, right = self.check(node.left), self.check(node.right)
        if "any" in (left.kind, right.kind):
            return BOOLEAN
        op = node.op
        if op in ("in", "not in"):
            if right.kind != "list":
                self.diag.fail(
                    f"'{op}' needs a list on its right, got {right.words()}",
                    node.right.loc,
                    'write a list like ["DE", "AT"]',
                )
            else:
                self._compare_values(node, left, right.item or ANY, node.right)
        elif op == "contains":
            if left.kind == "list":
                self._compare_values(node, left.item or ANY, right, node.right, reverse=True)
            elif left.kind == "string":
                self._expect(right, "string", node.right, op)
            else:
                self.diag.fail(f"'contains' needs a text or a list on its left, got {left.words()}", node.left.loc)
        elif op in ("starts_with", "ends_with"):
            self._expect(left, "string", node.left, op)
            self._expect(right, "string", node.right, op)
        else:
            if op not in ("==", "!=") and left.kind in ("boolean", "list", "link", "user"):
                self.diag.fail(f"cannot order {left.words()} with '{op}'", node.loc)
            else:
                self._compare_values(node, left, right, node.right)
        return BOOLEAN

    # --- helpers --------------------------------------------------------

    def _expect(self, got: Type, kind: str, node: n.Expr, op: str) -> None:
        if got.kind not in (kind, "any"):
            self.diag.fail(f"'{op}' needs {_KIND_WORDS[kind]}, got {got.words()}", node.loc)

    def _compare_values(
        self, node: n.Compare, left: Type, right: Type, right_node: n.Expr, reverse: bool = False
    ) -> None:
        if "any" in (left.kind, right.kind):
            return
        if not _compatible(left, right):
            hint = None
            if {left.kind, right.kind} == {"date", "datetime"}:
                hint = "use date(...) to compare a date and time with a date"
            elif {left.kind, right.kind} == {"date", "string"} or {left.kind, right.kind} == {"datetime", "string"}:
                hint = "compare with today, now, or a date field; dates are not texts"
            self.diag.fail(f"cannot compare {left.words()} with {right.words()}", node.loc, hint)
            return
        typed = left if left.options is not None else right
        other = right_node if left.options is not None else node.left
        if reverse:
            typed, other = left, right_node
        if typed.options is not None:
            self._check_options(typed, other)

    def _check_options(self, typed: Type, expr: n.Expr) -> None:
        """Report literal texts that are not among a choice's options."""
        if typed.options is None:
            return
        literals = expr.items if isinstance(expr, n.ListLiteral) else [expr]
        for literal in literals:
            if isinstance(literal, n.Literal) and isinstance(literal.value, str):
                if literal.value not in typed.options:
                    choices = ", ".join(sorted(typed.options))
                    hint = did_you_mean(literal.value, typed.options) or f"options: {choices}"
                    self.diag.fail(f"{literal.value!r} is not an option of {typed.words()}", literal.loc, hint)


def _compatible(a: Type, b: Type) -> bool:
    if a.kind == "list" and b.kind == "list":
        return a.item is None or b.item is None or _compatible(a.item, b.item)
    return a.kind == b.kind


def _at(loc: Location, column: int) -> Location:
    return Location(loc.file, loc.line, column)


def literal_type(value) -> str:
    """The kind of a Python value written as a literal (for trigger values)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | Decimal):
        return "number"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    return "string"


def fields_read(expr: n.Expr | None, subject: str) -> list[str]:
    """The dotted field paths an expression reads, relative to its subject."""
    if expr is None:
        return []
    paths = []
    for node in n.walk(expr):
        if isinstance(node, n.Name):
            parts = node.parts[1:] if node.parts[0] == subject else node.parts
            if parts and ".".join(parts) not in paths:
                paths.append(".".join(parts))
    return paths
