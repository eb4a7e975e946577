"""Public web forms (web-to-lead, support requests): no sign-in, a honeypot,
a rate limit per address, and the record created through the write path so
the rules fire as for any other new record."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from ..compiler.compiled import CompiledEntity
from ..compiler.forms import FormSpec
from ..errors import NotFound, ValidationError
from ..runtime.users import Actor
from . import formdata
from .state import crm, formats

bp = Blueprint("public", __name__, url_prefix="/forms")

# Bots fill in every input; people never see this one.
HONEYPOT = "website_address"


def public_form(name: str) -> tuple[CompiledEntity, FormSpec]:
    """The entity and spec of the public form called ``name``."""
    for entity in crm().compiled.entities.values():
        spec = entity.public_forms.get(name)
        if spec is not None and spec.public:
            return entity, spec
    raise NotFound(f"there is no public form {name!r}")


def visitor(form: FormSpec) -> Actor:
    """Who creates a record from a public form: the platform, on the form's behalf.

    The definition made the form public, so no role is needed; only the
    form's own fields are read from the request.
    """
    return Actor(user_id=None, superuser=True, name=f"web form {form.name}")


@bp.route("/<name>", methods=["GET", "POST"])
def submit(name: str):
    """Show the form; on a valid submission create the record and thank the visitor."""
    ce, form = public_form(name)
    specs = formdata.editable(form.fields)
    errors: dict[str, list[str]] = {}
    raw = {spec.name: [] if spec.multiple else "" for spec in specs}
    if request.method == "POST":
        if request.form.get(HONEYPOT):
            current_app.logger.info("public form %s: honeypot filled from %s", name, request.remote_addr)
            return render_template("web/public_thanks.html", form=form)
        payload, errors = formdata.parse(specs, request.form, formats())
        if not errors:
            try:
                crm().records.create(ce.name, payload, visitor(form), "form", form=form.name)
            except ValidationError as error:
                errors = error.errors
            else:
                return render_template("web/public_thanks.html", form=form)
        raw = {
            spec.name: request.form.getlist(spec.name) if spec.multiple else request.form.get(spec.name, "")
            for spec in specs
        }
    response = render_template(
        "web/public_form.html", form=form, specs=specs, raw=raw, errors=errors, honeypot=HONEYPOT
    )
    return response, 422 if errors else 200
