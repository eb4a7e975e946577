"""The admin console (Flask-Admin at /admin): only admins get in; users are
created and edited through the directory; the definitions, the outbox, the
timers, the audit log and the mail outbox are shown read-only; failed actions
can be retried; every console form works with CSRF checks on."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from markupsafe import escape

from crm_platform.errors import ValidationError
from crm_platform.seed import DEMO_PASSWORD, seed_demo

from . import web_fixtures
from .runtime_fixtures import SYSTEM, HeldQueue, build_app
from .web_fixtures import csrf_token, user_id

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in  # the fixtures

NOW = dt.datetime(2026, 11, 23, 10, 0)  # conftest's clock

# Every page of the console, by URL.
CONSOLE_PAGES = [
    "/admin/",
    "/admin/users/",
    "/admin/users/new/",
    "/admin/teams/",
    "/admin/roles/",
    "/admin/definitions/entities/",
    "/admin/definitions/workflows/",
    "/admin/definitions/rules/",
    "/admin/definitions/forms/",
    "/admin/definitions/status/",
    "/admin/outbox/",
    "/admin/timers/",
    "/admin/audit/",
    "/admin/mail/",
    "/admin/saved-views/",
]
READ_ONLY_TABLES = ["/admin/outbox/", "/admin/timers/", "/admin/audit/", "/admin/mail/", "/admin/saved-views/"]


def action(crm, status: str = "failed", kind: str = "send_email", *, minutes_ago: int = 0, due_at=None) -> int:
    """Insert an outbox row as the platform writes them; returns its id."""
    created = NOW - dt.timedelta(minutes=minutes_ago)
    return crm.tables.Outbox.insert(
        key=f"test/{uuid.uuid4().hex}",
        kind=kind,
        entity="lead",
        record_id=1,
        rule="Welcome new web leads",
        path="1",
        definition_version=1,
        payload={"v": 1, "reason": None},
        status=status,
        attempts=5 if status == "failed" else 0,
        due_at=due_at,
        error="550 mailbox unavailable" if status == "failed" else None,
        created_at=created,
        finished_at=created if status in ("failed", "done") else None,
    ).execute()


def status_of(crm, outbox_id: int) -> tuple[str, int, str | None]:
    row = crm.tables.Outbox.get_by_id(outbox_id)
    return row.status, row.attempts, row.error


def ids_in_order(html: str, column: str = "id") -> list[int]:
    """The values of an integer column of a Flask-Admin list, top to bottom."""
    return [int(v) for v in re.findall(rf'<td class="col-{column}">\s*(\d+)\s*</td>', html)]


def form_token(html: str) -> str:
    """The CSRF token of a Flask-Admin form (WTForms writes ``type`` between ``name`` and ``value``)."""
    match = re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "the form has no CSRF token"
    return match.group(1)


def section(html: str, element_id: str) -> str:
    """The ``<section id=...>`` of a console page."""
    match = re.search(rf'<section[^>]* id="{element_id}">(.*?)</section>', html, re.S)
    assert match, f"no section {element_id}"
    return match.group(1)


# --- who may open the console -------------------------------------------------------


def test_every_console_page_opens_for_the_admin(sign_in):
    client = sign_in("admin")
    for url in CONSOLE_PAGES:
        response = client.get(url)
        assert response.status_code == 200, url
        assert "CRM console" in response.get_data(as_text=True), url


def test_a_non_admin_gets_403_on_every_console_page(sign_in, web_crm):
    failed = action(web_crm)
    client = sign_in("anna")
    for url in [
        *CONSOLE_PAGES,
        f"/admin/users/edit/?id={user_id(web_crm, 'anna')}",
        "/admin/mail/details/?id=1",
        f"/admin/outbox/details/?id={failed}",
        "/admin/audit/details/?id=1",
    ]:
        assert client.get(url).status_code == 403, url
    # Writes are refused too, before anything is done.
    assert client.post(f"/admin/outbox/retry/{failed}").status_code == 403
    assert client.post("/admin/outbox/action/", data={"action": "retry", "rowid": [failed]}).status_code == 403
    data = {"email": "mallory@example.com", "name": "Mallory", "password": "secret", "roles": ["admin"]}
    assert client.post("/admin/users/new/", data=data).status_code == 403
    assert status_of(web_crm, failed)[0] == "failed"
    assert web_crm.directory.find("mallory@example.com") is None


def test_anonymous_visitors_are_sent_to_sign_in(web_app):
    client = web_app.test_client()
    for url in CONSOLE_PAGES:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/login"), url


def test_console_pages_load_their_styles_and_scripts_from_this_server(sign_in):
    client = sign_in("admin")
    assets = set()
    for url in CONSOLE_PAGES:
        html = client.get(url).get_data(as_text=True)
        assets |= set(re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html))
    assert assets
    assert all(asset.startswith("/") and not asset.startswith("//") for asset in assets), assets
    for asset in assets:
        with client.get(asset) as response:  # files are streamed: close them
            assert response.status_code == 200, asset


def test_building_the_console_compiles_nothing_so_a_broken_pack_still_starts(tmp_path, clock, broken_pack):
    app = build_app(tmp_path, clock, PACK_DIR=str(broken_pack("cli-several")))
    crm = app.extensions["crm"]
    assert "compiled" not in crm.__dict__ and "directory" not in crm.__dict__
    assert "console_outbox.index_view" in {rule.endpoint for rule in app.url_map.iter_rules()}


# --- users --------------------------------------------------------------------------


def test_creating_a_user_hashes_the_password_and_the_user_can_sign_in(sign_in, web_app, web_crm):
    admin = sign_in("admin")
    data = {
        "email": "Nora@Example.com",
        "name": "Nora North",
        "password": "correct horse",
        "roles": ["sales", "marketing"],
        "teams": ["sales-dach"],
    }
    response = admin.post("/admin/users/new/", data=data)
    assert response.status_code == 302

    nora = web_crm.directory.find("nora@example.com")
    assert (nora.name, nora.roles, nora.teams, nora.superuser) == (
        "Nora North",
        ["marketing", "sales"],
        ["sales-dach"],
        False,
    )
    stored = web_crm.tables.User.get_by_id(nora.id).password_hash
    assert stored != "correct horse" and "correct horse" not in stored
    # The hash is never shown.
    listing = admin.get("/admin/users/").get_data(as_text=True)
    assert "nora@example.com" in listing
    assert stored not in listing and stored not in admin.get(f"/admin/users/edit/?id={nora.id}").get_data(as_text=True)

    fresh = web_app.test_client()
    signed_in = fresh.post("/login", data={"email": "nora@example.com", "password": "correct horse"})
    assert signed_in.status_code == 302 and not signed_in.headers["Location"].startswith("/login")


def test_creating_a_user_with_a_used_email_shows_the_error_and_creates_nothing(sign_in, web_crm):
    admin = sign_in("admin")
    before = web_crm.directory.count()
    data = {"email": "anna@demo.example.com", "name": "Another Anna", "password": "secret", "roles": ["sales"]}
    response = admin.post("/admin/users/new/", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "is already used by another user" in html
    assert "The user was not created" in html
    assert web_crm.directory.count() == before
    assert web_crm.directory.find("anna@demo.example.com").name == "Anna Schmidt"


def test_creating_a_user_with_a_short_password_or_an_unknown_role_shows_the_field_errors(sign_in, web_crm):
    admin = sign_in("admin")
    before = web_crm.directory.count()
    short = admin.post("/admin/users/new/", data={"email": "a@b.example.com", "name": "A", "password": "abc"})
    assert "must have at least 4 characters" in short.get_data(as_text=True)
    data = {"email": "a@b.example.com", "name": "A", "password": "secret", "roles": ["wizard"]}
    unknown = admin.post("/admin/users/new/", data=data)
    assert "&#39;wizard&#39; is not a valid choice" in unknown.get_data(as_text=True)
    assert web_crm.directory.count() == before


def test_the_user_forms_offer_the_roles_and_teams_of_the_pack(sign_in, web_crm):
    html = sign_in("admin").get("/admin/users/new/").get_data(as_text=True)
    pack = web_crm.compiled.pack
    offered_roles = re.findall(r'name="roles" type="checkbox" value="([^"]+)"', html)
    offered_teams = re.findall(r'name="teams" type="checkbox" value="([^"]+)"', html)
    assert offered_roles == list(pack.roles)
    assert offered_teams == list(pack.teams)


def test_editing_roles_and_teams_replaces_them_and_keeps_a_team_lead(sign_in, web_crm):
    maria = user_id(web_crm, "maria")  # sales-manager; sales-dach (lead), sales-intl, sales-us
    admin = sign_in("admin")
    form = admin.get(f"/admin/users/edit/?id={maria}").get_data(as_text=True)
    checked = re.findall(r'checked id="[^"]+" name="(roles|teams)" type="checkbox" value="([^"]+)"', form)
    assert sorted(checked) == [("roles", "sales-manager")] + [
        ("teams", t) for t in ("sales-dach", "sales-intl", "sales-us")
    ]

    roles, teams = ["sales-manager", "marketing"], ["sales-dach", "support"]
    data = {"name": "Maria Manager", "roles": roles, "teams": teams, "active": "y"}
    assert admin.post(f"/admin/users/edit/?id={maria}", data=data).status_code == 302

    info = web_crm.directory.get(maria)
    assert (info.roles, info.teams, info.away) == (["marketing", "sales-manager"], ["sales-dach", "support"], False)
    TeamMember = web_crm.tables.TeamMember
    leads = {m.team: m.lead for m in TeamMember.select().where(TeamMember.user == maria)}
    assert leads == {"sales-dach": True, "support": False}


def test_editing_with_a_blank_password_keeps_it_and_a_new_one_replaces_it(sign_in, web_app, web_crm):
    anna = user_id(web_crm, "anna")
    admin = sign_in("admin")
    data = {"name": "Anna Schmidt-Berg", "roles": ["sales"], "teams": ["sales-dach"], "active": "y", "away": "y"}
    assert admin.post(f"/admin/users/edit/?id={anna}", data=data).status_code == 302
    info = web_crm.directory.get(anna)
    assert (info.name, info.away) == ("Anna Schmidt-Berg", True)
    assert web_crm.directory.check_password("anna@demo.example.com", DEMO_PASSWORD) == anna

    assert admin.post(f"/admin/users/edit/?id={anna}", data={**data, "password": "n3w-secret"}).status_code == 302
    assert web_crm.directory.check_password("anna@demo.example.com", DEMO_PASSWORD) is None
    assert web_crm.directory.check_password("anna@demo.example.com", "n3w-secret") == anna


def test_a_user_deactivated_in_the_console_can_no_longer_sign_in(sign_in, web_app, web_crm):
    gina = user_id(web_crm, "gina")
    data = {"name": "Gina Lopez", "roles": ["support"], "teams": ["support"]}  # "active" unchecked
    assert sign_in("admin").post(f"/admin/users/edit/?id={gina}", data=data).status_code == 302
    assert web_crm.directory.get(gina).active is False
    refused = web_app.test_client().post("/login", data={"email": "gina@demo.example.com", "password": DEMO_PASSWORD})
    assert refused.status_code == 400


def test_an_admin_cannot_take_away_their_own_admin_rights(sign_in, web_crm):
    admin_id = user_id(web_crm, "admin")
    data = {"name": "Ada Admin", "roles": ["sales"], "active": "y"}  # neither superuser nor admin any more
    response = sign_in("admin").post(f"/admin/users/edit/?id={admin_id}", data=data)
    assert response.status_code == 200
    assert "you would lock yourself out of the console" in response.get_data(as_text=True)
    info = web_crm.directory.get(admin_id)
    assert (info.roles, info.superuser) == (["admin"], True)


def test_users_cannot_be_deleted_from_the_console(sign_in, web_crm):
    anna = user_id(web_crm, "anna")
    sign_in("admin").post("/admin/users/delete/", data={"id": anna})
    assert web_crm.directory.get(anna) is not None


def test_the_users_list_shows_roles_and_teams_and_searches_email_and_name(sign_in):
    admin = sign_in("admin")
    html = admin.get("/admin/users/").get_data(as_text=True)
    ivan = re.search(r"ivan@demo\.example\.com.*?</tr>", html, re.S).group(0)
    assert "support-lead" in ivan and "support (lead)" in ivan and "support-l2 (lead)" in ivan
    by_name = admin.get("/admin/users/?search=schmidt").get_data(as_text=True)
    assert "anna@demo.example.com" in by_name and "ben@demo.example.com" not in by_name
    by_email = admin.get("/admin/users/?search=julia@").get_data(as_text=True)
    assert "Julia Klein" in by_email and "Anna Schmidt" not in by_email


def test_update_user_refuses_unknown_roles_and_teams_and_changes_nothing(web_crm):
    anna = user_id(web_crm, "anna")
    with pytest.raises(ValidationError) as raised:
        web_crm.directory.update_user(anna, name="", roles=["sales", "wizard"], teams=["atlantis"], password="abc")
    assert raised.value.errors == {
        "roles": ["unknown role 'wizard'"],
        "teams": ["unknown team 'atlantis'"],
        "name": ["must not be empty"],
        "password": ["must have at least 4 characters"],
    }
    info = web_crm.directory.get(anna)
    assert (info.name, info.roles, info.teams) == ("Anna Schmidt", ["sales"], ["sales-dach"])
    with pytest.raises(LookupError):
        web_crm.directory.update_user(9999, name="Nobody")


def test_update_user_can_take_away_every_role_and_team(web_crm):
    anna = user_id(web_crm, "anna")
    web_crm.directory.update_user(anna, roles=[], teams=[])
    info = web_crm.directory.get(anna)
    assert (info.roles, info.teams) == ([], [])


# --- teams and roles ------------------------------------------------------------------


def test_teams_page_lists_each_team_with_its_members_and_leads(sign_in, web_crm):
    html = sign_in("admin").get("/admin/teams/").get_data(as_text=True)
    for name, team in web_crm.compiled.pack.teams.items():
        assert str(escape(team.label)) in section(html, f"team-{name}")
    dach = section(html, "team-sales-dach")
    assert re.findall(r">([^<>]+)</a></td>", dach) == [
        "Maria Manager",
        "Anna Schmidt",
        "Ben Huber",
        "Clara Meier",
    ]  # the lead first
    assert dach.count(">lead<") == 1
    assert "Frank Miller" in section(html, "team-sales-us") and "Frank Miller" not in dach


def test_roles_page_shows_the_permission_matrix_scope_and_read_only_fields(sign_in, web_crm):
    html = sign_in("admin").get("/admin/roles/").get_data(as_text=True)
    sales = section(html, "role-sales")
    assert "Scope: <strong>own</strong>" in sales
    lead = re.search(r"<code>lead</code></th>(.*?)</tr>", sales, re.S).group(1)
    assert re.findall(r"<td>([^<]*)</td>", lead) == ["✓", "✓", "✓", "", "score"]
    ticket = re.search(r"<code>ticket</code></th>(.*?)</tr>", sales, re.S).group(1)
    assert re.findall(r"<td>([^<]*)</td>", ticket) == ["", "", "", "", ""]
    admin = section(html, "role-admin")  # "*" grants every operation on every entity
    assert admin.count("<td>✓</td>") == 4 * len(web_crm.compiled.pack.entities)
    assert "Ada Admin" in admin


# --- definitions ------------------------------------------------------------------------


def test_definitions_browser_shows_every_entity_workflow_and_rule(sign_in, web_crm):
    admin = sign_in("admin")
    pack = web_crm.compiled.pack
    entities = admin.get("/admin/definitions/entities/").get_data(as_text=True)
    for name, entity in pack.entities.items():
        part = section(entities, f"entity-{name}")
        assert f"{entity.file}:{entity.loc.line}" in part
        for field in entity.fields:
            assert f"<code>{field}</code>" in part
    assert 'link → <a href="#entity-account">account</a>' in section(entities, "entity-deal")

    workflows = admin.get("/admin/definitions/workflows/").get_data(as_text=True)
    for name, workflow in pack.workflows.items():
        part = section(workflows, f"workflow-{name}")
        for state in workflow.states:
            assert f"<code>{state}</code>" in part
    assert ">initial</span>" in section(workflows, "workflow-deal_pipeline")

    rules = admin.get("/admin/definitions/rules/").get_data(as_text=True)
    for rule in pack.rules:
        assert str(escape(rule.name)) in rules
        assert f"{rule.loc.file}:{rule.loc.line}" in rules
    assert "<code>on lead created</code>" in rules
    assert str(escape('send_email "welcome" to lead.email')) in rules  # the rule's source


def test_public_forms_page_gives_each_url_and_an_escaped_iframe_snippet(sign_in, web_app, web_crm):
    html = sign_in("admin").get("/admin/definitions/forms/").get_data(as_text=True)
    public = [name for e in web_crm.compiled.entities.values() for name, f in e.public_forms.items() if f.public]
    assert sorted(public) == ["contact_us", "support_request", "web_to_lead"]
    for name in public:
        part = section(html, f"form-{name}")
        url = f"http://localhost/forms/{name}"
        assert f'<a href="{url}">{url}</a>' in part
        assert f"&lt;iframe src=&#34;{url}&#34;" in part
        assert "&lt;/iframe&gt;</textarea>" in part
        assert web_app.test_client().get(f"/forms/{name}").status_code == 200  # anyone may open it
    assert "<iframe" not in html  # shown for copying, never embedded in the console
    assert "quick_create" not in html  # not public


def test_compile_status_shows_ok_and_the_definition_digest(sign_in, web_crm):
    html = sign_in("admin").get("/admin/definitions/status/").get_data(as_text=True)
    assert "<strong>OK</strong>: the definitions compiled." in html
    assert f"<code>{web_crm.compiled.version}</code>" in html


def test_compile_status_lists_warnings_with_file_and_line(tmp_path, clock, pack_dir):
    workflow = pack_dir / "workflows" / "deal_pipeline.yaml"
    workflow.write_text(workflow.read_text() + "  - {from: won, to: proposal, label: Reopen}\n")
    app = build_app(tmp_path, clock, PACK_DIR=str(pack_dir), WTF_CSRF_ENABLED=False)
    crm = app.extensions["crm"]
    try:
        crm.init_db()
        crm.directory.create_user("root@example.com", "Root", "secret", superuser=True)
        client = app.test_client()
        client.post("/login", data={"email": "root@example.com", "password": "secret"})
        html = client.get("/admin/definitions/status/").get_data(as_text=True)
    finally:
        crm.database.close()
    assert "compiled with 1 warning(s)" in html
    assert "<code>workflows/deal_pipeline.yaml:8:3</code>" in html
    assert "final state &#39;won&#39; has transitions out of it" in html


# --- the outbox and the timers ------------------------------------------------------------


def test_outbox_lists_actions_newest_first_with_counts_per_status(sign_in, web_crm):
    old = action(web_crm, "done", minutes_ago=30)
    failed = action(web_crm, "failed", minutes_ago=20)
    new = action(web_crm, "queued", "webhook", minutes_ago=10)
    html = sign_in("admin").get("/admin/outbox/").get_data(as_text=True)
    assert ids_in_order(html) == [new, failed, old]
    counts = re.findall(r'class="badge[^"]*" href="[^"]+">(\w+): (\d+)</a>', html)
    assert counts == [("queued", "1"), ("done", "1"), ("failed", "1")]
    assert html.count(">Retry</button>") == 1  # only the failed row
    assert "550 mailbox unavailable" in html
    details = sign_in("admin").get(f"/admin/outbox/details/?id={failed}").get_data(as_text=True)
    assert "550 mailbox unavailable" in details and "Welcome new web leads" in details


def test_outbox_filters_by_status_and_kind(sign_in, web_crm):
    failed_mail = action(web_crm, "failed", "send_email")
    failed_hook = action(web_crm, "failed", "webhook")
    done_hook = action(web_crm, "done", "webhook")
    admin = sign_in("admin")
    by_status = admin.get("/admin/outbox/?flt0_0=failed").get_data(as_text=True)
    assert sorted(ids_in_order(by_status)) == [failed_mail, failed_hook]
    by_kind = admin.get("/admin/outbox/?flt0_1=webhook").get_data(as_text=True)
    assert sorted(ids_in_order(by_kind)) == [failed_hook, done_hook]
    both = admin.get("/admin/outbox/?flt0_0=failed&flt1_1=webhook").get_data(as_text=True)
    assert ids_in_order(both) == [failed_hook]


def test_retrying_a_failed_action_queues_it_again(sign_in, web_crm):
    held = HeldQueue(web_crm.outbox)  # the hand-over is recorded, the action does not run
    try:
        payload = {"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com", "source": "web"}
        lead = web_crm.records.create("lead", {**payload, "country": "DE"}, SYSTEM, "api")
        Outbox = web_crm.tables.Outbox
        send = Outbox.get((Outbox.kind == "send_email") & (Outbox.record_id == lead.id))
        web_crm.outbox.fail(web_crm.outbox.claim(send.id), "550 mailbox full", permanent=True)
        assert status_of(web_crm, send.id) == ("failed", 1, "550 mailbox full")
        held.calls.clear()

        response = sign_in("admin").post(f"/admin/outbox/retry/{send.id}", data={"url": "/admin/outbox/"})
        assert (response.status_code, response.headers["Location"]) == (302, "/admin/outbox/")
        assert status_of(web_crm, send.id) == ("queued", 0, None)
        assert held.calls == [("send_email", send.id, None)]
    finally:
        held.release()


def test_retrying_an_action_that_has_not_failed_changes_nothing(sign_in, web_crm):
    done = action(web_crm, "done")
    admin = sign_in("admin")
    admin.post(f"/admin/outbox/retry/{done}")
    assert status_of(web_crm, done) == ("done", 0, None)
    assert f"action {done} is not a failed action" in admin.get("/admin/outbox/").get_data(as_text=True)


def test_bulk_retry_queues_the_selected_failed_actions_only(sign_in, web_crm):
    held = HeldQueue(web_crm.outbox)
    try:
        first, second, done = action(web_crm), action(web_crm), action(web_crm, "done")
        response = sign_in("admin").post(
            "/admin/outbox/action/", data={"action": "retry", "rowid": [first, second, done]}
        )
        assert response.status_code == 302
        assert [status_of(web_crm, i)[0] for i in (first, second, done)] == ["queued", "queued", "done"]
        assert sorted(call[1] for call in held.calls) == [first, second]
    finally:
        held.release()


def test_pending_timers_are_the_timer_table_soonest_first(sign_in, web_crm):
    later, soon = NOW + dt.timedelta(days=3), NOW + dt.timedelta(hours=2)

    def timer(status: str, due_at, kind: str = "follow_up") -> int:
        return web_crm.tables.Timer.insert(
            key=f"test/{uuid.uuid4().hex}", kind=kind, entity="lead", record_id=1, rule="Welcome new web leads",
            step="2", due_at=due_at, status=status, created_at=NOW,
        ).execute()  # fmt: skip

    follow_up = timer("pending", later)
    every = timer("pending", soon, "every")
    timer("fired", later)  # ran
    timer("cancelled", later)  # stopped
    action(web_crm, "retrying", "webhook", due_at=later)  # a retry, not a timer
    html = sign_in("admin").get("/admin/timers/").get_data(as_text=True)
    assert ids_in_order(html) == [every, follow_up]


def test_read_only_tables_refuse_create_edit_and_delete(sign_in, web_crm):
    row = action(web_crm, "failed")
    admin = sign_in("admin")
    for base in READ_ONLY_TABLES:
        listing = admin.get(base).get_data(as_text=True)
        assert f'href="{base}new/' not in listing and f'href="{base}edit/' not in listing, base
        assert admin.get(f"{base}new/").status_code == 404, base
        assert admin.post(f"{base}new/", data={"status": "done"}).status_code == 404, base
        assert admin.get(f"{base}edit/?id={row}").status_code == 404, base
        assert admin.post(f"{base}delete/", data={"id": row}).status_code == 404, base
    assert web_crm.tables.Outbox.get_by_id(row).status == "failed"


# --- audit log and mail outbox ---------------------------------------------------------


def test_audit_log_lists_changes_newest_first_names_the_user_and_filters(sign_in, web_crm):
    Audit = web_crm.tables.Audit
    anna = user_id(web_crm, "anna")

    def audit(minutes_ago: int, **values) -> int:
        row = {"entity": "lead", "record_id": 7, "operation": "update", "version": 2, "user_id": None}
        row |= {"channel": "rule", "changes": {"status": ["new", "working"]}, **values}
        return Audit.insert(at=NOW - dt.timedelta(minutes=minutes_ago), **row).execute()

    by_anna = audit(30, operation="create", user_id=anna, channel="form", changes={"email": [None, "j@x.org"]})
    audit(20, rule="Boost referral and partner leads")
    audit(10, entity="deal", channel="api", user_id=anna)
    admin = sign_in("admin")
    html = admin.get("/admin/audit/").get_data(as_text=True)
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)[1:]
    assert len(rows) == 3
    assert "deal" in rows[0] and "Boost referral and partner leads" in rows[1] and "Anna Schmidt" in rows[2]
    assert "status: new → working" in rows[1] and "email: ∅ → j@x.org" in rows[2]

    def shown(query: str) -> int:
        page = admin.get(f"/admin/audit/?{query}").get_data(as_text=True)
        return len(re.findall(r'<td class="col-operation">', page))

    assert (shown("flt0_0=deal"), shown("flt0_1=create"), shown("flt0_2=rule")) == (1, 1, 1)
    details = admin.get(f"/admin/audit/details/?id={by_anna}").get_data(as_text=True)
    assert "Anna Schmidt" in details and "j@x.org" in details


def test_mail_outbox_lists_mails_and_shows_the_body_on_the_details_page(sign_in, web_crm):
    mail = web_crm.tables.Mail.insert(
        key="test/mail/1",
        message_id="<1@crm>",
        sender="crm@demo.example.com",
        recipient="jane@example.com",
        subject="Welcome, Jane",
        body="Hello Jane,\n<b>thanks</b> for your interest.",
        entity="lead",
        record_id=7,
        status="kept",
        created_at=NOW,
    ).execute()
    admin = sign_in("admin")
    listing = admin.get("/admin/mail/").get_data(as_text=True)
    assert "Welcome, Jane" in listing and "jane@example.com" in listing
    assert "for your interest" not in listing
    details = admin.get(f"/admin/mail/details/?id={mail}").get_data(as_text=True)
    assert "Hello Jane,\n&lt;b&gt;thanks&lt;/b&gt; for your interest." in details


def test_saved_views_list_names_each_views_owner(sign_in, web_crm):
    web_crm.tables.SavedView.insert(
        user=user_id(web_crm, "anna"), entity="lead", name="My DACH leads", query="country=DE", created_at=NOW
    ).execute()
    html = sign_in("admin").get("/admin/saved-views/").get_data(as_text=True)
    row = re.search(r"<tr>\s*<td class=\"col-user\">(.*?)</tr>", html, re.S).group(1)
    assert "Anna Schmidt" in row and "My DACH leads" in row and "country=DE" in row


# --- with CSRF checks on -------------------------------------------------------------------


@pytest.fixture
def guarded(tmp_path, clock):
    """``guarded(name)``: a client signed in as demo user ``name`` on an app with CSRF checks on."""
    app = build_app(tmp_path, clock, RATELIMIT_ENABLED=False)
    crm = app.extensions["crm"]
    crm.init_db()
    seed_demo(crm.directory)

    def client_for(name: str):
        client = app.test_client()
        token = csrf_token(client.get("/login").get_data(as_text=True))
        data = {"email": f"{name}@demo.example.com", "password": DEMO_PASSWORD, "csrf_token": token}
        assert client.post("/login", data=data).status_code == 302
        return client

    client_for.crm = crm
    yield client_for
    crm.database.close()


def test_console_forms_carry_a_csrf_token_and_work_with_csrf_on(guarded):
    crm = guarded.crm
    admin = guarded("admin")
    form = admin.get("/admin/users/new/").get_data(as_text=True)
    token = form_token(form)
    data = {"email": "nora@example.com", "name": "Nora", "password": "secret", "teams": ["support"]}

    refused = admin.post("/admin/users/new/", data=data)
    assert refused.status_code == 400
    assert crm.directory.find("nora@example.com") is None

    assert admin.post("/admin/users/new/", data={**data, "csrf_token": token}).status_code == 302
    nora = crm.directory.find("nora@example.com")
    assert nora.teams == ["support"]

    edit = admin.get(f"/admin/users/edit/?id={nora.id}").get_data(as_text=True)
    saved = admin.post(
        f"/admin/users/edit/?id={nora.id}",
        data={"name": "Nora N.", "teams": ["support"], "active": "y", "csrf_token": form_token(edit)},
    )
    assert saved.status_code == 302
    assert crm.directory.get(nora.id).name == "Nora N."


def test_retry_without_a_csrf_token_is_refused_and_with_the_pages_token_works(guarded):
    crm = guarded.crm
    held = HeldQueue(crm.outbox)
    try:
        failed = action(crm)
        admin = guarded("admin")
        assert admin.post(f"/admin/outbox/retry/{failed}").status_code == 400
        assert status_of(crm, failed)[0] == "failed"

        listing = admin.get("/admin/outbox/").get_data(as_text=True)
        retry_form = re.search(
            r'<form class="d-inline retry" method="post" action="([^"]+)">(.*?)</form>', listing, re.S
        )
        assert retry_form.group(1) == f"/admin/outbox/retry/{failed}"
        token = form_token(retry_form.group(2))
        assert admin.post(retry_form.group(1), data={"csrf_token": token}).status_code == 302
        assert status_of(crm, failed)[0] == "queued"
    finally:
        held.release()


def test_bulk_action_form_carries_the_csrf_token(guarded):
    crm = guarded.crm
    held = HeldQueue(crm.outbox)
    try:
        failed = action(crm)
        admin = guarded("admin")
        data = {"action": "retry", "rowid": [failed]}
        assert admin.post("/admin/outbox/action/", data=data).status_code == 400
        assert status_of(crm, failed)[0] == "failed"

        listing = admin.get("/admin/outbox/").get_data(as_text=True)
        action_form = re.search(r'<form id="action_form"[^>]*>(.*?)</form>', listing, re.S).group(1)
        token = form_token(action_form)
        assert admin.post("/admin/outbox/action/", data={**data, "csrf_token": token}).status_code == 302
        assert status_of(crm, failed)[0] == "queued"
    finally:
        held.release()
