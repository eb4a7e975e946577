"""``assign``: give a record an owner (round robin or load balanced within a
team, a named user) or put it in a queue (a team).

Only active users who are not away are chosen. The round-robin pointer is a
row per team, updated in the action's own transaction, so concurrent workers
take turns instead of giving two records to the same person.
"""

from __future__ import annotations

from ..definitions import nodes as n
from .run import ActionRun, PermanentFailure


def assign(run: ActionRun) -> str:
    node: n.Assign = run.node
    definition = run.entity.definition
    if node.strategy == "queue":
        run.engine.records.update(
            definition.name, run.record.id, {definition.team_field.name: node.queue}, run.actor, "rule",
            cause=run.cause,
        )  # fmt: skip
        return f"put in queue {node.queue}"
    field = definition.owner_field.name if len(node.target.parts) == 1 else node.target.parts[-1]
    values, how = {}, ""
    if node.strategy == "user":
        user_id = resolve_user(run, run.value("user"))
    else:
        team = team_of(run, node.team)
        user_id = round_robin(run, team) if node.strategy == "round_robin" else least_loaded(run, team, field)
        how = f" ({team}, {node.strategy.replace('_', ' ')})"
        if definition.team_field is not None and len(node.target.parts) == 1:
            values[definition.team_field.name] = team
    values[field] = user_id
    run.engine.records.update(definition.name, run.record.id, values, run.actor, "rule", cause=run.cause)
    return f"assigned {field} to {run.user_name(user_id)}{how}"


def team_of(run: ActionRun, ref: n.TeamRef) -> str:
    """The team named, or the one the mapping picks for the record's field value."""
    if ref.name is not None:
        return ref.name
    value = run.value("team_by")
    for key, team, _ in ref.mapping:
        if key == value:
            return team
    if ref.otherwise is None:
        raise PermanentFailure(f"no team is mapped to {ref.by.dotted} = {value!r} and there is no 'else'")
    return ref.otherwise


def resolve_user(run: ActionRun, value) -> int:
    """A user id from an id or an email address; the user must be active."""
    directory = run.engine.directory
    info = directory.find(value) if isinstance(value, str) else directory.get(value) if value else None
    if info is None or not info.active:
        raise PermanentFailure(f"there is no active user {value!r}")
    return info.id


def available_members(run: ActionRun, team: str) -> list[int]:
    members = run.engine.directory.team_members(team)
    if not members:
        raise PermanentFailure(f"team {team!r} has no member who is active and not away")
    return members


def round_robin(run: ActionRun, team: str) -> int:
    """The next available member after the one who got the team's last record."""
    RoundRobin = run.engine.tables.RoundRobin
    RoundRobin.insert(team=team).on_conflict_ignore().execute()
    # Write first: the row is then locked (on SQLite the database) until this
    # transaction ends, so a concurrent worker waits and then sees the new pointer.
    RoundRobin.update(turns=RoundRobin.turns + 1).where(RoundRobin.team == team).execute()
    last = RoundRobin.get_by_id(team).last_user_id
    members = available_members(run, team)
    chosen = next((m for m in members if last is None or m > last), members[0])
    RoundRobin.update(last_user_id=chosen).where(RoundRobin.team == team).execute()
    return chosen


def least_loaded(run: ActionRun, team: str, field: str) -> int:
    """The available member with the fewest open records of this entity (ties: the lowest id)."""
    members = available_members(run, team)
    return min(members, key=lambda m: (open_records(run, field, m), m))


def open_records(run: ActionRun, field: str, user_id: int) -> int:
    """Records of the entity held by ``user_id`` that are not in a final stage."""
    model = run.entity.model
    query = model.select().where(getattr(model, field) == user_id)
    for state_field, machine in run.entity.workflows.items():
        final = [s.name for s in machine.states.values() if s.final]
        if final:
            query = query.where(getattr(model, state_field).not_in(final))
    return query.count()
