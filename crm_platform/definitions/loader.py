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
from .segments import build_segment
from .settings import build_roles, build_settings, build_teams
from .sla import build_policy
from .source import PosMap, YamlProblem, load_yaml
from .workflows import build_workflow

YAML_SUFFIXES = (".yaml", ".yml")


def load_pack(root: str | Path) -> Pack:
    """Load the pack in directory ``root`` (``schemas/``, ``workflows/``, ``rules/``,
    ``templates/email/``, optional ``pack.yaml`` and ``segments/``). Never raises for bad content."""
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

    def yaml_file(path: Path, schema: dict, docs: str) -> tuple[PosMap | None, object]:
        """(the file's data if it is structurally valid, else None; what was read)."""
        text = read(path)
        rel = path.relative_to(root).as_posix()
        if text is None:
            return None, None
        try:
            data = load_yaml(text, rel)
        except YamlProblem as problem:
            diag.fail(problem.message, problem.loc, problem.hint)
            return None, None
        if data is None:  # an empty file
            data = PosMap()
            data.loc = Location(rel, 1, 1)
        return (data if metaschema.check_structure(data, schema, rel, diag, docs) else None), data

    settings, teams, roles, settings_failed = Settings(), {}, {}, False
    pack_file = root / "pack.yaml"
    if pack_file.exists():
        data, _ = yaml_file(pack_file, metaschema.PACK_FILE, "pack-settings")
        if data is not None:
            settings, teams, roles = build_settings(data, diag), build_teams(data), build_roles(data)
        settings_failed = data is None

    entities, unloaded_entities = {}, set()
    for path in _files(root / "schemas", YAML_SUFFIXES):
        data, read_data = yaml_file(path, metaschema.ENTITY_FILE, "entities")
        if data is None:
            # A file that cannot say which entity it holds is taken to hold the one named like it.
            unloaded_entities.add(_text_at(read_data, "entity") or path.stem)
            continue
        entity = build_entity(data, path.relative_to(root).as_posix(), diag)
        if entity.name in entities:
            first = entities[entity.name]
            diag.fail(f"entity {entity.name!r} is defined twice", entity.loc, f"it is also defined in {first.loc}")
            continue
        entities[entity.name] = entity

    workflows, unloaded_workflows = {}, set()
    for path in _files(root / "workflows", YAML_SUFFIXES):
        data, read_data = yaml_file(path, metaschema.WORKFLOW_FILE, "workflows")
        if data is None:
            if _text_at(read_data, "entity"):
                unloaded_workflows.add((_text_at(read_data, "entity"), _text_at(read_data, "field")))
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

    def named_files(folder: str, schema: dict, docs: str, build, what: str) -> dict:
        """One definition per YAML file of ``folder``, by name; a name defined twice is an error."""
        found = {}
        for path in _files(root / folder, YAML_SUFFIXES):
            data, _ = yaml_file(path, schema, docs)
            if data is None:
                continue
            item = build(data, path.relative_to(root).as_posix(), diag)
            if item.name in found:
                diag.fail(
                    f"{what} {item.name!r} is defined twice", item.loc, f"it is also defined in {found[item.name].loc}"
                )
                continue
            found[item.name] = item
        return found

    segments = named_files("segments", metaschema.SEGMENT_FILE, "segments", build_segment, "segment")
    sla_policies = named_files("sla", metaschema.SLA_FILE, "sla-policies", build_policy, "SLA policy")

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
        unloaded_workflows=unloaded_workflows,
        settings_failed=settings_failed,
        segments=segments,
        sla_policies=sla_policies,
    )


def _text_at(data, key: str) -> str | None:
    value = data.get(key) if isinstance(data, PosMap) else None
    return value if isinstance(value, str) else None


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
