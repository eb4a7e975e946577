"""From lark's parse tree to the frozen nodes of ``nodes.py``.

Every node gets its file position; positions inside an expression embedded in
YAML are mapped back to the YAML file by the ``mapper`` the parser passes in.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from decimal import Decimal

from lark import Token, v_args
from lark.visitors import Transformer_NonRecursive

from ..errors import Location
from . import nodes as n
from .syntax_messages import SyntaxProblem

Mapper = Callable[[str, int, int], Location]


def _plain(file: str, line: int, column: int) -> Location:
    return Location(file, line, column)


def _rule_source(lines: list[str], first: int, last: int) -> str:
    # The rule's last token is the line break that runs up to the next rule.
    body = lines[first - 1 : last - 1] if last > first else lines[first - 1 : first]
    while body and (not body[-1].strip() or body[-1].lstrip().startswith("#")):
        body.pop()
    return "\n".join(body)


def _unit(word: str) -> str:
    return word if word.endswith("s") else word + "s"


@v_args(inline=True)
class ToNodes(Transformer_NonRecursive):  # not recursive: long 'and' chains are fine
    """Builds frozen nodes from the parse tree, with file positions."""

    def __init__(self, file: str, lines: list[str], mapper: Mapper | None = None):
        super().__init__()
        self.file, self.lines = file, lines
        self.mapper = mapper or _plain

    def _loc(self, item) -> Location:
        if isinstance(item, Token):
            return self.mapper(self.file, item.line, item.column)
        if isinstance(item, n.Expr | n.Action | n.Trigger | n.TeamRef | n.Recipient):
            return item.loc
        return Location(self.file, 1, 1)

    # --- file and rule --------------------------------------------------

    def start(self, *rules):
        return [r for r in rules if r is not None]

    def expression(self, expr):
        return expr

    @v_args(meta=True, inline=False)
    def rule(self, meta, children):
        name_token, *rest = children
        options = [c for c in rest if isinstance(c, tuple)]
        trigger = next(c for c in rest if isinstance(c, n.Trigger))
        condition = next((c for c in rest if isinstance(c, _Condition)), None)
        actions = tuple(c for c in rest if isinstance(c, n.Action))
        settings = {"priority": 0, "stop": False, "enabled": True}
        for key, value in options:
            settings[key] = value
        source = _rule_source(self.lines, meta.line, meta.end_line)
        return n.Rule(
            loc=self._loc(name_token),
            name=self._string(name_token),
            trigger=trigger,
            condition=condition.expr if condition else None,
            actions=actions,
            source=source,
            **settings,
        )

    def priority(self, value):
        return ("priority", value)

    def signed_number(self, token):
        return self._integer(token)

    def negative(self, _minus, token):
        return -self._integer(token)

    def stop(self):
        return ("stop", True)

    def disabled(self):
        return ("enabled", False)

    def enabled(self):
        return ("enabled", True)

    def condition(self, expr):
        return _Condition(expr)

    # --- triggers -------------------------------------------------------

    def trigger(self, entity, event):
        kind, extra = event
        return n.Trigger(loc=self._loc(entity), entity=str(entity), kind=kind, **extra)

    def created(self):
        return ("created", {})

    def updated(self):
        return ("updated", {})

    def deleted(self):
        return ("deleted", {})

    def changed(self, field, change_from, change_to):
        return (
            "changed",
            {"field": str(field), "field_loc": self._loc(field), "change_from": change_from, "change_to": change_to},
        )

    def field_name(self, token):
        return token

    def change_from(self, literal):
        return literal

    def change_to(self, literal):
        return literal

    def enters(self, state):
        return ("enters", {"state": str(state), "field_loc": self._loc(state)})

    def leaves(self, state):
        return ("leaves", {"state": str(state), "field_loc": self._loc(state)})

    def every(self, amount, unit):
        duration = n.Duration(self._loc(amount), self._integer(amount), _unit(unit))
        return ("every", {"every": duration})

    def date_offset(self, days, _unit_word, direction, field, yearly):
        return (
            "date",
            {
                "days": self._integer(days),
                "direction": str(direction),
                "field": str(field),
                "field_loc": self._loc(field),
                "yearly": yearly is not None,
            },
        )

    def yearly(self):
        return True

    def form_submitted(self, form):
        return ("form", {"form": str(form), "field_loc": self._loc(form)})

    def email_received(self):
        return ("email", {})

    def time_unit(self, *tokens):
        return str(tokens[0]) if tokens else ""

    def day_unit(self, *tokens):
        return "days"

    # --- actions --------------------------------------------------------

    def assign(self, target, how):
        strategy, extra = how
        return n.Assign(loc=target.loc, target=target, strategy=strategy, **extra)

    def round_robin(self, team):
        return ("round_robin", {"team": team})

    def load_balanced(self, team):
        return ("load_balanced", {"team": team})

    def to_user(self, user):
        return ("user", {"user": user})

    def user_ref(self, item):
        if isinstance(item, Token):
            return n.Literal(self._loc(item), self._string(item))
        return item

    def to_queue(self, queue):
        return ("queue", {"queue": self._string(queue), "queue_loc": self._loc(queue)})

    def team_named(self, name):
        return n.TeamRef(loc=self._loc(name), name=self._string(name))

    def team_by(self, by, *pairs):
        mapping = tuple(p for p in pairs if p[0] is not None)
        otherwise = next((p for p in pairs if p[0] is None), None)
        return n.TeamRef(
            loc=by.loc,
            by=by,
            mapping=mapping,
            otherwise=otherwise[1] if otherwise else None,
            otherwise_loc=otherwise[2] if otherwise else None,
        )

    def team_pair(self, key, team):
        return (self._string(key), self._string(team), self._loc(team))

    def team_else(self, team):
        return (None, self._string(team), self._loc(team))

    def set_field(self, target, value):
        return n.SetField(loc=target.loc, target=target, value=value)

    def create(self, entity, *values):
        return n.Create(loc=self._loc(entity), entity=str(entity), values=tuple(v for v in values if v is not None))

    def create_value(self, field, value):
        return (str(field), value, self._loc(field))

    def send_email(self, template, to):
        return n.SendEmail(loc=self._loc(template), template=self._string(template), to=to)

    def follow_up(self, delay, unless, *actions):
        return n.FollowUp(loc=delay.loc, delay=delay, unless=unless, actions=tuple(actions))

    def unless(self, expr):
        return expr

    def escalate(self, target, to):
        return n.Escalate(loc=target.loc, target=target, to=to)

    def notify(self, to, message):
        start = self._loc(message)
        text_start = Location(start.file, start.line, start.column + 1)  # after the opening quote
        return n.Notify(loc=to.loc, to=to, message=self._string(message), message_loc=text_start)

    def to_role(self, name):
        return n.Recipient(self._loc(name), "role", name=self._string(name))

    def to_team(self, name):
        return n.Recipient(self._loc(name), "team", name=self._string(name))

    def to_user_email(self, name):
        return n.Recipient(self._loc(name), "user", name=self._string(name))

    def to_path(self, path):
        return n.Recipient(path.loc, "path", path=path)

    def webhook(self, url):
        return n.Webhook(loc=self._loc(url), url=self._string(url))

    def move(self, target, state):
        return n.Move(loc=target.loc, target=target, state=str(state), state_loc=self._loc(state))

    def add_to_campaign(self, target, campaign):
        return n.AddToCampaign(loc=target.loc, target=target, campaign=self._string(campaign))

    # --- expressions ----------------------------------------------------

    def or_(self, left, right):
        return self._boolop("or", left, right)

    def and_(self, left, right):
        return self._boolop("and", left, right)

    def _boolop(self, op, left, right):
        operands = left.operands if isinstance(left, n.BoolOp) and left.op == op else (left,)
        return n.BoolOp(left.loc, op, operands + (right,))

    def not_(self, operand):
        return n.Unary(operand.loc, "not", operand)

    def neg(self, minus, operand):
        if isinstance(operand, n.Literal) and isinstance(operand.value, int | Decimal):
            return n.Literal(self._loc(minus), -operand.value)
        return n.Unary(self._loc(minus), "-", operand)

    def compare(self, left, op, right):
        return n.Compare(left.loc, str(op), left, right)

    def in_(self, left, right):
        return n.Compare(left.loc, "in", left, right)

    def not_in(self, left, right):
        return n.Compare(left.loc, "not in", left, right)

    def contains(self, left, right):
        return n.Compare(left.loc, "contains", left, right)

    def starts_with(self, left, right):
        return n.Compare(left.loc, "starts_with", left, right)

    def ends_with(self, left, right):
        return n.Compare(left.loc, "ends_with", left, right)

    def is_empty(self, operand):
        return n.IsEmpty(operand.loc, operand, False)

    def is_not_empty(self, operand):
        return n.IsEmpty(operand.loc, operand, True)

    def binary(self, left, op, right):
        return n.Binary(left.loc, str(op), left, right)

    @v_args(meta=True, inline=False)
    def today(self, meta, _children):
        return n.Now(self.mapper(self.file, meta.line, meta.column), "today")

    @v_args(meta=True, inline=False)
    def now(self, meta, _children):
        return n.Now(self.mapper(self.file, meta.line, meta.column), "now")

    def duration(self, amount, unit):
        return n.Duration(self._loc(amount), self._integer(amount), _unit(unit))

    def name(self, *parts):
        return n.Name(self._loc(parts[0]), tuple(str(p) for p in parts))

    def call(self, function, *args):
        return n.Call(self._loc(function), str(function), tuple(a for a in args if a is not None))

    @v_args(meta=True, inline=False)
    def list(self, meta, items):
        loc = self.mapper(self.file, meta.line, meta.column)
        return n.ListLiteral(loc, tuple(i for i in items if i is not None))

    def string(self, token):
        return n.Literal(self._loc(token), self._string(token))

    def number(self, token):
        text = str(token)
        return n.Literal(self._loc(token), Decimal(text) if "." in text else int(text))

    @v_args(meta=True, inline=False)
    def true(self, meta, _children):
        return n.Literal(self.mapper(self.file, meta.line, meta.column), True)

    @v_args(meta=True, inline=False)
    def false(self, meta, _children):
        return n.Literal(self.mapper(self.file, meta.line, meta.column), False)

    # --- tokens ---------------------------------------------------------

    def _string(self, token: Token) -> str:
        try:
            return ast.literal_eval(str(token))
        except (ValueError, SyntaxError):
            raise SyntaxProblem("invalid escape in text", self._loc(token)) from None

    def _integer(self, token: Token) -> int:
        if "." in str(token):
            raise SyntaxProblem(f"expected a whole number, got {token}", self._loc(token))
        return int(str(token))


class _Condition:
    """Marks the parsed `when` clause among a rule's children."""

    def __init__(self, expr: n.Expr):
        self.expr = expr
