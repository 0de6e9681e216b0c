"""The demo domain (flat-coloured shapes) as an editing vocabulary, and its edit prompts.

Editable: shape, color, pattern, size (values in :data:`hdvila.demo.attributes.ATTRIBUTES` order, wordings from
the caption synonym tables of :mod:`hdvila.demo.captions`, edit templates from :data:`TEMPLATES`); background is
read and kept, never edited. Its reading prompts are exactly :func:`hdvila.demo.captions.value_prompts`.

An edit prompt names the new value of one attribute the way a user types it ("make it crimson", "a star", "with
stripes"): :meth:`AttributeVocabulary.edit_prompt <generation.editing.attributes.AttributeVocabulary.edit_prompt>`
of :func:`demo_vocabulary`. ``wording="train"`` draws a training synonym and a training template,
``wording="heldout"`` a held-out synonym and a held-out template, so an evaluation with held-out wordings uses
words and phrasings the editor never saw. Draw edits with ``demo_vocabulary().sample_edit({attribute: value}, rng,
attribute)``, list every prompt with ``.all_prompts()`` and the trained words with ``.words()``.
"""

from __future__ import annotations

from generation.editing.attributes import DEFAULT_TEMPLATES, LAYER_GROUPS, Attribute, AttributeVocabulary
from hdvila.demo import captions
from hdvila.demo.attributes import ATTRIBUTES

#: The editable attributes, in the order the demo samples edits from.
EDIT_ATTRIBUTES = ("shape", "color", "pattern", "size")
#: Their synonym tables, attribute -> value -> (training wordings, held-out wordings).
WORDS = {a: captions.WORDS[a] for a in EDIT_ATTRIBUTES}
#: attribute -> (training templates, held-out templates); {w} is the value's wording, {a} with its article.
TEMPLATES = {
    "shape": (["{a}", "turn it into {a}", "make it {a}", "{a} instead"], ["reshape it as {a}"]),
    "color": (["{w}", "make it {w}", "a {w} one", "paint it {w}", "{w} colored"], ["recolor it {w}"]),
    "pattern": (["{w}", "make it {w}", "{a}", "a {w} one"], ["give it a {w} look"]),
    "size": (["{w}", "make it {w}", "a {w} one", "{w} sized"], ["rescale it to be {w}"]),
}
#: The W+ groups each attribute's edits may move (default all): colour and pattern live in the medium and fine
#: layers; the coarse ones (4-8 px) set the outline, which a colour or pattern edit must keep. Measured on the
#: first value-following mapper: dropping its offset's coarse part for colour and pattern edits of generator
#: samples kept the object's mask (IoU with the source 0.33 -> 0.90 colour, 0.36 -> 0.93 pattern) while the
#: guide read the asked value as often (45% and 81-84% both ways); see docs/results.md.
LAYERS = {"color": ("medium", "fine"), "pattern": ("medium", "fine")}
#: Attribute order: the editable ones in the order the demo samples edits from, then the background.
ORDER = (*EDIT_ATTRIBUTES, "background")


def demo_vocabulary() -> AttributeVocabulary:
    """The demo domain's :class:`~generation.editing.attributes.AttributeVocabulary`."""
    attributes = []
    for name in ORDER:
        values, table = ATTRIBUTES[name], captions.WORDS[name]
        train_t, heldout_t = TEMPLATES.get(name, ((), ()))
        attributes.append(Attribute(
            name=name, values=values, wordings={v: tuple(table[v][0]) for v in values},
            heldout={v: tuple(table[v][1]) for v in values}, templates=tuple(train_t) or DEFAULT_TEMPLATES,
            heldout_templates=tuple(heldout_t), read_template=captions.SHORT_TEMPLATES[name],
            editable=name in TEMPLATES, layers=LAYERS.get(name, LAYER_GROUPS)))
    return AttributeVocabulary(attributes, source="the demo vocabulary")
