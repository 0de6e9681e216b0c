"""A user-definable editing vocabulary: which attributes the edit mapper edits, their values, and how users word them.

An :class:`AttributeVocabulary` is an ordered list of :class:`Attribute` s. Each attribute has ordered values (the
class indices of a zero-shot reading), per-value *training* wordings (what the mapper trains on) and optional
*held-out* wordings (what an evaluation uses to test words the mapper never saw), edit-prompt templates, and one
reading template. A non-editable attribute (e.g. a background) is read and kept by the editor but never the target
of an edit. The demo domain is one such vocabulary (:func:`generation.presets.demo.demo_vocabulary`).

Prompts. An edit prompt draws a wording ``w`` then a template ``t`` (in that order, from ``rng``) and formats
``{w}`` as the wording and ``{a}`` as the wording with its article ("a star", "an orb"). A wording starting with
"with " ("with stripes") takes no article: the template becomes "make it {w}" when it has ``{w}`` after some
words, else "{w}". A value prompt (the candidates of a zero-shot reading) is the read template with the value's
first wording, or "one with ..." for a "with ..." wording.

The attributes file is JSON: an object, attribute name -> either the *full form* (an object with a "values" key)
or the *short form* (value -> list of training wordings; everything else defaulted)::

    {
      "color": {"values": {"red": ["red", "crimson"], "blue": ["blue", "navy"]},
                "heldout": {"red": ["scarlet"], "blue": ["azure"]},
                "templates": ["make it {w}", "{w}"], "heldout_templates": ["recolor it {w}"],
                "read": "a {w} one", "editable": true},
      "hair": {"blond": ["blond hair"], "black": ["black hair"]}
    }

Full-form keys: "values" (required; value -> training wordings, in value order), "heldout" (value -> held-out
wordings; a value left out has none), "templates" (default ["{w}", "make it {w}"]), "heldout_templates" (default:
the training templates), "read" (default "{w}"), "editable" (default true), "layers" (default all three: the
StyleGAN W+ groups an edit of this attribute may move, among "coarse", "medium" and "fine"; e.g. ["medium",
"fine"] for a colour or a texture, which live below the coarse layers that set pose and outline, as StyleCLIP's
mapper leaves its coarse part out for colour edits; see :meth:`~generation.editing.mapper.EditMapper.layer_gate`).
Templates use only the fields ``{w}`` and ``{a}``, at least one of them. Attribute and value order are kept.
:meth:`AttributeVocabulary.to_dict` writes the full form; every problem in a file raises a one-line
:class:`AttributesError` naming the file and attribute.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from hdvila.errors import UserError

WORDINGS = ("train", "heldout")
DEFAULT_TEMPLATES = ("{w}", "make it {w}")
_FULL_KEYS = ("values", "heldout", "templates", "heldout_templates", "read", "editable", "layers")
#: The W+ layer groups an attribute's edits may move (generation.editing.encoder.ws_groups), coarse to fine.
LAYER_GROUPS = ("coarse", "medium", "fine")


class AttributesError(UserError):
    """An attributes file (or an attribute, value or wording asked of a vocabulary) is unusable."""


def article(phrase: str) -> str:
    """``phrase`` with its indefinite article: "an orb", "a star"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _render(template: str, w: str) -> str:
    """``template`` filled with wording ``w`` (the "with ..." rule of the module docstring)."""
    if w.startswith("with "):  # "with stripes": no article, no "a ... one"
        template = "make it {w}" if "{w}" in template and not template.startswith("{w}") else "{w}"
    return template.format(w=w, a=article(w))


@dataclass(frozen=True)
class Attribute:
    """One editable (or only read) attribute.

    ``values``: ordered value names (>= 2, unique); ``wordings``: value -> training wordings (>= 1 each);
    ``heldout``: value -> held-out wordings (a value may have none); ``templates`` / ``heldout_templates``: edit
    templates (held-out empty: the training ones); ``read_template``: the zero-shot reading prompt of a value's
    first wording; ``editable``: False for an attribute the editor reads and keeps but never edits; ``layers``:
    the W+ groups (:data:`LAYER_GROUPS`) its edits may move. Sequences are stored as tuples, so two equal
    definitions compare equal however they were built.
    """

    name: str
    values: tuple[str, ...]
    wordings: dict[str, tuple[str, ...]]
    heldout: dict[str, tuple[str, ...]] = field(default_factory=dict)
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    heldout_templates: tuple[str, ...] = ()
    read_template: str = "{w}"
    editable: bool = True
    layers: tuple[str, ...] = LAYER_GROUPS

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "values", tuple(self.values))
        set_(self, "wordings", {v: tuple(ws) for v, ws in self.wordings.items()})
        set_(self, "heldout", {v: tuple(ws) for v, ws in self.heldout.items() if len(ws)})
        set_(self, "templates", tuple(self.templates))
        set_(self, "heldout_templates", tuple(self.heldout_templates))
        set_(self, "layers", tuple(self.layers))

    def words_of(self, value: str, wording: str = "train") -> tuple[str, ...]:
        """The wordings of ``value`` in a wording set (held-out falls back to training when the value has none)."""
        return (wording == "heldout" and self.heldout.get(value)) or self.wordings[value]

    def templates_of(self, wording: str = "train") -> tuple[str, ...]:
        """The edit templates of a wording set (held-out falls back to training when there are none)."""
        return (wording == "heldout" and self.heldout_templates) or self.templates


class AttributeVocabulary:
    """An ordered set of :class:`Attribute` s with at least one editable one; checked on construction
    (``source`` names where it came from in the error messages)."""

    def __init__(self, attributes: Sequence[Attribute], source: str = "the attributes file"):
        self.attributes = tuple(attributes)
        self.source = source
        if not self.attributes:
            self._fail("defines no attribute. Define at least one, e.g. {\"color\": {\"red\": [\"red\"], "
                       "\"blue\": [\"blue\"]}}.")
        names = [a.name for a in self.attributes]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            self._fail(f"attribute {dup!r} is defined twice. Give each attribute one definition.")
        for a in self.attributes:
            _check_attribute(a, self._fail)
        if not self.editable:
            self._fail("has no editable attribute (all have \"editable\": false). Make at least one editable.")
        self._by_name = {a.name: a for a in self.attributes}

    def _fail(self, message: str):
        raise AttributesError(f"{self.source}: {message}")

    def __eq__(self, other) -> bool:
        return isinstance(other, AttributeVocabulary) and self.attributes == other.attributes

    __hash__ = None

    def __repr__(self) -> str:
        return f"AttributeVocabulary({', '.join(self.names)}; digest {self.digest()})"

    @property
    def names(self) -> tuple[str, ...]:
        """All attribute names, in order."""
        return tuple(a.name for a in self.attributes)

    @property
    def editable(self) -> tuple[str, ...]:
        """The editable attribute names, in order."""
        return tuple(a.name for a in self.attributes if a.editable)

    def __getitem__(self, name: str) -> Attribute:
        if name not in self._by_name:
            self._fail(f"has no attribute {name!r}; it defines {', '.join(self.names)}. Use one of those.")
        return self._by_name[name]

    def values(self, attribute: str) -> tuple[str, ...]:
        """The ordered values of ``attribute``."""
        return self[attribute].values

    def _value(self, attribute: str, value: str, wording: str, edit: bool) -> Attribute:
        if wording not in WORDINGS:
            raise ValueError(f"wording must be 'train' or 'heldout', got {wording!r}")
        a = self[attribute]
        if edit and not a.editable:
            self._fail(f"attribute {attribute!r} is not editable; edit one of {', '.join(self.editable)}.")
        if value is not None and value not in a.values:
            self._fail(f"attribute {attribute!r} has no value {value!r}; use one of {', '.join(a.values)}.")
        return a

    def edit_prompt(self, attribute: str, value: str, rng: np.random.Generator, wording: str = "train") -> str:
        """A prompt asking for ``attribute`` = ``value``, e.g. ("pattern", "striped") -> "with stripes"."""
        a = self._value(attribute, value, wording, edit=True)
        words, templates = a.words_of(value, wording), a.templates_of(wording)
        w = words[int(rng.integers(len(words)))]
        t = templates[int(rng.integers(len(templates)))]
        return _render(t, w)

    def value_prompts(self, attribute: str, wording: str = "train") -> list[str]:
        """The reading prompt of every value of ``attribute``, in value order (read template, first wording)."""
        a = self._value(attribute, None, wording, edit=False)
        out = []
        for value in a.values:
            w = a.words_of(value, wording)[0]
            out.append(f"one {w}" if w.startswith("with ") else a.read_template.format(w=w, a=article(w)))
        return out

    def all_prompts(self, wording: str = "train") -> list[tuple[str, str, str]]:
        """Every (attribute, value, prompt) of the editable attributes in a wording set, sorted and unique: the
        finite set the mapper trains on."""
        if wording not in WORDINGS:
            raise ValueError(f"wording must be 'train' or 'heldout', got {wording!r}")
        return sorted({(a.name, v, _render(t, w)) for a in self.attributes if a.editable for v in a.values
                       for w in a.words_of(v, wording) for t in a.templates_of(wording)})

    def words(self) -> list[str]:
        """The sorted words of all training prompts and all training wordings (every attribute): what a mapper
        trained on this vocabulary has seen."""
        from generation.editing.guide import prompt_words

        texts = [p for _, _, p in self.all_prompts("train")]
        texts += [w for a in self.attributes for ws in a.wordings.values() for w in ws]
        return sorted({word for text in texts for word in prompt_words(text)})

    def sample_edit(self, current: dict[str, str], rng: np.random.Generator,
                    attribute: str | None = None) -> tuple[str, str]:
        """(editable attribute, new value) with the value different from ``current[attribute]`` (any value when
        ``current`` lacks it); the attribute is drawn uniformly from :attr:`editable` when None (then the value, in
        that order, from ``rng``: the demo's draws)."""
        attribute = attribute or self.editable[int(rng.integers(len(self.editable)))]
        a = self._value(attribute, None, "train", edit=True)
        values = [v for v in a.values if v != current.get(attribute)]
        return attribute, values[int(rng.integers(len(values)))]

    # -- the attributes file -----------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The full JSON form (see the module docstring); "layers" only where it is not all three groups, so a
        vocabulary without it keeps the digest it had before the key existed."""
        out = {}
        for a in self.attributes:
            out[a.name] = {"values": {v: list(a.wordings[v]) for v in a.values},
                           "heldout": {v: list(a.heldout[v]) for v in a.values if a.heldout.get(v)},
                           "templates": list(a.templates), "heldout_templates": list(a.heldout_templates),
                           "read": a.read_template, "editable": a.editable}
            if a.layers != LAYER_GROUPS:
                out[a.name]["layers"] = list(a.layers)
        return out

    @classmethod
    def from_dict(cls, d: object, source: str = "the attributes file") -> AttributeVocabulary:
        """Parse the JSON form (full or short per attribute); a problem raises a one-line :class:`AttributesError`."""
        def fail(message):
            raise AttributesError(f"{source}: {message}")

        if not isinstance(d, dict) or not d:
            got = "it is empty" if isinstance(d, dict) else f"it holds a {type(d).__name__}"
            fail(f"{got}. It must be a JSON object mapping attribute names to their values, e.g. "
                 "{\"color\": {\"red\": [\"red\"], \"blue\": [\"blue\"]}}.")
        return cls([_parse_attribute(name, spec, fail) for name, spec in d.items()], source=source)

    @classmethod
    def load(cls, path: str | Path) -> AttributeVocabulary:
        """Read an attributes file (JSON)."""
        path = Path(path)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise AttributesError(f"{path}: the attributes file {what}. Give the path of a JSON attributes file.")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise AttributesError(f"{path}: cannot read the attributes file ({_one_line(e)}). Give a readable UTF-8 "
                                  f"JSON file.") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise AttributesError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}). Fix the "
                                  f"file; its format is in the docs of generation.editing.attributes.") from None
        return cls.from_dict(d, source=str(path))

    def save(self, path: str | Path) -> None:
        """Write the full JSON form to ``path`` atomically."""
        from hdvila.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    def digest(self) -> str:
        """A 16-hex-digit digest of the definition (sorted-keys JSON of :meth:`to_dict` plus the attribute and value
        order, which sorted keys alone would lose): records which vocabulary a model was trained with."""
        payload = {"spec": self.to_dict(), "order": [[a.name, list(a.values)] for a in self.attributes]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _one_line(e: Exception) -> str:
    return " ".join(str(getattr(e, "strerror", None) or e).split())


def _parse_attribute(name: str, spec: object, fail) -> Attribute:
    """One attribute of the JSON form -> :class:`Attribute` (structure and types only; contents are checked by
    :func:`_check_attribute`)."""
    where = f"attribute {name!r}"
    if not isinstance(spec, dict):
        fail(f"{where} must be an object (value -> list of wordings, or the full form with \"values\"), got "
             f"{type(spec).__name__}.")
    if "values" not in spec:
        misplaced = [k for k in spec if k in _FULL_KEYS]
        if misplaced:
            fail(f"{where} has key {misplaced[0]!r} but no \"values\". Put the value -> wordings object under "
                 f"\"values\" (the full form), or drop {misplaced[0]!r} (the short form).")
        spec = {"values": spec}
    unknown = [k for k in spec if k not in _FULL_KEYS]
    if unknown:
        fail(f"{where} has unknown key {unknown[0]!r}; the full form's keys are {', '.join(_FULL_KEYS)} (a short "
             f"form maps values to lists and cannot mix with them).")

    def table(key):
        t = spec.get(key, {})
        if not isinstance(t, dict):
            fail(f"{where}: {key!r} must be an object mapping each value to a list of wordings.")
        for v, ws in t.items():
            if not isinstance(ws, list):
                fail(f"{where}: value {v!r} must map to a list of wordings, e.g. [\"{v}\"], got "
                     f"{type(ws).__name__}.")
        return t

    def strings(key, default):
        t = spec.get(key, default)
        if not isinstance(t, list):
            fail(f"{where}: {key!r} must be a list of templates such as [\"make it {{w}}\"].")
        return t

    values, heldout = table("values"), table("heldout")
    for v in heldout:
        if v not in values:
            fail(f"{where}: \"heldout\" names value {v!r}, which is not in \"values\" ({', '.join(values)}). "
                 f"Add it to \"values\" or remove it.")
    editable = spec.get("editable", True)
    if not isinstance(editable, bool):
        fail(f"{where}: \"editable\" must be true or false, got {editable!r}.")
    layers = spec.get("layers", list(LAYER_GROUPS))
    if not isinstance(layers, list):
        fail(f"{where}: \"layers\" must be a list of W+ groups such as [\"medium\", \"fine\"], got "
             f"{type(layers).__name__}.")
    return Attribute(name=name, values=tuple(values), wordings=values, heldout=heldout,
                     templates=strings("templates", list(DEFAULT_TEMPLATES)),
                     heldout_templates=strings("heldout_templates", []), read_template=spec.get("read", "{w}"),
                     editable=editable, layers=tuple(layers))


def _check_template(t: object, what: str, fail) -> None:
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(t) if f is not None] \
            if isinstance(t, str) else None
    except ValueError as e:
        fail(f"{what} {t!r} is not a valid template ({e}). Write braces only as {{w}} or {{a}}.")
    if fields is None or not fields or any(f not in ("w", "a") or spec or conv for f, spec, conv in fields):
        fail(f"{what} {t!r} must be text using {{w}} (the wording) or {{a}} (the wording with \"a\"/\"an\") and no "
             f"other {{...}} field, e.g. \"make it {{w}}\".")


def _check_attribute(a: Attribute, fail) -> None:
    """Check one attribute's contents (see :class:`Attribute`); ``fail(message)`` raises."""
    if not isinstance(a.name, str) or not a.name.strip():
        fail(f"attribute name {a.name!r} must be non-empty text.")
    where = f"attribute {a.name!r}"
    if len(a.values) < 2:
        fail(f"{where} has {len(a.values)} value(s); an edit needs at least 2. Add values or remove the attribute.")
    if len(set(a.values)) < len(a.values) or not all(isinstance(v, str) and v.strip() for v in a.values):
        fail(f"{where}: values {list(a.values)!r} must be unique non-empty text.")
    if set(a.wordings) != set(a.values) or not set(a.heldout) <= set(a.values):
        fail(f"{where}: the wordings must be given for exactly the values {', '.join(a.values)}.")
    owner: dict[str, str] = {}
    for kind, table in (("training", a.wordings), ("held-out", a.heldout)):
        for v in a.values:
            ws = table.get(v, ())
            if kind == "training" and not ws:
                fail(f"{where}: value {v!r} has no wordings. Give at least one, e.g. [\"{v}\"].")
            for w in ws:
                if not isinstance(w, str) or not w.strip() or w != w.strip():
                    fail(f"{where}: value {v!r} has {kind} wording {w!r}; a wording must be non-blank text without "
                         f"leading or trailing spaces.")
                key = " ".join(w.lower().split())
                if key in owner:
                    other = "twice" if owner[key] == v else f"also for value {owner[key]!r}"
                    fail(f"{where}: wording {w!r} is given {other}, which makes it ambiguous. Use each wording for "
                         f"one value, once.")
                owner[key] = v
    if not a.templates:
        fail(f"{where}: \"templates\" is empty. Give at least one, e.g. [\"make it {{w}}\"].")
    for kind, ts in (("template", a.templates), ("held-out template", a.heldout_templates)):
        for t in ts:
            _check_template(t, f"{where}: {kind}", fail)
    _check_template(a.read_template, f"{where}: read template", fail)
    if not isinstance(a.editable, bool):
        fail(f"{where}: \"editable\" must be true or false, got {a.editable!r}.")
    unknown = [g for g in a.layers if g not in LAYER_GROUPS]
    if not a.layers or unknown or len(set(a.layers)) < len(a.layers):
        fail(f"{where}: \"layers\" {list(a.layers)!r} must name one or more distinct W+ groups among "
             f"{', '.join(LAYER_GROUPS)} (e.g. [\"medium\", \"fine\"] for a colour).")
