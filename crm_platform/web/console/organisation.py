"""Teams and roles: defined in ``pack.yaml``, so shown here, changed there."""

from __future__ import annotations

from dataclasses import dataclass

from flask_admin import expose

from ...runtime.permissions import OPERATIONS
from ..state import crm
from .pages import ConsolePage


@dataclass
class Member:
    id: int
    name: str
    email: str
    lead: bool
    active: bool
    away: bool


@dataclass
class Grant:
    """What one role may do to one entity."""

    entity: str
    label: str
    operations: dict[str, bool]  # operation -> allowed
    read_only_fields: list[str]


class TeamsView(ConsolePage):
    @expose("/")
    def index(self):
        pack = crm().compiled.pack
        tables = crm().tables
        User, TeamMember = tables.User, tables.TeamMember
        members: dict[str, list[Member]] = {name: [] for name in pack.teams}
        query = (
            TeamMember.select(TeamMember, User)
            .join(User)
            .where(TeamMember.team.in_(list(pack.teams)))
            .order_by(TeamMember.lead.desc(), User.name)
        )
        for link in query:
            user = link.user
            members[link.team].append(Member(user.id, user.name, user.email, link.lead, user.active, user.away))
        return self.render("admin/console/teams.html", teams=pack.teams, members=members)


class RolesView(ConsolePage):
    @expose("/")
    def index(self):
        pack = crm().compiled.pack
        tables = crm().tables
        User, UserRole = tables.User, tables.UserRole
        holders: dict[str, list[str]] = {name: [] for name in pack.roles}
        query = UserRole.select(UserRole.role, User.name).join(User).order_by(User.name)
        for link in query.where(UserRole.role.in_(list(pack.roles))):
            holders[link.role].append(link.user.name)
        grants = {name: role_grants(role, pack.entities) for name, role in pack.roles.items()}
        return self.render(
            "admin/console/roles.html", roles=pack.roles, grants=grants, holders=holders, operations=OPERATIONS
        )


def role_grants(role, entities) -> list[Grant]:
    """One row per entity of the pack: the operations ``role`` allows (``"*"`` counts for all)."""
    everywhere = role.permissions.get("*", set())
    rows = []
    for name, entity in entities.items():
        allowed = role.permissions.get(name, set()) | everywhere
        read_only = [ref.name for ref in role.read_only_fields.get(name, [])]
        rows.append(Grant(name, entity.plural, {op: op in allowed for op in OPERATIONS}, read_only))
    return rows
