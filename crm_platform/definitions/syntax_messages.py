"""Syntax errors in words an admin can act on.

lark reports an unexpected token and the terminals it expected; this module
turns that into "use == to compare", or into a short list of expected words
("a name", 'then'), and matches common mistakes against a table of labelled
bad examples, the way lark's ``match_examples`` is meant to be used.
"""

from __future__ import annotations

import functools

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import Location


class SyntaxProblem(Exception):
    """A syntax error at a position, with a message and an optional hint."""

    def __init__(self, message: str, loc: Location, hint: str | None = None):
        super().__init__(message)
        self.message, self.loc, self.hint = message, loc, hint


class BadIndentation(Exception):
    """A line dedents to a column no enclosing block starts at."""

    def __init__(self, line: int, column: int):
        super().__init__(line, column)
        self.line, self.column = line, column


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


def explain(exc: UnexpectedInput, parser: Lark, start: str) -> tuple[str, str | None, bool]:
    """(message, hint, whether the message came from a labelled example)."""
    label = _match_example(exc, parser, start)
    if label:
        return label, None, True
    return _describe(exc, parser), _hint(exc), False


def _match_example(exc: UnexpectedInput, parser: Lark, start: str) -> str | None:
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
    return next((label for label, example in _example_failures(parser, start) if example == failure), None)


@functools.cache
def _example_failures(parser: Lark, start: str) -> tuple[tuple[str, tuple[int, str]], ...]:
    """Each labelled example's (label, (parser state, token type)) where it fails."""
    examples = _RULE_EXAMPLES if start == "start" else _EXPRESSION_EXAMPLES
    failures = []
    for label, texts in examples.items():
        for text in texts:
            try:
                parser.parse(text, start=start)
            except UnexpectedToken as example:
                failures.append((label, (example.state.position, example.token.type)))
            except (UnexpectedInput, BadIndentation):
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
