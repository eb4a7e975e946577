"""Demo users for the default pack's demo company (``make run``).

Every demo user's password is ``demo``; the README lists them. A company
that is not the demo gets its first user from ``flask --app app create-admin``.
"""

from __future__ import annotations

from .runtime.users import Directory

DEMO_PASSWORD = "demo"

# (email, name, roles, teams, team lead of)
DEMO_USERS = (
    ("admin@demo.example.com", "Ada Admin", ["admin"], [], []),
    ("maria@demo.example.com", "Maria Manager", ["sales-manager"], ["sales-dach", "sales-intl", "sales-us"],
     ["sales-dach"]),
    ("anna@demo.example.com", "Anna Schmidt", ["sales"], ["sales-dach"], []),
    ("ben@demo.example.com", "Ben Huber", ["sales"], ["sales-dach"], []),
    ("clara@demo.example.com", "Clara Meier", ["sales"], ["sales-dach"], []),
    ("diego@demo.example.com", "Diego Rossi", ["sales"], ["sales-intl"], []),
    ("emma@demo.example.com", "Emma Dubois", ["sales"], ["sales-intl"], []),
    ("frank@demo.example.com", "Frank Miller", ["sales"], ["sales-us"], []),
    ("gina@demo.example.com", "Gina Lopez", ["support"], ["support"], []),
    ("hugo@demo.example.com", "Hugo Berg", ["support"], ["support"], []),
    ("ivan@demo.example.com", "Ivan Petrov", ["support-lead"], ["support", "support-l2"], ["support", "support-l2"]),
    ("julia@demo.example.com", "Julia Klein", ["marketing"], ["marketing"], ["marketing"]),
)  # fmt: skip


def seed_demo(directory: Directory) -> int:
    """Create the demo users that do not exist yet; returns how many were created."""
    created = 0
    for email, name, roles, teams, leads in DEMO_USERS:
        if directory.find(email) is not None:
            continue
        user_id = directory.create_user(
            email, name, DEMO_PASSWORD, roles=roles, teams=teams, superuser="admin" in roles
        )
        for team in leads:
            directory.make_lead(user_id, team)
        created += 1
    return created
