"""Text-guided editing on tiny models: the encoder, the mapper, the optimisation editor and
EditPipeline (save/load, mismatched components refused, bad inputs refused before any work)."""

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from generation.editing.encoder import LatentEncoder, config_for_generator, delta_regularizer, ws_groups, ws_resolutions
from generation.editing.guide import HDVILAGuide, directional_loss, guide_fingerprint
from generation.editing.mapper import EditMapper, MapperConfig
from generation.editing.optimize import optimize_edit
from generation.editing.pipeline_edit import EditClipOutput, EditPipeline, EditPipelineOutput
from generation.presets import demo_vocabulary
from generation.stylegan2.fingerprint import generator_fingerprint
from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.errors import CheckpointError, TextInputError, UserError
from hdvila.modeling_hdvila import HDVILAModel
from hdvila.processing_hdvila import HDVILAProcessor
from tests.test_pipeline_utils import TINY_HDVILA, tiny_generator

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def parts():
    G = tiny_generator()
    torch.manual_seed(1)
    hdvila = HDVILAModel(HDVILAConfig(**TINY_HDVILA)).eval()
    processor = HDVILAProcessor.from_config(hdvila.config)
    encoder = LatentEncoder(config_for_generator(G, channels=8, head_channels=8))
    fp = generator_fingerprint(G)
    mapper = EditMapper(MapperConfig(w_dim=fp["w_dim"], num_ws=fp["num_ws"], resolution=fp["img_resolution"],
                                     embed_dim=16, hidden=32, generator_digest=fp["digest"],
                                     guide_digest=guide_fingerprint(hdvila), vocabulary=demo_vocabulary().words()))
    torch.nn.init.normal_(mapper.mlps["medium"].out.weight, std=0.05)  # a non-identity edit to test with
    return G, hdvila, processor, encoder, mapper


def test_ws_groups_cover_every_vector_once():
    assert ws_resolutions(18, 1024)[:5] == [4, 8, 8, 16, 16]
    g = ws_groups(18, 1024)
    assert g["coarse"] == [0, 1, 2] and g["medium"] == [3, 4, 5, 6] and g["fine"] == list(range(7, 18))
    for n, r in ((10, 64), (6, 16)):
        idx = sorted(i for v in ws_groups(n, r).values() for i in v)
        assert idx == list(range(n))


def test_encoder_shapes_and_generator_check(parts):
    G, *_ , encoder, _ = parts
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    ws = encoder(x, G)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    assert ws.std(0).mean() > 0  # depends on the image
    assert delta_regularizer(ws).shape == (3,)
    encoder.check_generator(G)
    with pytest.raises(CheckpointError, match="not the generator"):
        encoder.check_generator(tiny_generator(seed=5))


def test_mapper_strength_and_identity(parts):
    G, hdvila, processor, encoder, mapper = parts
    ws = torch.randn(2, G.num_ws, G.w_dim)
    t, s = torch.nn.functional.normalize(torch.randn(2, 2, 16), dim=-1)
    assert torch.equal(mapper.edit(ws, t, s, G.mapping.w_avg, 0.0), ws)
    d1 = mapper.edit(ws, t, s, G.mapping.w_avg, 1.0) - ws
    d2 = mapper.edit(ws, t, s, G.mapping.w_avg, 2.0) - ws
    assert d1.abs().sum() > 0 and torch.allclose(d2, 2 * d1, atol=1e-5)
    assert d1[:, :3].abs().sum() == 0  # only the medium group's MLP was made non-zero above
    with pytest.raises(CheckpointError, match="not the HD-VILA model"):
        mapper.check_guide("0" * 16, 16)


def test_config_for_records_the_vocabulary_given(parts):
    from generation.editing.mapper import config_for

    G, hdvila, *_ = parts
    bare = config_for(G, hdvila, hidden=32)
    assert bare.vocabulary == [] and bare.attributes == {} and bare.hidden == 32 and bare.condition == "film"
    assert bare.guide_digest == guide_fingerprint(hdvila)
    assert bare.generator_digest == generator_fingerprint(G)["digest"]
    vocab = demo_vocabulary()
    config = config_for(G, hdvila, vocab, hidden=32)
    assert config.vocabulary == vocab.words() and config.attributes == vocab.to_dict() and config.hidden == 32
    pipe = EditPipeline.untrained(G, hdvila, vocabulary=vocab, encoder_kwargs={"channels": 8, "head_channels": 8},
                                  mapper_kwargs={"hidden": 32})
    assert pipe.vocabulary == vocab.words() and pipe.prompt_notes("qwzx blorf")
    assert EditPipeline.untrained(G, hdvila, encoder_kwargs={"channels": 8, "head_channels": 8},
                                  mapper_kwargs={"hidden": 32}).vocabulary is None


def test_prompts_and_vocabulary():
    from hdvila.demo.dataset import sample_image_spec

    vocab = demo_vocabulary()
    rng = np.random.default_rng(0)
    spec = sample_image_spec("test", 0, 3)
    attribute, value = vocab.sample_edit({"color": spec.color}, rng, "color")
    assert attribute == "color" and value != spec.color
    assert vocab.edit_prompt("pattern", "striped", np.random.default_rng(1)) in {p for _, _, p in vocab.all_prompts()}
    held = {p for _, _, p in vocab.all_prompts("heldout")}
    assert held and not held & {p for _, _, p in vocab.all_prompts("train")}
    assert "striped" in vocab.words() and "pinstriped" not in vocab.words()


def test_optimize_edit_moves_towards_text(parts):
    G, hdvila, processor, *_ = parts
    guide = HDVILAGuide(hdvila, processor)
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    text = guide.text_features(["a red star"])
    before = (1 - (guide.image_features(G.synthesis(ws, noise_mode="const")) @ text.T)).mean()
    out = optimize_edit(G, guide, ws, text, steps=15, lr=0.05, l2_weight=0.0)
    after = (1 - (guide.image_features(out.images) @ text.T)).mean()
    assert after < before
    assert out.ws.shape == ws.shape and len(out.history) == 15
    src = guide.image_features(G.synthesis(ws, noise_mode="const"))
    assert directional_loss(src, src + 1e-3, text, text * 0.5).shape == (2,)


def test_pipeline_round_trip_and_bad_inputs(parts, tmp_path):
    G, hdvila, processor, encoder, mapper = parts
    pipe = EditPipeline(hdvila=hdvila, processor=processor, generator=G, encoder=encoder, mapper=mapper)
    img = (torch.rand(3, 24, 20) * 2 - 1)  # not square, not 16 px: the input policy applies
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = pipe(img, "make it striped", output_type="pt")
    # The note is returned (one per image), not warned: process-wide warnings would mix up concurrent calls.
    assert len(out.notes) == 1 and "centre-cropped" in out.notes[0] and out.prompt_notes == []
    assert not [w for w in caught if "centre-cropped" in str(w.message)]
    assert out.images.shape == (1, 3, 16, 16) and out.latents.shape == (1, G.num_ws, G.w_dim)
    assert len(out.inversion_psnr) == 1 and np.isfinite(out.inversion_psnr[0])
    # return_dict=False: the output's fields as a tuple (to_tuple), the images first; 'np' is float in [0, 1].
    as_tuple = pipe(img, "make it striped", output_type="np", return_dict=False)
    assert len(as_tuple) == len(dataclasses.fields(EditPipelineOutput)) and as_tuple[1].shape == out.latents.shape
    assert as_tuple[0].dtype == np.float32 and as_tuple[0].shape == (1, 16, 16, 3)
    assert 0 <= as_tuple[0].min() and as_tuple[0].max() <= 1
    np.testing.assert_allclose(as_tuple[0], ((out.images + 1) / 2).permute(0, 2, 3, 1).numpy(), atol=1e-5)
    with pytest.raises(TypeError, match=r"\['generator'\]"):  # deterministic: no random generator argument
        pipe(img, "red", generator=torch.Generator())
    with pytest.raises(TypeError):  # the flag is keyword-only
        pipe.check_inputs(1, "red", "mapper", 1.0, 300, 0, False)
    same = pipe(img, "make it striped", strength=0.0, output_type="pt")
    assert torch.allclose(same.images, same.reconstructions, atol=1e-5)
    # Rendering keeps no autograd graph (with trainable weights, one would hold every activation).
    trainable = EditPipeline(hdvila=hdvila, processor=processor, generator=tiny_generator().requires_grad_(True),
                             encoder=encoder, mapper=mapper)
    ws, _, rec = trainable.invert(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert not rec.requires_grad and not trainable.synthesize(ws).requires_grad
    folder = pipe.save_pretrained(tmp_path / "edit")
    again = EditPipeline.from_pretrained(folder)
    out2 = again(img, "make it striped", output_type="pt")
    assert torch.allclose(out.images, out2.images, atol=1e-4)
    for prompt, err in (("", TextInputError), ("   ", TextInputError), ("red " * 80, TextInputError)):
        with pytest.raises(err):
            pipe(img, prompt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unknown = pipe([img, img], ["qwzx blorf", "make it striped"], output_type="pt")
    assert not [w for w in caught if "may do nothing" in str(w.message)]  # a note is data, not a warning
    assert len(unknown.prompt_notes) == 1 and "prompt 1 ('qwzx blorf')" in unknown.prompt_notes[0]
    assert "may do nothing" in unknown.prompt_notes[0] and len(unknown.notes) == 2
    assert pipe.prompt_notes("qwzx blorf") == [n.replace("prompt 1", "the prompt") for n in unknown.prompt_notes]
    for bad in (-0.5, 2.5, "1"):
        with pytest.raises(UserError, match="strength"):
            pipe(img, "red", strength=bad)
    with pytest.raises(UserError, match="method"):
        pipe(img, "red", method="diffuse")
    with pytest.raises(CheckpointError, match="not the generator"):
        EditPipeline.from_pretrained(folder, generator=tiny_generator(seed=5))
    lat = pipe(latents=out.source_latents, prompt="red", method="optimize", steps=2, output_type="pt")
    assert lat.inversion_psnr is None and lat.images.shape == (1, 3, 16, 16)


def test_augmented_guide_views(parts):
    G, hdvila, processor, *_ = parts
    guide = HDVILAGuide(hdvila, processor)
    x = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    assert torch.equal(guide.augmented_image_features(x, 0), guide.image_features(x))
    a = guide.augmented_image_features(x, 3, generator=torch.Generator().manual_seed(0))
    b = guide.augmented_image_features(x, 3, generator=torch.Generator().manual_seed(0))
    c = guide.augmented_image_features(x, 3, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 16) and torch.allclose(a.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.equal(a, b) and not torch.allclose(a, c)       # seeded, and the views really differ
    assert not torch.allclose(a, guide.image_features(x), atol=1e-4)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0          # differentiable in the pixels
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    out = optimize_edit(G, guide, ws, guide.text_features(["a red star"]), steps=3, guide_views=2)
    assert out.ws.shape == ws.shape and len(out.history) == 3


def test_train_encoder_then_mapper_write_a_loadable_pipeline(tmp_path):
    """Both training scripts on the bundled generator and HD-VILA model, two steps each, resumable,
    ending in an EditPipeline folder that edits an image."""
    from apps.cli import main as cli_main
    from generation import train_encoder, train_mapper
    from tests.conftest import run_training_main

    common = ["--report_to", "none", "--val_size", "4", "--train_size", "16", "--train_batch_size", "4",
              "--checkpointing_steps", "1", "--validation_steps", "0"]
    enc = run_training_main(train_encoder.main, ["--output_dir", str(tmp_path / "enc"), "--max_train_steps", "2",
                                                 "--channels", "8", *common])
    assert enc["step"] == 2 and (tmp_path / "enc" / "encoder" / "config.json").is_file()
    again = run_training_main(train_encoder.main, ["--output_dir", str(tmp_path / "enc"), "--max_train_steps", "3",
                                                   "--channels", "8", "--resume_from_checkpoint", "latest", *common])
    assert again["step"] == 3
    out = run_training_main(train_mapper.main, ["--output_dir", str(tmp_path / "map"), "--max_train_steps", "2",
                                                "--encoder", enc["encoder"], "--hidden", "32", "--guide_views", "2",
                                                "--pipeline_dir", str(tmp_path / "pipe"), "--value_prior_samples", "32",
                                                *common, "--validation_steps", "2"])
    assert out["step"] == 2 and (tmp_path / "map" / "validation" / "step-000002.png").is_file()
    attributes = ("shape", "color", "pattern", "size")
    assert {f"val/{k}_{a}" for k in ("read", "kept") for a in attributes} <= set(out)
    assert out["val/select"] == pytest.approx((out["val/read"] + out["val/kept"]) / 2)
    assert out["val/read"] == pytest.approx(sum(out[f"val/read_{a}"] for a in attributes) / 4)
    # --init_mapper starts from a trained mapper: with a zero learning rate its weights come out unchanged.
    tuned = run_training_main(train_mapper.main, ["--output_dir", str(tmp_path / "tune"), "--max_train_steps", "1",
                                                  "--encoder", enc["encoder"], "--init_mapper", out["mapper"],
                                                  "--learning_rate", "0", *common])
    before, after = (EditMapper.from_pretrained(d).state_dict() for d in (out["mapper"], tuned["mapper"]))
    assert before.keys() == after.keys() and all(torch.allclose(before[k], after[k]) for k in before)
    with pytest.raises(SystemExit):
        train_mapper.parse_args(["--output_dir", "x", "--init_mapper", out["mapper"], "--random_guide"])
    # hdvila score-mapper recomputes the run's validation numbers for a trained mapper folder.
    assert cli_main(["score-mapper", out["mapper"], "--encoder", enc["encoder"], "--val-size", "4",
                     "--json", str(tmp_path / "score.json"), "--figures", str(tmp_path / "score")]) == 0
    scored = json.loads((tmp_path / "score.json").read_text())[out["mapper"]]
    assert scored == pytest.approx({k: v for k, v in out.items() if k.startswith("val/")})  # the same numbers
    assert (tmp_path / "score" / "map-mapper.png").is_file()
    pipe = EditPipeline.from_pretrained(tmp_path / "pipe")
    edited = pipe(torch.zeros(3, 64, 64), "make it striped", output_type="pt")
    assert edited.images.shape == (1, 3, 64, 64)


def test_train_encoder_perceptual_loss_uses_the_discriminator(tmp_path):
    """--perceptual_weight trains with the bundled generator's discriminator features (no LPIPS weights
    on disk) and validation reports that distance; the shipped encoder's distance to its sources is
    smaller than an untrained encoder's."""
    from generation import train_encoder
    from generation.superres.losses import DiscriminatorFeatureLoss
    from tests.conftest import run_training_main

    out = run_training_main(train_encoder.main, [
        "--output_dir", str(tmp_path / "enc"), "--max_train_steps", "1", "--channels", "8", "--report_to", "none",
        "--val_size", "8", "--train_size", "8", "--train_batch_size", "4", "--checkpointing_steps", "1",
        "--validation_steps", "1", "--perceptual_weight", "1", "--hdvila_weight", "0", "--synthetic_fraction", "0"])
    assert out["val/perceptual"] > 0 and out["val/psnr"] > 0
    args = train_encoder.parse_args(["--output_dir", str(tmp_path / "x"), "--perceptual_weight", "1"])
    models = train_encoder.load_models(args)
    assert isinstance(models["perceptual"], DiscriminatorFeatureLoss)
    from generation.data import render_demo_images

    val = torch.from_numpy(render_demo_images(8, 64, split="test", seed=0))
    bundled = Path(__file__).resolve().parents[1] / "checkpoints" / "edit-demo64" / "encoder"
    trained = train_encoder.validate(LatentEncoder.from_pretrained(bundled).float(),
                                     models["G"], val, tmp_path / "a.png", models["perceptual"])
    fresh = train_encoder.validate(LatentEncoder.from_pretrained(out["encoder"]).float(), models["G"], val,
                                   tmp_path / "b.png", models["perceptual"])
    assert trained["val/perceptual"] < fresh["val/perceptual"]


def test_texture_stats_tell_patterns_apart_whatever_their_phase():
    """projector.texture_stats: a striped object shifted by half a stripe period (the opposite phase,
    which costs a pixel loss twice what the plain average costs) stays close; plain, striped and dotted
    renders of the same object are far apart; the loss and the judge-free metrics are 0 on identical
    images and the IoU falls when the object is gone."""
    from dataclasses import replace

    from generation.stylegan2.projector import texture_loss, texture_stats
    from generation.train_encoder import shape_and_pattern_metrics
    from hdvila.demo.attributes import ImageSpec
    from hdvila.demo.render import render_image

    spec = ImageSpec(shape="square", color="green", background="black", size="large", pattern="striped",
                     cx=0.5, cy=0.5, row=1, col=1, radius=0.3, angle=10.0)
    renders = {p: render_image(replace(spec, pattern=p))[None] for p in ("plain", "striped", "dotted")}
    # the stripes inverted about the plain colour: the same stripes shifted by half their period
    shifted = 2 * renders["plain"] - renders["striped"]
    assert texture_stats(renders["plain"]).shape == (1, 3, 64, 64)
    dist = lambda a, b: float(texture_loss(a, b))  # noqa: E731  (whole image)
    pixel = lambda a, b: float((a - b).abs().mean())  # noqa: E731
    # the pixel loss prefers the plain average to the right pattern in the wrong phase; the texture loss does not
    assert pixel(shifted, renders["striped"]) > 1.5 * pixel(renders["plain"], renders["striped"])
    assert 2 * dist(shifted, renders["striped"]) < dist(renders["plain"], renders["striped"])
    # inside the object (val/texture: the edges, where the inverted stripes change the contrast, left out)
    inside = lambda a, b: shape_and_pattern_metrics(b, a)["val/texture"]  # noqa: E731
    near = inside(shifted, renders["striped"])
    assert 5 * near < inside(renders["plain"], renders["striped"])
    assert 5 * near < inside(renders["dotted"], renders["striped"])
    assert 5 * near < inside(renders["plain"], renders["dotted"])
    x = torch.cat(list(renders.values()))
    same = shape_and_pattern_metrics(x, x)
    assert same["val/iou"] == pytest.approx(1.0) and same["val/texture"] == pytest.approx(0.0, abs=1e-6)
    empty = x[:, :, :1, :1].expand_as(x)  # the background alone
    assert shape_and_pattern_metrics(x, empty)["val/iou"] < 0.05


def test_feature_matching_loss_weighs_blocks_alike():
    from generation.train_encoder import feature_matching_loss

    torch.manual_seed(0)
    target = {4: torch.randn(2, 8, 4, 4) * 100, 8: torch.randn(2, 4, 8, 8) * 0.01}
    assert torch.allclose(feature_matching_loss(target, target), torch.zeros(2))
    # the same relative error in either block costs the same, whatever the block's scale
    off4 = feature_matching_loss({4: target[4] * 1.1, 8: target[8]}, target)
    off8 = feature_matching_loss({4: target[4], 8: target[8] * 1.1}, target)
    assert float(off4.mean()) == pytest.approx(float(off8.mean()), rel=0.3) and float(off4.mean()) > 0
    only8 = feature_matching_loss({4: target[4] * 2, 8: target[8] * 1.1}, target, resolutions=[8])
    assert torch.allclose(only8, off8 * 2)


def test_train_encoder_feature_and_texture_losses_resume_exactly(tmp_path):
    """--feature_weight (generator-feature matching on generator samples) and --texture_weight train and
    log their terms; validation logs the judge-free val/iou and val/texture; a run stopped at step 2 and
    resumed to step 3 ends with the same encoder, EMA included, as an uninterrupted 3-step run."""
    from generation import train_encoder
    from tests.conftest import run_training_main

    common = ["--report_to", "none", "--val_size", "4", "--train_size", "16", "--train_batch_size", "4",
              "--checkpointing_steps", "2", "--validation_steps", "0", "--channels", "8", "--hdvila_weight", "0",
              "--synthetic_fraction", "0.5", "--feature_weight", "1", "--feature_resolutions", "4", "16",
              "--texture_weight", "1"]
    whole = run_training_main(train_encoder.main,
                              ["--output_dir", str(tmp_path / "a"), "--max_train_steps", "3", *common])
    assert {"val/psnr", "val/psnr_fg", "val/iou", "val/texture"} <= set(whole)
    run_training_main(train_encoder.main, ["--output_dir", str(tmp_path / "b"), "--max_train_steps", "2", *common])
    resumed = run_training_main(train_encoder.main, ["--output_dir", str(tmp_path / "b"), "--max_train_steps", "3",
                                                     "--resume_from_checkpoint", "latest", *common])
    assert resumed["step"] == whole["step"] == 3
    a, b = (LatentEncoder.from_pretrained(tmp_path / d / "encoder").state_dict() for d in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit):
        train_encoder.parse_args(["--output_dir", "x", "--feature_weight", "1", "--synthetic_fraction", "0"])
    with pytest.raises(UserError, match="synthesis blocks"):
        run_training_main(train_encoder.main, ["--output_dir", str(tmp_path / "c"), "--max_train_steps", "1", *common,
                                               "--feature_resolutions", "128"])


def test_edit_command_folder_video_errors_and_bad_prompt(parts, cli, tmp_path):
    """``hdvila edit`` over a folder with a good image, a truncated one, a video, a truncated video and
    an audio-only .mp4: outputs with their metadata, the failures in an errors report and on stderr, exit
    1, no partial file; an empty or overlong prompt or a bad strength writes nothing; a prompt of unknown
    words warns and still edits."""
    import json

    import av
    from PIL import Image

    from hdvila.videoio import write_video

    G, hdvila, processor, encoder, mapper = parts
    model = EditPipeline(hdvila=hdvila, processor=processor, generator=G, encoder=encoder, mapper=mapper
                         ).save_pretrained(tmp_path / "model")
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 20, 3), dtype=np.uint8)).save(src / "sub" / "a.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_video(src / "clip.mp4", torch.rand(5, 3, 16, 16) * 2 - 1, fps=4)
    data = (src / "clip.mp4").read_bytes()
    (src / "cut.mp4").write_bytes(data[: len(data) // 3])
    with av.open(str(src / "voice.mp4"), "w") as f:                    # a sound track and no video stream
        stream = f.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            f.mux(packet)
    tiny_generator(seed=3).save_pretrained(tmp_path / "other-g")
    torch.manual_seed(2)
    HDVILAModel(HDVILAConfig(**TINY_HDVILA)).save_pretrained(tmp_path / "other-h")
    for bad in (["--prompt", "  "], ["--prompt", "red " * 80], ["--prompt", "red", "--strength", "3"],
                ["--prompt", "red", "--generator", tmp_path / "other-g"],   # parts that do not belong together
                ["--prompt", "red", "--hdvila", tmp_path / "other-h"]):
        r = cli("edit", src, out, "--model", model, "--quiet", *bad)
        assert r.returncode != 0 and "Traceback" not in r.stderr and not out.exists(), r.stderr
        assert r.stderr.strip().startswith("error:"), r.stderr
        if "--generator" in bad or "--hdvila" in bad:
            assert "not the generator" in r.stderr or "not the HD-VILA model" in r.stderr, r.stderr
    r = cli("edit", src / "sub" / "a.png", tmp_path / "odd.png", "--model", model, "--prompt", "qwzx blorf", "--quiet")
    assert r.returncode == 0 and "may do nothing" in r.stderr and (tmp_path / "odd.png").is_file(), r.stderr
    r = cli("edit", src, out, "--model", model, "--prompt", "make it striped", "--quiet")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "3 failed" in r.stdout, r.stdout + r.stderr
    assert {line.split(": ")[1].split("/")[-1] for line in r.stderr.splitlines() if line.startswith("error:")} == {
        "broken.png", "cut.mp4", "voice.mp4"}, r.stderr
    assert not any((out / n).exists() or (out / (n + ".json")).exists() for n in ("broken.png", "cut.mp4", "voice.mp4"))
    assert Image.open(out / "sub" / "a.png").size == (16, 16)
    meta = json.loads((out / "sub" / "a.png.json").read_text())
    assert meta["prompt"] == "make it striped" and "centre-cropped" in meta["note"] and meta["inversion_psnr_db"] > 0
    assert (out / "clip.mp4").stat().st_size > 0 and not (out / "broken.png").exists()
    assert "centre-cropped" in meta["input_policy"] and "16x16" in meta["input_policy"], meta
    errors = [json.loads(line) for line in (out / "hdvila-errors.jsonl").read_text().splitlines()]
    assert sorted(e["input"].split("/")[-1] for e in errors) == ["broken.png", "cut.mp4", "voice.mp4"]


def test_edit_errors_name_each_file_once(parts, cli, tmp_path):
    """``hdvila edit`` over a folder of bad files prints one ``error:`` line per file that names the
    file once (the library's message names it already; not ``error: x.png: x.png: image is ...``), and
    the errors report keeps the input and the message."""
    import json

    from PIL import Image

    from tests.conftest import assert_errors_name_each_file_once, png_header as _png_header

    G, hdvila, processor, encoder, mapper = parts
    model = EditPipeline(hdvila=hdvila, processor=processor, generator=G, encoder=encoder, mapper=mapper
                         ).save_pretrained(tmp_path / "model")
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(src / "good.png")
    _png_header(src / "huge.png", 8000, 6000)
    (src / "notes.png").write_text("not a picture\n")
    (src / "diary.mp4").write_text("not a video\n")
    r = cli("edit", src, out, "--model", model, "--prompt", "make it striped", "--quiet")
    assert r.returncode == 1 and "3 failed" in r.stdout, r.stdout + r.stderr
    assert_errors_name_each_file_once(r, src, {"huge.png": "image is 8000x6000 = 48,000,000 pixels",
                                               "notes.png": "not a recognised image file",
                                               "diary.mp4": "cannot decode the video"})
    errors = [json.loads(line) for line in (out / "hdvila-errors.jsonl").read_text().splitlines()]
    assert sorted(Path(e["input"]).name for e in errors) == ["diary.mp4", "huge.png", "notes.png"]
    assert (out / "good.png").is_file()


def test_refine_texture_reaches_the_projector_and_bad_weights_are_refused(parts, monkeypatch):
    """``refine_texture`` of ``__call__`` and ``edit_clip`` is the refinement's texture-loss weight
    (None: invert's default), so 0 and 50 reconstruct differently; a negative, non-finite or
    non-number weight is a UserError before any work, and it is no optimize_edit keyword."""
    import generation.stylegan2.projector as projector
    from generation.editing.pipeline_edit import REFINE_TEXTURE_WEIGHT

    G, hdvila, processor, encoder, mapper = parts
    pipe = EditPipeline(hdvila=hdvila, processor=processor, generator=G, encoder=encoder, mapper=mapper)
    img = torch.rand(3, 16, 16) * 2 - 1
    plain = pipe(img, "make it striped", refine_steps=2, refine_texture=0, output_type="pt")
    textured = pipe(img, "make it striped", refine_steps=2, refine_texture=50, output_type="pt")
    assert not torch.allclose(plain.reconstructions, textured.reconstructions)
    assert not torch.allclose(plain.source_latents, textured.source_latents)
    seen, real = [], projector.project_batch

    def spy(*args, **kwargs):
        seen.append(kwargs["texture_weight"])
        return real(*args, **kwargs)

    monkeypatch.setattr(projector, "project_batch", spy)
    pipe(img, "make it striped", refine_steps=1, output_type="pt")
    pipe(img, "make it striped", refine_steps=1, refine_texture=3, output_type="pt", l2_weight=0.1)
    pipe.edit_clip(torch.rand(2, 3, 16, 16) * 2 - 1, "make it striped", refine_steps=1, refine_texture=0.5)
    assert seen == [REFINE_TEXTURE_WEIGHT, 3.0, 0.5]
    for bad in (-1, -0.5, float("nan"), float("inf"), "10", True):
        with pytest.raises(UserError, match=r"refine_texture must be a number >= 0 \(0: pixel losses only\)"):
            pipe(img, "make it striped", refine_steps=1, refine_texture=bad)
    with pytest.raises(UserError, match="refine_texture must be a number >= 0"):
        pipe.edit_clip(torch.rand(2, 3, 16, 16) * 2 - 1, "make it striped", refine_steps=1, refine_texture=-1)
    assert len(seen) == 3  # refused before any refinement


def test_edit_command_refine_texture(parts, cli, tmp_path):
    """``hdvila edit --refine-texture W`` goes with ``--refine-steps N`` and is >= 0: otherwise one
    ``error:`` line, no traceback and nothing written; with both, the edit is written."""
    from PIL import Image

    G, hdvila, processor, encoder, mapper = parts
    model = EditPipeline(hdvila=hdvila, processor=processor, generator=G, encoder=encoder, mapper=mapper
                         ).save_pretrained(tmp_path / "model")
    src, out = tmp_path / "a.png", tmp_path / "out" / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(src)
    base = ("edit", src, out, "--model", model, "--prompt", "make it striped", "--quiet")
    for bad in (["--refine-texture", "1"], ["--refine-steps", "2", "--refine-texture", "-1"]):
        r = cli(*base, *bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().startswith("error: --refine-texture must be >= 0 and goes with --refine-steps N")
        assert len(r.stderr.strip().splitlines()) == 1 and not out.parent.exists(), r.stderr
    r = cli(*base, "--refine-steps", "2", "--refine-texture", "0")
    assert r.returncode == 0 and out.is_file() and (out.parent / "a.png.json").is_file(), r.stdout + r.stderr
    import json

    meta = json.loads((out.parent / "a.png.json").read_text())  # the output says how its inversion was made
    assert meta["refine_steps"] == 2 and meta["refine_texture"] == 0.0


def test_edit_output_write_failure_leaves_no_sidecar(tmp_path):
    """A failed output write removes the metadata sidecar written before it: nothing partial stays."""
    from apps.batch import write_with_meta

    dst = tmp_path / "a.png"

    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_with_meta(dst, {"prompt": "red"}, fail)
    assert list(tmp_path.iterdir()) == []
    write_with_meta(dst, {"prompt": "red"}, lambda: dst.write_bytes(b"x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.png.json"]


def test_clip_edit_uses_one_offset_and_smooths(parts):
    from generation.editing.clips import smooth_over_time, temporal_change

    G, hdvila, processor, encoder, mapper = parts
    pipe = EditPipeline(hdvila=hdvila, processor=processor, generator=G, encoder=encoder, mapper=mapper)
    ws = torch.randn(6, G.num_ws, G.w_dim)
    sm = smooth_over_time(ws, 1.0)
    assert sm.shape == ws.shape and (sm[1:] - sm[:-1]).abs().mean() < (ws[1:] - ws[:-1]).abs().mean()
    assert torch.allclose(smooth_over_time(ws, 0.0), ws)
    frames = torch.rand(6, 3, 16, 16) * 2 - 1
    out = pipe.edit_clip(frames, "make it striped")
    assert isinstance(out, EditClipOutput)
    src = smooth_over_time(pipe.invert(pipe.prepare_images(list(frames))[0])[0].cpu(), 1.0)
    offsets = out.latents - src
    assert torch.allclose(offsets, offsets[:1].expand_as(offsets), atol=1e-4), "one edit offset for the whole clip"
    assert out.frames.shape == out.reconstructions.shape == (6, 3, 16, 16) and temporal_change(out.frames) >= 0
    assert isinstance(out.inversion_psnr, float) and np.isfinite(out.inversion_psnr)
    # Notes come back in the result: the input policy's (once, without the frame label) and the prompt's.
    assert out.notes == [] and out.prompt_notes == []
    odd = pipe.edit_clip(torch.rand(2, 3, 20, 24) * 2 - 1, "qwzx blorf")
    assert len(odd.notes) == 1 and odd.notes[0].startswith("24x20 px") and "centre-cropped" in odd.notes[0]
    assert len(odd.prompt_notes) == 1 and "may do nothing" in odd.prompt_notes[0]
    with pytest.raises(UserError, match="one prompt"):
        pipe.edit_clip(frames[:2], ["red", "blue"])


def test_evaluate_edits_counts_success_and_preservation(parts, tmp_path):
    from generation.presets.demo_eval import comparison_figure, evaluate_edits, format_table
    from hdvila.judge.model import load_judge

    G, hdvila, processor, encoder, mapper = parts
    pipe = EditPipeline(hdvila=hdvila, processor=processor, generator=G, encoder=encoder, mapper=mapper)
    r = evaluate_edits(pipe, load_judge(), num=2, methods=("mapper", "optimize"), steps=2, progress=False)
    assert r["num_edits"] == 8 and set(r["methods"]) == {"mapper", "optimize"}
    for summary in r["methods"].values():
        for row in summary.values():
            assert all(0.0 <= v <= 1.0 for v in row.values())
    assert "| mapper | color |" in format_table(r)
    kept = r["inversion_kept"]  # per attribute, and all five at once: never more than the worst one
    assert set(kept) == {"shape", "color", "background", "size", "pattern", "all"}
    assert 0.0 <= kept["all"] <= min(v for k, v in kept.items() if k != "all") <= 1.0
    assert "inversion (no edit) keeps" in format_table(r)
    from PIL import Image

    fig = Image.open(comparison_figure(r, tmp_path / "f.png"))
    assert fig.width == 6 * (2 * 16 + 2) + 2 and fig.height > 2 * (2 * 16 + 2)  # 2 renders x 6 labelled tiles
    refined = evaluate_edits(pipe, load_judge(), num=2, methods=("reconstruction",), refine_steps=5, progress=False)
    assert refined["refine_steps"] == 5 and refined["inversion_psnr"] > r["inversion_psnr"]  # the projector refines


def test_eval_edit_reports_edits_and_clip_consistency(cli, tmp_path):
    """``hdvila eval-edit`` on a small untrained pipeline: per-attribute success/preservation for the
    mapper and clip-vs-frame-by-frame consistency, as a table and as JSON, with values in range."""
    import json

    from tests.conftest import small_edit_pipeline

    model = small_edit_pipeline(tmp_path / "pipe")
    out = tmp_path / "m.json"
    r = cli("eval-edit", "--model", model, "--num", "3", "--clips", "2", "--clip-frames", "4", "--json", out,
            "--figure", tmp_path / "grid.png", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| mapper | color |" in r.stdout and "| as one clip (edit_clip) |" in r.stdout
    m = json.loads(out.read_text())
    assert m["num_renders"] == 3 and m["num_edits"] == 12
    for a in ("shape", "color", "pattern", "size", "all"):
        assert all(0.0 <= v <= 1.0 for v in m["methods"]["mapper"][a].values())
    clips = m["clips"]
    assert clips["num_videos"] == 2 and len(clips["videos"]) == 2
    for name in ("clip", "per_frame"):
        s = clips["summary"][name]
        assert s["change_ratio"] > 0 and 0 <= s["flips"] <= 1 and 0 <= s["success"] <= 1
    assert {v["motion"] for v in clips["videos"]}.isdisjoint({"grow", "shrink", "recolor"})
    for name in ("clip", "per_frame"):  # the clip inversion (no edit), per attribute and all five
        kept = clips["inversion"][name]
        assert set(kept) == {"shape", "color", "background", "size", "pattern", "all"}
        assert all(0 <= v <= 1 for v in kept.values()) and kept["all"] <= min(kept.values()) + 1e-9
    assert "| frame by frame | " in r.stdout and "inversion, no edit" in r.stdout
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size[0] > 64
    bad = cli("eval-edit", "--model", model, "--num", "0")
    assert bad.returncode != 0 and "--num must be >= 1" in bad.stderr
    bad = cli("eval-edit", "--model", model, "--num", "2", "--refine-steps", "-1")
    assert bad.returncode != 0 and "--refine-steps must be >= 0" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("eval-edit", "--model", model, "--num", "2", "--refine-steps", "2", "--refine-texture", "-1")
    assert bad.returncode != 0 and "--refine-texture must be >= 0" in bad.stderr and "Traceback" not in bad.stderr
    inv = cli("eval-edit", "--model", model, "--num", "2", "--methods", "none", "--inversion", "3", "--json", out)
    assert inv.returncode == 0, inv.stderr[-2000:]
    m = json.loads(out.read_text())
    assert set(m) == {"inversion"} and m["inversion"]["num_renders"] == 2
    assert all(m["inversion"][k]["psnr"] > 5 for k in ("encoder", "projector", "encoder+3"))
    assert "| projector, 3 steps from w_avg |" in inv.stdout


def test_assemble_edit_writes_a_loadable_fp16_pipeline_and_refuses_another_generator(cli, tmp_path):
    from tests.conftest import small_edit_pipeline

    src = Path(small_edit_pipeline(tmp_path / "src"))
    out = tmp_path / "assembled"
    r = cli("assemble-edit", out, "--encoder", src / "encoder", "--mapper", src / "mapper", "--fp16")
    assert r.returncode == 0, r.stderr[-2000:]
    from safetensors.torch import load_file

    w = load_file(str(out / "mapper" / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in w.values() if v.is_floating_point())
    pipe = EditPipeline.from_pretrained(out)
    ref = EditPipeline.from_pretrained(src)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    a = pipe(x, "make it striped", output_type="pt").images
    b = ref(x, "make it striped", output_type="pt").images
    assert a.shape == (1, 3, 64, 64) and (a - b).abs().max() < 0.05  # fp16 storage, fp32 compute

    other = tmp_path / "other-g"
    tiny_generator(seed=3).save_pretrained(other)
    bad = cli("assemble-edit", tmp_path / "bad", "--encoder", src / "encoder", "--generator", other)
    assert bad.returncode != 0 and "generator" in bad.stderr and not (tmp_path / "bad").exists()
    other_h = tmp_path / "other-h"
    HDVILAModel(HDVILAConfig(**TINY_HDVILA)).save_pretrained(other_h)
    bad = cli("assemble-edit", tmp_path / "bad", "--encoder", src / "encoder", "--mapper", src / "mapper",
              "--hdvila", other_h)
    assert bad.returncode != 0 and "HD-VILA" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    assert not (tmp_path / "bad").exists()


def test_bundled_edit_pipeline_loads_and_edits():
    """The bundled checkpoints/edit-demo64 (fp16-stored) loads on the bundled generator and HD-VILA
    model, and its mapper moves a test render away from the reconstruction by the prompt."""
    from hdvila.demo.dataset import DemoImageDataset
    from hdvila.paths import bundled

    pipe = EditPipeline.from_pretrained(bundled("edit-demo64"))
    assert pipe.resolution == 64 and pipe.mapper is not None and pipe.encoder is not None
    assert pipe.mapper.config.prior_values == 23 and pipe.mapper.config.attributes  # the value-following mapper
    assert pipe.mapper.config.layer_routes > 0  # with the demo vocabulary's layer gate
    x = DemoImageDataset("test", 2, resolution=64)[1]["image"]
    out = pipe(x, "a huge one", output_type="pt")
    assert out.images.shape == (1, 3, 64, 64) and out.inversion_psnr[0] > 15
    assert (out.images - out.reconstructions).abs().mean() > 0.01, "the bundled mapper changes nothing"
    zero = pipe(x, "a huge one", strength=0.0, output_type="pt")
    assert torch.allclose(zero.images, zero.reconstructions, atol=1e-5)


def test_bundled_mapper_follows_the_asked_colour():
    """The bundled editor makes "make it blue" blue, and so on: 16 test renders, each asked for a colour
    it is not, read by the judge (a referee here, as in eval-edit). The first bundled mapper, which
    ignored the value, scored 0.5% on colour over 200 renders; this one measures 72% (docs/results.md).
    And its layer gate keeps a colour edit off the coarse W+ vectors, so the object keeps its outline:
    mask IoU with the reconstruction 0.74 on these edits, against 0.34 for the ungated v9 mapper."""
    import numpy as np

    from generation.presets import demo_vocabulary
    from hdvila.demo.attributes import ATTRIBUTES
    from hdvila.demo.dataset import DemoImageDataset
    from hdvila.judge.evaluate import judge_images
    from hdvila.judge.model import load_judge
    from hdvila.paths import bundled

    pipe = EditPipeline.from_pretrained(bundled("edit-demo64"))
    data = DemoImageDataset("test", 16, resolution=64)
    items = [data[i] for i in range(16)]
    x = torch.stack([it["image"] for it in items])
    colours = [ATTRIBUTES["color"][int(it["labels"][1])] for it in items]  # labels: shape, color, ...
    rng = np.random.default_rng(3)
    vocab = demo_vocabulary()
    asked = [vocab.sample_edit({"color": c}, rng, "color")[1] for c in colours]
    prompts = [vocab.edit_prompt("color", v, rng) for v in asked]
    out = pipe(list(x), prompts, output_type="pt")
    read = judge_images(load_judge(None), out.images)["color"][0]
    hits = sum(int(r) == ATTRIBUTES["color"].index(v) for r, v in zip(read, asked))
    assert hits >= 5, f"the asked colour was read on {hits} of 16 edits"
    from generation.stylegan2.projector import foreground_mask

    moved = (out.latents - out.source_latents).abs().amax(dim=(0, 2))  # per W+ vector; 0-2 are coarse at 64 px
    assert moved[:3].max() < 0.05 * moved[3:].min(), moved
    a, b = foreground_mask(out.images), foreground_mask(out.reconstructions)
    iou = float(((a * b).sum((1, 2, 3)) / (a + b).clamp(max=1).sum((1, 2, 3))).mean())
    assert iou > 0.6, f"colour edits moved the outline: mask IoU with the reconstruction {iou:.2f}"


def test_invert_refines_with_the_texture_loss_by_default(parts, monkeypatch):
    """EditPipeline.invert's refinement hands its texture and object weights to project_batch (the
    defaults: the texture loss on, the object weighting off), and a caller's weights replace them."""
    import generation.stylegan2.projector as projector
    from generation.editing.pipeline_edit import REFINE_FOREGROUND_WEIGHT, REFINE_TEXTURE_WEIGHT

    G, hdvila, processor, encoder, mapper = parts
    pipe = EditPipeline(hdvila=hdvila, processor=processor, generator=G, encoder=encoder, mapper=mapper)
    seen, real = [], projector.project_batch

    def spy(*args, **kwargs):
        seen.append((kwargs["texture_weight"], kwargs["foreground_weight"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(projector, "project_batch", spy)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    pipe.invert(x)
    assert seen == []  # no refinement asked: the encoder alone
    pipe.invert(x, refine_steps=1)
    pipe.invert(x, refine_steps=1, texture_weight=0.0, foreground_weight=2.0)
    assert seen == [(REFINE_TEXTURE_WEIGHT, REFINE_FOREGROUND_WEIGHT), (0.0, 2.0)] and REFINE_TEXTURE_WEIGHT > 0
    with pytest.raises(UserError, match="must be >= 0"):
        pipe.invert(x, refine_steps=1, texture_weight=-1.0)
