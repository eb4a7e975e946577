"""Access to the company's running platform from a request."""

from __future__ import annotations

from flask import current_app

from ..engine import CRM
from .formats import Formats


def crm() -> CRM:
    """The ``CRM`` of the app serving this request."""
    return current_app.extensions["crm"]


def formats() -> Formats:
    """The company's formats (locale, time zone, currency), built once per app."""
    extensions = current_app.extensions
    if "crm_formats" not in extensions:
        extensions["crm_formats"] = Formats(crm().settings)
    return extensions["crm_formats"]
