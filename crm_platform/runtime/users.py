"""Users, their teams and roles, and who is acting on a change.

Teams and roles are named in the pack (``pack.yaml``); who belongs to them
is data, kept in the platform's tables. Passwords are stored as salted
hashes (werkzeug's, which Flask already depends on).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import ValidationError
from .tables import SystemTables

# The channels people change records through; rules and workers act as the system.
HUMAN_CHANNELS = ("form", "api", "import")


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a user with roles and teams, or the platform itself."""

    user_id: int | None
    roles: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    superuser: bool = False
    name: str = "system"

    @classmethod
    def system(cls) -> Actor:
        """The platform acting on behalf of a rule or a worker: not bound by roles."""
        return cls(user_id=None, superuser=True)


@dataclass
class UserInfo:
    id: int
    email: str
    name: str
    active: bool
    away: bool
    superuser: bool
    roles: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)

    def as_actor(self) -> Actor:
        """This user as the actor of a change."""
        return Actor(self.id, frozenset(self.roles), frozenset(self.teams), self.superuser, self.name)


class Directory:
    """Reads and changes users, memberships and roles."""

    def __init__(self, tables: SystemTables, clock, known_teams, known_roles):
        self.tables = tables
        self.clock = clock
        self.known_teams = set(known_teams)
        self.known_roles = set(known_roles)

    def create_user(
        self,
        email: str,
        name: str,
        password: str,
        *,
        roles=(),
        teams=(),
        superuser: bool = False,
        away: bool = False,
        active: bool = True,
    ) -> int:
        """Add a user; raise ``ValidationError`` naming the field that is wrong."""
        errors: dict[str, list[str]] = {}
        email = email.strip().lower()
        if "@" not in email:
            errors["email"] = ["is not a valid email address"]
        elif self.tables.User.select().where(self.tables.User.email == email).exists():
            errors["email"] = ["is already used by another user"]
        if len(password) < 4:
            errors["password"] = ["must have at least 4 characters"]
        unknown_roles = sorted(set(roles) - self.known_roles)
        if unknown_roles:
            errors["roles"] = [f"unknown role {r!r}" for r in unknown_roles]
        unknown_teams = sorted(set(teams) - self.known_teams)
        if unknown_teams:
            errors["teams"] = [f"unknown team {t!r}" for t in unknown_teams]
        if errors:
            raise ValidationError(errors)
        with self.tables.database.atomic():
            user_id = self.tables.User.insert(
                email=email,
                name=name,
                password_hash=generate_password_hash(password),
                active=active,
                away=away,
                superuser=superuser,
                created_at=self.clock.utcnow(),
            ).execute()
            for role in roles:
                self.tables.UserRole.insert(role=role, user=user_id).execute()
            for team in teams:
                self.tables.TeamMember.insert(team=team, user=user_id).execute()
        return user_id

    def update_user(
        self,
        user_id: int,
        *,
        name: str | None = None,
        password: str | None = None,
        roles=None,
        teams=None,
        superuser: bool | None = None,
        away: bool | None = None,
        active: bool | None = None,
    ) -> None:
        """Change a user; every argument left as None keeps its value.

        ``roles`` and ``teams`` replace the user's roles and memberships (a team
        the user stays in keeps its lead flag); ``password`` is stored hashed.
        Raises ``LookupError`` if there is no such user and ``ValidationError``
        naming each wrong field (nothing is changed then).
        """
        if not self.exists(user_id):
            raise LookupError(f"no user {user_id}")
        errors = self.membership_errors(roles or (), teams or ())
        if name is not None and not name.strip():
            errors["name"] = ["must not be empty"]
        if password is not None and len(password) < 4:
            errors["password"] = ["must have at least 4 characters"]
        if errors:
            raise ValidationError(errors)
        changes = {"superuser": superuser, "away": away, "active": active}
        changes = {key: value for key, value in changes.items() if value is not None}
        if name is not None:
            changes["name"] = name.strip()
        if password is not None:
            changes["password_hash"] = generate_password_hash(password)
        User, UserRole, TeamMember = self.tables.User, self.tables.UserRole, self.tables.TeamMember
        with self.tables.database.atomic():
            if changes:
                User.update(changes).where(User.id == user_id).execute()
            if roles is not None:
                UserRole.delete().where((UserRole.user == user_id) & UserRole.role.not_in(list(roles))).execute()
                kept = {link.role for link in UserRole.select(UserRole.role).where(UserRole.user == user_id)}
                for role in sorted(set(roles) - kept):
                    UserRole.insert(role=role, user=user_id).execute()
            if teams is not None:
                TeamMember.delete().where((TeamMember.user == user_id) & TeamMember.team.not_in(list(teams))).execute()
                kept = {link.team for link in TeamMember.select(TeamMember.team).where(TeamMember.user == user_id)}
                for team in sorted(set(teams) - kept):
                    TeamMember.insert(team=team, user=user_id).execute()

    def membership_errors(self, roles, teams) -> dict[str, list[str]]:
        """The roles and teams the pack does not define, as field errors (empty if all are known)."""
        errors: dict[str, list[str]] = {}
        unknown_roles = sorted(set(roles) - self.known_roles)
        if unknown_roles:
            errors["roles"] = [f"unknown role {r!r}" for r in unknown_roles]
        unknown_teams = sorted(set(teams) - self.known_teams)
        if unknown_teams:
            errors["teams"] = [f"unknown team {t!r}" for t in unknown_teams]
        return errors

    def set_flags(self, user_id: int, *, away: bool | None = None, active: bool | None = None) -> None:
        """Mark a user away (no new assignments) or inactive (no sign-in, no assignments)."""
        changes = {}
        if away is not None:
            changes["away"] = away
        if active is not None:
            changes["active"] = active
        if changes:
            User = self.tables.User
            User.update(changes).where(User.id == user_id).execute()

    def make_lead(self, user_id: int, team: str) -> None:
        """Make a member the lead of a team (escalations go to team leads)."""
        TeamMember = self.tables.TeamMember
        TeamMember.update(lead=True).where((TeamMember.user == user_id) & (TeamMember.team == team)).execute()

    def team_lead(self, team: str) -> int | None:
        """The id of the team's lead (the first by id if several), if active; else None.

        A lead who is away still counts: an escalation goes to them anyway."""
        User, TeamMember = self.tables.User, self.tables.TeamMember
        query = (
            User.select(User.id)
            .join(TeamMember)
            .where((TeamMember.team == team) & (TeamMember.lead == True) & (User.active == True))  # noqa: E712
            .order_by(User.id)
        )
        lead = query.first()
        return lead.id if lead else None

    def check_password(self, email: str, password: str) -> int | None:
        """The id of the active user with this email and password, else None."""
        User = self.tables.User
        user = User.get_or_none((User.email == email.strip().lower()) & (User.active == True))  # noqa: E712
        if user is None or not check_password_hash(user.password_hash, password):
            return None
        return user.id

    def get(self, user_id: int) -> UserInfo | None:
        User = self.tables.User
        user = User.get_or_none(User.id == user_id)
        if user is None:
            return None
        return UserInfo(
            user.id,
            user.email,
            user.name,
            user.active,
            user.away,
            user.superuser,
            sorted(link.role for link in user.role_links),
            sorted(link.team for link in user.memberships),
        )

    def find(self, email: str) -> UserInfo | None:
        User = self.tables.User
        user = User.get_or_none(User.email == email.strip().lower())
        return None if user is None else self.get(user.id)

    def actor(self, user_id: int) -> Actor:
        """The actor for a signed-in (or token-holding) user."""
        info = self.get(user_id)
        if info is None or not info.active:
            raise LookupError(f"no active user {user_id}")
        return info.as_actor()

    def exists(self, user_id: int) -> bool:
        return self.tables.User.select().where(self.tables.User.id == user_id).exists()

    def team_members(self, team: str, *, available_only: bool = True) -> list[int]:
        """User ids of a team's members in a stable order; by default only active ones not away."""
        User, TeamMember = self.tables.User, self.tables.TeamMember
        query = User.select(User.id).join(TeamMember).where(TeamMember.team == team)
        if available_only:
            query = query.where((User.active == True) & (User.away == False))  # noqa: E712
        return [u.id for u in query.order_by(User.id)]

    def users_with_role(self, role: str, *, available_only: bool = True) -> list[int]:
        User, UserRole = self.tables.User, self.tables.UserRole
        query = User.select(User.id).join(UserRole).where(UserRole.role == role)
        if available_only:
            query = query.where((User.active == True) & (User.away == False))  # noqa: E712
        return [u.id for u in query.order_by(User.id)]

    def count(self) -> int:
        return self.tables.User.select().count()
