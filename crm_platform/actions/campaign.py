"""``add to campaign``: make the record a member of a campaign (once)."""

from __future__ import annotations

from .run import ActionRun, PermanentFailure


def add_to_campaign(run: ActionRun) -> str:
    records = run.engine.records
    campaigns = records.entity("campaign").model
    campaign = campaigns.get_or_none(campaigns.name == run.node.campaign)
    if campaign is None:
        raise PermanentFailure(f"there is no campaign named {run.node.campaign!r}")
    member = records.entity("campaign_member")
    link = next(f.name for f in member.definition.fields.values() if f.type == "link" and f.entity == run.entity.name)
    campaign_link = next(
        f.name for f in member.definition.fields.values() if f.type == "link" and f.entity == "campaign"
    )
    model = member.model
    exists = (
        model.select()
        .where((getattr(model, campaign_link) == campaign.id) & (getattr(model, link) == run.record.id))
        .exists()
    )
    if exists:
        return f"already a member of campaign {campaign.name!r}"
    created = records.create(
        "campaign_member", {campaign_link: campaign.id, link: run.record.id}, run.actor, "rule", cause=run.cause
    )
    return f"added to campaign {campaign.name!r} (member #{created.id})"
