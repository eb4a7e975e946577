"""Compiling a pack into models, schemas, forms, state machines and rules."""

from .compiled import CompiledApp, CompiledEntity, compile_pack

__all__ = ["CompiledApp", "CompiledEntity", "compile_pack"]
