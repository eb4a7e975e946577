"""The users page: list, create and edit users, their roles and teams.

Every write goes through ``Directory`` (passwords hashed there, roles and
teams checked against the pack); its field errors come back on the form.
Password hashes are never shown, and users are deactivated, not deleted
(their records, audit rows and notifications keep pointing at them).
"""

from __future__ import annotations

from flask import flash
from flask_admin.helpers import get_form_data
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from wtforms import BooleanField, EmailField, PasswordField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from ...errors import ValidationError
from ..state import crm
from .pages import ConsoleModelView


class CheckboxesField(SelectMultipleField):
    """A multiple choice shown as a list of checkboxes (no script needed)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class UserCreateForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    password = PasswordField("Password", validators=[DataRequired()])
    roles = CheckboxesField("Roles")
    teams = CheckboxesField("Teams")
    superuser = BooleanField("Superuser (every permission, whatever the roles say)")


class UserEditForm(FlaskForm):
    email = StringField("Email", render_kw={"readonly": True})  # shown, never written
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    password = PasswordField("New password", validators=[Optional()], description="Leave blank to keep it.")
    roles = CheckboxesField("Roles")
    teams = CheckboxesField("Teams")
    active = BooleanField("Active (may sign in and be assigned records)")
    away = BooleanField("Away (gets no new assignments)")
    superuser = BooleanField("Superuser (every permission, whatever the roles say)")


def offer_memberships(form) -> None:
    """Offer the pack's roles and teams (read per request: definitions may differ per app)."""
    pack = crm().compiled.pack
    form.roles.choices = [(name, f"{role.label} ({name})") for name, role in pack.roles.items()]
    form.teams.choices = [(name, f"{team.label} ({name})") for name, team in pack.teams.items()]


def show_errors(form, error: ValidationError) -> None:
    """Put each field's messages next to that field; others in a message on top."""
    for name, messages in error.errors.items():
        field = form._fields.get(name)
        if field is not None and name != "csrf_token":
            field.errors = [*field.errors, *messages]
        else:
            flash(f"{name}: {', '.join(messages)}", "error")


def _labels(view, context, model, name) -> Markup:
    return escape(", ".join(getattr(model, f"console_{name}", [])))


class UsersView(ConsoleModelView):
    can_delete = False  # deactivate instead
    column_list = ["email", "name", "active", "away", "superuser", "roles", "teams"]
    column_searchable_list = ["email", "name"]
    column_filters = ["active", "away", "superuser"]
    column_default_sort = "email"
    column_formatters = {"roles": _labels, "teams": _labels}
    # Checkbox lists, not text inputs: no "form-control" box around them.
    form_widget_args = {"roles": {"class": "list-unstyled"}, "teams": {"class": "list-unstyled"}}

    def get_create_form(self):
        return UserCreateForm

    def get_edit_form(self):
        return UserEditForm

    def get_list(self, *args, **kwargs):
        """The page of users, each with its roles and teams (two queries for the page)."""
        count, users = super().get_list(*args, **kwargs)
        if not isinstance(users, list) or not users:
            return count, users
        tables = crm().tables
        ids = [user.id for user in users]
        roles: dict[int, list[str]] = {}
        for link in tables.UserRole.select().where(tables.UserRole.user.in_(ids)).order_by(tables.UserRole.role):
            roles.setdefault(link.user_id, []).append(link.role)
        teams: dict[int, list[str]] = {}
        members = tables.TeamMember.select().where(tables.TeamMember.user.in_(ids)).order_by(tables.TeamMember.team)
        for link in members:
            teams.setdefault(link.user_id, []).append(f"{link.team} (lead)" if link.lead else link.team)
        for user in users:
            user.console_roles = roles.get(user.id, [])
            user.console_teams = teams.get(user.id, [])
        return count, users

    def create_form(self, obj=None):
        form = super().create_form(obj)
        offer_memberships(form)
        return form

    def edit_form(self, obj=None):
        info = crm().directory.get(obj.id)
        # On a GET the checkboxes show the stored roles and teams; a POST brings its own.
        form = self._edit_form_class(get_form_data(), obj=obj, roles=info.roles, teams=info.teams)
        offer_memberships(form)
        return form

    def create_model(self, form):
        directory = crm().directory
        try:
            user_id = directory.create_user(
                form.email.data,
                form.name.data.strip(),
                form.password.data,
                roles=form.roles.data,
                teams=form.teams.data,
                superuser=form.superuser.data,
            )
        except ValidationError as error:
            show_errors(form, error)
            flash("The user was not created; see the messages below.", "error")
            return False
        return self.get_one(user_id)

    def update_model(self, form, model) -> bool:
        if model.id == current_user.id and self._locks_out(form):
            form.active.errors = [*form.active.errors, "you would lock yourself out of the console"]
            flash("Another admin must take away your own admin rights.", "error")
            return False
        try:
            crm().directory.update_user(
                model.id,
                name=form.name.data,
                password=form.password.data or None,
                roles=form.roles.data,
                teams=form.teams.data,
                superuser=form.superuser.data,
                away=form.away.data,
                active=form.active.data,
            )
        except ValidationError as error:
            show_errors(form, error)
            flash("The user was not saved; see the messages below.", "error")
            return False
        return True

    @staticmethod
    def _locks_out(form) -> bool:
        """True if saving would leave the signed-in admin unable to open the console."""
        return not form.active.data or not (form.superuser.data or "admin" in form.roles.data)
