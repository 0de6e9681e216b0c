"""Bad option values and inputs end in one line (``error: ...``, exit status 2) that names the option,
the value and the accepted range, before any model is loaded or anything is written; notes and
warnings the commands print are one line each, and name only options the user can set."""

from __future__ import annotations

import warnings

import pytest

from apps.cli import main
from tests.conftest import png_header

pytestmark = pytest.mark.usefixtures("one_thread")

LONG_TEXT = "red " * 2500  # 10,000 characters


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from hdvila.demo.dataset import DemoImageDataset
    from hdvila.imageio import save_image

    path = tmp_path_factory.mktemp("inputs") / "img.png"
    save_image(DemoImageDataset("test", 1, resolution=16)[0]["image"], path)
    return path


def one_error_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and all(w in err for w in words), err
    return err


@pytest.mark.parametrize("option, value, says", [
    ("--lr", "nan", "--lr must be a number > 0"), ("--lr", "-1", "got -1"), ("--lr", "0", "got 0"),
    ("--lr", "inf", "got inf"), ("--steps", "0", "--steps must be between 1"), ("--seed", "-1", "--seed must be"),
])
def test_invert_refuses_bad_numbers_before_loading(image, tmp_path, capsys, option, value, says):
    out = tmp_path / "out"
    assert main(["invert", str(image), str(out), option, value]) == 2
    one_error_line(capsys, says)
    assert not out.exists()


def test_eval_sr_crop_border_must_leave_pixels(tmp_path, capsys):
    from apps.commands.eval_sr import check_crop_border

    fig = tmp_path / "fig.png"
    assert main(["eval-sr", "--num", "1", "--crop-border", "-5", "--figure", str(fig)]) == 2
    one_error_line(capsys, "--crop-border must be >= 0", "-5")
    assert main(["eval-sr", "--num", "1", "--crop-border", "100", "--figure", str(fig)]) == 2
    one_error_line(capsys, "--crop-border must be between 0 and 26 pixels", "64x64", "got 100")
    assert not fig.exists()
    check_crop_border(None, 64)
    check_crop_border(26, 64)  # leaves 12x12, enough for SSIM's 11x11 window
    with pytest.raises(Exception, match="between 0 and 26"):
        check_crop_border(27, 64)


@pytest.mark.parametrize("value, says", [("100000", "got 100000"), ("4", "got 4")])
def test_eval_guide_resolution_bounded(tmp_path, capsys, value, says):
    out = tmp_path / "guide.json"
    assert main(["eval-guide", "--resolution", value, "--json", str(out)]) == 2
    one_error_line(capsys, "--resolution must be between 8 and 1024 px", says)
    assert main(["eval-guide", "--num", "100000", "--resolution", "1024", "--json", str(out)]) == 2
    one_error_line(capsys, "lower --num or --resolution")
    assert not out.exists()


@pytest.mark.parametrize("args, says", [
    (["--frames", "0"], "--frames must be between 1 and 1000"),
    (["--fps", "0"], "--fps must be a number > 0"),
    (["--fps", "nan"], "got nan"),
    (["--fps", "-8"], "got -8"),
    (["--image-resolution", "100000"], "--image-resolution must be between 16 and 1024 px"),
    (["--video-resolution", "8"], "--video-resolution must be between 16 and 1024 px"),
    (["--video-resolution", "65"], "must be even"),
    (["--captions", "0"], "--captions must be between 1 and 100"),
    (["--videos", "-1"], "--videos must be >= 0"),
    (["--images", "-2"], "--images must be >= 0"),
    (["--videos", "0", "--images", "0"], "nothing to write"),
    (["--frames", "1000", "--video-resolution", "1024"], "lower --frames or --video-resolution"),
])
def test_demo_data_refuses_bad_numbers_before_writing(tmp_path, capsys, args, says):
    out = tmp_path / "demo"
    assert main(["demo-data", str(out), *args]) == 2
    one_error_line(capsys, says)
    assert not out.exists()


def test_skip_bad_images_hint_names_the_running_commands_flag(tmp_path):
    from generation.data import scan_image_folder
    from generation.mapper_eval import load_pixels
    from hdvila.demo.dataset import DemoImageDataset
    from hdvila.errors import UserError
    from hdvila.imageio import save_image

    save_image(DemoImageDataset("test", 1, resolution=16)[0]["image"], tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="pass --skip_bad_images to train without them"):
        scan_image_folder(tmp_path, 16)  # the training scripts' flag by default
    with pytest.raises(UserError, match="pass --skip-bad-images to score without them"):
        load_pixels(str(tmp_path), 16, train_size=1, val_size=1,
                    skip_hint="pass --skip-bad-images to score without them")


def test_score_mapper_prints_skipped_images_as_one_warning_line(tmp_path, capsys):
    from apps.cli import one_line_warnings
    from generation.data import scan_image_folder
    from hdvila.demo.dataset import DemoImageDataset
    from hdvila.imageio import save_image

    save_image(DemoImageDataset("test", 1, resolution=16)[0]["image"], tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with one_line_warnings():
        warnings.simplefilter("always")
        files, _ = scan_image_folder(tmp_path, 16, skip_bad=True)
    assert [f.name for f in files] == ["ok.png"]
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("warning: skipping 1 of 2 unusable images under"), err
    assert "broken.png" in err and "scan_image_folder(" not in err and "UserWarning" not in err


def test_score_mapper_error_names_its_own_flag(tmp_path, capsys):
    from hdvila.demo.dataset import DemoImageDataset
    from hdvila.imageio import save_image

    ds = DemoImageDataset("test", 3, resolution=16)
    for i in range(3):
        save_image(ds[i]["image"], tmp_path / f"{i}.png")
    (tmp_path / "z.png").write_bytes(b"not a png")
    assert main(["score-mapper", "checkpoints/edit-demo64/mapper", "--data", str(tmp_path), "--val-size", "2"]) == 2
    err = capsys.readouterr().err
    assert "pass --skip-bad-images to score without them" in err and "--skip_bad_images" not in err
    assert "Traceback" not in err


def test_huge_image_message_names_no_cli_option(tmp_path, capsys):
    bomb = png_header(tmp_path / "bomb.png", 100_000, 100_000)
    out = tmp_path / "out"
    assert main(["invert", str(bomb), str(out)]) == 2
    err = one_error_line(capsys, "above the limit of 40,000,000", "Downscale it")
    assert "raise max_pixels" not in err and "load_image(..., max_pixels=N)" in err
    assert not out.exists()


def test_sr_long_caption_is_a_one_line_note_not_a_warning(image):
    from apps.pipelines import load_sr_pipeline
    from hdvila.imageio import load_image

    pipe = load_sr_pipeline(None, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = pipe(load_image(image), prompt=LONG_TEXT, labels=["img.png"], output_type="pt")
    assert not caught, [str(w.message) for w in caught]
    note = out.notes[0]
    assert len(note.splitlines()) == 1 and note.startswith("img.png: the caption has 2502 tokens"), note
    assert f"only its first {pipe.processor.max_length} are used" in note
    short = pipe(load_image(image), prompt="a red star", output_type="pt")
    assert short.notes == [""]
    big = pipe([load_image(image)], prompt=[LONG_TEXT], output_type="pt")
    assert big.notes[0].startswith("image 1: the caption has")


def test_search_refuses_an_overlong_query(tmp_path, capsys):
    out = tmp_path / "res.json"
    (tmp_path / "videos").mkdir()
    assert main(["search", str(tmp_path / "videos"), LONG_TEXT, "--no-cache", "--json", str(out)]) == 2
    err = one_error_line(capsys, "the search query has 2502 tokens", "at most 50", "--max-tokens")
    assert LONG_TEXT not in err and capsys.readouterr().out == ""
    assert not out.exists()


def test_export_of_a_file_says_what_it_is(tmp_path, capsys):
    src = tmp_path / "random.pkl"
    src.write_bytes(b"x")
    out = tmp_path / "out"
    assert main(["export", str(src), str(out)]) == 2
    one_error_line(capsys, f"{src} is a file, not a folder", "checkpoint-N folder", "hdvila convert stylegan2")
    assert not out.exists()
