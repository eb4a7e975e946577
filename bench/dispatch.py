"""Does dispatching an event cost the same with 1,000 rules as with 10?

Run from the project root:  .venv/bin/python bench/dispatch.py

Builds two packs in a temporary directory, each a copy of the default pack
(``pack.yaml``, ``schemas/``, ``workflows/``, ``templates/``) with its own
generated ``rules/`` and no other rule:

- 10 rules: four ``on lead created`` rules (two of which match the lead
  below) and six on other events (``lead enters qualified``, ``lead updated``,
  ``deal enters won``, ``ticket created``, ``contact created``,
  ``account name changed``);
- 1,000 rules: the same ten plus 990 on other entities and other events
  (``deal updated``, ``account name changed``, ``contact created``,
  ``lead score changed``, ``lead enters qualified``, ``ticket enters
  resolved``, ...), each with its own condition. None of them listens to
  ``lead created``.

The generated rules only ``notify`` or ``send_email``, which write nothing, so
the checker finds no cycle; both packs must compile without warnings. Each
pack is compiled with ``compile_pack(load_pack(dir))``.

What is timed is one dispatch as the write path does it,
``plan(matching_rules(compiled.rules, change, ctx))``, for a ``Change`` of a
lead "created" whose record is an unsaved instance of the compiled lead model
(a web lead from DE with score 70 and an email). Both packs must fire the same
two rules and plan the same three actions. Each round runs the dispatch
50,000 times per pack, the packs alternating; each keeps its fastest round
(garbage collector off while timing).

The last line printed is one JSON object with the 1,000-rule cost divided by
the 10-rule cost. Compare ratios, not absolute times.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import shutil
import sys
import tempfile
import time
from itertools import repeat
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crm_platform.compiler import compile_pack  # noqa: E402
from crm_platform.definitions import load_pack  # noqa: E402
from crm_platform.runtime.clock import EvalContext, FixedClock  # noqa: E402
from crm_platform.runtime.events import Change, matching_rules, plan  # noqa: E402

DISPATCHES = 50_000
ROUNDS = 7
TARGET = "<= 1.5"
PACK_PARTS = ("pack.yaml", "schemas", "workflows", "templates")

# The ten rules of both packs: four on "lead created" (the first two match the
# lead below), six elsewhere.
BASE_RULES = """\
rule "Base: DACH web leads" priority 10
  on lead created
  when lead.source == "web" and lead.country in ["DE", "AT", "CH"]
  then
    notify role "sales-manager" "New DACH web lead {first_name} {last_name}"

rule "Base: promising leads" priority 5
  on lead created
  when lead.score >= 50 and lead.email is not empty
  then
    send_email "welcome" to lead.email
    notify role "sales-manager" "Promising lead {first_name} {last_name} ({company})"

rule "Base: referral leads"
  on lead created
  when lead.source in ["referral", "partner"]
  then
    notify role "sales-manager" "Referral lead {first_name} {last_name}"

rule "Base: large companies"
  on lead created
  when lead.employees >= 1000 and lead.country not in ["DE", "AT", "CH"]
  then
    notify role "sales-manager" "Large company lead {company}"

rule "Base: qualified leads"
  on lead enters qualified
  then
    notify role "sales-manager" "Lead {first_name} {last_name} is qualified"

rule "Base: lead updates"
  on lead updated
  when lead.score >= 90
  then
    notify role "sales-manager" "Hot lead {first_name} {last_name}"

rule "Base: won deals"
  on deal enters won
  then
    notify role "sales-manager" "Deal {name} was won"

rule "Base: urgent tickets"
  on ticket created
  when ticket.priority == "urgent"
  then
    notify team "support-l2" "Urgent ticket: {subject}"

rule "Base: new contacts"
  on contact created
  when contact.email is not empty and contact.unsubscribed == false
  then
    notify team "marketing" "New contact {first_name} {last_name}"

rule "Base: renamed accounts"
  on account name changed
  then
    notify role "sales-manager" "Account renamed to {name}"
"""

# (entity and event, condition with {k}, action) for the 990 other rules; k varies per rule.
OTHER_RULES = [
    ("deal updated", "deal.amount >= {k}000", 'notify role "sales-manager" "Deal {{name}} changed"'),
    ("deal amount changed", "deal.amount >= {k}00", 'notify role "sales-manager" "Deal {{name}} amount changed"'),
    ("deal enters won", "deal.amount >= {k}000", 'notify role "sales-manager" "Deal {{name}} won"'),
    ("deal enters lost", 'deal.lost_reason == "price" and deal.amount >= {k}00', 'notify role "sales-manager" "Lost"'),
    ("account name changed", 'account.country == "DE" and account.employees > {k}', 'notify role "admin" "Renamed"'),
    ("account created", "account.employees >= {k}", 'notify role "sales-manager" "New account {{name}}"'),
    ("contact created", 'contact.segment == "enterprise" and contact.email is not empty', "SEND_CONTACT"),
    ("contact email changed", "contact.unsubscribed == false", 'notify team "marketing" "New address {{email}}"'),
    ("ticket created", 'ticket.priority in ["high", "urgent"] or ticket.satisfaction < {k}', 'notify role "admin" "T"'),
    ("ticket enters resolved", "ticket.satisfaction >= {k}", 'notify role "support-lead" "Resolved: {{subject}}"'),
    ("activity created", 'activity.kind == "meeting" and activity.duration_minutes > {k}', 'notify role "admin" "M"'),
    ("quote updated", "quote.discount > {k}", 'notify role "sales-manager" "Quote {{name}} discounted"'),
    ("campaign created", 'campaign.type == "webinar"', 'notify team "marketing" "Campaign {{name}}"'),
    ("lead updated", "lead.score >= {k}", 'notify role "sales-manager" "Lead {{last_name}} updated"'),
    ("lead score changed", "lead.score >= {k}", 'notify role "sales-manager" "Lead {{last_name}} scores {{score}}"'),
    ("lead enters qualified", "lead.employees >= {k}", 'notify role "sales-manager" "Qualified {{company}}"'),
    ("lead leaves new", 'lead.source == "web" and lead.score > {k}', 'notify role "sales" "Lead {{last_name}} moved"'),
    ("lead deleted", "lead.score >= {k}", 'notify role "admin" "Lead {{last_name}} deleted"'),
]


def other_rules(count: int) -> str:
    """``count`` rules none of which listens to ``lead created``."""
    blocks = []
    for i in range(count):
        trigger, condition, action = OTHER_RULES[i % len(OTHER_RULES)]
        k = 1 + i % 97
        if action == "SEND_CONTACT":
            action = 'send_email "welcome" to contact.email'
        blocks.append(
            f'rule "Other rule {i + 1:04d}" priority {i % 7}\n'
            f"  on {trigger}\n"
            f"  when {condition.format(k=k)}\n"
            f"  then\n"
            f"    {action.format()}\n"
        )
    return "\n".join(blocks)


def build_pack(directory: Path, rules: dict[str, str]):
    """A copy of the default pack with ``rules`` (file name -> text) as its only rules; compiled."""
    directory.mkdir(parents=True)
    for part in PACK_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, directory / part)
        else:
            shutil.copy(source, directory / part)
    (directory / "rules").mkdir()
    for name, text in rules.items():
        (directory / "rules" / name).write_text(text)
    started = time.perf_counter()
    compiled = compile_pack(load_pack(directory))
    seconds = time.perf_counter() - started
    assert not compiled.warnings, "\n".join(f"{w.location}: {w.message}" for w in compiled.warnings)
    return compiled, seconds


def best_of(candidates: dict[str, object]) -> dict[str, float]:
    """Fastest round of each candidate, rounds alternating between them."""
    best = {name: float("inf") for name in candidates}
    for _ in range(ROUNDS):
        for name, measure in candidates.items():
            gc.collect()
            gc.disable()
            try:
                started = time.perf_counter()
                measure()
                best[name] = min(best[name], time.perf_counter() - started)
            finally:
                gc.enable()
    return best


def main() -> None:
    ctx = EvalContext(FixedClock(dt.datetime(2026, 11, 23, 10, 0)), "Europe/Berlin")
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    try:
        small, small_compile = build_pack(work / "rules10", {"base.rules": BASE_RULES})
        large, large_compile = build_pack(
            work / "rules1000", {"base.rules": BASE_RULES, "other.rules": other_rules(990)}
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert len(small.rules.rules) == 10 and len(large.rules.rules) == 1000

    values = {
        "first_name": "Anna",
        "last_name": "Meier",
        "email": "anna.meier@example.de",
        "company": "Meier GmbH",
        "country": "DE",
        "source": "web",
        "score": 70,
        "employees": 40,
        "status": "new",
        "version": 1,
    }

    def make_change(compiled) -> Change:
        record = compiled.entities["lead"].model(**values)
        return Change(
            entity="lead",
            operation="create",
            record=record,
            audit_id=1,
            changes={},  # as Records.create passes it: a creation changes no field
            state_fields=tuple(compiled.entities["lead"].workflows),
        )

    changes = {"10 rules": (small, make_change(small)), "1,000 rules": (large, make_change(large))}
    answers = {}
    for name, (compiled, change) in changes.items():
        planned = plan(matching_rules(compiled.rules, change, ctx))
        answers[name] = [(p.rule.name, p.path, p.action.kind) for p in planned]
    assert answers["10 rules"] == answers["1,000 rules"], answers
    assert len({rule for rule, _, _ in answers["10 rules"]}) == 2, answers

    def dispatcher(compiled, change):
        index = compiled.rules

        def dispatch(_):
            return len(plan(matching_rules(index, change, ctx)))

        expected = len(answers["10 rules"]) * DISPATCHES
        return lambda: _check(sum(map(dispatch, repeat(None, DISPATCHES))), expected)

    best = best_of({name: dispatcher(compiled, change) for name, (compiled, change) in changes.items()})

    buckets = {
        name: sum(1 for r in compiled.rules.rules.values() if (r.trigger.entity, r.trigger.kind) == ("lead", "created"))
        for name, (compiled, _) in changes.items()
    }
    print("dispatch: plan(matching_rules(compiled.rules, change, ctx)), a lead 'created' change")
    print(f"lead: {values}")
    print("fires: " + ", ".join(f"{rule!r} action {path} ({kind})" for rule, path, kind in answers["10 rules"]))
    print(f"dispatches per round: {DISPATCHES:,}; rounds: {ROUNDS}, best of each")
    print(f"compile_pack(load_pack(dir)): 10 rules {small_compile:.2f} s, 1,000 rules {large_compile:.2f} s")
    print()
    header = f"{'pack':<14} {'rules':>6} {'on lead created':>16} {'ns/dispatch':>12} {'x 10 rules':>11}"
    print(header)
    print("-" * len(header))
    base_ns = best["10 rules"] / DISPATCHES * 1e9
    for name, (compiled, _) in changes.items():
        ns = best[name] / DISPATCHES * 1e9
        print(f"{name:<14} {len(compiled.rules.rules):>6} {buckets[name]:>16} {ns:>12.0f} {ns / base_ns:>11.2f}")
    ratio = best["1,000 rules"] / best["10 rules"]
    print(json.dumps({"metric": "dispatch_1000_vs_10_rules", "value": round(ratio, 2), "target": TARGET}))


def _check(total: int, expected: int) -> int:
    assert total == expected, f"planned {total} actions, expected {expected}"
    return total


if __name__ == "__main__":
    main()
