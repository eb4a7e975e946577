"""Parsing rule files and expressions into nodes.

``parse_rules(text, file)`` reads a ``.rules`` file; ``parse_expression``
reads one expression embedded in YAML (a computed field or a guard). Both
raise ``SyntaxProblem`` with an exact position and a message written for an
admin, never a lark exception.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lark import Lark, Tree
from lark.exceptions import UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import DedentError, Indenter

from ..errors import Location
from . import nodes as n
from .syntax_messages import BadIndentation, SyntaxProblem, explain
from .tree import ToNodes

__all__ = ["SyntaxProblem", "parse_expression", "parse_rules"]

GRAMMAR = Path(__file__).with_name("rules.lark")

# Python refuses code nested about 200 parentheses deep, and each level of an
# expression nests the generated code by up to three; deeper text is refused here.
MAX_NESTING = 50


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
            raise BadIndentation(token.end_line, indent + 1) from None


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


def parse_rules(text: str, file: str) -> list[n.Rule]:
    """Parse a rules file into ``Rule`` nodes; raise ``SyntaxProblem``."""
    if not text.endswith("\n"):
        text += "\n"
    tree = _parse(text, "start", file)
    lines = text.splitlines()
    return _transform(tree, ToNodes(file, lines))


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
    return _transform(tree, ToNodes(loc.file, [], mapper))


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
        message, hint, from_example = explain(exc, parser, start)
        if not from_example and synthetic_end == (exc.line, exc.column):
            message = message.replace("unexpected ')'", "the expression ends too early")
        raise SyntaxProblem(message, loc, hint) from None
    except BadIndentation as exc:
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
