"""The application factory, configuration layers and the health check."""

from __future__ import annotations

from crm_platform.application import create_app

from .conftest import GOOD, PROJECT


def test_start_page_sends_anonymous_visitors_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.location == "/login?next=%2F"


def test_healthz_reports_the_compiled_definitions_version(client, app):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "definitions": app.extensions["crm"].compiled.version}


def test_engine_is_registered_as_an_extension(app):
    crm = app.extensions["crm"]
    assert crm.company.slug == "demo"
    assert crm.company.pack_dir == PROJECT


def test_environment_overrides_defaults_and_test_mapping_overrides_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CRM_PACK_DIR", str(GOOD))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite3'}")
    from_env = create_app({"TESTING": True})
    assert from_env.config["PACK_DIR"] == str(GOOD)
    assert from_env.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'env.sqlite3'}"
    overridden = create_app({"TESTING": True, "PACK_DIR": str(PROJECT)})
    assert overridden.config["PACK_DIR"] == str(PROJECT)


def test_instance_config_file_is_read(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "crm.cfg").write_text("COMPANY = 'acme'\n")
    app = create_app({"TESTING": True}, instance_path=str(instance))
    assert app.config["COMPANY"] == "acme"
    assert app.config["DATABASE_URL"] == f"sqlite:///{instance / 'crm.sqlite3'}"


def test_a_secret_key_is_made_once_per_instance_when_none_is_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("CRM_SECRET_KEY", raising=False)
    first = create_app({"TESTING": True}, instance_path=str(tmp_path / "one"))
    again = create_app({"TESTING": True}, instance_path=str(tmp_path / "one"))
    other = create_app({"TESTING": True}, instance_path=str(tmp_path / "two"))
    assert len(first.config["SECRET_KEY"]) == 64
    # The web server and a `flask worker` of one instance sign alike, also after a restart.
    assert first.config["SECRET_KEY"] == again.config["SECRET_KEY"]
    assert first.config["SECRET_KEY"] != other.config["SECRET_KEY"]
    key_file = tmp_path / "one" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["secret_key"]  # no draft left behind


def test_a_configured_secret_key_is_used_and_no_key_file_is_made(monkeypatch, tmp_path):
    monkeypatch.setenv("SECRET_KEY", "s3cret")
    app = create_app({"TESTING": True}, instance_path=str(tmp_path))
    assert app.config["SECRET_KEY"] == "s3cret"
    assert not (tmp_path / "secret_key").exists()


def test_creating_the_app_compiles_nothing(tmp_path):
    # A broken pack must not stop the app (and so `check`) from starting.
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "bad.yaml").write_text("entity: [\n")
    app = create_app({"TESTING": True, "PACK_DIR": str(tmp_path)})
    assert "compiled" not in vars(app.extensions["crm"])
