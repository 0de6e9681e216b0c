"""presets: ready-made vocabularies, and the evaluations tied to a known domain.

The editing package (:mod:`generation.editing`) is generic: it edits whatever an
:class:`~generation.editing.attributes.AttributeVocabulary` names. What belongs to the rendered demo domain
(:mod:`hdvila.demo`: shapes, colours, patterns, sizes, backgrounds) lives here:

- :mod:`generation.presets.demo`: the demo vocabulary (:func:`demo_vocabulary`: its attributes, wordings and edit
  templates);
- :mod:`generation.presets.demo_eval`: the demo's edit evaluation, judged on held-out renders (``hdvila eval-edit``);
- :mod:`generation.presets.demo_guide_eval`: the demo's guide-reading evaluation, the zero-shot reading of each
  attribute of demo stills by an HD-VILA model (``hdvila eval-guide``).
"""

from generation.presets.demo import demo_vocabulary

__all__ = ["demo_vocabulary"]
