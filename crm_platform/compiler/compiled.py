"""``compile_pack(pack) -> CompiledApp``: the whole compiler in one call.

Runs the cross-file analysis, raises every finding at once if any is an
error, then builds models, schemas, forms, state machines and the rule
index. The ``CompiledApp`` is passed to whoever needs it (the runtime, the
web layer, the CLI); nothing here is global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import peewee as pw

from ..definitions import placeholders
from ..definitions.analysis import analyze, computed_order
from ..definitions.diagnostics import Diagnostics
from ..definitions.model import EntityDef, Pack
from ..errors import Finding
from .expressions import CompiledExpression, ExpressionCompiler
from .forms import FormSpec, ListSpec, build_form, build_list, build_public_forms
from .models import build_models, check_storage_names
from .rules import RuleIndex, compile_rule
from .schemas import PayloadValidator, entity_schema
from .sla import CompiledPolicy, compile_policies
from .statemachine import StateMachine, compile_workflow


@dataclass
class CompiledEntity:
    """Everything the platform needs to store, validate and show one entity."""

    definition: EntityDef
    model: type[pw.Model]
    schema: dict
    validator: PayloadValidator
    form: FormSpec
    list: ListSpec
    public_forms: dict[str, FormSpec]
    computed: list[tuple[str, CompiledExpression]]  # in evaluation order
    workflows: dict[str, StateMachine] = field(default_factory=dict)  # by state field
    title_links: dict[str, CompiledEntity] = field(default_factory=dict)  # link fields -> their entity

    @property
    def name(self) -> str:
        return self.definition.name

    @cached_property
    def _title_parts(self):
        return placeholders.split(self.definition.title) if self.definition.title else None

    def title_of(self, record, depth: int = 0) -> str:
        """The record's display title from the entity's title template.

        A linked record in the template shows as its own title; a title that
        comes out empty falls back to "Label #id".
        """
        parts = self._title_parts
        title = ""
        if parts is not None:
            title = placeholders.fill_parts(parts, lambda name: self._title_value(record, name, depth)).strip()
        return title or f"{self.definition.label} #{getattr(record, 'id', '')}"

    def _title_value(self, record, name: str, depth: int):
        target = self.title_links.get(name)
        if target is None:
            return getattr(record, name, None)
        linked_id = getattr(record, f"{name}_id", None)
        if linked_id is None or depth >= 2:  # titles naming each other stop here
            return None if linked_id is None else f"#{linked_id}"
        linked = target.model.get_or_none(target.model.id == linked_id)
        return None if linked is None else target.title_of(linked, depth + 1)


@dataclass
class CompiledApp:
    """A company's compiled definitions."""

    pack: Pack
    entities: dict[str, CompiledEntity]
    rules: RuleIndex
    warnings: list[Finding]
    sla: dict[str, list[CompiledPolicy]] = field(default_factory=dict)  # entity -> its SLA policies

    @property
    def version(self) -> str:
        return self.pack.version

    @property
    def models(self) -> list[type[pw.Model]]:
        return [e.model for e in self.entities.values()]

    def bind(self, database: pw.Database) -> None:
        """Bind every model to the company's database."""
        database.bind(self.models, bind_refs=False, bind_backrefs=False)

    def create_tables(self) -> None:
        """Create the tables (and indexes) of every model that does not have one yet."""
        database = self.models[0]._meta.database if self.models else None
        if database is not None:
            database.create_tables(self.models, safe=True)


def compile_pack(pack: Pack) -> CompiledApp:
    """Analyse and compile a loaded pack; raise ``DefinitionError`` on any error."""
    diag = Diagnostics()
    for file, text in pack.sources.items():
        diag.add_source(file, text)
    diag.findings.extend(pack.findings)
    analyze(pack, diag)
    check_storage_names(pack, diag)
    diag.raise_if_errors()

    models = build_models(pack)
    entities = {}
    for entity in pack.entities.values():
        compiler = ExpressionCompiler(entity.name)
        computed = [
            (
                name,
                compiler.compile(
                    entity.fields[name].computed,
                    "computed",
                    f"{entity.file}:{entity.fields[name].loc.line}",
                    entity.fields[name].computed_source or "",
                ),
            )
            for name in computed_order(entity) or []
        ]
        schema = entity_schema(entity, list(pack.teams))
        entities[entity.name] = CompiledEntity(
            definition=entity,
            model=models[entity.name],
            schema=schema,
            validator=PayloadValidator(schema),
            form=build_form(entity, pack),
            list=build_list(entity, pack),
            public_forms=build_public_forms(entity, pack),
            computed=computed,
        )
    for ce in entities.values():
        ce.title_links = {
            f.name: entities[f.entity] for f in ce.definition.fields.values() if f.type == "link" and f.entity
        }
    for workflow in pack.workflows.values():
        entity = pack.entities[workflow.entity.name]
        machine = compile_workflow(workflow, {name: f.label for name, f in entity.fields.items()})
        entities[machine.entity].workflows[machine.field] = machine
    rules = RuleIndex([compile_rule(rule) for rule in pack.rules])
    warnings = sorted((f for f in diag.findings if not f.is_error), key=lambda f: f.location)
    return CompiledApp(pack, entities, rules, warnings, compile_policies(pack))
