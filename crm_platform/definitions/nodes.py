"""The typed model of expressions and rules, as the parser builds them.

Nodes are frozen dataclasses that keep their position (``loc``); the compiler
and the analyses walk these, never raw lark trees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Location

# --- expressions -------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    loc: Location


@dataclass(frozen=True)
class Literal(Expr):
    value: object  # str, int, Decimal, bool


@dataclass(frozen=True)
class ListLiteral(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Duration(Expr):
    amount: int
    unit: str  # minutes, hours, days, weeks


@dataclass(frozen=True)
class Now(Expr):
    """``today`` (a date) or ``now`` (a datetime), read from the injected clock."""

    what: str


@dataclass(frozen=True)
class Name(Expr):
    """A dotted name: ``lead.account.industry`` or a bare ``score``."""

    parts: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Call(Expr):
    function: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # "-" or "not"
    operand: Expr


@dataclass(frozen=True)
class Binary(Expr):
    """Arithmetic: + - * / %."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Compare(Expr):
    """== != < <= > >= in, not in, contains, starts_with, ends_with."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class IsEmpty(Expr):
    operand: Expr
    negated: bool = False


@dataclass(frozen=True)
class BoolOp(Expr):
    op: str  # "and" / "or"
    operands: tuple[Expr, ...]


# --- rules -------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    loc: Location
    entity: str
    kind: str  # created updated deleted changed enters leaves every date form email
    field: str | None = None  # changed: the field; date: the date field
    field_loc: Location | None = None
    state: str | None = None  # enters/leaves
    change_from: Literal | None = None
    change_to: Literal | None = None
    every: Duration | None = None  # every N minutes/hours
    days: int = 0  # date: N days ...
    direction: str | None = None  # date: "after"/"before"
    yearly: bool = False
    form: str | None = None


@dataclass(frozen=True)
class TeamRef:
    """A team named outright, or chosen from a field by a mapping."""

    loc: Location
    name: str | None = None
    by: Name | None = None
    mapping: tuple[tuple[str, str, Location], ...] = ()
    otherwise: str | None = None
    otherwise_loc: Location | None = None


@dataclass(frozen=True)
class Action:
    loc: Location


@dataclass(frozen=True)
class Assign(Action):
    target: Name
    strategy: str  # round_robin, load_balanced, user, queue
    team: TeamRef | None = None
    user: Expr | None = None  # a literal email or a user path
    queue: str | None = None
    queue_loc: Location | None = None


@dataclass(frozen=True)
class SetField(Action):
    target: Name
    value: Expr


@dataclass(frozen=True)
class Create(Action):
    entity: str
    values: tuple[tuple[str, Expr, Location], ...]


@dataclass(frozen=True)
class SendEmail(Action):
    template: str
    to: Expr


@dataclass(frozen=True)
class FollowUp(Action):
    delay: Duration
    unless: Expr | None
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Recipient:
    """Who an escalation or notification goes to."""

    loc: Location
    kind: str  # role, team, user (literal email), path (a user field)
    name: str | None = None
    path: Name | None = None


@dataclass(frozen=True)
class Escalate(Action):
    target: Name
    to: Recipient


@dataclass(frozen=True)
class Notify(Action):
    to: Recipient
    message: str
    message_loc: Location | None = None  # where the message's first character stands


@dataclass(frozen=True)
class Webhook(Action):
    url: str


@dataclass(frozen=True)
class Move(Action):
    target: Name
    state: str
    state_loc: Location


@dataclass(frozen=True)
class AddToCampaign(Action):
    target: Name
    campaign: str


@dataclass(frozen=True)
class Rule:
    loc: Location
    name: str
    trigger: Trigger
    condition: Expr | None
    actions: tuple[Action, ...]
    priority: int = 0
    stop: bool = False
    enabled: bool = True
    source: str = field(default="", compare=False)


def walk(node):
    """Yield ``node`` and every expression/action node below it."""
    yield node
    if isinstance(node, ListLiteral):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Call):
        for arg in node.args:
            yield from walk(arg)
    elif isinstance(node, Unary | IsEmpty):
        yield from walk(node.operand)
    elif isinstance(node, Binary | Compare):
        yield from walk(node.left)
        yield from walk(node.right)
    elif isinstance(node, BoolOp):
        for operand in node.operands:
            yield from walk(operand)
