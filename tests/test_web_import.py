"""The import wizard in the web UI: upload, mapping, preview, start on the worker, progress, errors.

The app's queue is Huey in immediate mode here, so "Start import" runs the job
inline; ``test_an_import_runs_on_a_real_worker_process`` runs it on a real
consumer process, and the killed-worker test shows the sweep resuming it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import time

import pytest

from crm_platform.imports import Options, background, contacts, start

from . import web_fixtures
from .live import Worker, live_config, wait_for, worker_env
from .runtime_fixtures import build_app
from .web_fixtures import (
    cheap_password_hashes,
    csrf_token,
    csv_rows,
    flashes,
    make_record,
    unlabelled_controls,
    user_id,
)

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in  # the fixtures

HEADER = ["First name", "Last name", "Email", "Company", "Country", "Lead score"]


def csv_bytes(rows: list[list], header=HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def lead_row(n: int, **overrides) -> list:
    values = {
        "First name": f"Ann{n}",
        "Last name": f"Lee{n}",
        "Email": f"ann{n}@example.com",
        "Company": f"Firm {n}",
        "Country": "DE",
        "Lead score": str(n % 100),
    } | overrides
    return [values[column] for column in HEADER]


def upload(client, data: bytes, name: str = "leads.csv", entity: str = "lead", **extra):
    """POST the upload form; returns the response (a redirect to the mapping step when accepted)."""
    return client.post(
        "/imports/new",
        data={"entity": entity, "file": (io.BytesIO(data), name), **extra},
        content_type="multipart/form-data",
    )


def mapping_url(client, data: bytes, name: str = "leads.csv") -> str:
    response = upload(client, data, name)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def mapping_form(html: str) -> dict[str, str | list[str]]:
    """What a browser submits from the mapping form as the page shows it."""
    form: dict = {}
    for i, select in re.findall(r'<select id="map-(\d+)" name="map-\d+"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', select)
        form[f"map-{i}"] = chosen.group(1) if chosen else ""
    form["match"] = re.findall(r'name="match" value="(\w+)" checked', html)
    duplicate = re.search(r'name="on_duplicate".*?<option value="(\w+)" selected>', html, re.S)
    form["on_duplicate"] = duplicate.group(1)
    if re.search(r'name="rules" value="1" checked', html):  # an unticked box is not sent
        form["rules"] = "1"
    return form


def text(response) -> str:
    return response.get_data(as_text=True)


def leads(crm) -> list:
    ce = crm.compiled.entities["lead"]
    return list(ce.model.select().order_by(ce.model.id))


@pytest.fixture(autouse=True)
def upload_dir(tmp_path, monkeypatch):
    """Uploads in the test's own folder, not the project's instance folder (read when an app is made)."""
    monkeypatch.setenv("CRM_IMPORT_DIR", str(tmp_path / "uploads"))


@pytest.fixture
def maria(sign_in):
    return sign_in("maria")


# --- the whole way ----------------------------------------------------------------------------------


def test_upload_map_preview_then_start_imports_and_reports_the_bad_row(web_crm, maria):
    data = csv_bytes([lead_row(1), lead_row(2, **{"Lead score": "lots"}), lead_row(3)])
    url = mapping_url(maria, data)

    page = maria.get(url)
    html = text(page)
    assert page.status_code == 200
    form = mapping_form(html)
    assert [form[f"map-{i}"] for i in range(6)] == ["first_name", "last_name", "email", "company", "country", "score"]
    assert form["match"] == ["email"]  # the unique field the file fills identifies duplicates
    assert "must be a whole number, not &#39;lots&#39;" in html  # row 3's error, in the preview
    assert "3 rows, as they would be imported" in html and "1 with errors" in html
    assert leads(web_crm) == [] and web_crm.tables.ImportJob.select().count() == 0

    form["map-3"] = ""  # leave "Company" out
    previewed = maria.post(url, data=form | {"action": "preview"})
    assert previewed.status_code == 200 and mapping_form(text(previewed))["map-3"] == ""
    assert leads(web_crm) == []

    started = maria.post(url, data=form | {"action": "start"})

    assert started.status_code == 302
    job = web_crm.tables.ImportJob.get()
    assert started.headers["Location"] == f"/imports/{job.id}"
    assert (job.status, job.created, job.failed, job.user_id) == ("done", 2, 1, user_id(web_crm, "maria"))
    assert job.options == {"match": ["email"], "on_duplicate": "skip", "rules": True, "chunk": job.options["chunk"]}
    assert [(r.first_name, r.company) for r in leads(web_crm)] == [("Ann1", None), ("Ann3", None)]
    status = maria.get(f"/imports/{job.id}/status").get_json()
    assert status == {
        "id": job.id, "status": "done", "total": 3, "processed": 3, "percent": 100, "created": 2, "updated": 0,
        "skipped": 0, "failed": 1, "error": None, "finished": True, "stopped": False, "waits_for": None,
    }  # fmt: skip
    job_page = text(maria.get(f"/imports/{job.id}"))
    assert "data-import-status" not in job_page and f"/imports/{job.id}/errors.csv" in job_page
    report = maria.get(f"/imports/{job.id}/errors.csv")
    assert report.status_code == 200 and report.mimetype == "text/csv"
    rows = csv_rows(report)
    assert rows[0] == ["row", *HEADER, "errors"]
    assert rows[1][:3] == ["3", "Ann2", "Lee2"] and rows[1][-1] == "Lead score: must be a whole number, not 'lots'"
    # The upload is deleted with its job done; its mapping step is gone, so it cannot start twice.
    assert not os.path.exists(os.path.dirname(job.path))
    assert maria.post(url, data=form | {"action": "start"}).status_code == 404
    assert web_crm.tables.ImportJob.select().count() == 1
    assert f"/imports/{job.id}" in text(maria.get("/imports/"))


# --- files that cannot be imported ---------------------------------------------------------------------


def upload_folders(app) -> list:
    root = app.config["IMPORT_DIR"]
    return os.listdir(root) if os.path.isdir(root) else []


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"", "empty.csv", "empty.csv: the file is empty (0 bytes)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "picture.csv", "picture.csv: this is not a text file"),
        (b"%PDF-1.4", "scan.pdf", "scan.pdf: cannot import .pdf files"),
    ],
)
def test_a_file_the_reader_refuses_is_refused_on_the_page_with_its_reason(web_app, maria, data, name, message):
    before = upload_folders(web_app)
    response = upload(maria, data, name)
    assert response.status_code == 422
    assert message in text(response)
    assert upload_folders(web_app) == before  # nothing kept
    assert upload(maria, csv_bytes([lead_row(1)]), "good.csv").status_code == 302  # the good file next to it


def test_a_file_over_the_size_limit_is_refused_with_the_limit(web_app, maria):
    web_app.config["IMPORT_MAX_BYTES"] = 300
    big = csv_bytes([lead_row(n) for n in range(20)])
    assert len(big) > 300 + 0  # over the limit, but under the limit plus the form's slack: read, then refused

    response = upload(maria, big)

    assert response.status_code == 422
    assert "the file is larger than the limit of 300 bytes" in text(response)
    assert upload_folders(web_app) == []
    huge = upload(maria, b"x" * (300 + 70 * 1024))  # over limit and slack: refused before the body is read
    assert huge.status_code == 413
    assert "The file is larger than the limit of 300 bytes" in text(huge)
    assert upload(maria, csv_bytes([lead_row(1)])).status_code == 302


def test_a_missing_file_or_entity_is_asked_for(maria):
    response = maria.post("/imports/new", data={"entity": ""}, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "Choose what the file holds." in text(response) and "Choose a CSV or XLSX file." in text(response)


# --- mapping errors ---------------------------------------------------------------------------------------


def test_mapping_errors_are_shown_next_to_the_column_and_nothing_is_started(web_crm, maria):
    url = mapping_url(maria, csv_bytes([lead_row(1)]))
    form = mapping_form(text(maria.get(url)))

    twice = maria.post(url, data=form | {"map-0": "last_name", "action": "start"})
    html = text(twice)
    assert twice.status_code == 422
    assert re.search(r'id="map-1-errors">&#39;last_name&#39; is already filled from another column<', html)
    assert "No preview until the mapping is correct." in html

    left_out = maria.post(url, data=form | {"map-1": "", "action": "start"})
    assert left_out.status_code == 422
    assert "Last name: is required, but no column holds Last name" in text(left_out)

    unmapped_key = maria.post(url, data=form | {"map-2": "", "match": ["email"], "action": "start"})
    assert unmapped_key.status_code == 422
    assert re.search(r'id="match-errors">no column of the file holds &#39;email&#39;<', text(unmapped_key))

    assert web_crm.tables.ImportJob.select().count() == 0 and leads(web_crm) == []
    assert maria.post(url, data=form | {"action": "start"}).status_code == 302  # corrected: it starts


def test_duplicates_follow_the_chosen_match_keys_and_action(web_crm, maria):
    make_record(web_crm, "lead", first_name="Old", last_name="Lee1", email="ann1@example.com")
    url = mapping_url(maria, csv_bytes([lead_row(1), lead_row(2)]))
    form = mapping_form(text(maria.get(url)))

    previewed = text(maria.post(url, data=form | {"on_duplicate": "update", "action": "preview"}))
    assert "update a duplicate" in previewed
    del form["rules"]  # unticked
    maria.post(url, data=form | {"on_duplicate": "update", "action": "start"})

    job = web_crm.tables.ImportJob.get()
    assert (job.created, job.updated, job.options["rules"]) == (1, 1, False)
    assert sorted(r.first_name for r in leads(web_crm)) == ["Ann1", "Ann2"]


def test_a_field_read_only_for_the_user_is_not_offered_nor_taken(web_crm, sign_in):
    anna = sign_in("anna")  # a sales rep: the lead score is marketing's, read-only for her role
    url = mapping_url(anna, csv_bytes([lead_row(1), lead_row(2)]))
    html = text(anna.get(url))
    form = mapping_form(html)
    assert form["map-5"] == "" and '<option value="score"' not in html
    assert "Lead score is read-only for you: not imported" in html

    forced = anna.post(url, data=form | {"map-5": "score", "action": "start"})
    assert forced.status_code == 422
    assert re.search(r'id="map-5-errors">is read-only for you; choose &#34;do not import&#34;<', text(forced))
    assert web_crm.tables.ImportJob.select().count() == 0

    anna.post(url, data=form | {"action": "start"})
    assert [r.score for r in leads(web_crm)] == [0, 0]  # the default: imported without the column


# --- who may do what ------------------------------------------------------------------------------------


def test_a_user_without_create_permission_gets_403(sign_in, web_crm):
    julia = sign_in("julia")  # marketing: reads and updates leads, creates none
    page = text(julia.get("/imports/new"))
    assert '<option value="campaign">' in page and '<option value="lead">' not in page

    response = upload(julia, csv_bytes([lead_row(1)]))

    assert response.status_code == 403
    assert "you may not create" in text(response)
    assert upload(julia, b"Name\nSpring\n", "c.csv", entity="campaign").status_code == 302


def test_another_users_upload_and_job_are_not_found(web_crm, sign_in, maria):
    url = mapping_url(maria, csv_bytes([lead_row(1), lead_row(2, **{"Lead score": "x"})]))
    anna = sign_in("anna")
    assert anna.get(url).status_code == 404
    assert anna.post(url, data={"action": "start"}).status_code == 404
    maria.post(url, data=mapping_form(text(maria.get(url))) | {"action": "start"})
    job = web_crm.tables.ImportJob.get()

    for path in (f"/imports/{job.id}", f"/imports/{job.id}/status", f"/imports/{job.id}/errors.csv"):
        assert anna.get(path).status_code == 404, path
        assert maria.get(path).status_code == 200, path
    assert anna.post(f"/imports/{job.id}/resume").status_code == 404
    assert "leads.csv" not in text(anna.get("/imports/"))
    admin = sign_in("admin")
    assert admin.get(f"/imports/{job.id}").status_code == 200
    assert "Maria Manager" in text(admin.get("/imports/"))  # an administrator sees everyone's, with who


def test_the_menu_links_the_imports_and_every_wizard_control_has_a_label(maria):
    assert '<a href="/imports/">Imports</a>' in text(maria.get("/my"))
    url = mapping_url(maria, csv_bytes([lead_row(1)]))
    for page in ("/imports/", "/imports/new", url):
        assert unlabelled_controls(text(maria.get(page))) == [], page


# --- escaping ---------------------------------------------------------------------------------------------


def test_markup_in_a_header_and_a_cell_is_escaped_on_the_mapping_page(maria):
    header = [*HEADER, "<script>alert('head')</script>"]
    row = lead_row(1, **{"Company": "<img src=x onerror=alert('cell')>"}) + ["<b>x</b>"]
    html = text(maria.get(mapping_url(maria, csv_bytes([row], header=header))))

    assert "<script>alert" not in html and "<img src=x" not in html and "<b>x</b>" not in html
    assert "&lt;script&gt;alert(&#39;head&#39;)&lt;/script&gt;" in html  # the column's name
    assert html.count("&lt;img src=x onerror=alert(&#39;cell&#39;)&gt;") == 2  # its first value and the preview


# --- CSRF --------------------------------------------------------------------------------------------------


@pytest.fixture
def csrf_app(tmp_path, clock, monkeypatch):
    """The default pack with CSRF protection on (the production setting)."""
    from crm_platform.seed import DEMO_PASSWORD, seed_demo

    cheap_password_hashes(monkeypatch)
    app = build_app(tmp_path, clock, RATELIMIT_ENABLED=False)
    crm = app.extensions["crm"]
    crm.init_db()
    seed_demo(crm.directory)
    client = app.test_client()
    token = csrf_token(text(client.get("/login")))
    client.post("/login", data={"email": "maria@demo.example.com", "password": DEMO_PASSWORD, "csrf_token": token})
    yield app, client
    crm.database.close()


def test_every_import_post_needs_the_csrf_token(csrf_app):
    app, client = csrf_app
    crm = app.extensions["crm"]
    data = csv_bytes([lead_row(1)])
    refused = upload(client, data)
    assert refused.status_code == 400 and "The CSRF token is missing." in text(refused)
    assert upload(client, data, csrf_token="forged").status_code == 400
    assert upload_folders(app) == []

    token = csrf_token(text(client.get("/imports/new")))
    url = upload(client, data, csrf_token=token).headers["Location"]
    form = mapping_form(text(client.get(url)))
    assert client.post(url, data=form | {"action": "start"}).status_code == 400
    assert crm.tables.ImportJob.select().count() == 0

    assert client.post(url, data=form | {"action": "start", "csrf_token": token}).status_code == 302
    job = crm.tables.ImportJob.get()
    assert client.post(f"/imports/{job.id}/resume").status_code == 400
    app.config["IMPORT_MAX_BYTES"] = 100  # the size is checked before the token, without reading the body
    assert upload(client, b"x" * (100 + 70 * 1024), csrf_token=token).status_code == 413


# --- stopped jobs: resume and the sweep -------------------------------------------------------------------


def stalled_job(crm, path, *, user: str = "maria", status="running", beat=True, **values):
    """A job as a killed worker leaves it: started, maybe a chunk done, no longer beating."""
    with open(path, "wb") as out:
        out.write(csv_bytes([lead_row(n) for n in range(5)]))
    actor = crm.directory.actor(user_id(crm, user))
    job = start(crm, "lead", path, actor=actor, options=Options(match=["email"], rules=False))
    now = crm.clock.utcnow()
    ImportJob = crm.tables.ImportJob
    ImportJob.update(status=status, heartbeat_at=now if beat else None, **values).where(
        ImportJob.id == job.id
    ).execute()
    return job


def test_a_job_whose_worker_died_offers_resume_and_finishes_every_row_once(web_crm, maria, clock, tmp_path):
    job = stalled_job(web_crm, tmp_path / "stalled.csv")
    page = text(maria.get(f"/imports/{job.id}"))
    assert "data-import-status" in page and "Resume" not in page  # the heartbeat is fresh: still running
    assert maria.post(f"/imports/{job.id}/resume").status_code == 302
    assert web_crm.tables.ImportJob.get_by_id(job.id).status == "running"  # not resumed while alive

    clock.advance(seconds=121)
    page = text(maria.get(f"/imports/{job.id}"))
    assert "The worker running this import stopped" in page and "Resume from row 1" in page
    response = maria.post(f"/imports/{job.id}/resume", follow_redirects=True)

    assert "continues from row 1 of 5" in flashes(text(response))[0]
    stored = web_crm.tables.ImportJob.get_by_id(job.id)
    assert (stored.status, stored.created) == ("done", 5)
    assert len(leads(web_crm)) == 5


def test_the_sweep_queues_stalled_and_never_started_jobs_only(web_crm, clock, tmp_path):
    ImportJob = web_crm.tables.ImportJob
    lost = stalled_job(web_crm, tmp_path / "lost.csv")
    waiting = stalled_job(web_crm, tmp_path / "waiting.csv", status="queued", beat=False)
    cli = stalled_job(web_crm, tmp_path / "cli.csv", beat=False)  # run by the CLI: its process is in charge
    queued = []

    assert background.sweep(web_crm, queued.append) == 0  # all of them are fresh
    clock.advance(seconds=121)
    fresh = stalled_job(web_crm, tmp_path / "fresh.csv", status="queued", beat=False)
    assert background.sweep(web_crm, queued.append) == 2

    assert queued == [lost.id, waiting.id]
    web_crm.queue.enqueue_import(lost.id)  # what the periodic task does with them (inline here)
    web_crm.queue.enqueue_import(waiting.id)
    assert [ImportJob.get_by_id(j.id).status for j in (lost, waiting, cli, fresh)] == [
        "done", "done", "running", "queued"
    ]  # fmt: skip
    assert len(leads(web_crm)) == 5  # the same rows twice, matched on email: the second job skips them
    assert (ImportJob.get_by_id(waiting.id).created, ImportJob.get_by_id(waiting.id).skipped) == (0, 5)


def test_a_started_but_unfinished_upload_leads_to_its_job(web_crm, maria, tmp_path):
    url = mapping_url(maria, csv_bytes([lead_row(1)]))
    held = []
    web_crm.queue.enqueue_import = held.append  # the hand-over to a worker that has not run it yet
    form = mapping_form(text(maria.get(url)))
    maria.post(url, data=form | {"action": "start"})
    job = web_crm.tables.ImportJob.get()
    assert held == [job.id] and job.status == "queued"

    again = maria.post(url, data=form | {"action": "start"})  # a second click, or the browser's back and repost

    assert again.headers["Location"] == f"/imports/{job.id}" and held == [job.id]
    assert web_crm.tables.ImportJob.select().count() == 1
    assert "data-import-status" in text(maria.get(f"/imports/{job.id}"))


def test_uploads_abandoned_at_the_mapping_step_are_pruned_after_a_day(web_app, web_crm, maria, clock):
    abandoned = mapping_url(maria, csv_bytes([lead_row(1)]))
    taken = mapping_url(maria, csv_bytes([lead_row(2)]))
    web_crm.queue.enqueue_import = lambda job_id: None  # a worker that is not there
    maria.post(taken, data=mapping_form(text(maria.get(taken))) | {"action": "start"})
    assert len(upload_folders(web_app)) == 2
    assert background.prune_uploads(web_crm) == 0
    clock.at = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1, minutes=1)

    assert background.prune_uploads(web_crm) == 1

    assert upload_folders(web_app) == [taken.rsplit("/", 1)[1]]
    assert maria.get(abandoned).status_code == 404


def test_a_second_task_for_a_job_being_run_does_nothing(web_crm, tmp_path):
    job = stalled_job(web_crm, tmp_path / "busy.csv")
    assert background.run(web_crm, job.id) == "skipped"
    assert leads(web_crm) == []


def test_a_job_that_breaks_unexpectedly_is_marked_failed_with_the_reason(web_crm, maria, tmp_path, monkeypatch):
    job = stalled_job(web_crm, tmp_path / "boom.csv", status="queued", beat=False)

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(background, "run_job", explode)  # a fault no person can fix: a bug, a full disk
    with pytest.raises(RuntimeError):
        background.run(web_crm, job.id)

    stored = web_crm.tables.ImportJob.get_by_id(job.id)
    assert (stored.status, stored.error) == ("failed", "the import stopped: RuntimeError: disk on fire")
    page = text(maria.get(f"/imports/{job.id}"))
    assert "The import failed: the import stopped: RuntimeError: disk on fire" in page and "Resume" in page
    monkeypatch.undo()
    maria.post(f"/imports/{job.id}/resume")
    assert web_crm.tables.ImportJob.get_by_id(job.id).status == "done" and len(leads(web_crm)) == 5


# --- a real worker process -----------------------------------------------------------------------------


@pytest.fixture
def live_web(tmp_path, monkeypatch):
    """(app, crm, start_worker): the web app and ``flask worker`` processes sharing a database and a queue."""
    from crm_platform.application import create_app
    from crm_platform.seed import seed_demo

    from .conftest import PROJECT

    cheap_password_hashes(monkeypatch)
    config = live_config(tmp_path, PROJECT, None, IMPORT_DIR=tmp_path / "uploads", IMPORT_STALE_SECONDS=2)
    app = create_app({"TESTING": True, **config, "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False})
    crm = app.extensions["crm"]
    crm.init_db()
    seed_demo(crm.directory)
    workers: list[Worker] = []

    def start_worker() -> Worker:
        worker = Worker(worker_env(config), tmp_path / f"worker{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield app, crm, start_worker
    for worker in workers:
        worker.stop()
    crm.database.close()


def test_an_import_runs_on_a_real_worker_process(live_web):
    from crm_platform.seed import DEMO_PASSWORD

    app, crm, start_worker = live_web
    client = app.test_client()
    client.post("/login", data={"email": "maria@demo.example.com", "password": DEMO_PASSWORD})
    rows = [lead_row(n) for n in range(300)]
    rows[10] = lead_row(10, **{"Lead score": "500"})
    url = mapping_url(client, csv_bytes(rows))
    started = client.post(url, data=mapping_form(text(client.get(url))) | {"action": "start"})
    job_url = started.headers["Location"]
    assert client.get(job_url + "/status").get_json()["status"] == "queued"  # handed over, not run here
    assert "data-import-status" in text(client.get(job_url))  # the page follows the job

    worker = start_worker()
    wait_for(lambda: client.get(job_url + "/status").get_json()["finished"], 60, "the worker to finish the import")

    state = client.get(job_url + "/status").get_json()
    assert (state["status"], state["processed"], state["created"], state["failed"]) == ("done", 300, 299, 1), (
        worker.output()
    )
    assert len(leads(crm)) == 299
    assert "Lead score: must be at most 100" in csv_rows(client.get(job_url + "/errors.csv"))[1][-1]


def test_an_import_whose_worker_is_killed_is_resumed_by_the_next_worker_with_every_row_once(live_web, tmp_path):
    app, crm, start_worker = live_web
    total = 20000
    path = tmp_path / "many.csv"
    path.write_bytes(csv_bytes([lead_row(n) for n in range(total)]))
    maria = crm.directory.actor(user_id(crm, "maria"))
    job = start(crm, "lead", path, actor=maria, options=Options(rules=False, chunk=100))
    ImportJob = crm.tables.ImportJob
    worker = start_worker()
    crm.queue.enqueue_import(job.id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and ImportJob.get_by_id(job.id).next_row < 300:
        time.sleep(0.005)
    worker.kill()  # SIGKILL: the task dies mid-chunk, and Huey forgets it

    killed_at = ImportJob.get_by_id(job.id)
    assert killed_at.status == "running" and 300 <= killed_at.next_row < total
    assert len(leads(crm)) == killed_at.next_row  # the chunk being written died with the process
    time.sleep(2.5)  # IMPORT_STALE_SECONDS=2: its heartbeat is now stale
    start_worker()  # its start-up sweep queues the job again
    wait_for(lambda: ImportJob.get_by_id(job.id).status == "done", 120, "the second worker to finish the import")

    emails = [lead.email for lead in leads(crm)]
    assert len(emails) == len(set(emails)) == total
    assert ImportJob.get_by_id(job.id).created == total


# --- contacts from other tools --------------------------------------------------------------------------

CONTACTS = os.path.join(os.path.dirname(__file__), "fixtures", "contacts")


def test_a_google_contacts_file_creates_its_new_accounts_first_then_links_the_contacts(web_crm, sign_in):
    admin = sign_in("admin")
    with open(os.path.join(CONTACTS, "google.csv"), "rb") as source:
        response = upload(admin, source.read(), "google.csv", entity="contact")
    assert response.status_code == 302, text(response)
    url = response.headers["Location"]
    html = text(admin.get(url))
    assert "3 new accounts will be created first: Acme GmbH, Initech, Globex" in html
    assert web_crm.tables.ImportJob.select().count() == 0  # the preview stores nothing

    started = admin.post(url, data=mapping_form(html) | {"action": "start"}, follow_redirects=True)

    assert "Google Contacts CSV, 4 contacts, 3 new accounts" in text(started)
    ImportJob = web_crm.tables.ImportJob
    accounts_job, contacts_job = ImportJob.select().order_by(ImportJob.id)
    assert (accounts_job.entity, accounts_job.status, accounts_job.created) == ("account", "done", 3)
    assert (contacts_job.entity, contacts_job.status, contacts_job.created, contacts_job.failed) == (
        "contact", "done", 3, 1,
    )  # fmt: skip
    accounts = web_crm.compiled.entities["account"].model
    ids = {a.name: a.id for a in accounts.select()}
    contacts = web_crm.compiled.entities["contact"].model
    assert {c.last_name: c.account_id for c in contacts.select()} == {
        "Schmidt": ids["Acme GmbH"], "Becker": ids["Acme GmbH"], "Diaz": ids["Initech"],
    }  # fmt: skip
    assert not os.path.exists(os.path.dirname(contacts_job.path))  # the upload is gone with both jobs done


def test_a_contact_job_whose_account_job_failed_fails_with_that_reason(web_crm, tmp_path):
    path = tmp_path / "google.csv"
    with open(os.path.join(CONTACTS, "google.csv"), "rb") as source:
        path.write_bytes(source.read())

    started = contacts.start_contacts(web_crm, path, actor=web_fixtures.SYSTEM, options=Options(rules=False))
    accounts_job, contacts_job = started
    os.unlink(accounts_job.path)  # the account job can no longer read its names file

    assert background.run(web_crm, contacts_job.id) == "failed"

    ImportJob = web_crm.tables.ImportJob
    assert ImportJob.get_by_id(accounts_job.id).status == "failed"
    failed = ImportJob.get_by_id(contacts_job.id)
    assert failed.status == "failed" and failed.next_row == 0
    assert failed.error.startswith(f"import job {accounts_job.id} (account), which had to run first, failed: ")
    assert web_crm.compiled.entities["contact"].model.select().count() == 0


def test_the_account_job_run_alone_keeps_the_upload_its_contact_job_still_needs(web_crm, sign_in):
    # The sweep (a killed worker) or "Resume" on the account job runs it by itself, not from its contact job.
    admin = sign_in("admin")
    with open(os.path.join(CONTACTS, "google.csv"), "rb") as source:
        url = upload(admin, source.read(), "google.csv", entity="contact").headers["Location"]
    held = []
    web_crm.queue.enqueue_import = held.append  # no worker yet
    admin.post(url, data=mapping_form(text(admin.get(url))) | {"action": "start"})
    ImportJob = web_crm.tables.ImportJob
    accounts_job, contacts_job = ImportJob.select().order_by(ImportJob.id)

    assert background.run(web_crm, accounts_job.id) == "done"

    assert os.path.exists(contacts_job.path)  # the contact job is not done: its file stays
    assert background.run(web_crm, contacts_job.id) == "done"
    assert ImportJob.get_by_id(contacts_job.id).created == 3
    assert not os.path.exists(os.path.dirname(contacts_job.path))  # both done: now the upload goes


def test_two_start_posts_at_the_same_time_start_one_job(web_crm, maria, monkeypatch):
    from crm_platform.web import imports as wizard

    url = mapping_url(maria, csv_bytes([lead_row(1), lead_row(2)]))
    form = mapping_form(text(maria.get(url))) | {"match": [], "action": "start"}  # no duplicate check to hide it
    web_crm.queue.enqueue_import = lambda job_id: None  # no worker yet
    real, clicks, answers = wizard.start_contacts, [], []

    def second_click_meanwhile(*args, **kwargs):
        if not clicks:  # the second POST arrives while the first one is storing its job
            clicks.append(2)
            answers.append(maria.post(url, data=form))
        return real(*args, **kwargs)

    monkeypatch.setattr(wizard, "start_contacts", second_click_meanwhile)
    first = maria.post(url, data=form)

    job = web_crm.tables.ImportJob.get()
    assert web_crm.tables.ImportJob.select().count() == 1
    assert first.headers["Location"] == f"/imports/{job.id}"
    assert answers[0].status_code == 302 and answers[0].headers["Location"] == url  # back to the step: it leads on
    assert maria.get(url).headers["Location"] == f"/imports/{job.id}"


def test_a_user_who_may_update_only_their_own_leads_cannot_update_anothers_by_import(web_crm, sign_in):
    anna = sign_in("anna")  # a sales rep: scope "own"
    others = make_record(web_crm, "lead", first_name="Kept", last_name="Lee1", email="ann1@example.com")
    mine = make_record(
        web_crm, "lead", web_fixtures.SYSTEM, first_name="Mine", last_name="Lee2", email="ann2@example.com",
        owner=user_id(web_crm, "anna"),
    )  # fmt: skip
    url = mapping_url(anna, csv_bytes([lead_row(1), lead_row(2)]))
    form = mapping_form(text(anna.get(url)))

    anna.post(url, data=form | {"on_duplicate": "update", "action": "start"})

    job = web_crm.tables.ImportJob.get()
    assert (job.status, job.updated, job.failed, job.created) == ("done", 1, 1, 0)
    ce = web_crm.compiled.entities["lead"]
    assert ce.model.get_by_id(others.id).first_name == "Kept"  # not hers: untouched
    assert ce.model.get_by_id(mine.id).first_name == "Ann2"
    report = csv_rows(anna.get(f"/imports/{job.id}/errors.csv"))
    assert report[1][0] == "2" and "you may only update your own" in report[1][-1]


def test_the_error_report_neutralises_formulas_and_the_pages_escape_the_file_name(web_crm, maria):
    bad = lead_row(1, **{"Company": '=HYPERLINK("http://x")', "First name": "@SUM(A1)", "Lead score": "-5"})
    url = mapping_url(maria, csv_bytes([bad, lead_row(2)]), name="<img src=x onerror=alert(1)>.csv")
    mapping_page = text(maria.get(url))
    assert "<img src=x" not in mapping_page and "&lt;img src=x onerror=alert(1)&gt;.csv" in mapping_page
    maria.post(url, data=mapping_form(mapping_page) | {"action": "start"})
    job = web_crm.tables.ImportJob.get()
    assert (job.created, job.failed) == (1, 1)

    rows = csv_rows(maria.get(f"/imports/{job.id}/errors.csv"))
    assert rows[1][1:7] == ["'@SUM(A1)", "Lee1", "ann1@example.com", '\'=HYPERLINK("http://x")', "DE", "'-5"]
    for page in (f"/imports/{job.id}", "/imports/"):
        html = text(maria.get(page))
        assert "<img" not in html and job.filename in html, page  # the name as stored on disk: no markup left


def test_an_upload_the_reader_breaks_on_leaves_no_folder_behind(web_app, maria):
    # A cell over the csv module's field limit (131,072 characters): the reader raises csv.Error, not
    # FileRejected (imports/reader.py). Whatever the answer, the half-accepted upload must not stay on disk,
    # where no upload.json marks it and the sweep would never delete it.
    huge = csv_bytes([lead_row(1, **{"Company": "x" * 200_000})])
    try:
        upload(maria, huge)
    except csv.Error:
        pass
    assert upload_folders(web_app) == []


def test_a_contact_job_waiting_for_its_running_account_job_is_not_stopped_and_names_it(web_crm, sign_in, clock):
    admin = sign_in("admin")
    with open(os.path.join(CONTACTS, "google.csv"), "rb") as source:
        url = upload(admin, source.read(), "google.csv", entity="contact").headers["Location"]
    web_crm.queue.enqueue_import = lambda job_id: None  # the worker has not got to it yet
    admin.post(url, data=mapping_form(text(admin.get(url))) | {"action": "start"})
    ImportJob = web_crm.tables.ImportJob
    accounts_job, contacts_job = ImportJob.select().order_by(ImportJob.id)
    clock.advance(seconds=121)
    # A worker runs the account job (a big one) and keeps its heartbeat fresh; the contact job waits.
    ImportJob.update(status="running", heartbeat_at=clock.utcnow()).where(ImportJob.id == accounts_job.id).execute()

    state = admin.get(f"/imports/{contacts_job.id}/status").get_json()
    page = text(admin.get(f"/imports/{contacts_job.id}"))

    assert (state["status"], state["stopped"]) == ("queued", False)
    assert "Resume" not in page and "data-import-status" in page  # still followed
    assert f'href="/imports/{accounts_job.id}"' in page and "new accounts" in page
    clock.advance(seconds=121)  # now that worker is gone too: both offer "Resume"
    assert admin.get(f"/imports/{contacts_job.id}/status").get_json()["stopped"] is True
    assert admin.get(f"/imports/{accounts_job.id}/status").get_json()["stopped"] is True


@pytest.mark.parametrize("name", ["../../escape.csv", "..\\..\\escape.csv", "/etc/escape.csv", "...csv"])
def test_an_upload_name_cannot_leave_its_folder(web_app, maria, tmp_path, name):
    response = upload(maria, csv_bytes([lead_row(1)]), name)

    assert response.status_code == 302
    (folder,) = upload_folders(web_app)
    kept = sorted(os.listdir(os.path.join(web_app.config["IMPORT_DIR"], folder)))
    assert len(kept) == 2 and "upload.json" in kept and all(k.endswith((".csv", ".json")) for k in kept)
    assert not os.path.exists("/etc/escape.csv")
    assert [p.parent.parent for p in tmp_path.rglob("*.csv")] == [tmp_path / "uploads"]  # inside its folder only


def test_a_start_that_died_after_storing_its_job_leads_to_that_job_not_a_second_one(web_crm, maria, monkeypatch):
    from crm_platform.web import imports as wizard

    url = mapping_url(maria, csv_bytes([lead_row(1)]))
    form = mapping_form(text(maria.get(url))) | {"action": "start"}
    web_crm.queue.enqueue_import = lambda job_id: None  # no worker yet

    def killed(folder, meta):
        raise RuntimeError("the process died before writing upload.json")

    monkeypatch.setattr(wizard, "_write_meta", killed)
    with pytest.raises(RuntimeError):
        maria.post(url, data=form)
    monkeypatch.undo()
    job = web_crm.tables.ImportJob.get()  # stored: the sweep would run it

    again = maria.post(url, data=form)

    assert again.status_code == 302 and again.headers["Location"] == f"/imports/{job.id}"
    assert web_crm.tables.ImportJob.select().count() == 1


def test_a_very_long_file_name_is_shortened_on_disk_and_kept_for_the_pages(web_app, maria):
    name = "q" * 300 + ".csv"  # past the 255 bytes a file system allows for a name

    url = mapping_url(maria, csv_bytes([lead_row(1)]), name=name)

    (folder,) = upload_folders(web_app)
    (kept,) = [n for n in os.listdir(os.path.join(web_app.config["IMPORT_DIR"], folder)) if n != "upload.json"]
    assert kept.endswith(".csv") and len(kept) <= 120
    assert name in text(maria.get(url))  # the page names the file as the person knows it
