"""Reading YAML definition files with positions.

PyYAML forgets where things were once it has built Python objects. This
loader keeps the start mark of every mapping key and value, so that any later
stage (the meta-schema check, the compiler) can point at ``file:line:col``.
It also closes YAML's traps for admins: duplicate keys are refused instead of
silently overwritten, anchors and aliases are refused (which also stops alias
bombs), and only ``true``/``false`` are booleans, so a country code ``NO``
stays a string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml
from yaml.events import AliasEvent

from ..errors import Location

MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 50


class PosMap(dict):
    """A mapping that remembers where it, its keys and its values stand."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loc = Location("", 0, 0)
        self.key_locs: dict = {}
        self.value_locs: dict = {}
        self.value_styles: dict = {}
        # key -> (source text, where it starts) of an unquoted value that spans lines
        self.value_sources: dict = {}

    def key_loc(self, key) -> Location:
        return self.key_locs.get(key, self.loc)

    def value_loc(self, key) -> Location:
        return self.value_locs.get(key, self.loc)


class PosList(list):
    """A sequence that remembers where it and each item stand."""

    def __init__(self, *args):
        super().__init__(*args)
        self.loc = Location("", 0, 0)
        self.item_locs: list = []
        self.item_styles: list = []

    def item_loc(self, index: int) -> Location:
        return self.item_locs[index] if index < len(self.item_locs) else self.loc


@dataclass(frozen=True)
class Located:
    """A scalar string with its position and quoting, for embedded expressions.

    ``text`` is the value as YAML reads it. For an unquoted value that spans
    lines (a block scalar, or a plain scalar folded over lines) ``source`` holds
    its lines as written, indentation included, and ``loc`` is where they start,
    so that a position inside the expression maps back to its line and column.
    """

    text: str
    loc: Location
    quoted: bool = False
    source: str | None = None

    @property
    def expression(self) -> str:
        """The text to parse."""
        return self.text if self.source is None else self.source

    def at(self, offset: int) -> Location:
        """Where character ``offset`` of a one-line value stands (else the value's start)."""
        if self.source is not None or "\n" in self.text:
            return self.loc
        return Location(self.loc.file, self.loc.line, self.loc.column + (1 if self.quoted else 0) + offset)


class YamlProblem(Exception):
    """Raised inside the loader; turned into a finding by ``load_yaml``."""

    def __init__(self, message: str, loc: Location, hint: str | None = None):
        super().__init__(message)
        self.message, self.loc, self.hint = message, loc, hint


_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class PositionedLoader(yaml.SafeLoader):
    """A SafeLoader that records positions and refuses YAML's surprises."""

    filename = "<string>"

    def _loc(self, node_or_mark) -> Location:
        mark = getattr(node_or_mark, "start_mark", node_or_mark)
        return Location(self.filename, mark.line + 1, mark.column + 1)

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise YamlProblem(
                "YAML aliases (*name) are not supported in definitions",
                self._loc(event),
                "write the value out in full; anchors and aliases are refused",
            )
        # Nodes do not keep their anchor; the event that starts them does.
        anchor = getattr(self.peek_event(), "anchor", None)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", self._loc(event))
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if anchor:
            raise YamlProblem(
                f"YAML anchors (&{anchor}) are not supported in definitions",
                self._loc(node),
                "write the value out in full; anchors and aliases are refused",
            )
        return node

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError, AttributeError, KeyError, IndexError):
            # PyYAML's constructors fail with bare exceptions on a value that an
            # explicit tag (!!bool, !!int, !!timestamp, ...) cannot read.
            kind = node.tag.rsplit(":", 1)[-1]
            value = f"{node.value!r} " if isinstance(node, yaml.ScalarNode) else ""
            raise YamlProblem(f"cannot read {value}as {kind}", self._loc(node), "remove the !!tag") from None

    def construct_positioned_map(self, node):
        self.flatten_mapping(node)
        result = PosMap()
        result.loc = self._loc(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise YamlProblem("a key must be a plain name", self._loc(key_node))
            if key in result:
                raise YamlProblem(
                    f"duplicate key {key!r}",
                    self._loc(key_node),
                    f"{key!r} is already set at line {result.key_locs[key].line}; keep one",
                )
            result[key] = self.construct_object(value_node, deep=True)
            result.key_locs[key] = self._loc(key_node)
            result.value_locs[key] = self._loc(value_node)
            result.value_styles[key] = getattr(value_node, "style", None)
            source = self._source_lines(value_node)
            if source is not None:
                result.value_sources[key] = source
        return result

    def _source_lines(self, node) -> tuple[str, Location] | None:
        """The source text of an unquoted scalar spanning lines, and where it starts."""
        start, end = node.start_mark, node.end_mark
        style = getattr(node, "style", None)
        if not isinstance(node, yaml.ScalarNode) or style not in (None, "|", ">") or start.buffer is None:
            return None
        if end.line == start.line:
            return None
        text = start.buffer[start.index : end.index]
        if style is None:
            return text.rstrip(), self._loc(start)
        # A block scalar: its first line holds only the indicator (and maybe a comment).
        lines = text.split("\n")[1:]
        return "\n".join(lines).rstrip(), Location(self.filename, start.line + 2, 1)

    def construct_positioned_timestamp(self, node):
        # PyYAML reads 2026-13-45 as a date and then fails with a bare ValueError.
        try:
            return self.construct_yaml_timestamp(node)
        except ValueError as exc:
            raise YamlProblem(
                f"invalid date {node.value!r}: {exc}", self._loc(node), "write a real date as YYYY-MM-DD"
            ) from None

    def construct_positioned_seq(self, node):
        result = PosList(self.construct_object(child, deep=True) for child in node.value)
        result.loc = self._loc(node)
        result.item_locs = [self._loc(child) for child in node.value]
        result.item_styles = [getattr(child, "style", None) for child in node.value]
        return result


PositionedLoader.add_constructor("tag:yaml.org,2002:map", PositionedLoader.construct_positioned_map)
PositionedLoader.add_constructor("tag:yaml.org,2002:timestamp", PositionedLoader.construct_positioned_timestamp)
PositionedLoader.add_constructor("tag:yaml.org,2002:seq", PositionedLoader.construct_positioned_seq)
# YAML 1.1 reads yes/no/on/off as booleans (so Norway's code NO becomes False);
# keep only true/false, as YAML 1.2 does.
PositionedLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
PositionedLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))


def load_yaml(text: str, filename: str):
    """Parse one YAML document with positions.

    Returns the document (``PosMap``/``PosList``/scalars). Raises
    ``YamlProblem`` with a location for any YAML error, refused construct or
    oversized input; never another exception for text input.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise YamlProblem(f"file is larger than {MAX_FILE_BYTES} bytes", Location(filename, 1, 1))
    loader = None
    try:
        # The reader refuses control characters as soon as it is made.
        loader = PositionedLoader(text)
        loader.filename = filename
        return loader.get_single_data()
    except YamlProblem:
        raise
    except yaml.reader.ReaderError as exc:
        line, column = _line_and_column(text, exc.position)
        message = f"invalid YAML: special character #x{exc.character:04x} is not allowed"
        raise YamlProblem(
            message, Location(filename, line, column), "remove it; inside double quotes it may be written as an escape"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlProblem(f"invalid YAML: {problem}", loc) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}", Location(filename, 1, 1)) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # e.g. a timestamp like 2026-13-45 that PyYAML resolves and then cannot build
        raise YamlProblem(f"invalid value: {exc}", Location(filename, 1, 1)) from None
    except RecursionError:
        raise YamlProblem("nesting too deep", Location(filename, 1, 1)) from None
    finally:
        if loader is not None:
            loader.dispose()


_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


def _line_and_column(text: str, index: int) -> tuple[int, int]:
    """The 1-based line and column of ``text[index]``, counting line breaks as YAML does."""
    breaks = list(_LINE_BREAK.finditer(text, 0, index))
    start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, index - start + 1


def located(mapping: PosMap, key: str) -> Located:
    """The string value at ``key`` with the position of its first character."""
    if key in mapping.value_sources:
        source, loc = mapping.value_sources[key]
        return Located(str(mapping[key]), loc, False, source)
    loc = mapping.value_loc(key)
    quoted = mapping.value_styles.get(key) in ("'", '"')
    return Located(str(mapping[key]), loc, quoted)
