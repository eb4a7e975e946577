"""The low-code CRM engine: definitions -> compiler -> runtime -> actions, web on top.

The names a user of the engine needs; the rest is reached through the
sub-packages.
"""

from .application import create_app
from .compiler import CompiledApp, compile_pack
from .definitions import Pack, load_pack
from .errors import (
    ConflictError,
    CRMError,
    DefinitionError,
    Finding,
    Location,
    PermissionDenied,
    TransitionNotAllowed,
    ValidationError,
)
from .runtime.clock import EvalContext, FixedClock, SystemClock

__all__ = [
    "CRMError", "CompiledApp", "ConflictError", "DefinitionError", "EvalContext", "Finding", "FixedClock",
    "Location", "Pack", "PermissionDenied", "SystemClock", "TransitionNotAllowed", "ValidationError",
    "compile_pack", "create_app", "load_pack",
]  # fmt: skip
