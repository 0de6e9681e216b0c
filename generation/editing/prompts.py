"""Edit prompts for the demo domain: one attribute changed, in training or held-out wordings.

An edit prompt names the new value of one attribute (shape, colour, pattern or size) the way a user
types it ("make it crimson", "a star", "with stripes"). Words come from the demo captions' synonym
tables (:mod:`hdvila.demo.captions`): ``wording="train"`` draws a training synonym and a training
template, ``wording="heldout"`` a held-out synonym and a held-out template, so an evaluation with
held-out wordings uses words and phrasings the editor never saw.

:func:`target_caption` is the full caption of the source image with that one attribute changed:
the training signal of the mapper on renders whose attributes are known.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hdvila.demo.attributes import ATTRIBUTES, SIZE_RADIUS, ImageSpec
from hdvila.demo.captions import BACKGROUND_WORDS, COLOR_WORDS, PATTERN_WORDS, SHAPE_WORDS, SIZE_WORDS, caption_image

EDIT_ATTRIBUTES = ("shape", "color", "pattern", "size")
WORDS = {"shape": SHAPE_WORDS, "color": COLOR_WORDS, "pattern": PATTERN_WORDS, "size": SIZE_WORDS}
# attribute -> (training templates, held-out templates); {w} is the value's wording, {a} with its article
TEMPLATES = {
    "shape": (["{a}", "turn it into {a}", "make it {a}", "{a} instead"], ["reshape it as {a}"]),
    "color": (["{w}", "make it {w}", "a {w} one", "paint it {w}", "{w} colored"], ["recolor it {w}"]),
    "pattern": (["{w}", "make it {w}", "{a}", "a {w} one"], ["give it a {w} look"]),
    "size": (["{w}", "make it {w}", "a {w} one", "{w} sized"], ["rescale it to be {w}"]),
}


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def edit_prompt(attribute: str, value: str, rng: np.random.Generator, wording: str = "train") -> str:
    """A prompt asking for ``attribute`` = ``value``, e.g. ("pattern", "striped") -> "with stripes"."""
    if attribute not in WORDS:
        raise ValueError(f"attribute must be one of {EDIT_ATTRIBUTES}, got {attribute!r}")
    k = {"train": 0, "heldout": 1}[wording]
    words = WORDS[attribute][value][k]
    templates = TEMPLATES[attribute][k]
    w = words[int(rng.integers(len(words)))]
    t = templates[int(rng.integers(len(templates)))]
    if w.startswith("with "):  # "with stripes": no article, no "a ... one"
        t = "make it {w}" if "{w}" in t and not t.startswith("{w}") else "{w}"
    return t.format(w=w, a=_article(w))


def edited_spec(spec: ImageSpec, attribute: str, value: str) -> ImageSpec:
    """``spec`` with one attribute set to ``value`` (a size change also sets the radius)."""
    spec = dataclasses.replace(spec, **{attribute: value})
    if attribute == "size":
        spec = dataclasses.replace(spec, radius=SIZE_RADIUS[value])
    return spec


def target_caption(spec: ImageSpec, attribute: str, value: str, rng: np.random.Generator) -> str:
    """A training-wording caption of ``spec`` with ``attribute`` = ``value``."""
    return caption_image(edited_spec(spec, attribute, value), rng, "train")


def sample_edit(spec: ImageSpec, rng: np.random.Generator, attribute: str | None = None) -> tuple[str, str]:
    """(attribute, new value) with the value different from the spec's."""
    attribute = attribute or EDIT_ATTRIBUTES[int(rng.integers(len(EDIT_ATTRIBUTES)))]
    values = [v for v in ATTRIBUTES[attribute] if v != getattr(spec, attribute)]
    return attribute, values[int(rng.integers(len(values)))]


def all_prompts(wording: str = "train") -> list[tuple[str, str, str]]:
    """Every (attribute, value, prompt) of a wording: the finite set the mapper trains on."""
    out, k = [], {"train": 0, "heldout": 1}[wording]
    for attribute in EDIT_ATTRIBUTES:
        for value in ATTRIBUTES[attribute]:
            for w in WORDS[attribute][value][k]:
                for t in TEMPLATES[attribute][k]:
                    if w.startswith("with "):
                        t = "make it {w}" if "{w}" in t and not t.startswith("{w}") else "{w}"
                    out.append((attribute, value, t.format(w=w, a=_article(w))))
    return sorted(set(out))


def vocabulary() -> list[str]:
    """The words of the training prompts and captions (what the bundled editor was trained on)."""
    from generation.editing.guide import prompt_words

    words = set()
    for _, _, p in all_prompts("train"):
        words.update(prompt_words(p))
    for table in (SHAPE_WORDS, COLOR_WORDS, PATTERN_WORDS, SIZE_WORDS, BACKGROUND_WORDS):
        for train, _ in table.values():
            for w in train:
                words.update(prompt_words(w))
    return sorted(words)
