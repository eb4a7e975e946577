"""Webhook subscriptions and their delivery log in the console.

Every write goes through ``crm.webhooks`` (``runtime/subscriptions.py``),
which validates and forgets its cached list; its field errors come back on
the form. A secret left empty is generated. It is masked on every page (the
edit form never holds it: a new one may be typed in, or the field left empty
to keep it) and shown only in the answer to an admin's "Reveal secret" POST,
never in a flash message: those travel in the session cookie, which is signed
but not encrypted.
"""

from __future__ import annotations

from flask import abort, flash, has_request_context, make_response, redirect
from flask_admin import expose
from flask_admin.contrib.peewee.filters import FilterEqual
from flask_admin.helpers import get_redirect_target
from flask_admin.model.template import macro
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from ...actions.deliver_webhook import send_test
from ...errors import NotFound, ValidationError
from ...runtime.subscriptions import EVENTS, mask
from ..state import crm
from .activity import _pre, _short, options
from .pages import ConsoleModelView, ReadOnlyModelView
from .users import CheckboxesField, show_errors

DELIVERY_STATES = ("delivered", "failed")
# The delivery log's first filter is the subscription: its URL argument is flt0_0.
SUBSCRIPTION_FILTER = "flt0_0"


class SubscriptionCreateForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    entity = SelectField("Entity")
    events = CheckboxesField("Events")
    url = StringField("URL", description="http:// or https://; the events are POSTed there as JSON.")
    secret = StringField(
        "Signing secret", validators=[Optional()], description="Leave empty to have one generated (shown once)."
    )
    active = BooleanField("Active", default=True)


class SubscriptionEditForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    entity = SelectField("Entity")
    events = CheckboxesField("Events")
    url = StringField("URL", description="http:// or https://; the events are POSTed there as JSON.")
    new_secret = StringField(
        "New signing secret", validators=[Optional()], description="Leave empty to keep the current one."
    )
    active = BooleanField("Active")


def offer_choices(form) -> None:
    """The compiled entities and the events as choices (read per request: definitions may differ per app)."""
    form.events.choices = [(event, event) for event in EVENTS]
    entities = crm().compiled.entities
    form.entity.choices = [(name, f"{ce.definition.label} ({name})") for name, ce in sorted(entities.items())]


def _events(view, context, model, name) -> str:
    return ", ".join(model.events or [])


def _secret(view, context, model, name) -> str:
    return mask(model.secret)


class SubscriptionsView(ConsoleModelView):
    """Outside systems told of changes: list, create, edit, delete, send a test event."""

    list_template = "admin/console/webhooks_list.html"
    column_list = ["name", "entity", "events", "url", "active", "secret", "created_at", "tools"]
    column_labels = {"url": "URL", "created_at": "Created", "tools": ""}
    column_default_sort = [("created_at", True), ("id", True)]
    column_formatters = {"events": _events, "secret": _secret, "tools": macro("tools")}
    column_searchable_list = ["name", "url"]
    column_filters = ["entity", "active"]
    form_widget_args = {"events": {"class": "list-unstyled"}}

    def get_create_form(self):
        return SubscriptionCreateForm

    def get_edit_form(self):
        return SubscriptionEditForm

    def create_form(self, obj=None):
        form = super().create_form(obj)
        offer_choices(form)
        return form

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        offer_choices(form)
        return form

    def create_model(self, form):
        try:
            row, secret = crm().webhooks.create(
                form.name.data,
                form.entity.data,
                form.events.data,
                form.url.data,
                form.secret.data,
                active=form.active.data,
                user_id=current_user.id,
            )
        except ValidationError as error:
            show_errors(form, error)
            flash("The subscription was not created; see the messages below.", "error")
            return False
        flash(f'Subscription {row.name!r} created: copy its signing secret with "Reveal secret".', "success")
        return row

    def update_model(self, form, model) -> bool:
        try:
            crm().webhooks.update(
                model.id,
                form.name.data,
                form.entity.data,
                form.events.data,
                form.url.data,
                form.new_secret.data,
                active=form.active.data,
            )
        except ValidationError as error:
            # The secret is typed into "new_secret" on this form.
            renamed = {("new_secret" if name == "secret" else name): m for name, m in error.errors.items()}
            show_errors(form, ValidationError(renamed))
            flash("The subscription was not saved; see the messages below.", "error")
            return False
        return True

    def delete_model(self, model) -> bool:
        crm().webhooks.delete(model.id)
        return True

    def deliveries_url(self, subscription_id: int) -> str:
        """The delivery log filtered to one subscription."""
        return self.get_url("console_webhook_deliveries.index_view", **{SUBSCRIPTION_FILTER: subscription_id})

    @expose("/reveal/<int:subscription_id>", methods=["POST"])
    def reveal_view(self, subscription_id: int):
        """The subscription's signing secret, in this answer only (a POST: not cached, not in a link)."""
        try:
            subscription = crm().webhooks.get(subscription_id)
        except NotFound:
            abort(404)
        response = make_response(self.render("admin/console/webhook_secret.html", subscription=subscription))
        response.headers["Cache-Control"] = "no-store"
        return response

    @expose("/test/<int:subscription_id>", methods=["POST"])
    def test_view(self, subscription_id: int):
        """Post a ``test`` event to the subscription now and say what its receiver answered."""
        try:
            delivery = send_test(crm(), subscription_id)
        except NotFound as error:
            flash(f"Not sent: {error}.", "error")
        else:
            if delivery.status == "delivered":
                flash(f"Test event delivered: HTTP {delivery.http_status} in {delivery.duration_ms} ms.", "success")
            else:
                flash(f"Test event failed: {delivery.error}.", "error")
        return redirect(get_redirect_target() or self.get_url(".index_view"))


def _subscription(view, context, model, name) -> str:
    return getattr(model, "console_subscription", None) or f"#{model.subscription_id}"


class DeliveriesView(ReadOnlyModelView):
    """One row per attempt, newest first; a delivery can be sent again."""

    list_template = "admin/console/webhook_deliveries_list.html"
    column_list = [
        "at", "subscription", "event", "entity", "record_id", "attempt", "status", "http_status", "duration_ms",
        "error",
    ]  # fmt: skip
    column_labels = {"record_id": "Record", "http_status": "HTTP", "duration_ms": "ms", "event_id": "Event id"}
    column_default_sort = [("at", True), ("id", True)]
    column_formatters = {
        "subscription": _subscription,
        "status": macro("status_with_redeliver"),
        "error": lambda v, c, m, n: _short(m.error or "", 200),
    }
    column_sortable_list = ["at", "status", "http_status", "duration_ms"]
    can_view_details = True
    column_details_list = [
        "at", "subscription", "event", "event_id", "entity", "record_id", "outbox_id", "attempt", "status",
        "http_status", "duration_ms", "error", "response",
    ]  # fmt: skip
    column_formatters_detail = {"subscription": _subscription, "response": _pre, "error": _pre}

    def get_filters(self):
        Delivery = self.model
        Sub = Delivery.subscription.rel_model

        def subscriptions():
            # Read for each list page (see index_view); the console is built before any table exists.
            if not has_request_context():
                return None
            return [(str(row.id), row.name) for row in Sub.select(Sub.id, Sub.name).order_by(Sub.name)]

        # The subscription first: its URL argument is SUBSCRIPTION_FILTER.
        return [
            FilterEqual(Delivery.subscription, "Subscription", options=subscriptions),
            FilterEqual(Delivery.status, "Status", options=options(DELIVERY_STATES)),
            FilterEqual(Delivery.event, "Event", options=options((*EVENTS, "test"))),
            FilterEqual(Delivery.entity, "Entity"),
        ]

    @expose("/")
    def index_view(self):
        self._refresh_filters_cache()  # the subscriptions to choose from, as they are now
        return super().index_view()

    def get_list(self, *args, **kwargs):
        """The page of attempts, each with its subscription's name (one query for the page)."""
        count, rows = super().get_list(*args, **kwargs)
        if isinstance(rows, list) and rows:
            self._name_subscriptions(rows)
        return count, rows

    def get_one(self, id):
        row = super().get_one(id)
        if row is not None:
            self._name_subscriptions([row])
        return row

    @staticmethod
    def _name_subscriptions(rows) -> None:
        Sub = crm().tables.WebhookSubscription
        ids = {row.subscription_id for row in rows}
        names = {sub.id: sub.name for sub in Sub.select(Sub.id, Sub.name).where(Sub.id.in_(ids))}
        for row in rows:
            row.console_subscription = names.get(row.subscription_id)

    @expose("/redeliver/<int:delivery_id>", methods=["POST"])
    def redeliver_view(self, delivery_id: int):
        """Send a logged delivery's event again, with the same event id and body."""
        try:
            outbox_id = crm().webhooks.redeliver(delivery_id)
        except LookupError as error:
            flash(f"Not redelivered: {error}.", "error")
        else:
            flash(f"Delivery queued again (action {outbox_id}).", "success")
        return redirect(get_redirect_target() or self.get_url(".index_view"))
