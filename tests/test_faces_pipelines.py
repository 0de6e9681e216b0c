"""Faces through the product (generation/faces/pipeline.py): ``EditPipeline``/``SRPipeline(...,
faces=)`` and ``hdvila edit|upscale --faces`` on real photos (scikit-image's astronaut and coffee,
matplotlib's Grace Hopper) and on a short clip made by moving a real photo: the output keeps the
frame's size (x scale for upscale), pixels outside the paste mask are the input's, the sidecar
records each face, a file without a face goes to the errors report, and a clip is tracked and
pasted back frame by frame. Tiny models (tests/test_editing.py's), one thread."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from apps.cli import main
from generation.faces import AlignedFace, NoFaceError, paste_mask
from hdvila.errors import UserError
from hdvila.tensors import uint8_to_unit, unit_to_uint8

pytest.importorskip("facenet_pytorch", reason="needs facenet-pytorch (make setup installs it)")
skimage_data = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "make it striped"


@pytest.fixture(scope="module")
def edit_pipe():
    """A tiny EditPipeline (16 px generator, random HD-VILA, encoder and a mapper with a visible edit)."""
    from generation.editing.encoder import LatentEncoder, config_for_generator
    from generation.editing.guide import guide_fingerprint
    from generation.editing.mapper import EditMapper, MapperConfig
    from generation.editing.pipeline_edit import EditPipeline
    from generation.presets import demo_vocabulary
    from generation.stylegan2.fingerprint import generator_fingerprint
    from hdvila.configuration_hdvila import HDVILAConfig
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.processing_hdvila import HDVILAProcessor
    from tests.test_pipeline_utils import TINY_HDVILA, tiny_generator

    G = tiny_generator()
    torch.manual_seed(1)
    hdvila = HDVILAModel(HDVILAConfig(**TINY_HDVILA)).eval()
    fp = generator_fingerprint(G)
    mapper = EditMapper(MapperConfig(w_dim=fp["w_dim"], num_ws=fp["num_ws"], resolution=fp["img_resolution"],
                                     embed_dim=16, hidden=32, generator_digest=fp["digest"],
                                     guide_digest=guide_fingerprint(hdvila), vocabulary=demo_vocabulary().words()))
    torch.nn.init.normal_(mapper.mlps["medium"].out.weight, std=0.05)
    return EditPipeline(hdvila=hdvila, processor=HDVILAProcessor.from_config(hdvila.config), generator=G,
                        encoder=LatentEncoder(config_for_generator(G, channels=8, head_channels=8)), mapper=mapper)


@pytest.fixture(scope="module")
def edit_model(edit_pipe, tmp_path_factory) -> str:
    return str(edit_pipe.save_pretrained(tmp_path_factory.mktemp("faces") / "edit"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos as files: astronaut (512 px), a 256 px astronaut, coffee (no face), and two faces
    side by side (Grace Hopper larger, the astronaut smaller)."""
    import matplotlib.cbook

    folder = tmp_path_factory.mktemp("photos")
    astronaut = skimage_data.astronaut()
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    Image.fromarray(astronaut).resize((256, 256), Image.BICUBIC).save(folder / "astronaut256.png")
    Image.fromarray(skimage_data.coffee()).save(folder / "coffee.png")
    small = np.asarray(Image.fromarray(astronaut[20:276, 100:356]).resize((160, 160), Image.BICUBIC))
    big = np.asarray(Image.fromarray(hopper[60:460, 40:440]).resize((320, 320), Image.BICUBIC))
    canvas = np.full((320, 500, 3), 128, np.uint8)
    canvas[80:240, :160] = small
    canvas[:, 180:] = big
    Image.fromarray(canvas).save(folder / "two.png")
    return folder


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_edit_photo_pastes_the_face_back_into_the_whole_frame(edit_model, photos, tmp_path, capsys):
    from generation.faces import detect_faces

    src, dst = photos / "astronaut.png", tmp_path / "out.png"
    assert main(["edit", str(src), str(dst), "--model", edit_model, "--prompt", PROMPT, "--faces", "largest",
                 "--quiet"]) == 0, capsys.readouterr().err
    assert "1 face(s)" in capsys.readouterr().out
    before, after = _rgb(src), _rgb(dst)
    assert after.shape == before.shape == (512, 512, 3)
    meta = json.loads((tmp_path / "out.png.json").read_text())
    assert meta["faces_mode"] == "largest" and "aligned as FFHQ at 16x16" in meta["input_policy"]
    (face,) = meta["faces"]
    assert {"box", "landmarks", "quad", "matrix", "inversion_psnr_db"} <= set(face)
    assert face["size"] == 16 and face["image_size"] == [512, 512] and len(face["landmarks"]) == 5
    assert face["inversion_psnr_db"] == meta["inversion_psnr_db"] > 0
    assert np.allclose(face["box"], detect_faces(before)[0].box)
    mask = paste_mask(AlignedFace.from_json(face)).numpy()
    assert np.array_equal(after[mask == 0], before[mask == 0])  # outside the mask: the input, bit for bit
    assert np.abs(after[mask == 1].astype(int) - before[mask == 1]).mean() > 2  # inside: the edit
    assert 0.02 < (mask > 0).mean() < 0.3


def test_pipeline_faces_api(edit_pipe, photos, monkeypatch):
    """The Python API: per-image face records with the aligned crops and their edits; frames of
    different sizes come back as a list; latents and unknown modes are refused; no face raises;
    ``refine_texture`` reaches the crops' refinement (a bad one is refused before the detector)."""
    import generation.stylegan2.projector as projector

    astronaut, two = Image.open(photos / "astronaut256.png"), Image.open(photos / "two.png")
    out = edit_pipe([astronaut, two], PROMPT, faces="all", output_type="pt", labels=["a.png", "two.png"])
    assert isinstance(out.images, list) and [tuple(i.shape) for i in out.images] == [(3, 256, 256), (3, 320, 500)]
    assert [len(f) for f in out.faces] == [1, 2] and out.inputs.shape == (3, 3, 16, 16)
    big, small = out.faces[1]
    assert big.index == 0 and big.aligned.box[0] > 180 > small.aligned.box[2]  # largest first: Grace Hopper
    for rec in big, small:
        assert rec.aligned.crop.shape == (3, 16, 16) and rec.output.shape == (3, 16, 16)
        assert rec.inversion_psnr > 0 and rec.to_json()["inversion_psnr_db"] == round(rec.inversion_psnr, 3)
    assert out.inversion_psnr[1] == pytest.approx((big.inversion_psnr + small.inversion_psnr) / 2)
    (only,) = edit_pipe(two, PROMPT, faces="largest").faces
    assert len(only) == 1 and only[0].aligned.box == big.aligned.box
    with pytest.raises(UserError, match="'largest' or 'all'"):
        edit_pipe(astronaut, PROMPT, faces="biggest")
    with pytest.raises(UserError, match="latents"):
        edit_pipe(latents=torch.zeros(1, 16), prompt=PROMPT, faces="largest")
    with pytest.raises(NoFaceError, match=r"^coffee\.png: no face found"):
        edit_pipe(Image.open(photos / "coffee.png"), PROMPT, faces="largest", labels=["coffee.png"])
    seen, real = [], projector.project_batch
    monkeypatch.setattr(projector, "project_batch",
                        lambda *a, **k: seen.append(k["texture_weight"]) or real(*a, **k))
    edit_pipe(astronaut, PROMPT, faces="largest", refine_steps=1, refine_texture=0.5, output_type="pt")
    with pytest.raises(UserError, match="refine_texture must be a number >= 0"):
        edit_pipe(Image.open(photos / "coffee.png"), PROMPT, faces="largest", refine_steps=1, refine_texture=-1)
    assert seen == [0.5]


def test_no_face_goes_to_the_errors_report_and_nothing_is_written(edit_model, photos, tmp_path, capsys):
    dst = tmp_path / "coffee_out.png"
    assert main(["edit", str(photos / "coffee.png"), str(dst), "--model", edit_model, "--prompt", PROMPT,
                 "--faces", "largest", "--quiet"]) == 1
    captured = capsys.readouterr()
    (line,) = _error_lines(captured.err)
    assert line.startswith(f"error: {photos / 'coffee.png'}: no face found") and "use a photo" in line, line
    assert "1 failed" in captured.out and "Traceback" not in captured.err
    (entry,) = [json.loads(x) for x in (tmp_path / "coffee_out.png.errors.jsonl").read_text().splitlines()]
    assert entry["input"] == str(photos / "coffee.png") and "no face found" in entry["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coffee_out.png.errors.jsonl"]


def test_two_faces_side_by_side_all(edit_model, photos, tmp_path, capsys):
    dst = tmp_path / "two_out.png"
    assert main(["edit", str(photos / "two.png"), str(dst), "--model", edit_model, "--prompt", PROMPT,
                 "--faces", "all", "--quiet"]) == 0, capsys.readouterr().err
    faces = json.loads((tmp_path / "two_out.png.json").read_text())["faces"]
    assert [f["index"] for f in faces] == [0, 1] and all("inversion_psnr_db" in f for f in faces)
    centres = [(f["box"][0] + f["box"][2]) / 2 for f in faces]
    assert centres[0] > 180 > 160 > centres[1]  # the larger face (right) first
    before, after = _rgb(photos / "two.png"), _rgb(dst)
    assert after.shape == before.shape
    for f in faces:  # both faces were edited
        m = paste_mask(AlignedFace.from_json(f)).numpy() == 1
        assert np.abs(after[m].astype(int) - before[m]).mean() > 2


def test_upscale_with_faces_folder(photos, tmp_path, capsys):
    """``hdvila upscale --faces`` on a folder: the 256 px astronaut comes back at 1024 px, the bicubic
    enlargement outside the paste mask and the super-resolved face inside, with its sidecar; coffee
    goes to the errors report (exit 1) and leaves nothing."""
    from generation.faces.pipeline import upscale_frame

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("astronaut256.png", "coffee.png"):
        (src / name).write_bytes((photos / name).read_bytes())
    assert main(["upscale", str(src), str(out), "--faces", "largest", "--quiet"]) == 1
    captured = capsys.readouterr()
    (line,) = _error_lines(captured.err)
    assert "coffee.png: no face found" in line and "1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["astronaut256.png", "astronaut256.png.json",
                                                     "hdvila-errors.jsonl"]
    up = _rgb(out / "astronaut256.png")
    assert up.shape == (1024, 1024, 3)
    meta = json.loads((out / "astronaut256.png.json").read_text())
    (face,) = meta["faces"]
    assert meta["scale"] == 4 and face["size"] == 16 and face["image_size"] == [256, 256]
    assert face["output"]["size"] == 64 and face["output"]["image_size"] == [1024, 1024]
    placed = AlignedFace(crop=None, size=64, image_size=(1024, 1024), quad=np.array(face["output"]["quad"]),
                         matrix=np.array(face["output"]["matrix"]), landmarks=np.array(face["landmarks"]) * 4 + 1.5)
    assert np.allclose(placed.quad, (np.array(face["quad"]) * 4 + 1.5))
    mask = paste_mask(placed).numpy()
    frame = uint8_to_unit(torch.from_numpy(_rgb(photos / "astronaut256.png").copy()).permute(2, 0, 1))
    bicubic = unit_to_uint8(upscale_frame(frame, 4)).permute(1, 2, 0).numpy()
    assert np.array_equal(up[mask == 0], bicubic[mask == 0])
    assert np.abs(up[mask == 1].astype(int) - bicubic[mask == 1]).mean() > 1


def _moving_clip(frames: int = 12, size: int = 192) -> np.ndarray:
    """uint8 [T, size, size, 3]: a window sliding over the 256 px astronaut photo (the face moves
    left by 2 px a frame, and up by 1)."""
    photo = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((256, 256), Image.BICUBIC))
    return np.stack([photo[t:t + size, 4 * t // 2 + 20:4 * t // 2 + 20 + size] for t in range(frames)])


def test_face_video_edit_keeps_size_and_frame_count(edit_model, tmp_path, capsys):
    from hdvila.videoio import read_all_frames, write_video

    clip = _moving_clip()
    src = write_video(tmp_path / "clip.mp4", clip, fps=12)
    frames_in, _ = read_all_frames(src)
    dst = tmp_path / "out.mp4"
    assert main(["edit", str(src), str(dst), "--model", edit_model, "--prompt", PROMPT, "--faces", "largest",
                 "--quiet"]) == 0, capsys.readouterr().err
    frames, fps = read_all_frames(dst)
    assert frames.shape == frames_in.shape == (12, 192, 192, 3) and fps == pytest.approx(12)
    meta = json.loads((tmp_path / "out.mp4.json").read_text())
    assert meta["frames"] == 12 and len(meta["faces"]) == 12 and meta["inversion_psnr_db"] > 0
    assert all(f["box"] is not None and len(f["landmarks"]) == 5 for f in meta["faces"])
    # the face moves with the window, and the smoothed landmarks follow it
    eyes_x = np.array([f["landmarks"][0][0] for f in meta["faces"]])
    assert np.all(np.diff(eyes_x) < 0) and 15 < eyes_x[0] - eyes_x[-1] < 30
    # the edit is where the face is; a corner far from it is the (re-encoded) input
    assert np.abs(frames[:, 150:, 150:].astype(int) - frames_in[:, 150:, 150:]).mean() < 2
    mask = paste_mask(AlignedFace.from_json(meta["faces"][6])).numpy() == 1
    assert np.abs(frames[6][mask].astype(int) - frames_in[6][mask]).mean() > 2
    # a clip follows one face: --faces all is refused for it, one line in the errors report
    assert main(["edit", str(src), str(tmp_path / "all.mp4"), "--model", edit_model, "--prompt", PROMPT,
                 "--faces", "all", "--quiet"]) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert "one tracked face" in line and "--faces largest" in line and not (tmp_path / "all.mp4").exists()


def test_face_video_upscale_keeps_frame_count_at_scale(tmp_path, capsys):
    from hdvila.videoio import read_all_frames, write_video

    clip = _moving_clip(frames=6, size=128)
    src = write_video(tmp_path / "clip.mp4", clip, fps=6)
    dst = tmp_path / "up.mp4"
    assert main(["upscale", str(src), str(dst), "--faces", "largest", "--quiet"]) == 0, capsys.readouterr().err
    frames, _ = read_all_frames(dst)
    assert frames.shape == (6, 512, 512, 3)
    meta = json.loads((tmp_path / "up.mp4.json").read_text())
    assert meta["frames"] == 6 and len(meta["faces"]) == 6 and meta["scale"] == 4
    assert all(f["output"]["image_size"] == [512, 512] and f["output"]["size"] == 64 for f in meta["faces"])
