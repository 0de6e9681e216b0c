"""presets: ready-made vocabularies and data for known domains."""

from generation.presets.demo import demo_vocabulary

__all__ = ["demo_vocabulary"]
