"""The admin console (Flask-Admin). Built out next."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin


def init_console(app: Flask) -> None:
    Admin(app, name="CRM console", url="/admin")
