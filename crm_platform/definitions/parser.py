"""Parsing rule files and expressions into nodes.

``parse_rules(text, file)`` reads a ``.rules`` file; ``parse_expression``
reads one expression embedded in YAML (a computed field or a guard). Both
raise ``SyntaxProblem`` with an exact position and a message written for an
admin, never a lark exception.
"""

from __future__ import annotations

import ast
import functools
from decimal import Decimal
from pathlib import Path

from lark import Lark, Token, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import DedentError, Indenter
from lark.visitors import Transformer_NonRecursive

from ..errors import Location
from . import nodes as n

GRAMMAR = Path(__file__).with_name("rules.lark")

# Python refuses code nested about 200 parentheses deep, and each level of an
# expression nests the generated code by up to three; deeper text is refused here.
MAX_NESTING = 50


class SyntaxProblem(Exception):
    """A syntax error at a position, with a message and an optional hint."""

    def __init__(self, message: str, loc: Location, hint: str | None = None):
        super().__init__(message)
        self.message, self.loc, self.hint = message, loc, hint


class _RulesIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB", "LBRACE"]
    CLOSE_PAREN_types = ["RPAR", "RSQB", "RBRACE"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def handle_NL(self, token):
        try:
            yield from super().handle_NL(token)
        except DedentError:
            indent = len(token.rsplit("\n", 1)[1].expandtabs(self.tab_len))
            raise _BadDedent(token.end_line, indent + 1) from None


class _BadDedent(Exception):
    def __init__(self, line: int, column: int):
        super().__init__(line, column)
        self.line, self.column = line, column


@functools.cache
def _parser() -> Lark:
    return Lark(
        GRAMMAR.read_text(),
        parser="lalr",
        start=["start", "expression"],
        postlex=_RulesIndenter(),
        propagate_positions=True,
        strict=True,
        maybe_placeholders=True,
        cache=True,
    )


# Words admins read instead of lark's terminal names.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "STRING": 'a quoted "text"',
    "NUMBER": "a number",
    "_NL": "the end of the line",
    "_INDENT": "an indented block",
    "_DEDENT": "less indentation",
    "COMPARE": "a comparison (==, !=, <, <=, >, >=)",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "MUL_OP": "'*', '/' or '%'",
    "DIRECTION": "'after' or 'before'",
    "$END": "the end of the file",
}

# Labelled bad examples: a syntax error that fails on the same kind of token in
# the same parser state as one of these gets its label as the message, instead
# of a list of expected tokens (see _match_example).
_ACTION_WORDS = ("add", "assign", "create", "escalate", "follow_up", "move", "notify", "send_email", "set", "webhook")
_HEADER = 'rule "x"\n  on lead created\n'
_BEFORE_THEN = (_HEADER, _HEADER + "  when true\n")
_DONE = _HEADER + '  then\n    webhook "u"\n'  # a complete rule, for mistakes in the next one
# Left operands that a mistaken '=' may follow; each leaves the parser in its own state.
_OPERANDS = ("a", "a.b", "a.b.c", "f(a)", "1", '"a"', "(a)", "today", "now", "true", "[a]")

_RULE_EXAMPLES = {
    'a rule needs a quoted name: rule "Route web leads"': [
        prefix + rest for prefix in ("", "\n", _DONE) for rest in ("rule Route\n", "rule\n")
    ],
    "a rule's body must be indented under its header": [
        'rule "x"\non lead created\n',
        'rule "x" stop\non lead created\n',
    ],
    "the first line of a rule body is its trigger: on ENTITY EVENT": ['rule "x"\n  when true\n'],
    "expected an event: created, updated, deleted, FIELD changed, enters STATE, leaves STATE, "
    "every N minutes, N days after FIELD, form NAME submitted or email received": [
        'rule "x"\n  on lead create\n',
        'rule "x"\n  on lead\n',
    ],
    "expected 'then' followed by indented actions": [
        before + indent + word + "\n" for before in _BEFORE_THEN for indent in ("  ", "    ") for word in _ACTION_WORDS
    ],
    "'then' must be followed by actions on the next lines, indented": [
        *(_HEADER + "  then " + word + "\n" for word in _ACTION_WORDS),
        *(_HEADER + "  then\n  " + word + "\n" for word in _ACTION_WORDS),
        _HEADER + "  then\n",
        _HEADER + '  then\nrule "y"\n',
    ],
    "use == to compare; a single = is only for set and create": [
        _HEADER + f"  when {operand} = 1\n" for operand in _OPERANDS
    ],
}

_EXPRESSION_EXAMPLES = {
    "use == to compare; a single = is only for set and create": [f"({operand} = 1)" for operand in _OPERANDS],
}


def parse_rules(text: str, file: str) -> list[n.Rule]:
    """Parse a rules file into ``Rule`` nodes; raise ``SyntaxProblem``."""
    if not text.endswith("\n"):
        text += "\n"
    tree = _parse(text, "start", file)
    lines = text.splitlines()
    return _transform(tree, _ToNodes(file, lines))


def parse_expression(text: str, loc: Location, quoted: bool = False) -> n.Expr:
    """Parse an expression embedded in YAML whose first character is at ``loc``.

    The text is wrapped in parentheses so that a YAML block scalar may span
    lines; positions are mapped back to the YAML file.
    """
    shift = 1 if quoted else 0
    mapper = _Offset(loc, shift - 1)
    wrapped = "(" + text + ")"
    lines = wrapped.splitlines() or [wrapped]
    end = (len(lines), len(lines[-1]))
    tree = _parse(wrapped, "expression", loc.file, mapper, end)
    return _transform(tree, _ToNodes(loc.file, [], mapper))


def _transform(tree, transformer):
    try:
        return transformer.transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, SyntaxProblem):
            raise exc.orig_exc from None
        raise


class _Offset:
    """Maps a position inside an embedded expression to the file position."""

    def __init__(self, base: Location | None = None, column_shift: int = 0):
        self.base, self.column_shift = base, column_shift

    def __call__(self, file: str, line: int, column: int) -> Location:
        if self.base is None:
            return Location(file, line, column)
        if line == 1:
            # A problem at the wrapping '(' (e.g. the end of an expression that is
            # all comment) is shown at the expression's first character.
            column = max(column, 2)
            return Location(file, self.base.line, self.base.column + column - 1 + self.column_shift)
        return Location(file, self.base.line + line - 1, column)


def _parse(text, start, file, mapper=None, synthetic_end=None):
    """Parse; ``synthetic_end`` is the position of the ')' that wraps an expression."""
    mapper = mapper or _Offset()
    parser = _parser()
    try:
        tree = parser.parse(text, start=start)
    except UnexpectedInput as exc:
        line, column = exc.line, exc.column
        if isinstance(exc, UnexpectedToken) and exc.token.type in ("_INDENT", "_DEDENT"):
            # An (in|de)dent token stands where its line break starts; the admin
            # looks for the wrongly indented line, where that line break ends.
            line, column = exc.token.end_line, exc.token.end_column
        loc = mapper(file, line if line > 0 else 1, column if column > 0 else 1)
        label = _match_example(exc, start)
        message = label or _describe(exc, parser)
        if not label and synthetic_end == (exc.line, exc.column):
            message = message.replace("unexpected ')'", "the expression ends too early")
        raise SyntaxProblem(message, loc, None if label else _hint(exc)) from None
    except _BadDedent as exc:
        raise SyntaxProblem(
            "this line's indentation matches no enclosing block",
            mapper(file, exc.line, exc.column),
            "indent it exactly like the line it belongs with",
        ) from None
    _check_nesting(tree, file, mapper)
    return tree


def _check_nesting(tree: Tree, file: str, mapper) -> None:
    """Refuse a tree nested deeper than ``MAX_NESTING``. A chain of the same
    'and'/'or' is one level (it becomes one node); a dotted name counts a level
    per part, as each link it follows nests the generated code."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if node.data == "name":
            depth += len(node.children) - 1
        if depth > MAX_NESTING:
            raise SyntaxProblem(
                f"nested too deeply (more than {MAX_NESTING} levels)",
                mapper(file, max(node.meta.line, 1), max(node.meta.column, 1)),
                "split it up, e.g. into computed fields",
            )
        for child in reversed(node.children):  # leftmost first: report the first place in the text
            if isinstance(child, Tree):
                chained = child.data == node.data and node.data in ("and_", "or_")
                stack.append((child, depth if chained else depth + 1))


def _match_example(exc: UnexpectedInput, start: str) -> str | None:
    """The label of the first example that fails like ``exc``: on the same kind of
    token, in the same parser state.

    lark's ``match_examples`` compares the whole parser stack and the tokens the
    context would accept, so an example written as a file's only rule does not
    match the same mistake after a comment, in a later rule or in a guard; and it
    falls back to any example in the same state whatever the token, so a missing
    operator would be explained as a mistaken '='.
    """
    if not isinstance(exc, UnexpectedToken) or exc.state is None:
        return None
    failure = (exc.state.position, exc.token.type)
    return next((label for label, example in _example_failures(start) if example == failure), None)


@functools.cache
def _example_failures(start: str) -> tuple[tuple[str, tuple[int, str]], ...]:
    """Each labelled example's (label, (parser state, token type)) where it fails."""
    examples = _RULE_EXAMPLES if start == "start" else _EXPRESSION_EXAMPLES
    failures = []
    for label, texts in examples.items():
        for text in texts:
            try:
                _parser().parse(text, start=start)
            except UnexpectedToken as example:
                failures.append((label, (example.state.position, example.token.type)))
            except (UnexpectedInput, _BadDedent):
                continue
    return tuple(failures)


def _describe(exc: UnexpectedInput, parser: Lark) -> str:
    if isinstance(exc, UnexpectedCharacters):
        if exc.char == '"':
            return 'unterminated text: a quoted text must end with " on the same line'
        if exc.char == "'":
            return 'a text value needs double quotes: "like this"'
        return f"unexpected character {exc.char!r}"
    if isinstance(exc, UnexpectedEOF):
        return "unexpected end of input; expected " + _expected(exc.expected, parser)
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    found = "end of line" if token.type == "_NL" else _token_text(token)
    expected = exc.accepts or exc.expected
    return f"unexpected {found}; expected {_expected(expected, parser)}"


def _token_text(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type in ("_INDENT", "_DEDENT"):
        return "indentation" if token.type == "_INDENT" else "a less indented line"
    return repr(str(token))


def _expected(names, parser: Lark) -> str:
    # Names and values first ("a name", "a number"), then keywords, alphabetically.
    words = sorted({_terminal_word(name, parser) for name in names}, key=lambda w: (w[0] == "'", w))
    if len(words) > 12:
        words = words[:12] + ["..."]
    return ", ".join(words) if len(words) > 1 else (words[0] if words else "something else")


def _terminal_word(name: str, parser: Lark) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = parser.get_terminal(name).pattern
    except KeyError:
        return name.lower()
    if pattern.type == "str":
        return repr(pattern.value)
    return name.lower()


def _hint(exc: UnexpectedInput) -> str | None:
    if isinstance(exc, UnexpectedToken) and exc.token.type == "_INDENT":
        return "indent a rule's body under its header and actions under 'then', consistently"
    return None


def _rule_source(lines: list[str], first: int, last: int) -> str:
    # The rule's last token is the line break that runs up to the next rule.
    body = lines[first - 1 : last - 1] if last > first else lines[first - 1 : first]
    while body and (not body[-1].strip() or body[-1].lstrip().startswith("#")):
        body.pop()
    return "\n".join(body)


def _unit(word: str) -> str:
    return word if word.endswith("s") else word + "s"


@v_args(inline=True)
class _ToNodes(Transformer_NonRecursive):  # not recursive: long 'and' chains are fine
    """Builds frozen nodes from the parse tree, with file positions."""

    def __init__(self, file: str, lines: list[str], mapper: _Offset | None = None):
        super().__init__()
        self.file, self.lines = file, lines
        self.mapper = mapper or _Offset()

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
        return n.Notify(loc=to.loc, to=to, message=self._string(message))

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
