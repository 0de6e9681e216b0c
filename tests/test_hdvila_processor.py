"""HD-VILA processor: hybrid sampling, tokenizer, video/frame-folder/tensor sources, geometry, bad input."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hdvila.errors import InputFileError, TextInputError
from hdvila.frame_sampling import sample_clips
from hdvila.models.pixels import denormalize_pixels
from hdvila.processing_hdvila import HDVILAProcessor
from hdvila.videoio import write_video

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def proc() -> HDVILAProcessor:
    return HDVILAProcessor.from_preset("mini", n_clips=2, sample_rate=2)


def coded_frames(t: int, h: int = 48, w: int = 64) -> torch.Tensor:
    """[T, 3, H, W] in [-1, 1]; frame i is flat with red = 8*i, green = 255 - 8*i, blue = 128."""
    frames = torch.empty(t, 3, h, w)
    for i in range(t):
        frames[i, 0], frames[i, 1], frames[i, 2] = 8 * i, 255 - 8 * i, 128
    return frames / 127.5 - 1


def frame_number(pixels: torch.Tensor) -> float:
    """Recover i from a processed coded frame [3, H, W] (normalised pixels)."""
    return denormalize_pixels(pixels)[0].mean().item() / 8


# ---- sampling ----------------------------------------------------------------------------------------
def test_worked_examples():
    a = sample_clips(90, num_frames=7, sample_rate=4, n_clips=4)
    assert a.middles == (12, 28, 44, 60) and a.sample_rate == 4
    assert a.clips[0] == (0, 4, 8, 12, 16, 20, 24) and a.side_frames[0] == (0, 4, 8, 16, 20, 24)
    b = sample_clips(180, num_frames=11, sample_rate=2, n_clips=8)
    assert b.middles == tuple(range(10, 151, 20))
    assert b.clips[-1] == tuple(range(140, 161, 2))


def test_short_video_rate_fallback():
    s = sample_clips(20, num_frames=7, sample_rate=4, n_clips=4)  # needs 2*3*4 + 4 = 28 frames
    assert s.sample_rate == (20 - 4) // 6 == 2
    assert s.middles == (6, 8, 10, 12)  # range(6, 14)[::2][:4]
    assert all(0 <= i < 20 for c in s.clips for i in c)
    z = sample_clips(5, num_frames=7, sample_rate=4, n_clips=4)
    assert z.sample_rate == 0 and z.middles == (0, 1, 2, 3) and z.clips[1] == (1,) * 7
    assert z.unique == (0, 1, 2, 3)


def test_training_middles_random_distinct_and_seeded():
    a = sample_clips(100, num_frames=7, sample_rate=4, n_clips=4, training=True, rng=random.Random(3))
    b = sample_clips(100, num_frames=7, sample_rate=4, n_clips=4, training=True, rng=random.Random(3))
    assert a == b
    assert list(a.middles) == sorted(set(a.middles)) and all(12 <= m < 88 for m in a.middles)
    seen = {sample_clips(100, n_clips=4, training=True, rng=random.Random(s)).middles for s in range(5)}
    assert len(seen) > 1


def test_sampling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        sample_clips(90, num_frames=6)
    with pytest.raises(ValueError, match="fewer than the 4 clip"):
        sample_clips(3, n_clips=4)


# ---- text --------------------------------------------------------------------------------------------
def test_tokenize_special_tokens_padding_and_truncation(proc):
    out = proc.tokenize(["A man plays guitar.", "cat"])
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.dtype == torch.int64 and ids.shape == mask.shape and ids.shape[0] == 2
    assert ids[0, 0] == 101 and ids[0, mask[0].sum() - 1] == 102
    assert mask[1].sum() == 3 and (ids[1, 3:] == 0).all()
    with pytest.warns(UserWarning, match="truncated to 50"):
        long = proc.tokenize("word " * 80)
    assert long["input_ids"].shape == (1, 50) and long["input_ids"][0, -1] == 102
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proc.tokenize("short text")


@pytest.mark.parametrize("text", ["", "   \n\t", ["fine", " "]])
def test_empty_text_is_an_error(proc, text):
    with pytest.raises(TextInputError, match="empty"):
        proc.tokenize(text)


# ---- video sources ----------------------------------------------------------------------------------
def test_video_file_reads_exactly_the_sampled_frames_in_one_batch(proc, tmp_path, monkeypatch):
    import decord

    path = write_video(tmp_path / "coded.mp4", coded_frames(30), fps=10)
    calls = []
    original = decord.VideoReader.get_batch

    def spy(self, indices):
        calls.append(list(indices))
        return original(self, indices)

    monkeypatch.setattr(decord.VideoReader, "get_batch", spy)
    hr, lr = proc.load_video(path)
    clips = proc.sample(30)
    assert calls == [list(clips.unique)]
    assert hr.shape == (2, 3, 128, 128) and lr.shape == (2, 6, 3, 32, 32)
    for c in range(2):
        assert abs(frame_number(hr[c]) - clips.middles[c]) < 0.4
        for k, frame in enumerate(clips.side_frames[c]):
            assert abs(frame_number(lr[c, k]) - frame) < 0.4


def test_frame_folder_tensor_and_file_agree(proc, tmp_path):
    frames = coded_frames(24)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        arr = ((f + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(folder / f"clip_{i + 1:04d}.png")  # numbering may start at 1
    from_folder = proc.load_video(folder)
    from_tensor = proc.load_video(frames)
    for a, b in zip(from_folder, from_tensor):
        torch.testing.assert_close(a, b, atol=0.02, rtol=0)
    clips = proc.sample(24)
    assert abs(frame_number(from_folder[0][1]) - clips.middles[1]) < 0.1
    uint8 = proc.load_video(((frames + 1) * 127.5).round().byte())
    torch.testing.assert_close(uint8[0], from_tensor[0], atol=0.02, rtol=0)


def test_frame_folder_gap_names_the_missing_frame(proc, tmp_path):
    for i in (0, 1, 2, 4, 5):
        Image.new("RGB", (16, 16)).save(tmp_path / f"{i:05d}.jpg")
    with pytest.raises(InputFileError, match=r"frame 3 is missing.*00002\.jpg to 00004\.jpg"):
        proc.load_video(tmp_path)


def test_frame_folder_without_frames(proc, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputFileError, match="no numbered image frames"):
        proc.load_video(tmp_path)


def test_bad_video_files(proc, tmp_path):
    with pytest.raises(InputFileError, match="missing.mp4: video not found"):
        proc.load_video(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputFileError, match=r"empty.mp4: the file is empty \(0 bytes\)"):
        proc.load_video(tmp_path / "empty.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputFileError, match="corrupt.mp4: cannot decode"):
        proc.load_video(tmp_path / "corrupt.mp4")
    short = write_video(tmp_path / "short.mp4", coded_frames(1), fps=10)  # 1 frame < 2 clips
    with pytest.raises(InputFileError, match="short.mp4: too short.*1 frame"):
        proc.load_video(short)
    data = (tmp_path / "short.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputFileError, match="truncated.mp4"):
        proc.load_video(tmp_path / "truncated.mp4")


# ---- geometry -----------------------------------------------------------------------------------------
def position_coded_video(t: int = 12, h: int = 90, w: int = 120) -> torch.Tensor:
    """Static video whose pixels encode their position smoothly (red: row, green: column)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    frame = torch.stack([yy, xx, 0.5 * yy * xx])
    return frame[None].repeat(t, 1, 1, 1)


@pytest.mark.parametrize("training", [False, True])
def test_hr_is_the_lr_region_at_4x(proc, training):
    video = position_coded_video()
    for seed in range(4 if training else 1):
        hr, lr = proc.load_video(video, training=training, rng=random.Random(seed))
        shrunk = F.interpolate(hr, size=proc.lr_size, mode="bilinear", antialias=True, align_corners=False)
        for k in range(lr.shape[1]):
            torch.testing.assert_close(shrunk, lr[:, k], atol=0.03, rtol=0)


def test_test_crop_is_centred_and_training_crops_vary(proc):
    video = position_coded_video()
    hr, lr = proc.load_video(video)
    centre = denormalize_pixels(lr[0, 0])[:2, 16, 16] / 127.5 - 1  # the middle of the crop
    assert centre.abs().max() < 0.05  # the frame's centre (0, 0) in position code
    offsets, flips = set(), 0
    for seed in range(60):
        hr, lr = proc.load_video(video, training=True, rng=random.Random(seed))
        corner = denormalize_pixels(lr[0, 0])[:2, 0, 0]
        offsets.add(tuple(corner.round().tolist()))
        left, right = denormalize_pixels(lr[0, 0])[1, 16, 0], denormalize_pixels(lr[0, 0])[1, 16, -1]
        flips += bool(left > right)
    assert len(offsets) > 5
    assert 8 <= flips <= 32  # p = 1/3 of 60


def test_images_and_batched_call(proc):
    frames = position_coded_video(t=10)
    out = proc(text=["a", "b"], videos=[frames, frames], images=[frames[0], frames[1]])
    assert out["hr_frames"].shape == (2, 2, 3, 128, 128) and out["lr_frames"].shape == (2, 2, 6, 3, 32, 32)
    assert out["pixel_values"].shape == (2, 3, 128, 128)
    assert out["input_ids"].shape[0] == 2
    torch.testing.assert_close(out["pixel_values"][0], out["hr_frames"][0, 0], atol=1e-5, rtol=0)
    pil = Image.fromarray(((frames[0] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
    torch.testing.assert_close(proc.preprocess_images(pil)[0], out["pixel_values"][0], atol=0.03, rtol=0)


def test_large_preset_sizes():
    p = HDVILAProcessor.from_preset("large", n_clips=1, num_frames=3)
    assert p.hr_size == (640, 1024) and p.lr_size == (160, 256) and p.lr_resize == (180, 288)
    hr, lr = p.load_video(torch.zeros(4, 3, 72, 128, dtype=torch.uint8))
    assert hr.shape == (1, 3, 640, 1024) and lr.shape == (1, 2, 3, 160, 256)
