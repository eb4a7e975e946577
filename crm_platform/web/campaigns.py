"""Campaign runs in the web UI: the run page of a campaign (start now or at a
time, live progress, pause, resume, stop) and the public unsubscribe page.

The run page is for users who may update the campaign. The unsubscribe page
needs no sign-in: the signed token in its URL names the recipient. Its form
is CSRF-protected; the one-click POST of RFC 8058 (``List-Unsubscribe=One-Click``,
sent by mail clients without any page) is accepted without a CSRF token,
as the RFC requires.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms import ValidationError as CSRFInvalid

from ..campaigns import segments as seg
from ..campaigns.unsubscribe import opted_out, read_token, unsubscribe
from ..errors import ConflictError, NotFound, ValidationError
from .auth import actor
from .extensions import csrf
from .records import entity_or_404
from .state import crm, formats

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")
public = Blueprint("unsubscribe", __name__, url_prefix="/unsubscribe")


def campaign_or_404(campaign_id: int):
    """The campaign, if the signed-in user may update it (raises ``PermissionDenied``/``NotFound``)."""
    entity_or_404("campaign")
    return crm().records.get("campaign", campaign_id, actor(), "update")


def _run_of(campaign, run_id: int):
    run = crm().campaigns.get(run_id)
    if run.campaign_id != campaign.id:
        raise NotFound(f"there is no run #{run_id} of this campaign")
    return run


@bp.get("/<int:campaign_id>/runs")
def runs_page(campaign_id: int, errors: dict | None = None, status: int = 200):
    """The campaign's runs with their progress, and the form that starts one."""
    campaign = campaign_or_404(campaign_id)
    engine = crm()
    runs = engine.campaigns.runs_of(campaign.id)
    who = actor()
    page = render_template(
        "web/campaign_runs.html",
        campaign=campaign,
        title=engine.compiled.entities["campaign"].title_of(campaign),
        runs=[(run, engine.campaigns.progress(run)) for run in runs],
        segments=seg.available(engine, who.user_id, who.superuser),
        templates=sorted(engine.compiled.pack.templates),
        errors=errors or {},
        form=request.form,
        timezone=engine.settings.timezone,
    )
    return page, status


@bp.post("/<int:campaign_id>/runs")
def start(campaign_id: int):
    """Start a run now, or schedule it."""
    campaign = campaign_or_404(campaign_id)
    errors: dict[str, list[str]] = {}
    step_text = request.form.get("step", "1").strip()
    step = int(step_text) if step_text.isdigit() else 0
    scheduled_at = None
    when = request.form.get("scheduled_at", "").strip()
    if request.form.get("when") == "later":
        try:
            local = dt.datetime.fromisoformat(when)
        except ValueError:
            errors["scheduled_at"] = ["Give the date and time to send at."]
        else:
            scheduled_at = local.replace(tzinfo=formats().tz).astimezone(dt.UTC).replace(tzinfo=None)
            if scheduled_at <= crm().clock.utcnow():
                errors["scheduled_at"] = ["This time is past: choose a later one, or send now."]
    # Only a segment the page offers: another user's private saved view is refused like an unknown one.
    who = actor()
    segment = request.form.get("segment", "")
    if segment not in {offered.ref for offered in seg.available(crm(), who.user_id, who.superuser)}:
        segment = ""
    if not errors:
        try:
            run = crm().campaigns.start(
                campaign.id, segment, request.form.get("template", ""), step,
                user_id=who.user_id, scheduled_at=scheduled_at,
            )  # fmt: skip
        except ValidationError as error:
            errors = error.errors
        except ConflictError as error:
            errors = {"step": [str(error)]}
        else:
            flash(f"Run #{run.id} {'scheduled' if scheduled_at else 'started'}.", "success")
            return redirect(url_for("campaigns.runs_page", campaign_id=campaign.id))
    return runs_page(campaign_id, errors, 400)


@bp.post("/<int:campaign_id>/runs/<int:run_id>/<any(pause, resume, stop):command>")
def control(campaign_id: int, run_id: int, command: str):
    """Pause, resume or stop a run."""
    campaign = campaign_or_404(campaign_id)
    run = _run_of(campaign, run_id)
    try:
        getattr(crm().campaigns, command)(run.id)
    except ConflictError as error:
        flash(f"Cannot {command} run #{run.id}: {error}", "error")
    else:
        done = {"pause": "paused", "resume": "resumed", "stop": "stopped"}[command]
        flash(f"Run #{run.id} {done}.", "success")
    return redirect(url_for("campaigns.runs_page", campaign_id=campaign.id))


@bp.get("/<int:campaign_id>/runs/<int:run_id>/progress")
def progress(campaign_id: int, run_id: int):
    """The run's progress as JSON (the page polls it while the run goes on)."""
    campaign = campaign_or_404(campaign_id)
    state = crm().campaigns.progress(_run_of(campaign, run_id))
    state["finished"] = state["status"] not in ("queued", "running")
    return jsonify(state)


# --- the public unsubscribe page ---------------------------------------------------


@public.route("/<token>", methods=["GET", "POST"])
@csrf.exempt  # checked below, except for RFC 8058's one-click POST
def confirm(token: str):
    """GET: a button to confirm; POST: unsubscribe (from the form, or one-click from a mail client)."""
    engine = crm()
    try:
        entity, member_id = read_token(current_app.config["SECRET_KEY"], token)
    except NotFound as error:
        return render_template("web/unsubscribe.html", state="invalid", message=str(error)), 404
    record = engine.compiled.entities[entity].model.get_or_none(id=member_id)
    if record is None:
        message = "This unsubscribe link is for an address we no longer keep: you will get no email from us."
        return render_template("web/unsubscribe.html", state="invalid", message=message), 404
    address = getattr(record, "email", None) or ""
    if request.method == "GET":
        state = "done" if opted_out(entity, record) else "confirm"
        return render_template("web/unsubscribe.html", state=state, address=address, token=token)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    if not one_click and current_app.config.get("WTF_CSRF_ENABLED", True):
        try:
            validate_csrf(request.form.get("csrf_token"))
        except (CSRFInvalid, CSRFError):
            message = "The form expired. Please open the link from the email again."
            return render_template("web/unsubscribe.html", state="confirm", address=address, token=token,
                                   message=message), 400  # fmt: skip
    unsubscribe(engine, entity, member_id)
    if one_click:
        return "Unsubscribed.\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
    return render_template("web/unsubscribe.html", state="done", address=address)
