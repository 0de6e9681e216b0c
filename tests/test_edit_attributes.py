"""The editing vocabulary (attributes file): the demo preset reproduces the demo prompts, round trips, bad files."""

import dataclasses
import json

import numpy as np
import pytest

from generation.editing.attributes import Attribute, AttributesError, AttributeVocabulary
from generation.presets import demo, demo_vocabulary
from hdvila.demo import captions
from hdvila.demo.attributes import ATTRIBUTES, ImageSpec

EXAMPLE = {
    "color": {"values": {"red": ["red", "crimson"], "blue": ["blue", "navy"]},
              "heldout": {"red": ["scarlet"], "blue": ["azure"]},
              "templates": ["make it {w}", "{w}"], "heldout_templates": ["recolor it {w}"],
              "read": "a {w} one", "editable": True},
    "hair": {"blond": ["blond hair"], "black": ["black hair"]},
}


# The demo's own edit-prompt functions as they were before the demo became a preset (frozen here): the preset must
# make exactly their draws, so the evaluation's edit cases and the web UI's example prompts stay the same.
def _old_render(t: str, w: str) -> str:
    if w.startswith("with "):
        t = "make it {w}" if "{w}" in t and not t.startswith("{w}") else "{w}"
    return t.format(w=w, a=("an " if w[0] in "aeiou" else "a ") + w)


def _old_edit_prompt(attribute, value, rng, wording="train"):
    k = {"train": 0, "heldout": 1}[wording]
    words, templates = demo.WORDS[attribute][value][k], demo.TEMPLATES[attribute][k]
    w = words[int(rng.integers(len(words)))]
    t = templates[int(rng.integers(len(templates)))]
    return _old_render(t, w)


def _old_sample_edit(spec, rng, attribute=None):
    attribute = attribute or demo.EDIT_ATTRIBUTES[int(rng.integers(len(demo.EDIT_ATTRIBUTES)))]
    values = [v for v in ATTRIBUTES[attribute] if v != getattr(spec, attribute)]
    return attribute, values[int(rng.integers(len(values)))]


def _old_all_prompts(wording="train"):
    k = {"train": 0, "heldout": 1}[wording]
    return sorted({(a, v, _old_render(t, w)) for a in demo.EDIT_ATTRIBUTES for v in ATTRIBUTES[a]
                   for w in demo.WORDS[a][v][k] for t in demo.TEMPLATES[a][k]})


def _old_vocabulary():
    from generation.editing.guide import prompt_words

    words = {w for _, _, p in _old_all_prompts("train") for w in prompt_words(p)}
    for table in (captions.SHAPE_WORDS, captions.COLOR_WORDS, captions.PATTERN_WORDS, captions.SIZE_WORDS,
                  captions.BACKGROUND_WORDS):
        words.update(w for train, _ in table.values() for phrase in train for w in prompt_words(phrase))
    return sorted(words)


@pytest.mark.parametrize("wording", ["train", "heldout"])
def test_demo_preset_reproduces_demo_prompts(wording):
    vocab = demo_vocabulary()
    assert vocab.editable == demo.EDIT_ATTRIBUTES
    for a in vocab.editable:
        assert vocab.values(a) == ATTRIBUTES[a]
        for v in vocab.values(a):
            for s in range(50):
                got = vocab.edit_prompt(a, v, np.random.default_rng(s), wording)
                assert got == _old_edit_prompt(a, v, np.random.default_rng(s), wording), (a, v, s)
    for a in ATTRIBUTES:
        assert vocab.value_prompts(a, wording) == captions.value_prompts(a, wording), a
    assert vocab.all_prompts(wording) == _old_all_prompts(wording)


def test_demo_preset_words_and_sampling():
    vocab = demo_vocabulary()
    assert vocab.words() == _old_vocabulary()
    assert not vocab["background"].editable and "background" in vocab.names
    spec = ImageSpec("star", "red", "black", "small", "plain", 0.5, 0.5, 1, 1, 0.15, 0.0)
    for s in range(50):  # the same draws as the demo's own sample_edit
        got = vocab.sample_edit(dataclasses.asdict(spec), np.random.default_rng(s))
        assert got == _old_sample_edit(spec, np.random.default_rng(s))
        for a in vocab.editable:  # one attribute asked, only its current value known (how callers draw)
            got = vocab.sample_edit({a: getattr(spec, a)}, np.random.default_rng(s), a)
            assert got == _old_sample_edit(spec, np.random.default_rng(s), a)


def test_round_trip_and_digest(tmp_path):
    vocab = AttributeVocabulary.from_dict(EXAMPLE)
    assert AttributeVocabulary.from_dict(vocab.to_dict()) == vocab
    for v in (demo_vocabulary(), vocab):
        v.save(tmp_path / "a.json")
        loaded = AttributeVocabulary.load(tmp_path / "a.json")
        assert loaded == v and loaded.digest() == v.digest()
        assert loaded.all_prompts("heldout") == v.all_prompts("heldout")
    assert list(tmp_path.iterdir()) == [tmp_path / "a.json"]  # no temporary left
    assert demo_vocabulary().digest() == demo_vocabulary().digest() and len(vocab.digest()) == 16
    changed = json.loads(json.dumps(EXAMPLE))
    changed["color"]["values"]["red"][1] = "cherry"
    assert AttributeVocabulary.from_dict(changed).digest() != vocab.digest()
    gated = AttributeVocabulary.from_dict(_with(layers=["medium", "fine"]))  # the W+ groups a colour edit moves
    assert gated["color"].layers == ("medium", "fine") and gated["hair"].layers == ("coarse", "medium", "fine")
    assert gated.to_dict()["color"]["layers"] == ["medium", "fine"] and "layers" not in gated.to_dict()["hair"]
    assert AttributeVocabulary.from_dict(gated.to_dict()) == gated and gated.digest() != vocab.digest()
    assert AttributeVocabulary.from_dict(_with(layers=["coarse", "medium", "fine"])).digest() == vocab.digest()
    assert demo_vocabulary()["color"].layers == ("medium", "fine") == demo_vocabulary()["pattern"].layers
    reordered = json.loads(json.dumps(EXAMPLE))
    reordered["hair"] = {"black": ["black hair"], "blond": ["blond hair"]}  # value order is class order
    assert AttributeVocabulary.from_dict(reordered).digest() != vocab.digest()


def test_short_form_defaults_and_full_form():
    vocab = AttributeVocabulary.from_dict(EXAMPLE)
    hair = vocab["hair"]
    assert hair == Attribute("hair", ("blond", "black"), {"blond": ("blond hair",), "black": ("black hair",)}, {})
    assert hair.templates == ("{w}", "make it {w}") and hair.read_template == "{w}" and hair.editable
    assert vocab.names == ("color", "hair") == vocab.editable and vocab.values("hair") == ("blond", "black")
    assert vocab.value_prompts("hair", "heldout") == ["blond hair", "black hair"]  # falls back to training
    assert vocab.value_prompts("color") == ["a red one", "a blue one"]
    assert vocab.value_prompts("color", "heldout") == ["a scarlet one", "a azure one"]  # a literal "a"
    assert AttributeVocabulary.from_dict(_with(read="{a} one")).value_prompts("color", "heldout") == [
        "a scarlet one", "an azure one"]  # {a}: the wording's own article
    assert {p for _, _, p in vocab.all_prompts("heldout")} >= {"recolor it scarlet", "blond hair", "make it black hair"}
    assert ("hair", "black", "make it black hair") in vocab.all_prompts()
    assert vocab.words() == sorted({"make", "it", "red", "crimson", "blue", "navy", "blond", "black", "hair"})
    rng = np.random.default_rng(0)
    assert {vocab.edit_prompt("color", "blue", rng, "heldout") for _ in range(20)} == {"recolor it azure"}


def test_sample_edit_changes_an_editable_attribute():
    d = json.loads(json.dumps(EXAMPLE))
    d["color"]["editable"] = False
    d["size"] = {"small": ["small"], "medium": ["medium"], "large": ["large"]}
    vocab = AttributeVocabulary.from_dict(d)
    assert vocab.editable == ("hair", "size")
    rng = np.random.default_rng(0)
    current = {"color": "red", "hair": "black", "size": "medium"}
    seen = set()
    for _ in range(500):
        a, v = vocab.sample_edit(current, rng)
        assert a in vocab.editable and v != current[a] and v in vocab.values(a)
        seen.add((a, v))
    assert seen == {("hair", "blond"), ("size", "small"), ("size", "large")}
    assert vocab.sample_edit(current, rng, "size")[0] == "size"
    with pytest.raises(AttributesError, match="not editable"):
        vocab.sample_edit(current, rng, "color")
    with pytest.raises(AttributesError, match="not editable"):
        vocab.edit_prompt("color", "red", rng)
    with pytest.raises(AttributesError, match="no attribute 'mood'"):
        vocab["mood"]
    with pytest.raises(AttributesError, match="no value 'huge'"):
        vocab.edit_prompt("size", "huge", rng)


def _with(**changes):
    d = json.loads(json.dumps(EXAMPLE))
    for key, value in changes.items():
        d["color"][key] = value
    return d


BAD = {
    "not an object": ["red", "blue"],
    "empty": {},
    "attribute not an object": {"color": ["red", "blue"]},
    "one value": {"color": {"red": ["red"]}},
    "no wordings": {"color": {"red": [], "blue": ["blue"]}},
    "blank wording": {"color": {"red": ["  "], "blue": ["blue"]}},
    "empty wording": {"color": {"red": [""], "blue": ["blue"]}},
    "non-string wording": {"color": {"red": [3], "blue": ["blue"]}},
    "wordings not a list": {"color": {"red": "red", "blue": ["blue"]}},
    "ambiguous wording": {"color": {"red": ["red", "dark"], "blue": ["blue", "dark"]}},
    "ambiguous held-out wording": _with(heldout={"red": ["navy"]}),
    "held-out of unknown value": _with(heldout={"green": ["lime"]}),
    "template without field": _with(templates=["make it so"]),
    "template with other field": _with(templates=["make it {w} {x}"]),
    "template with format spec": _with(templates=["make it {w:>5}"]),
    "template with bad braces": _with(templates=["make it {w"]),
    "empty templates": _with(templates=[]),
    "held-out template without field": _with(heldout_templates=["recolor it"]),
    "read template without field": _with(read="a one"),
    "read template not text": _with(read=3),
    "no editable attribute": {"color": {"values": {"red": ["red"], "blue": ["blue"]}, "editable": False}},
    "unknown key": _with(colour="x"),
    "full-form key without values": {"color": {"red": ["red"], "blue": ["blue"], "editable": False}},
    "editable not a bool": _with(editable="yes"),
    "layers not a list": _with(layers="fine"),
    "layers empty": _with(layers=[]),
    "layers unknown group": _with(layers=["medium", "finest"]),
    "layers repeated": _with(layers=["fine", "fine"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_attributes_file(tmp_path, case):
    path = tmp_path / "attrs.json"
    path.write_text(json.dumps(BAD[case]))
    with pytest.raises(AttributesError) as e:
        AttributeVocabulary.load(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(path)), message
    if case not in ("not an object", "empty", "no editable attribute"):
        assert "'color'" in message, message
    with pytest.raises(AttributesError, match="^the attributes file: "):
        AttributeVocabulary.from_dict(BAD[case])


@pytest.mark.parametrize("case", ["missing", "folder", "not json", "not utf-8"])
def test_unreadable_attributes_file(tmp_path, case):
    path = tmp_path / "attrs.json"
    if case == "folder":
        path.mkdir()
    elif case == "not json":
        path.write_text('{\n  "color": {"red": ["red"],\n}')
    elif case == "not utf-8":
        path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(AttributesError) as e:
        AttributeVocabulary.load(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(path)), message
    if case == "not json":
        assert "line 3, column 1" in message, message


def test_bad_direct_construction():
    good = AttributeVocabulary.from_dict(EXAMPLE).attributes
    with pytest.raises(AttributesError, match="defined twice"):
        AttributeVocabulary([good[0], good[0]])
    with pytest.raises(AttributesError, match="defines no attribute"):
        AttributeVocabulary([])
