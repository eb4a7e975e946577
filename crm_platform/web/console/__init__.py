"""The admin console (Flask-Admin) at ``/admin``: users, teams and roles, the
definitions, and what the automation did.

Every page is generated from the definitions and the platform's tables;
nothing is written per entity. Only admins (superusers and the pack's
``admin`` role) may open any of it; see ``pages`` for access and CSRF.
"""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.menu import MenuLink
from flask_admin.theme import Bootstrap4Theme

from ..state import crm
from .activity import AuditView, MailView, OutboxView, SavedViewsView, TimersView, pending_timers
from .definitions import CompileStatusView, EntitiesView, PublicFormsView, RulesView, WorkflowsView
from .inbound import InboundMailView
from .organisation import RolesView, TeamsView
from .pages import AdminOnly
from .users import UsersView
from .webhooks import DeliveriesView, SubscriptionsView

PEOPLE, DEFINITIONS, ACTIVITY = "People", "Definitions", "Activity"
INTEGRATIONS = "Integrations"


class ConsoleIndex(AdminOnly, AdminIndexView):
    """The console's home (endpoint ``admin.index``): the state of things at a glance."""

    @expose()
    def index(self):
        platform = crm()
        return self.render(
            "admin/console/index.html",
            users=platform.directory.count(),
            outbox=platform.outbox.counts(),
            timers=pending_timers(platform).count(),
            compiled=platform.compiled,
        )


def init_console(app: Flask) -> None:
    """Add the console to ``app`` (before its first request, as Flask-Admin requires).

    Nothing is compiled or connected here: the platform's models are made
    without a connection, and the definitions are read when a page is opened.
    """
    tables = app.extensions["crm"].tables
    admin = Admin(
        app,
        name="CRM console",
        url="/admin",
        index_view=ConsoleIndex(name="Overview", url="/admin"),
        # Flask-Admin serves the theme's CSS and scripts itself: no CDN, works offline.
        theme=Bootstrap4Theme(fluid=True),
    )
    admin.add_views(
        UsersView(tables.User, name="Users", category=PEOPLE, endpoint="console_users", url="users"),
        TeamsView(name="Teams", category=PEOPLE, endpoint="console_teams", url="teams"),
        RolesView(name="Roles", category=PEOPLE, endpoint="console_roles", url="roles"),
        EntitiesView(name="Entities", category=DEFINITIONS, endpoint="console_entities", url="definitions/entities"),
        WorkflowsView(
            name="Workflows", category=DEFINITIONS, endpoint="console_workflows", url="definitions/workflows"
        ),
        RulesView(name="Rules", category=DEFINITIONS, endpoint="console_rules", url="definitions/rules"),
        PublicFormsView(
            name="Public forms", category=DEFINITIONS, endpoint="console_public_forms", url="definitions/forms"
        ),
        CompileStatusView(
            name="Compile status", category=DEFINITIONS, endpoint="console_compile_status", url="definitions/status"
        ),
        OutboxView(tables.Outbox, name="Actions", category=ACTIVITY, endpoint="console_outbox", url="outbox"),
        TimersView(tables.Timer, name="Pending timers", category=ACTIVITY, endpoint="console_timers", url="timers"),
        AuditView(tables.Audit, name="Audit log", category=ACTIVITY, endpoint="console_audit", url="audit"),
        MailView(tables.Mail, name="Mail outbox", category=ACTIVITY, endpoint="console_mail", url="mail"),
        InboundMailView(
            tables.InboundMail,
            name="Inbound mail",
            category=ACTIVITY,
            endpoint="console_inbound_mail",
            url="inbound-mail",
        ),
        SavedViewsView(
            tables.SavedView, name="Saved views", category=ACTIVITY, endpoint="console_saved_views", url="saved-views"
        ),
        SubscriptionsView(
            tables.WebhookSubscription,
            name="Webhook subscriptions",
            category=INTEGRATIONS,
            endpoint="console_webhooks",
            url="webhooks",
        ),
        DeliveriesView(
            tables.WebhookDelivery,
            name="Webhook deliveries",
            category=INTEGRATIONS,
            endpoint="console_webhook_deliveries",
            url="webhook-deliveries",
        ),
    )
    admin.add_link(MenuLink(name="Back to the CRM", endpoint="home.index"))
