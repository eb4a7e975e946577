"""Loading a pack: YAML and rule files into typed, positioned definitions."""

from .loader import load_pack
from .model import Pack

__all__ = ["Pack", "load_pack"]
