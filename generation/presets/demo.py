"""The demo domain (flat-coloured shapes) as an editing vocabulary.

Editable: shape, color, pattern, size (values in :data:`hdvila.demo.attributes.ATTRIBUTES` order, wordings from
the caption synonym tables, edit templates from :data:`generation.editing.prompts.TEMPLATES`); background is read
and kept, never edited. Its prompts are exactly those of :mod:`generation.editing.prompts` and
:func:`hdvila.demo.captions.value_prompts`.
"""

from __future__ import annotations

from generation.editing.attributes import DEFAULT_TEMPLATES, Attribute, AttributeVocabulary
from generation.editing.prompts import TEMPLATES
from hdvila.demo.attributes import ATTRIBUTES
from hdvila.demo.captions import SHORT_TEMPLATES, WORDS

#: Attribute order: the editable ones in the order the demo samples edits from, then the background.
ORDER = ("shape", "color", "pattern", "size", "background")


def demo_vocabulary() -> AttributeVocabulary:
    """The demo domain's :class:`~generation.editing.attributes.AttributeVocabulary`."""
    attributes = []
    for name in ORDER:
        values, table = ATTRIBUTES[name], WORDS[name]
        train_t, heldout_t = TEMPLATES.get(name, ((), ()))
        attributes.append(Attribute(
            name=name, values=values, wordings={v: tuple(table[v][0]) for v in values},
            heldout={v: tuple(table[v][1]) for v in values}, templates=tuple(train_t) or DEFAULT_TEMPLATES,
            heldout_templates=tuple(heldout_t), read_template=SHORT_TEMPLATES[name], editable=name in TEMPLATES))
    return AttributeVocabulary(attributes, source="the demo vocabulary")
