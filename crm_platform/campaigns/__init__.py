"""Campaign runs: an email step of a campaign sent to a segment's members,
in chunks on the workers, with progress, pause/resume/stop, unsubscribe
links and one email per member and step (see ``docs/campaigns.md``).
"""

from __future__ import annotations

from .runs import Campaigns, run_due

__all__ = ["Campaigns", "run_due"]
