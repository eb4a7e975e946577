"""The base classes of every console page: admins only, one CSRF mechanism.

Every page, the index included, answers 403 to a signed-in user who is not an
admin (anonymous visitors never get here: ``require_login`` sends them to the
sign-in page first).

CSRF: the app's ``CSRFProtect`` checks every POST, the console's included, and
the console's forms are Flask-WTF forms (``form_base_class``), so the create,
edit, delete and bulk-action forms carry and check the same ``csrf_token``.
Hand-written POST buttons (retry) put ``csrf_token()`` in a hidden input.
"""

from __future__ import annotations

from flask import abort
from flask_admin import BaseView
from flask_admin.contrib.peewee import ModelView
from flask_login import current_user
from flask_wtf import FlaskForm


class AdminOnly:
    """Only admins may open the page; others get 403.

    Listed before the Flask-Admin class in the bases, so that it wins over
    Flask-Admin's allow-everyone default.
    """

    def is_accessible(self) -> bool:
        return bool(current_user.is_authenticated and current_user.is_admin)

    def inaccessible_callback(self, name, **kwargs):
        abort(403)


class ConsolePage(AdminOnly, BaseView):
    """A page of its own (``@expose``) under the console's menu."""


class ConsoleModelView(AdminOnly, ModelView):
    """A list of one of the platform's tables."""

    form_base_class = FlaskForm
    page_size = 50
    can_set_page_size = True

    def search_placeholder(self) -> str:
        """The search box's hint, e.g. "Search email, name" (Flask-Admin's peewee views show "None")."""
        names = [str(self.get_column_name(column)).lower() for column in self.column_searchable_list or ()]
        return "Search " + ", ".join(names)


class ReadOnlyModelView(ConsoleModelView):
    """A table the console shows but never writes.

    The create, edit and delete routes are not registered at all (Flask-Admin
    registers only methods that carry ``@expose``), so their URLs answer 404
    instead of quietly redirecting to the list.
    """

    can_create = False
    can_edit = False
    can_delete = False
    create_view = None
    edit_view = None
    delete_view = None
