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


def seed_demo_records(crm) -> int:
    """Fill an empty demo company with a small believable CRM through the write path.

    Accounts, contacts, leads, deals spread over the pipeline (won and lost
    ones in recent months), tickets, this month's activities and a campaign
    with members. Rules fire as for any other change. Returns how many records
    were created; does nothing if the company already has leads.
    """
    import datetime as dt
    import random

    from .runtime.users import Actor

    records, system = crm.records, Actor.system()
    if crm.compiled.entities["lead"].model.select().exists():
        return 0
    rng = random.Random(7)
    reps = [crm.directory.find(f"{n}@demo.example.com").id for n in ("anna", "ben", "clara", "diego", "emma")]
    agents = [crm.directory.find(f"{n}@demo.example.com").id for n in ("gina", "hugo")]
    today = crm.ctx.today()
    created = 0

    def make(entity, data, stages=(), **extra):
        nonlocal created
        record = records.create(entity, data, system, "system")
        for stage in stages:
            record = records.transition(entity, record.id, stage, system, "system", data=extra.pop(stage, None))
        created += 1
        return record

    companies = [
        ("Alpenblick GmbH", "DE"), ("Nordlicht AG", "DE"), ("Helvetia Systems", "CH"), ("Wiener Werkstatt", "AT"),
        ("Lumière SARL", "FR"), ("Thames Analytics", "GB"), ("Prairie Tools Inc", "US"), ("Bodensee Bikes", "DE"),
    ]  # fmt: skip
    accounts = [make("account", {"name": name, "owner": rng.choice(reps)}) for name, _ in companies]
    people = ["Lena Vogel", "Paul Berger", "Sofia Keller", "Jonas Wolf", "Marie Laurent", "Oliver Smith", "Emily Jones",
              "Lukas Brandt", "Nina Huber", "Tom Becker", "Eva Roth", "Max Schulz"]  # fmt: skip
    contacts = []
    for i, person in enumerate(people):
        first, last = person.split()
        account = accounts[i % len(accounts)]
        email = f"{first}.{last}@example.com".lower()
        data = {"first_name": first, "last_name": last, "account": account.id, "email": email, "owner": account.owner}
        contacts.append(make("contact", data))
    sources = ["web", "referral", "event", "cold_call", "partner"]
    for i in range(20):
        first, last = rng.choice(people).split()
        company, country = companies[i % len(companies)]
        stages = [["contacted"], [], ["contacted", "qualified", "converted"], ["disqualified"]][i % 4]
        make(
            "lead",
            {"first_name": first, "last_name": f"{last} {i + 1}", "company": company, "country": country,
             "source": sources[i % len(sources)], "email": f"lead{i + 1}@example.com",
             "score": rng.randint(50, 80) if i % 4 == 2 else rng.randint(10, 75)},
            stages,
            disqualified={"lost_reason": "no_budget"},
        )  # fmt: skip
    path = ["qualification", "proposal", "negotiation"]
    products = ["CRM rollout", "Support plan", "Analytics add-on", "Renewal"]
    for i in range(16):
        account = accounts[i % len(accounts)]
        amount = rng.randrange(5, 120) * 1000
        stages = [*path, "won"] if i % 5 == 0 else path[: i % 4] + (["lost"] if i % 7 == 0 else [])
        make(
            "deal",
            {"name": f"{account.name.split()[0]} {products[i % 4]}", "account": account.id, "amount": amount,
             "close_date": (today + dt.timedelta(days=15 * (i % 6) - 20)).isoformat(),
             "source": sources[(i // 2) % len(sources)], "owner": account.owner},
            stages,
            lost={"lost_reason": "price"},
        )  # fmt: skip
    subjects = ["Cannot sign in", "Invoice shows wrong VAT", "Export to Excel fails", "Feature idea: dark mode",
                "Password reset mail missing", "API returns 500"]  # fmt: skip
    for i, subject in enumerate(subjects):
        contact = contacts[i]
        make("ticket", {"subject": subject, "contact": contact.id, "requester_email": contact.email,
                        "priority": ["normal", "high", "low", "urgent"][i % 4],
                        "category": ["account", "billing", "technical", "feature_request"][i % 4],
                        "owner": agents[i % 2]}, ["open"] if i % 2 else [])  # fmt: skip
    for i in range(12):
        day = today + dt.timedelta(days=i * 2 - 8)
        kind = ["call", "meeting", "task"][i % 3]
        data = {"kind": kind, "subject": f"{kind.title()} with {people[i]}", "owner": reps[i % len(reps)],
                "contact": contacts[i].id, "done": i < 4}  # fmt: skip
        if kind == "task":
            data["due_date"] = day.isoformat()
        else:
            data["starts_at"] = f"{day.isoformat()}T{9 + i % 7:02d}:00:00+00:00"
        make("activity", data)
    campaign = make("campaign", {"name": "Spring webinar series", "owner": reps[0]})
    for i, contact in enumerate(contacts[:10]):
        status = ["sent", "opened", "clicked", "responded", "targeted"][i % 5]
        make("campaign_member", {"campaign": campaign.id, "contact": contact.id, "status": status})
    return created
