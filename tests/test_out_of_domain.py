"""Images outside what the generator draws are said to be (issue: reliability, finding 8): the
encoder's calibrated inversion-PSNR threshold (:mod:`generation.editing.domain`) flags a real photo
(skimage's astronaut) in the CLI, its sidecar and the web UI, and leaves a demo render alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from generation.editing.domain import calibrate, out_of_domain_note

SAYS = "outside what this generator can draw"


def test_calibration_is_the_low_quantile_and_the_note_is_one_line():
    psnr = np.linspace(15.0, 30.0, 101)
    assert calibrate(psnr, 0.01) == 15.1
    with pytest.raises(ValueError, match="at least 20"):
        calibrate([20.0] * 5)
    note = out_of_domain_note(10.4, 16.7, "astronaut.png")
    assert note.startswith("astronaut.png: ") and SAYS in note and "\n" not in note and "10.4 dB" in note
    assert out_of_domain_note(16.7, 16.7, "x") == "" and out_of_domain_note(3.0, None, "x") == ""


def test_bundled_encoder_is_calibrated():
    from hdvila.paths import bundled

    config = json.loads((bundled("edit-demo64") / "encoder" / "config.json").read_text())
    assert 12.0 < config["in_domain_psnr_db"] < 22.0


@pytest.fixture(scope="module")
def photo_and_render(tmp_path_factory):
    from skimage.data import astronaut

    from hdvila.demo.dataset import DemoImageDataset
    from hdvila.imageio import save_image

    tmp = tmp_path_factory.mktemp("ood")
    Image.fromarray(astronaut()).save(tmp / "astronaut.png")
    save_image(DemoImageDataset("test", 1, resolution=64)[0]["image"], tmp / "render.png")
    return tmp / "astronaut.png", tmp / "render.png"


def test_cli_and_sidecar_say_a_photo_is_out_of_domain(cli, photo_and_render, tmp_path):
    photo, render = photo_and_render
    for src, flagged in ((photo, True), (render, False)):
        out = tmp_path / f"{src.stem}_edit.png"
        proc = cli("edit", src, out, "--prompt", "make it blue", "--device", "cpu", "--quiet")
        assert proc.returncode == 0, proc.stderr
        meta = json.loads(out.with_name(out.name + ".json").read_text())
        assert (SAYS in proc.stdout) == flagged and (SAYS in (meta["note"] or "")) == flagged, proc.stdout


def test_web_edit_says_a_photo_is_out_of_domain(photo_and_render, tmp_path):
    from apps.web import AppState, make_edit

    state = AppState(cache_dir=tmp_path / "cache", device="cpu")
    edit = make_edit(state)
    photo, render = photo_and_render
    settings = edit(str(photo), "make it blue", "mapper", 1.0, 10, 0)[3]
    assert SAYS in settings["note"] and settings["note"].startswith("astronaut.png")
    assert SAYS not in (edit(str(render), "make it blue", "mapper", 1.0, 10, 0)[3]["note"] or "")
