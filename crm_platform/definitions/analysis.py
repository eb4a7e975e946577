"""Cross-file static analysis of a loaded pack.

``analyze(pack, diag)`` checks everything that spans files: links, reverse
lists, workflow state fields, roles, teams, templates, and every expression
and action of every rule. It also attaches each workflow's state field to its
entity (a workflow owns that field), so later stages see the complete
entity. Rule cycles are checked in ``cycles``.
"""

from __future__ import annotations

import re

from ..errors import Location
from . import nodes as n
from .cycles import check_cycles
from .diagnostics import Diagnostics, did_you_mean, see_docs
from .entities import pluralize
from .model import EntityDef, FieldDef, Pack, Ref, WorkflowDef
from .placeholders import PLACEHOLDER
from .segments import check_segments
from .sla import check_policies
from .typecheck import TypeChecker, article, field_candidates, field_type, literal_type, lookup_field

DATE_KINDS = ("date", "datetime")


def analyze(pack: Pack, diag: Diagnostics) -> None:
    """Run every cross-file check, reporting into ``diag``."""
    attach_workflows(pack, diag)
    for entity in pack.entities.values():
        _check_entity(pack, entity, diag)
    for workflow in pack.workflows.values():
        _check_workflow(pack, workflow, diag)
    _check_roles(pack, diag)
    _check_rules(pack, diag)
    check_segments(pack, diag)
    check_policies(pack, diag)
    _check_inbound_email(pack, diag)
    check_cycles(pack, diag)


def find_entity(pack: Pack, name: str, loc: Location, diag: Diagnostics, context: str = "") -> EntityDef | None:
    """The entity called ``name``, reporting it if unknown (unless its own file
    failed to load, which is reported already)."""
    entity = pack.entities.get(name)
    if entity is None and name not in pack.unloaded_entities:
        hint = did_you_mean(name, pack.entities) or f"entities: {', '.join(sorted(pack.entities))}"
        diag.fail(f"unknown entity {name!r}{context}", loc, hint)
    return entity


def _check_inbound_email(pack: Pack, diag: Diagnostics) -> None:
    """``inbound_email:`` names an entity and fields of it, each set at most once."""
    spec = pack.settings.inbound_email
    if spec is None:
        return
    entity = find_entity(pack, spec.entity.name, spec.entity.loc, diag, " in inbound_email")
    if entity is None:
        return
    for name in [*spec.fields, *spec.values]:
        if name not in entity.fields:
            hint = did_you_mean(name, entity.fields) or f"fields: {', '.join(entity.fields)}"
            diag.fail(f"{entity.label} has no field {name!r}", spec.locs[name], hint)
    for name in sorted(set(spec.fields) & set(spec.values)):
        diag.fail(f"field {name!r} is set twice (in fields and in values)", spec.locs[name], "keep one of them")


def attach_workflows(pack: Pack, diag: Diagnostics) -> None:
    """Give each workflow's entity its state field (options: the states)."""
    driven: dict[tuple[str, str], WorkflowDef] = {}
    for workflow in pack.workflows.values():
        entity = find_entity(pack, workflow.entity.name, workflow.entity.loc, diag)
        if entity is None:
            continue
        key = (entity.name, workflow.field.name)
        if key in driven:
            diag.fail(
                f"{entity.name}.{workflow.field.name} is already driven by workflow {driven[key].name!r}",
                workflow.field.loc,
                "one workflow per state field",
            )
            continue
        driven[key] = workflow
        declared = entity.fields.get(workflow.field.name)
        if declared is not None and declared.type != "state":
            diag.fail(
                f"field {workflow.field.name!r} of {entity.name} is driven by workflow "
                f"{workflow.name!r}, so it must have type: state",
                declared.at("type"),
                "declare it as {type: state} (label and help allowed) or leave it out",
            )
            continue
        initial = workflow.initial
        field = declared or FieldDef(
            name=workflow.field.name,
            type="state",
            loc=workflow.field.loc,
            label=workflow.field.name.replace("_", " ").capitalize(),
        )
        field.options = {s.name: s.label for s in workflow.states.values()}
        # Without an initial state the workflow is reported; requiring the field
        # too would only add findings (e.g. on forms) that go away with that fix.
        field.required = initial is not None
        field.indexed = field.read_only = True
        field.has_default, field.default = initial is not None, initial.name if initial else None
        entity.fields[field.name] = field
    _stand_in_state_fields(pack)
    for entity in pack.entities.values():
        for field in entity.fields.values():
            if field.type == "state" and (entity.name, field.name) not in driven:
                if pack.workflow_failed_for(entity.name):
                    continue  # its workflow file has errors of its own
                diag.fail(
                    f"field {field.name!r} has type state but no workflow drives it",
                    field.at("type"),
                    f"add a workflow with entity: {entity.name} and field: {field.name}",
                )


def _stand_in_state_fields(pack: Pack) -> None:
    """A workflow file that failed to load still names its state field: give the
    entity a stand-in (any value) so uses of it are not reported as unknown."""
    for entity_name, field_name in pack.unloaded_workflows:
        entity = pack.entities.get(entity_name)
        if entity is not None and field_name and field_name not in entity.fields:
            entity.fields[field_name] = FieldDef(name=field_name, type="state", loc=entity.loc, label=field_name)


def workflow_of(pack: Pack, entity: str) -> list[WorkflowDef]:
    """The workflows whose records are of ``entity``."""
    return [w for w in pack.workflows.values() if w.entity.name == entity]


# --- entities ------------------------------------------------------------


def _check_entity(pack: Pack, entity: EntityDef, diag: Diagnostics) -> None:
    for field in entity.fields.values():
        if field.type == "link" and field.entity:
            _check_link(pack, entity, field, diag)
        if field.type == "money" and f"{field.name}_currency" in entity.fields:
            diag.fail(
                f"field {field.name}_currency clashes with the currency of money field {field.name!r}",
                entity.fields[f"{field.name}_currency"].loc,
                "a money field keeps its currency there; rename",
            )
        if field.type == "team" and field.has_default and field.default not in pack.teams and not pack.settings_failed:
            diag.fail(f"unknown team {field.default!r}", field.at("default"), did_you_mean(field.default, pack.teams))
    for ref in entity.search + entity.list_columns:
        _field_ref(entity, ref, diag)
    for section in entity.sections:
        for ref in section.fields:
            _field_ref(entity, ref, diag)
    for form in entity.forms.values():
        _check_form(entity, form, diag)
    if entity.title:
        _check_placeholders(entity, entity.title, entity.title_loc or entity.at("title"), diag)
    _check_role_field(entity, entity.owner_field, "user", "owner", diag)
    _check_role_field(entity, entity.team_field, "team", "team", diag)
    _check_role_field(entity, entity.done_field, "boolean", "done", diag)
    for ref in entity.calendar:
        field = _field_ref(entity, ref, diag)
        if field is not None and field.type not in ("date", "datetime"):
            diag.fail(f"calendar fields must be date or datetime fields; {ref.name!r} is a {field.type}", ref.loc)
    _check_computed(pack, entity, diag)


def reverse_name(entity: EntityDef, field: FieldDef) -> str:
    """The name of a link's reverse list on its target (default: the plural)."""
    return field.reverse or pluralize(entity.name)


def _check_link(pack: Pack, entity: EntityDef, field: FieldDef, diag: Diagnostics) -> None:
    """The target exists, and the reverse list's name is free on it."""
    target = find_entity(pack, field.entity, field.at("entity"), diag, f" in link {entity.name}.{field.name}")
    if target is None:
        return
    name = reverse_name(entity, field)
    if name in target.fields:
        diag.fail(
            f"reverse list {name!r} clashes with field {target.name}.{name}",
            field.at("reverse"),
            f"set reverse: to another name for {entity.name}.{field.name}",
        )
    elif name in _all_reverse(pack, target.name, exclude=(entity.name, field.name)):
        diag.fail(
            f"two links into {target.name} would both create the reverse list {name!r}",
            field.at("reverse"),
            f"set a distinct reverse: on {entity.name}.{field.name}",
        )


def _all_reverse(pack: Pack, target: str, exclude) -> set[str]:
    names = set()
    for entity in pack.entities.values():
        for field in entity.fields.values():
            if field.type == "link" and field.entity == target and (entity.name, field.name) != exclude:
                names.add(reverse_name(entity, field))
    return names


def _field_ref(entity: EntityDef, ref: Ref, diag: Diagnostics) -> FieldDef | None:
    field = lookup_field(entity, ref.name)
    if field is None:
        diag.fail(
            f"unknown field {ref.name!r} on {entity.name}", ref.loc, did_you_mean(ref.name, field_candidates(entity))
        )
    return field


def _check_form(entity: EntityDef, form, diag: Diagnostics) -> None:
    listed = set()
    for ref in form.fields:
        field = _field_ref(entity, ref, diag)
        if field is not None and field.is_computed:
            diag.fail(
                f"form {form.name!r} lists computed field {ref.name!r}", ref.loc, "computed fields cannot be filled in"
            )
        listed.add(ref.name)
    for field in entity.fields.values():
        if field.required and not field.has_default and not field.is_computed and field.name not in listed:
            diag.fail(
                f"form {form.name!r} leaves out required field {field.name!r}",
                form.loc,
                "add it to the form's fields, or give the field a default",
            )


def _check_placeholders(entity: EntityDef, text: str, start: Location, diag: Diagnostics) -> None:
    """Report ``{name}`` placeholders that are not fields; ``start`` is where ``text`` begins."""
    for match in PLACEHOLDER.finditer(text):
        name = match.group(1).strip()
        if lookup_field(entity, name) is None:
            loc = Location(start.file, start.line, start.column + match.start())
            hint = did_you_mean(name, field_candidates(entity))
            diag.fail(f"unknown field {name!r} in {{...}} on {entity.name}", loc, hint)


def _check_role_field(entity: EntityDef, ref: Ref | None, kind: str, what: str, diag: Diagnostics) -> None:
    if ref is None:
        return
    field = _field_ref(entity, ref, diag)
    if field is not None and field.type != kind:
        diag.fail(f"the {what} field must be a {kind} field; {ref.name!r} is a {field.type}", ref.loc)


def _check_computed(pack: Pack, entity: EntityDef, diag: Diagnostics) -> None:
    checker = TypeChecker(pack.entities, entity, diag, pack.teams)
    computed = {f.name: f for f in entity.fields.values() if f.is_computed}
    for field in computed.values():
        checker.check_assignable(field, entity.name, field.computed)
        for node in n.walk(field.computed):
            if isinstance(node, n.Name) and len(node.parts) > (1 + (node.parts[0] == entity.name)):
                diag.fail(
                    "a computed field may only use fields of its own record",
                    node.loc,
                    "links may change without this record changing; use a rule to copy the value",
                )
    # A computed field may use another, but not in a circle.
    order = computed_order(entity)
    if order is None:
        first = next(iter(computed.values()))
        diag.fail(
            f"computed fields of {entity.name} depend on each other in a circle",
            first.at("computed"),
            "break the circle: " + ", ".join(computed),
        )


def computed_order(entity: EntityDef) -> list[str] | None:
    """Computed fields in evaluation order, or None if they form a cycle."""
    deps = {}
    for field in entity.fields.values():
        if field.is_computed:
            read = {node.parts[-1] for node in n.walk(field.computed) if isinstance(node, n.Name)}
            deps[field.name] = {d for d in read if d in entity.fields and entity.fields[d].is_computed}
    order, done, visiting = [], set(), set()

    def visit(name: str) -> bool:
        if name in done:
            return True
        if name in visiting:
            return False
        visiting.add(name)
        if not all(visit(d) for d in deps[name]):
            return False
        visiting.discard(name)
        done.add(name)
        order.append(name)
        return True

    return order if all(visit(name) for name in deps) else None


# --- workflows -----------------------------------------------------------


def _check_workflow(pack: Pack, workflow: WorkflowDef, diag: Diagnostics) -> None:
    entity = pack.entities.get(workflow.entity.name)
    if entity is None:
        return  # reported by attach_workflows
    for state in workflow.states.values():
        for ref in state.require:
            _field_ref(entity, ref, diag)
    if workflow.probability_field:
        field = _field_ref(entity, workflow.probability_field, diag)
        if field is not None and field.type not in ("percent", "integer", "decimal"):
            diag.fail(
                f"probability_field must be a percent field; {field.name!r} is a {field.type}",
                workflow.probability_field.loc,
            )
    checker = TypeChecker(pack.entities, entity, diag, pack.teams)
    for transition in workflow.transitions:
        for role in transition.roles:
            _role_ref(pack, role, diag)
        if transition.guard is not None:
            checker.check_condition(transition.guard, "a guard")


def _role_ref(pack: Pack, ref: Ref, diag: Diagnostics) -> None:
    if ref.name not in pack.roles and not pack.settings_failed:
        diag.fail(
            f"unknown role {ref.name!r}", ref.loc, did_you_mean(ref.name, pack.roles) or "declare roles in pack.yaml"
        )


def _check_roles(pack: Pack, diag: Diagnostics) -> None:
    for role in pack.roles.values():
        for entity_name, loc in role.permission_locs.items():
            if entity_name != "*":
                find_entity(pack, entity_name, loc, diag, f" in role {role.name!r}")
        for entity_name, refs in role.read_only_fields.items():
            loc = refs[0].loc if refs else role.loc
            entity = find_entity(pack, entity_name, loc, diag, f" in role {role.name!r}")
            if entity is None:
                continue
            for ref in refs:
                _field_ref(entity, ref, diag)


# --- rules ---------------------------------------------------------------


def _check_rules(pack: Pack, diag: Diagnostics) -> None:
    seen: dict[str, Location] = {}
    for rule in pack.rules:
        if rule.name in seen:
            diag.fail(f"duplicate rule name {rule.name!r}", rule.loc, f"it is also used at {seen[rule.name]}")
        seen.setdefault(rule.name, rule.loc)
        entity = find_entity(pack, rule.trigger.entity, rule.trigger.loc, diag)
        if entity is None:
            continue
        _RuleChecker(pack, entity, diag).check(rule)


class _RuleChecker:
    """Checks one rule: its trigger, condition and actions."""

    def __init__(self, pack: Pack, entity: EntityDef, diag: Diagnostics):
        self.pack, self.entity, self.diag = pack, entity, diag
        self.types = TypeChecker(pack.entities, entity, diag, pack.teams)

    def check(self, rule: n.Rule) -> None:
        self._trigger(rule.trigger)
        if rule.condition is not None:
            self.types.check_condition(rule.condition)
        for action in rule.actions:
            self._action(action)

    # --- trigger --------------------------------------------------------

    def _trigger(self, trigger: n.Trigger) -> None:
        entity = self.entity
        if trigger.kind == "changed":
            field = _field_ref(entity, Ref(trigger.field, trigger.field_loc), self.diag)
            if field is not None:
                for literal in (trigger.change_from, trigger.change_to):
                    if literal is not None:
                        self._literal_fits(field, literal)
        elif trigger.kind in ("enters", "leaves"):
            self._state(trigger.state, trigger.field_loc)
        elif trigger.kind == "every":
            if trigger.every.unit not in ("minutes", "hours"):
                self.diag.fail(
                    f"'every' counts minutes or hours, not {trigger.every.unit}",
                    trigger.every.loc,
                    "use e.g. every 24 hours, or a date trigger such as 0 days after renewal_date",
                )
            elif trigger.every.amount < 1:
                self.diag.fail("'every' needs at least 1", trigger.every.loc)
        elif trigger.kind == "date":
            field = _field_ref(entity, Ref(trigger.field, trigger.field_loc), self.diag)
            if field is not None and field.type not in DATE_KINDS:
                self.diag.fail(
                    f"{entity.name}.{field.name} is {article(field.type)} field, not a date",
                    trigger.field_loc,
                    "date triggers count days from a date or datetime field",
                )
        elif trigger.kind == "form" and trigger.form not in entity.forms:
            self.diag.fail(
                f"unknown form {trigger.form!r} of {entity.name}",
                trigger.field_loc,
                did_you_mean(trigger.form, entity.forms) or "declare it under forms: in the entity",
            )

    def _state(self, state: str, loc: Location) -> None:
        """Report ``state`` unless it is a stage of one of the entity's workflows."""
        entity = self.entity.name
        states = {s for w in workflow_of(self.pack, entity) for s in w.states}
        if self.pack.workflow_failed_for(entity):
            return  # the workflow file's own errors are reported
        if not states:
            self.diag.fail(f"{entity} has no workflow, so it has no stages", loc, see_docs("workflows"))
        elif state not in states:
            hint = did_you_mean(state, states) or f"states: {', '.join(sorted(states))}"
            self.diag.fail(f"unknown state {state!r} of {entity}", loc, hint)

    def _literal_fits(self, field: FieldDef, literal: n.Literal) -> None:
        expected = field_type(field, self.entity.name, self.pack.teams)
        got = literal_type(literal.value)
        if expected.kind != got:
            self.diag.fail(f"{expected.words()} cannot be {literal.value!r}", literal.loc)
        elif expected.options is not None and literal.value not in expected.options:
            self.diag.fail(
                f"{literal.value!r} is not an option of {expected.words()}",
                literal.loc,
                did_you_mean(literal.value, expected.options) or f"options: {', '.join(sorted(expected.options))}",
            )

    # --- actions --------------------------------------------------------

    def _action(self, action: n.Action) -> None:
        getattr(self, "_" + type(action).__name__)(action)

    def _record(self, name: n.Name, what: str) -> bool:
        """Actions like assign/escalate/move act on the rule's own record."""
        if name.parts != (self.entity.name,):
            self.diag.fail(f"{what} acts on the rule's {self.entity.name}; write {what} {self.entity.name}", name.loc)
            return False
        return True

    def _Assign(self, action: n.Assign) -> None:
        field_ref = self.entity.team_field if action.strategy == "queue" else self.entity.owner_field
        if action.target.parts == (self.entity.name,):
            if field_ref is None:
                missing = "team field" if action.strategy == "queue" else "owner (user) field"
                self.diag.fail(
                    f"{self.entity.name} has no {missing} to assign",
                    action.target.loc,
                    "add e.g. owner: {type: user} (or team: {type: team}) to its fields",
                )
        else:
            target, field = self.types.resolve(action.target)
            if target.kind not in ("user", "any") or len(action.target.parts) > 2:
                self.diag.fail(
                    f"assign needs the rule's {self.entity.name} or one of its user fields",
                    action.target.loc,
                    f"write assign {self.entity.name} ...",
                )
        if action.team is not None:
            self._team_ref(action.team)
        if action.queue is not None:
            self._team(action.queue, action.queue_loc or action.loc)
        if action.user is not None:
            self._user(action.user)

    def _team_ref(self, team: n.TeamRef) -> None:
        if team.name is not None:
            self._team(team.name, team.loc)
            return
        by = self.types.check(team.by)
        for key, name, loc in team.mapping:
            self._team(name, loc)
            if by.options is not None and key not in by.options:
                self.diag.fail(f"{key!r} is not an option of {by.words()}", loc, did_you_mean(key, by.options))
        if team.otherwise is not None:
            self._team(team.otherwise, team.otherwise_loc)

    def _team(self, name: str, loc: Location) -> None:
        if name not in self.pack.teams and not self.pack.settings_failed:
            self.diag.fail(
                f"unknown team {name!r}", loc, did_you_mean(name, self.pack.teams) or "declare teams in pack.yaml"
            )

    def _user(self, expr: n.Expr) -> None:
        if isinstance(expr, n.Literal):
            if "@" not in str(expr.value):
                self.diag.fail(f"expected a user's email address, got {expr.value!r}", expr.loc)
            return
        kind = self.types.check(expr)
        if kind.kind not in ("user", "any"):
            self.diag.fail(f"expected a user, got {kind.words()}", expr.loc)

    def _SetField(self, action: n.SetField) -> None:
        parts = action.target.parts
        parts = parts[1:] if parts[0] == self.entity.name else parts
        if len(parts) != 1:
            self.diag.fail(
                f"set changes a field of the rule's {self.entity.name}",
                action.target.loc,
                "to change a linked record, write a rule on that entity",
            )
            return
        field = _field_ref(self.entity, Ref(parts[0], action.target.loc), self.diag)
        if field is None:
            return
        if field.is_computed or field.name in ("id", "created_at", "updated_at", "version"):
            self.diag.fail(f"{self.entity.name}.{field.name} is computed and cannot be set", action.target.loc)
        elif field.type == "state":
            self.diag.fail(
                f"{self.entity.name}.{field.name} is a stage; use move {self.entity.name} to STATE",
                action.target.loc,
                "stage changes go through the workflow's guards",
            )
        else:
            self.types.check_assignable(field, self.entity.name, action.value)

    def _Create(self, action: n.Create) -> None:
        target = find_entity(self.pack, action.entity, action.loc, self.diag)
        if target is None:
            return
        given = set()
        for name, expr, loc in action.values:
            if name in given:
                self.diag.fail(f"{name!r} is given twice", loc)
            given.add(name)
            field = _field_ref(target, Ref(name, loc), self.diag)
            if field is None:
                continue
            if field.is_computed or field.type == "state":
                why = "computed" if field.is_computed else "a stage (it starts in the initial state)"
                self.diag.fail(f"{target.name}.{name} cannot be given; it is {why}", loc)
                continue
            self.types.check_assignable(field, target.name, expr)
        missing = [
            f.name
            for f in target.fields.values()
            if f.required and not f.has_default and not f.is_computed and f.name not in given
        ]
        if missing:
            self.diag.fail(
                f"create {target.name} leaves out required field(s): {', '.join(missing)}",
                action.loc,
                "give a value for each, e.g. " + ", ".join(f"{m} = ..." for m in missing),
            )

    def _SendEmail(self, action: n.SendEmail) -> None:
        if action.template not in self.pack.templates:
            self.diag.fail(
                f"unknown email template {action.template!r}",
                action.loc,
                did_you_mean(action.template, self.pack.templates) or f"add templates/email/{action.template}.txt",
            )
        kind = self.types.check(action.to)
        if kind.kind not in ("string", "any"):
            self.diag.fail(f"send_email needs an email address, got {kind.words()}", action.to.loc)

    def _FollowUp(self, action: n.FollowUp) -> None:
        if action.unless is not None:
            self.types.check_condition(action.unless, "'unless'")
        for nested in action.actions:
            self._action(nested)

    def _recipient(self, recipient: n.Recipient) -> None:
        if recipient.kind == "role":
            _role_ref(self.pack, Ref(recipient.name, recipient.loc), self.diag)
        elif recipient.kind == "team":
            self._team(recipient.name, recipient.loc)
        elif recipient.kind == "user":
            self._user(n.Literal(recipient.loc, recipient.name))
        else:
            self._user(recipient.path)

    def _Escalate(self, action: n.Escalate) -> None:
        self._record(action.target, "escalate")
        self._recipient(action.to)

    def _Notify(self, action: n.Notify) -> None:
        self._recipient(action.to)
        _check_placeholders(self.entity, action.message, action.message_loc or action.loc, self.diag)

    def _Webhook(self, action: n.Webhook) -> None:
        if not re.match(r"^https?://[^\s/]+", action.url):
            self.diag.fail(
                f"webhook needs an http(s) URL, got {action.url!r}",
                action.loc,
                'write e.g. webhook "https://example.com/hooks/crm"',
            )

    def _Move(self, action: n.Move) -> None:
        if not self._record(action.target, "move"):
            return
        self._state(action.state, action.state_loc)

    def _AddToCampaign(self, action: n.AddToCampaign) -> None:
        if not self._record(action.target, "add"):
            return
        member = self.pack.entities.get("campaign_member")
        links = {f.entity for f in member.fields.values() if f.type == "link"} if member else set()
        if "campaign" not in links or self.entity.name not in links:
            self.diag.fail(
                f"add to campaign needs a campaign_member entity with links to campaign and {self.entity.name}",
                action.loc,
                see_docs("action-add-to-campaign"),
            )
