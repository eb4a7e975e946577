"""What rules do: one module per action kind. Each kind runs as its own Huey
task (``crm.<kind>``, see ``crm_platform.worker``) through ``ActionRunner``."""

from .assign import assign
from .campaign import add_to_campaign
from .create import create
from .deliver_webhook import deliver_webhook
from .email import send_email
from .escalate import escalate
from .follow_up import follow_up
from .move import move
from .notify import notify
from .set_field import set_field
from .webhook import webhook

EXECUTORS = {
    "assign": assign,
    "set_field": set_field,
    "create": create,
    "send_email": send_email,
    "follow_up": follow_up,
    "escalate": escalate,
    "notify": notify,
    "webhook": webhook,
    "move": move,
    "add_to_campaign": add_to_campaign,
    "deliver_webhook": deliver_webhook,  # to webhook subscriptions, not a rule action
}

__all__ = ["EXECUTORS"]
