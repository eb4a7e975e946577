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
    """A scalar string with its position and quoting, for embedded expressions."""

    text: str
    loc: Location
    quoted: bool = False


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
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", self._loc(event))
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if getattr(node, "anchor", None):
            raise YamlProblem(
                f"YAML anchors (&{node.anchor}) are not supported in definitions",
                self._loc(node),
                "write the value out in full; anchors and aliases are refused",
            )
        return node

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
        return result

    def construct_positioned_seq(self, node):
        result = PosList(self.construct_object(child, deep=True) for child in node.value)
        result.loc = self._loc(node)
        result.item_locs = [self._loc(child) for child in node.value]
        result.item_styles = [getattr(child, "style", None) for child in node.value]
        return result


PositionedLoader.add_constructor("tag:yaml.org,2002:map", PositionedLoader.construct_positioned_map)
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
    loader = PositionedLoader(text)
    loader.filename = filename
    try:
        return loader.get_single_data()
    except YamlProblem:
        raise
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
        loader.dispose()


def located(mapping: PosMap, key: str) -> Located:
    """The string value at ``key`` with the position of its first character."""
    loc = mapping.value_loc(key)
    quoted = mapping.value_styles.get(key) in ("'", '"')
    return Located(str(mapping[key]), loc, quoted)
