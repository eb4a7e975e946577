"""Building company settings, teams and roles from ``pack.yaml``."""

from __future__ import annotations

import zoneinfo

from .diagnostics import Diagnostics
from .entities import humanize
from .model import InboundEmailDef, Ref, RoleDef, Settings, TeamDef
from .source import PosMap


def build_settings(data: PosMap, diag: Diagnostics) -> Settings:
    """Company-wide settings; an unknown time zone is an error."""
    settings = Settings(
        name=data.get("name", Settings.name),
        currency=data.get("currency", Settings.currency),
        locale=data.get("locale", Settings.locale),
        timezone=data.get("timezone", Settings.timezone),
        inbound_email=build_inbound_email(data.get("inbound_email")),
    )
    try:
        zoneinfo.ZoneInfo(settings.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        diag.fail(
            f"unknown time zone {settings.timezone!r}",
            data.value_loc("timezone"),
            "use an IANA name such as Europe/Berlin or America/New_York",
        )
    return settings


def build_inbound_email(data: PosMap | None) -> InboundEmailDef | None:
    """What to create from an email no record matches (checked against the entity by ``check_inbound_email``)."""
    if not isinstance(data, PosMap):
        return None
    fields, values = data.get("fields") or PosMap(), data.get("values") or PosMap()
    locs = {name: fields.key_loc(name) for name in fields} | {name: values.key_loc(name) for name in values}
    return InboundEmailDef(Ref(data["create"], data.value_loc("create")), dict(fields), dict(values), locs)


def build_teams(data: PosMap) -> dict[str, TeamDef]:
    """Teams that rules may assign to."""
    teams = data.get("teams") or PosMap()
    return {
        name: TeamDef(name, (spec or {}).get("label") or humanize(name), teams.key_loc(name))
        for name, spec in teams.items()
    }


def build_roles(data: PosMap) -> dict[str, RoleDef]:
    """Roles with their permissions per entity (checked against entities by analysis)."""
    roles = data.get("roles") or PosMap()
    result = {}
    for name, spec in roles.items():
        spec = spec if isinstance(spec, PosMap) else PosMap()
        permissions = spec.get("permissions") or PosMap()
        read_only = spec.get("read_only_fields") or PosMap()
        result[name] = RoleDef(
            name=name,
            label=spec.get("label") or humanize(name),
            loc=roles.key_loc(name),
            permissions={entity: set(ops) for entity, ops in permissions.items()},
            permission_locs={entity: permissions.key_loc(entity) for entity in permissions},
            scope=spec.get("scope", "all"),
            read_only_fields={
                entity: [Ref(f, fields.item_loc(i)) for i, f in enumerate(fields)]
                for entity, fields in read_only.items()
            },
        )
    return result
