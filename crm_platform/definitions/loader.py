"""``load_pack(path)``: read a pack directory into a ``Pack``.

Reads every definition file, checks each against its meta-schema and builds
the typed definitions. Problems are collected, not raised: the returned
pack's ``findings`` hold them, and ``compile_pack`` (which adds the
cross-file analysis) raises them all at once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jinja2

from ..errors import Location
from . import metaschema
from .diagnostics import Diagnostics, did_you_mean
from .entities import build_entity
from .model import Pack, Settings
from .parser import SyntaxProblem, parse_rules
from .settings import build_roles, build_settings, build_teams
from .source import PosMap, YamlProblem, load_yaml
from .workflows import build_workflow

YAML_SUFFIXES = (".yaml", ".yml")


def load_pack(root: str | Path) -> Pack:
    """Load the pack in directory ``root`` (``schemas/``, ``workflows/``, ``rules/``,
    ``templates/email/``, optional ``pack.yaml``). Never raises for bad content."""
    root = Path(root)
    diag = Diagnostics()
    sources: dict[str, str] = {}

    def read(path: Path) -> str | None:
        rel = path.relative_to(root).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            where = _byte_location(rel, exc.object, exc.start)
            diag.fail(f"file is not UTF-8 text (byte {exc.start})", where, "save the file as UTF-8")
            return None
        sources[rel] = text
        diag.add_source(rel, text)
        return text

    def yaml_file(
        path: Path,
        schema: dict,
        docs: str,
        name_key: str | None = None,
        failed: set | None = None,
        fallback: str | None = None,
    ):
        """The file's data if it is structurally valid; else None, and the name it
        gives itself under ``name_key`` (or ``fallback`` when it cannot be read
        from the file) goes into ``failed``."""
        text = read(path)
        rel = path.relative_to(root).as_posix()
        data = None
        if text is not None:
            try:
                data = load_yaml(text, rel)
            except YamlProblem as problem:
                diag.fail(problem.message, problem.loc, problem.hint)
            else:
                if data is None:  # an empty file
                    data = PosMap()
                    data.loc = Location(rel, 1, 1)
                if metaschema.check_structure(data, schema, rel, diag, docs):
                    return data
        if name_key:
            named = data.get(name_key) if isinstance(data, PosMap) else None
            name = named if isinstance(named, str) else fallback
            if name:
                failed.add(name)
        return None

    settings, teams, roles = Settings(), {}, {}
    pack_file = root / "pack.yaml"
    if pack_file.exists():
        data = yaml_file(pack_file, metaschema.PACK_FILE, "pack-settings")
        if data is not None:
            settings, teams, roles = build_settings(data, diag), build_teams(data), build_roles(data)

    entities, unloaded_entities, unloaded_workflows_of = {}, set(), set()
    for path in _files(root / "schemas", YAML_SUFFIXES):
        # A file that cannot say which entity it holds (unreadable, not YAML, no
        # entity: key) is taken to hold the one named like the file.
        data = yaml_file(path, metaschema.ENTITY_FILE, "entities", "entity", unloaded_entities, path.stem)
        if data is None:
            continue
        entity = build_entity(data, path.relative_to(root).as_posix(), diag)
        if entity.name in entities:
            first = entities[entity.name]
            diag.fail(f"entity {entity.name!r} is defined twice", entity.loc, f"it is also defined in {first.loc}")
            continue
        entities[entity.name] = entity

    workflows = {}
    for path in _files(root / "workflows", YAML_SUFFIXES):
        data = yaml_file(path, metaschema.WORKFLOW_FILE, "workflows", "entity", unloaded_workflows_of)
        if data is None:
            continue
        workflow = build_workflow(data, path.relative_to(root).as_posix(), diag)
        if workflow.name in workflows:
            diag.fail(
                f"workflow {workflow.name!r} is defined twice",
                workflow.loc,
                f"it is also defined in {workflows[workflow.name].loc}",
            )
            continue
        workflows[workflow.name] = workflow

    rules = []
    for path in _files(root / "rules", (".rules",)):
        text = read(path)
        if text is None:
            continue
        try:
            rules.extend(parse_rules(text, path.relative_to(root).as_posix()))
        except SyntaxProblem as problem:
            diag.fail(problem.message, problem.loc, problem.hint)

    templates = {}
    for path in _files(root / "templates" / "email", (".txt",)):
        text = read(path)
        if text is not None and _check_template(text, path.relative_to(root).as_posix(), diag):
            templates[path.stem] = Location(path.relative_to(root).as_posix(), 1, 1)

    for directory in ("schemas", "workflows", "rules"):
        if not (root / directory).is_dir():
            diag.warn(
                f"no {directory}/ directory in {root}",
                Location(directory, 0, 0),
                did_you_mean(directory, [p.name for p in root.iterdir()]) if root.is_dir() else None,
            )

    return Pack(
        root=root,
        settings=settings,
        entities=entities,
        workflows=workflows,
        rules=rules,
        teams=teams,
        roles=roles,
        templates=templates,
        sources=sources,
        version=_version(sources),
        findings=diag.findings,
        unloaded_entities=unloaded_entities,
        unloaded_workflows_of=unloaded_workflows_of,
    )


def _files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in suffixes)


def _byte_location(file: str, data: bytes, index: int) -> Location:
    """Line and column of the byte at ``index``, the bytes before it being valid UTF-8."""
    line_start = data.rfind(b"\n", 0, index) + 1
    column = len(data[line_start:index].decode("utf-8", "replace")) + 1
    return Location(file, data.count(b"\n", 0, index) + 1, column)


def _check_template(text: str, file: str, diag: Diagnostics) -> bool:
    first = text.splitlines()[0] if text else ""
    if not first.lower().startswith("subject:"):
        diag.fail(
            "an email template starts with a 'Subject: ...' line",
            Location(file, 1, 1),
            "write the subject on the first line, then a blank line, then the body",
        )
        return False
    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        diag.fail(f"template error: {exc.message}", Location(file, exc.lineno or 1, 1))
        return False
    return True


def _version(sources: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:12]
