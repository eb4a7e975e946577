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

    @property
    def name(self) -> str:
        return self.definition.name

    @cached_property
    def _title_parts(self):
        return placeholders.split(self.definition.title) if self.definition.title else None

    def title_of(self, record) -> str:
        """The record's display title from the entity's title template."""
        parts = self._title_parts
        if parts is None:
            return f"{self.definition.label} #{getattr(record, 'id', '')}"
        return placeholders.fill_parts(parts, lambda name: getattr(record, name, None)).strip()


@dataclass
class CompiledApp:
    """A company's compiled definitions."""

    pack: Pack
    entities: dict[str, CompiledEntity]
    rules: RuleIndex
    warnings: list[Finding]

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
    for workflow in pack.workflows.values():
        entity = pack.entities[workflow.entity.name]
        machine = compile_workflow(workflow, {name: f.label for name, f in entity.fields.items()})
        entities[machine.entity].workflows[machine.field] = machine
    rules = RuleIndex([compile_rule(rule) for rule in pack.rules])
    warnings = sorted((f for f in diag.findings if not f.is_error), key=lambda f: f.location)
    return CompiledApp(pack, entities, rules, warnings)
