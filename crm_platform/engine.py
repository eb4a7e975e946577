"""The engine as a Flask extension: ``app.extensions["crm"]``.

It knows the company's pack directory and database, and compiles the pack
on first use (not at import, not in ``create_app``), so that commands such
as ``check`` work even while the project's own pack is broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import peewee as pw
from flask import Flask

from .compiler import CompiledApp, compile_pack
from .definitions import load_pack
from .store import open_database


@dataclass
class Company:
    """One company served by this instance: its definitions and its data."""

    slug: str
    pack_dir: Path
    database_url: str


class CRM:
    """Holds the company (one per instance for now) and its compiled app."""

    def __init__(self, app: Flask | None = None):
        self.company: Company | None = None
        self._compiled: CompiledApp | None = None
        self._database: pw.Database | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register with ``app`` and read the company from its config."""
        self.company = Company(
            slug=app.config["COMPANY"],
            pack_dir=Path(app.config["PACK_DIR"]),
            database_url=app.config["DATABASE_URL"],
        )
        app.extensions["crm"] = self

    @property
    def compiled(self) -> CompiledApp:
        """The company's compiled definitions (raises ``DefinitionError`` if broken)."""
        if self._compiled is None:
            self._compiled = compile_pack(load_pack(self.company.pack_dir))
            self._compiled.bind(self.database)
        return self._compiled

    @property
    def database(self) -> pw.Database:
        if self._database is None:
            self._database = open_database(self.company.database_url)
        return self._database

    def init_db(self) -> list[str]:
        """Create the tables of the compiled models; return the tables now present."""
        with self.database.connection_context():
            self.compiled.create_tables()
            return self.database.get_tables()
