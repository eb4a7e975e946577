"""Errors carry what a person needs, render like a compiler, and survive
pickling (they cross Huey between processes)."""

from __future__ import annotations

import pickle

from crm_platform.errors import (
    ConflictError,
    DefinitionError,
    Finding,
    Location,
    TransitionNotAllowed,
    ValidationError,
)


def test_a_finding_renders_with_source_line_caret_and_hint():
    finding = Finding(
        Location("rules/a.rules", 3, 8),
        "unknown field 'contry' on lead",
        "did you mean 'country'?",
        source_line="  when contry == 1",
    )
    assert finding.render() == (
        "rules/a.rules:3:8: error: unknown field 'contry' on lead\n"
        "      when contry == 1\n"
        "           ^\n"
        "    hint: did you mean 'country'?"
    )


def test_definition_error_sorts_findings_by_file_and_position():
    late = Finding(Location("schemas/b.yaml", 1, 1), "b")
    early = Finding(Location("rules/a.rules", 9, 2), "a2")
    earliest = Finding(Location("rules/a.rules", 2, 5), "a1")
    error = DefinitionError([late, early, earliest])
    assert [f.message for f in error.findings] == ["a1", "a2", "b"]


def test_errors_survive_pickling():
    definition = DefinitionError([Finding(Location("f.yaml", 1, 2), "bad", "fix it")])
    validation = ValidationError({"email": ["is not a valid email address"]})
    transition = TransitionNotAllowed("new", "won", ["only sales may make this move"])
    conflict = ConflictError("lead 3 changed meanwhile: score")
    for error in (definition, validation, transition, conflict):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
    assert pickle.loads(pickle.dumps(definition)).findings == definition.findings
    assert pickle.loads(pickle.dumps(validation)).errors == validation.errors
    assert pickle.loads(pickle.dumps(transition)).reasons == transition.reasons
