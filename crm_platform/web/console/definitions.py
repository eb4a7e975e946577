"""The definitions browser: entities, workflows, rules, public forms and
whether the running definitions compiled cleanly.

Everything is read from the compiled definitions the app is running, so the
pages show exactly what the platform enforces.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import url_for
from flask_admin import expose
from markupsafe import escape

from ...definitions.nodes import Rule
from ..state import crm
from .pages import ConsolePage


@dataclass
class RuleRow:
    rule: Rule
    trigger: str  # the rule's "on ..." line as written
    location: str  # file:line


@dataclass
class PublicForm:
    entity: str
    name: str
    label: str
    url: str
    snippet: str  # HTML for the admin to copy; the template escapes it


class EntitiesView(ConsolePage):
    @expose("/")
    def index(self):
        return self.render("admin/console/entities.html", entities=crm().compiled.pack.entities)


class WorkflowsView(ConsolePage):
    @expose("/")
    def index(self):
        return self.render("admin/console/workflows.html", workflows=crm().compiled.pack.workflows)


class RulesView(ConsolePage):
    @expose("/")
    def index(self):
        pack = crm().compiled.pack
        rows = [RuleRow(rule, trigger_text(rule, pack.sources), location(rule.loc)) for rule in pack.rules]
        return self.render("admin/console/rules.html", rows=rows)


class PublicFormsView(ConsolePage):
    @expose("/")
    def index(self):
        forms = []
        for entity in crm().compiled.entities.values():
            for spec in entity.public_forms.values():
                if spec.public:
                    url = url_for("public.submit", name=spec.name, _external=True)
                    forms.append(PublicForm(entity.name, spec.name, spec.label, url, iframe(url, spec.label)))
        return self.render("admin/console/public_forms.html", forms=forms)


class CompileStatusView(ConsolePage):
    @expose("/")
    def index(self):
        compiled = crm().compiled
        Version = crm().tables.DefinitionVersion
        stored = Version.get_or_none(Version.digest == compiled.version)
        return self.render(
            "admin/console/compile_status.html",
            compiled=compiled,
            number=stored.id if stored else None,
            warnings=compiled.warnings,
        )


def location(loc) -> str:
    """``file:line`` of a definition."""
    return f"{loc.file}:{loc.line}" if loc.line else loc.file


def trigger_text(rule: Rule, sources: dict[str, str]) -> str:
    """The trigger as the admin wrote it (its source line), else a summary."""
    loc = rule.trigger.loc
    lines = sources.get(loc.file, "").splitlines()
    if 0 < loc.line <= len(lines):
        return lines[loc.line - 1].strip()
    return f"on {rule.trigger.entity} {rule.trigger.kind}"


def iframe(url: str, title: str) -> str:
    """The tag that embeds a public form in another site."""
    return (
        f'<iframe src="{escape(url)}" title="{escape(title)}" width="100%" height="720" '
        'style="border:0" loading="lazy"></iframe>'
    )
