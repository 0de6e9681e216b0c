"""The value-following edit objective, the FiLM edit mapper, and generation/train_mapper.py on a user's
folder of images with a user's attributes file (tiny sizes: one thread, about a minute in all)."""

import json

import pytest
import torch
import torch.nn.functional as F

from generation.editing.mapper import EditMapper, MapperConfig
from generation.editing.value_objective import ValueReader, value_edit_loss, value_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeReader:
    """A reader with fixed linear maps: attribute -> [D, V_a]; ``read`` is ValueReader's argmax."""

    read = ValueReader.read

    def __init__(self, maps: dict[str, torch.Tensor], unread: tuple[str, ...] = ()):
        self.maps = maps
        self.names = tuple(maps)
        self.scored = tuple(a for a in maps if a not in unread)

    def logits(self, image_embeds):
        return {a: image_embeds.float() @ m for a, m in self.maps.items()}


def test_value_edit_loss_parts_match_a_hand_computation():
    torch.manual_seed(0)
    d, n = 6, 7
    reader = FakeReader({"color": torch.randn(d, 3), "size": torch.randn(d, 2), "shape": torch.randn(d, 4)})
    emb, src = torch.randn(n, d), torch.randn(n, d)
    attributes = ["color", "size", "shape", "color", "size", "color", "shape"]
    sizes = {"color": 3, "size": 2, "shape": 4}
    targets = torch.tensor([int(torch.randint(sizes[a], ())) for a in attributes])
    offsets, w_scale = torch.randn(n, 3, 5), 0.7
    weights = {"value": 0.5, "keep": 2.0, "l2": 0.01}
    loss, parts = value_edit_loss(reader, emb, reader.logits(src), attributes, targets, offsets, w_scale, weights)

    value, keep, terms = 0.0, 0.0, 0
    for i, a in enumerate(attributes):
        logits = {b: emb[i] @ m for b, m in reader.maps.items()}
        value += -float(torch.log_softmax(logits[a], 0)[targets[i]])
        for b in reader.names:
            if b != a:
                p = torch.softmax(src[i] @ reader.maps[b], 0)
                q = torch.softmax(logits[b], 0)
                keep += float((p * (p.log() - q.log())).sum())
                terms += 1
    assert terms == 2 * n
    l2 = sum(float(((offsets[i] / w_scale) ** 2).sum()) for i in range(n)) / n
    assert float(parts["value"]) == pytest.approx(value / n, rel=1e-5)
    assert float(parts["keep"]) == pytest.approx(keep / terms, rel=1e-4, abs=1e-6)
    assert float(parts["l2"]) == pytest.approx(l2, rel=1e-5)
    assert float(loss) == pytest.approx(0.5 * value / n + 2.0 * keep / terms + 0.01 * l2, rel=1e-4)
    # a weight left out counts 0; the parts are unweighted
    only, same = value_edit_loss(reader, emb, reader.logits(src), attributes, targets, offsets, w_scale,
                                 {"value": 1.0})
    assert float(only) == pytest.approx(float(same["value"])) and float(same["l2"]) == pytest.approx(l2, rel=1e-5)
    # the edit's reading carries the gradient, not the source's
    e = emb.clone().requires_grad_(True)
    value_edit_loss(reader, e, reader.logits(src), attributes, targets, offsets, w_scale, weights)[0].backward()
    assert e.grad is not None and float(e.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="one attribute and one target per edit"):
        value_edit_loss(reader, emb, reader.logits(src), attributes[:-1], targets, offsets, w_scale, weights)
    # an unread attribute (the guide cannot read it) is neither the asked value nor kept
    blind = FakeReader(reader.maps, unread=("shape",))
    _, part = value_edit_loss(blind, emb, blind.logits(src), attributes, targets, offsets, w_scale, weights)
    value_seen, keep_seen, seen = 0.0, 0.0, 0
    for i, a in enumerate(attributes):
        logits = {b: emb[i] @ m for b, m in reader.maps.items()}
        if a != "shape":
            value_seen += -float(torch.log_softmax(logits[a], 0)[targets[i]])
        for b in ("color", "size"):
            if b != a:
                p = torch.softmax(src[i] @ reader.maps[b], 0)
                keep_seen += float((p * (p.log() - torch.log_softmax(logits[b], 0))).sum())
                seen += 1
    assert float(part["value"]) == pytest.approx(value_seen / n, rel=1e-5)
    assert float(part["keep"]) == pytest.approx(keep_seen / seen, rel=1e-4, abs=1e-6)


def test_value_metrics_count_reads_and_kept_attributes():
    # embeddings are the logits themselves: columns 0-2 read colour, 3-4 size
    reader = FakeReader({"color": torch.eye(5)[:, :3], "size": torch.eye(5)[:, 3:]})

    def emb(color: int, size: int) -> list[float]:
        row = [0.0] * 5
        row[color], row[3 + size] = 1.0, 1.0
        return row

    source = torch.tensor([emb(0, 0), emb(1, 1), emb(2, 0), emb(0, 1), emb(1, 0), emb(2, 1)])
    edited = torch.tensor([
        emb(1, 0),  # color -> 1: read, size kept
        emb(2, 0),  # color -> 0 asked: not read, size changed (not kept)
        emb(0, 0),  # color -> 0: read, kept
        emb(0, 0),  # size -> 0: read, color kept
        emb(2, 1),  # size -> 1: read, color changed
        emb(2, 1),  # size -> 0 asked: not read, kept
    ])
    attributes = ["color", "color", "color", "size", "size", "size"]
    targets = torch.tensor([1, 0, 0, 0, 1, 0])
    m = value_metrics(reader, edited, source, attributes, targets)
    assert m["read_color"] == pytest.approx(2 / 3) and m["kept_color"] == pytest.approx(2 / 3)
    assert m["read_size"] == pytest.approx(2 / 3) and m["kept_size"] == pytest.approx(2 / 3)
    assert m["read"] == pytest.approx(2 / 3) and m["kept"] == pytest.approx(2 / 3)
    assert m["select"] == pytest.approx((m["read"] + m["kept"]) / 2)
    # only the attributes edited are reported; means are over those
    m = value_metrics(reader, edited[:3], source[:3], attributes[:3], targets[:3])
    assert set(m) == {"read_color", "kept_color", "read", "kept", "select"}
    m = value_metrics(reader, edited[[0, 2, 3]], source[[0, 2, 3]], ["color", "color", "size"], targets[[0, 2, 3]])
    assert (m["read_color"], m["kept_color"], m["read_size"], m["kept_size"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["select"] == 1.0


def _film_config(**kwargs) -> MapperConfig:
    return MapperConfig(w_dim=8, num_ws=4, resolution=16, embed_dim=6, hidden=16, condition="film",
                        condition_hidden=8, groups={"coarse": [0, 1], "fine": [2, 3]}, w_scale=0.5, **kwargs)


def test_draw_edits_asks_one_image_for_several_values():
    """--values_per_image K: K consecutive rows per image, one attribute, distinct values other than the
    current one (cycled when the attribute has fewer); K = 1 keeps the single-edit draws."""
    import numpy as np

    from generation.presets import demo_vocabulary
    from generation.train_mapper import draw_edits

    vocab = demo_vocabulary()
    current = [{"shape": "star", "color": "red", "pattern": "plain", "size": "small", "background": "black"}] * 20
    edits = draw_edits(vocab, current, np.random.default_rng(0), per_image=3)
    assert len(edits) == 60
    for i in range(20):
        rows = edits[3 * i: 3 * i + 3]
        (a,) = {r[0] for r in rows}
        values = [r[1] for r in rows]
        assert current[i][a] not in values
        assert len(set(values)) == min(3, len(vocab.values(a)) - 1)
        assert all(isinstance(r[2], str) and r[2] for r in rows)
    single = draw_edits(vocab, current, np.random.default_rng(0))
    assert len(single) == 20 and all(r[1] != current[0][r[0]] for r in single)


def test_value_prior_moves_from_the_current_value_mean_to_the_asked_one(tmp_path):
    """A prompt whose embedding is a value prompt's, on a source the guide reads as another value of the
    same attribute: the prior offset is (nearly) the asked value's mean latent minus the current one's,
    it leaves the other attribute alone, and the tables survive save/load."""
    torch.manual_seed(0)
    d, v = 16, 5                                   # attribute 0: values 0-2, attribute 1: values 3-4
    text = F.normalize(torch.randn(v, d), dim=1)
    means = torch.randn(v, 3, 8)
    config = MapperConfig(w_dim=8, num_ws=3, resolution=16, embed_dim=d, hidden=16, condition="film",
                          prior_values=v, prior_scale=200.0, groups={"all": [0, 1, 2]})
    mapper = EditMapper(config)
    mapper.set_value_prior(text, torch.tensor([0, 0, 0, 1, 1]), means)
    source = F.normalize(text[0] + text[3], dim=0)[None]       # reads as value 0 and value 3
    offset = mapper.value_prior(text[2][None], source)
    assert torch.allclose(offset[0], means[2] - means[0], atol=1e-3)
    assert torch.allclose(mapper.value_prior(text[0][None], source), torch.zeros(1, 3, 8), atol=1e-3)  # no-op
    ws = torch.randn(1, 3, 8)
    assert torch.allclose(mapper(ws, text[2][None], source, torch.zeros(8)), offset, atol=1e-5)  # untrained residual
    mapper.save_pretrained(tmp_path / "m")
    loaded = EditMapper.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.prior_means, means) and torch.equal(loaded.prior_text, text)
    with pytest.raises(ValueError):
        mapper.set_value_prior(text[:4], torch.tensor([0, 0, 0, 1]), means[:4])


def test_film_mapper_starts_as_the_identity_and_hears_the_prompt(tmp_path):
    torch.manual_seed(0)
    mapper = EditMapper(_film_config())
    ws, w_avg = torch.randn(3, 4, 8), torch.randn(8)
    text, source = F.normalize(torch.randn(3, 6), dim=1), F.normalize(torch.randn(3, 6), dim=1)
    assert torch.equal(mapper(ws, text, source, w_avg), torch.zeros(3, 4, 8))
    assert torch.equal(mapper.edit(ws, text, source, w_avg), ws)
    for mlp in mapper.mlps.values():
        torch.nn.init.normal_(mlp.out.weight)
    other = F.normalize(torch.randn(3, 6), dim=1)
    a, b = mapper(ws, text, source, w_avg), mapper(ws, other, source, w_avg)
    assert a.abs().sum() > 0 and not torch.allclose(a, b, atol=1e-4)  # the prompt reaches the output
    assert not torch.allclose(a, mapper(ws, text, other, w_avg), atol=1e-4)  # and so does the source

    # condition statistics: mean and per-dimension std, floored at 0.1 x the mean std
    texts, sources = torch.randn(10, 6), torch.randn(12, 6) * 3 + 1
    texts[:, 2] = 0.25  # a constant dimension: its std is floored, not zero
    mapper.set_condition_statistics(texts, sources)
    std = texts.std(dim=0)
    assert torch.allclose(mapper.text_mean, texts.mean(dim=0))
    assert torch.allclose(mapper.text_std, std.clamp_min(0.1 * float(std.mean())))
    assert float(mapper.text_std[2]) == pytest.approx(0.1 * float(std.mean()))
    assert torch.allclose(mapper.source_mean, sources.mean(dim=0))
    assert torch.allclose(mapper.source_std, sources.std(dim=0).clamp_min(0.1 * float(sources.std(dim=0).mean())))
    with pytest.raises(ValueError, match="embeddings must be"):
        mapper.set_condition_statistics(texts[:1], sources)
    expected = mapper(ws, text, source, w_avg)
    mapper.save_pretrained(tmp_path / "m")
    loaded = EditMapper.from_pretrained(tmp_path / "m")
    assert loaded.config.condition == "film"
    for name in ("text_mean", "text_std", "source_mean", "source_std"):
        assert torch.equal(getattr(loaded, name), getattr(mapper, name)), name
    assert torch.allclose(loaded(ws, text, source, w_avg), expected, atol=1e-6)


def test_layer_gate_keeps_an_attributes_edit_to_its_layers(tmp_path):
    """A vocabulary whose colour may move only the medium W+ group: a prompt routed to colour leaves the
    coarse vectors alone, one routed to size moves every vector; the gate survives save/load, and
    with_layer_gate carries a gateless mapper's weights over."""
    from generation.editing.attributes import AttributesError, AttributeVocabulary
    from generation.editing.mapper import gate_config, route_prompts
    from hdvila.errors import CheckpointError

    vocab = AttributeVocabulary.from_dict({
        "size": {"small": ["small"], "large": ["large"]},
        "color": {"values": {"red": ["red"], "blue": ["blue"]}, "layers": ["medium"]}})
    gate = gate_config(vocab, num_ws=4, resolution=16)  # 16 px: vectors 0-2 coarse (4-8 px), 3 medium
    assert gate["attribute_layers"] == {"size": [0, 1, 2, 3], "color": [3]}
    prompts, attribute = route_prompts(vocab)
    assert gate["layer_routes"] == len(prompts) == 8 and set(attribute) == {0, 1}
    colour = {p for a, _, p in vocab.all_prompts() if a == "color"}  # row 0 of the mask: names sorted, not listed
    assert {p for p, a in zip(prompts, attribute) if a == 0} == colour and len(colour) == 4
    assert gate_config(AttributeVocabulary.from_dict({"size": {"small": ["s"], "large": ["l"]}}), 4, 16) == {
        "attribute_layers": {}, "layer_routes": 0}
    fine_only = AttributeVocabulary.from_dict({"size": {"small": ["s"], "large": ["l"]},
                                               "color": {"values": {"red": ["r"], "blue": ["b"]}, "layers": ["fine"]}})
    with pytest.raises(AttributesError, match="'color' may move only the fine W\\+ group"):
        gate_config(fine_only, num_ws=4, resolution=16)  # no fine vectors at 16 px
    torch.manual_seed(0)
    plain = EditMapper(_film_config(prior_scale=200.0, prior_values=2))  # sharp routing for random 6-d prompts
    plain.set_value_prior(F.normalize(torch.randn(2, 6), dim=1), torch.tensor([0, 0]), torch.randn(2, 4, 8))
    for mlp in plain.mlps.values():
        torch.nn.init.normal_(mlp.out.weight)
    gated = plain.with_layer_gate(**gate)
    assert torch.equal(gated.prior_means, plain.prior_means) and torch.equal(gated.text_std, plain.text_std)
    text = F.normalize(torch.randn(len(prompts), 6), dim=1)
    with pytest.raises(CheckpointError, match="no routing table"):  # a gate never routed refuses to edit
        gated.layer_gate(text[:2])
    gated.set_layer_routes(text, torch.tensor(attribute))
    color, size = attribute.index(0), attribute.index(1)
    ws, w_avg = torch.randn(2, 4, 8), torch.randn(8)
    source = F.normalize(torch.randn(2, 6), dim=1)
    asked = text[[color, size]]
    assert torch.allclose(gated.layer_gate(asked), torch.tensor([[0.0, 0, 0, 1], [1, 1, 1, 1]]), atol=1e-3)
    out, free = gated(ws, asked, source, w_avg), plain(ws, asked, source, w_avg)
    assert out[0, :3].abs().max() < 1e-3 * free[0, :3].abs().max() and torch.allclose(out[0, 3], free[0, 3])
    assert torch.allclose(out[1], free[1], atol=1e-5) and free[0, :3].abs().max() > 0
    assert torch.equal(plain.layer_gate(asked), torch.ones(2, 4))  # no gate: every layer moves
    gated.save_pretrained(tmp_path / "m")
    loaded = EditMapper.from_pretrained(tmp_path / "m")
    assert torch.allclose(loaded(ws, asked, source, w_avg), out, atol=1e-6)
    with pytest.raises(ValueError, match="layer routes must be"):
        gated.set_layer_routes(text[:3], torch.tensor(attribute[:3]))
    with pytest.raises(ValueError, match="no layer gate"):
        plain.set_layer_routes(text, torch.tensor(attribute))


# -- train_mapper.py on a user's folder and attributes file -------------------------------------------------------

ATTRIBUTES = {  # size before color: the gate's rows are in sorted name order whatever the file's order
    "size": {"values": {"small": ["small"], "large": ["large", "big"]},
             "templates": ["make it {w}", "a {w} one"], "read": "{a} one"},
    "color": {"values": {"red": ["red", "crimson"], "green": ["green"], "blue": ["blue", "cobalt"]},
              "templates": ["make it {w}", "{w}"], "read": "{a} one", "layers": ["medium", "fine"]},
}
COMMON = ["--report_to", "none", "--val_size", "4", "--train_batch_size", "4", "--hidden", "32",
          "--checkpointing_steps", "1", "--value_prior_samples", "32"]


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """24 demo renders exported as PNG files (the user's folder) and an attributes file."""
    from hdvila.demo.export import export_demo_data

    root = tmp_path_factory.mktemp("user")
    export_demo_data(root / "export", videos=0, images=24, image_resolution=64)
    attributes = root / "attributes.json"
    attributes.write_text(json.dumps(ATTRIBUTES))
    return root / "export" / "images", attributes


def test_train_mapper_on_a_folder_with_an_attributes_file(tmp_path, user_folder, monkeypatch):
    from generation import train_mapper
    from generation.editing.attributes import AttributeVocabulary
    from generation.editing.pipeline_edit import EditPipeline
    from tests.conftest import run_training_main

    images, attributes = user_folder
    assert len(list(images.glob("*.png"))) == 24
    vocabulary = AttributeVocabulary.load(attributes)
    argv = ["--output_dir", str(tmp_path / "map"), "--data", str(images), "--attributes", str(attributes),
            "--validation_steps", "2", "--pipeline_dir", str(tmp_path / "pipe"), "--synthetic_fraction", "0", *COMMON]
    out = run_training_main(train_mapper.main, [*argv, "--max_train_steps", "2"])
    assert out["step"] == 2 and (tmp_path / "map" / "checkpoint-2").is_dir()
    config = json.loads((tmp_path / "map" / "mapper" / "config.json").read_text())
    assert config["attributes"] == vocabulary.to_dict() and config["vocabulary"] == vocabulary.words()
    assert config["condition"] == "film"
    per_attribute = {k for k in out if k.startswith(("val/read_", "val/kept_"))}
    assert per_attribute == {f"val/{k}_{a}" for k in ("read", "kept") for a in vocabulary.editable}
    assert out["val/select"] == pytest.approx((out["val/read"] + out["val/kept"]) / 2)
    assert (tmp_path / "map" / "validation" / "step-000002.png").is_file()

    # resuming continues from step 2: one more training step, not three
    steps = []
    edit_loss = train_mapper.edit_loss
    monkeypatch.setattr(train_mapper, "edit_loss", lambda *a, **k: steps.append(1) or edit_loss(*a, **k))
    again = run_training_main(train_mapper.main, [*argv, "--max_train_steps", "3", "--resume_from_checkpoint",
                                                  "latest"])
    assert again["step"] == 3 and len(steps) == 1 and (tmp_path / "map" / "checkpoint-3").is_dir()

    pipe = EditPipeline.from_pretrained(tmp_path / "pipe")
    assert pipe.mapper.config.attributes == vocabulary.to_dict()
    edited = pipe(str(sorted(images.glob("*.png"))[0]), "make it crimson", output_type="pt")
    assert edited.images.shape == (1, 3, 64, 64) and torch.isfinite(edited.images).all()
    # the attributes file keeps colour edits off the coarse W+ vectors (0-2 at 64 px): the layer gate
    assert pipe.mapper.config.layer_routes == len(vocabulary.all_prompts())
    moved = (edited.latents - edited.source_latents).abs().amax(dim=(0, 2))
    assert moved[:3].max() < 1e-3 * moved[3:].max(), moved


def _bad_attributes(tmp_path, text: str):
    path = tmp_path / "attributes.json"
    path.write_text(text)
    return ["--attributes", str(path)]


def _image_folder(tmp_path, count: int):
    from hdvila.imageio import save_image

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    for i in range(count):
        save_image(torch.full((3, 16, 16), i / 10 - 0.5), folder / f"{i}.png")
    return ["--data", str(folder)]


BAD_INPUTS = {
    "not json": (lambda t: _bad_attributes(t, "{\"color\": {\"red\": [\"red\"],"), "AttributesError", "not valid JSON"),
    "one value": (lambda t: _bad_attributes(t, json.dumps({"color": {"red": ["red"]}})), "AttributesError",
                  "at least 2"),
    "empty wordings": (lambda t: _bad_attributes(t, json.dumps({"color": {"red": [], "blue": ["blue"]}})),
                       "AttributesError", "has no wordings"),
    "no images": (lambda t: _image_folder(t, 0), "InputFileError", "no image files found"),
    "too few images": (lambda t: _image_folder(t, 4), "UserError", "holds 4 images"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_train_mapper_refuses_bad_input_before_writing(tmp_path, capsys, case):
    from generation import train_mapper
    from hdvila.errors import UserError
    from hdvila.training import run_cli

    make, error, says = BAD_INPUTS[case]
    output = tmp_path / "out"
    argv = ["--output_dir", str(output), *make(tmp_path), *COMMON, "--max_train_steps", "1"]
    with pytest.raises(UserError) as e:
        train_mapper.main(argv)
    assert type(e.value).__name__ == error and says in str(e.value) and "\n" not in str(e.value)
    assert not output.exists()
    capsys.readouterr()
    assert run_cli(lambda: train_mapper.main(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err
    assert not output.exists()


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_score_mapper_refuses_bad_input_before_loading(tmp_path, capsys, case, monkeypatch):
    """hdvila score-mapper checks the attributes file and the data folder as training does, before any
    model is loaded or any figure written."""
    from apps.cli import main
    from generation import mapper_eval
    from hdvila.errors import UserError

    make, error, says = BAD_INPUTS[case]
    monkeypatch.setattr(mapper_eval, "load_edit_models", lambda *a, **k: pytest.fail("a model was loaded"))
    for sub in ("lib", "cli"):
        (tmp_path / sub).mkdir()
    option, value = make(tmp_path / "lib")  # --attributes FILE or --data FOLDER
    figures = tmp_path / "figures"
    with pytest.raises(UserError) as e:
        mapper_eval.score_mappers([tmp_path / "some-mapper"], val_size=4, figures_dir=figures,
                                  **{option.removeprefix("--"): value})
    assert type(e.value).__name__ == error and says in str(e.value) and "\n" not in str(e.value)
    capsys.readouterr()
    assert main(["score-mapper", str(tmp_path / "some-mapper"), *make(tmp_path / "cli"), "--val-size", "4",
                 "--figures", str(figures)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err
    assert not figures.exists()


def test_train_mapper_refuses_bad_arguments_before_writing(tmp_path, capsys):
    from generation import train_mapper

    output = tmp_path / "out"
    for extra in (["--data", str(tmp_path / "missing")], ["--noop_prob", "1"], ["--val_size", "0"]):
        with pytest.raises(SystemExit) as e:
            train_mapper.main(["--output_dir", str(output), *extra])
        assert e.value.code == 2 and not output.exists()
        assert ": error: " in capsys.readouterr().err.strip().splitlines()[-1]


def test_too_few_usable_images_is_still_caught_after_decoding(tmp_path):
    """--skip_bad_images may leave fewer usable images than files: load_pixels counts again."""
    import argparse

    from generation import train_mapper
    from hdvila.errors import UserError

    argv = _image_folder(tmp_path, 5)
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "images" / "4.png").write_bytes(b"truncated")
    args = argparse.Namespace(data=argv[1], val_size=4, skip_bad_images=True, seed=0, train_size=1)
    train_mapper.check_data(args)  # 6 files by name
    with pytest.warns(UserWarning, match="skipping 2"), pytest.raises(UserError, match="holds 4 usable images"):
        train_mapper.load_pixels(args, 16)


def test_score_mapper_refuses_a_mapper_trained_with_another_guide(monkeypatch):
    """Scoring the bundled mapper against a guide whose projection heads differ (one weight moved) is a
    CheckpointError naming the guide, not numbers read through the wrong text space."""
    from pathlib import Path

    from generation import mapper_eval
    from hdvila.errors import CheckpointError

    real = mapper_eval.load_edit_models

    def other_guide(*args, **kwargs):
        models = real(*args, **kwargs)
        with torch.no_grad():
            models["guide"].hdvila.transformer.t_proj.weight.add_(1e-2)
        return models

    monkeypatch.setattr(mapper_eval, "load_edit_models", other_guide)
    bundled = Path(__file__).resolve().parents[1] / "checkpoints" / "edit-demo64" / "mapper"
    with pytest.raises(CheckpointError, match="not the HD-VILA model"):
        mapper_eval.score_mappers([bundled], val_size=4)
