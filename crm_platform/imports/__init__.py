"""Importing CSV and XLSX files into an entity through the one write path.

``reader`` (file -> header and rows), ``mapping`` (columns -> fields),
``rows`` (cells -> payloads), ``job`` (the resumable run and the error
report), ``contacts`` (vCard, Google and Outlook contacts, with their
accounts), ``cli`` (``flask --app app import``). See ``docs/import.md``.
"""

from __future__ import annotations

from . import contacts
from .job import Options, error_report, preview, run_job, start
from .reader import FileRejected, read_table

__all__ = ["FileRejected", "Options", "contacts", "error_report", "preview", "read_table", "run_job", "start"]
