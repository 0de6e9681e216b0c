"""The rendered demo domain: determinism, splits, captions, patterns, videos."""

import re

import pytest
import torch
import torch.nn.functional as F

from hdvila.demo import (
    BACKGROUNDS,
    COLORS,
    MOTIONS,
    PATTERNS,
    SHAPES,
    DemoImageDataset,
    DemoVideoDataset,
    render_image,
    sample_image_spec,
    sample_video_spec,
)
from hdvila.demo.attributes import ImageSpec
from hdvila.demo.captions import BACKGROUND_WORDS, COLOR_WORDS, MOTION_WORDS, PATTERN_WORDS, SHAPE_WORDS, SIZE_WORDS
from hdvila.demo.dataset import is_test_combination


def test_vocabulary_sizes():
    assert len(SHAPES) >= 5 and len(COLORS) >= 8 and len(PATTERNS) == 3 and len(BACKGROUNDS) >= 2
    assert {"still", "left", "right", "up", "down", "grow", "shrink", "rotate", "recolor"} <= set(MOTIONS)


def test_deterministic_from_split_seed_index():
    a = DemoImageDataset("train", 10, seed=3)[7]
    b = DemoImageDataset("train", 10, seed=3)[7]
    c = DemoImageDataset("train", 10, seed=4)[7]
    assert torch.equal(a["image"], b["image"]) and a["caption"] == b["caption"]
    assert not torch.equal(a["image"], c["image"])
    v1, v2 = DemoVideoDataset("val", 5, num_frames=8)[2], DemoVideoDataset("val", 5, num_frames=8)[2]
    assert torch.equal(v1["video"], v2["video"]) and v1["caption"] == v2["caption"]


@pytest.mark.parametrize("res", [64, 128, 256])
def test_resolutions_and_range(res):
    x = DemoImageDataset("train", 3, resolution=res)[1]["image"]
    assert x.shape == (3, res, res) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


def test_test_split_holds_unseen_combinations():
    combos = {(s, c, p) for s in SHAPES for c in COLORS for p in PATTERNS}
    test = {k for k in combos if is_test_combination(*k)}
    assert 0.08 < len(test) / len(combos) < 0.25
    train = combos - test
    for values, pos in ((SHAPES, 0), (COLORS, 1), (PATTERNS, 2)):  # every value is still trained on
        assert {k[pos] for k in train} == set(values)
    for i in range(200):
        for split, want in (("train", False), ("val", False), ("test", True)):
            s = sample_image_spec(split, 0, i)
            assert is_test_combination(s.shape, s.color, s.pattern) == want
            v = sample_video_spec(split, 0, i)
            assert is_test_combination(v.shape, v.color, v.pattern) == want


def test_attributes_cover_vocabulary():
    specs = [sample_image_spec("train", 0, i) for i in range(600)]
    assert {s.shape for s in specs} == set(SHAPES) and {s.color for s in specs} == set(COLORS)
    assert {s.pattern for s in specs} == set(PATTERNS) and {s.background for s in specs} == set(BACKGROUNDS)
    assert {(s.row, s.col) for s in specs} == {(r, c) for r in range(3) for c in range(3)}
    assert {sample_video_spec("train", 0, i).motion for i in range(300)} == set(MOTIONS)


def _words(table):
    train = {w for tr, _ in table.values() for w in tr}
    held = {w for _, ho in table.values() for w in ho}
    return train, held


def test_heldout_wordings_never_in_training_captions():
    tables = [SHAPE_WORDS, COLOR_WORDS, BACKGROUND_WORDS, SIZE_WORDS, PATTERN_WORDS, MOTION_WORDS]
    held = set()
    for t in tables:
        tr, ho = _words(t)
        assert not tr & ho
        held |= {w.split("{")[0].strip() for w in ho}
    caps = [DemoVideoDataset("train", 400).caption(i) for i in range(400)]
    caps += [DemoImageDataset("train", 400)[i]["caption"] for i in range(0, 400, 4)]
    for cap in caps:
        for w in held:
            assert not re.search(rf"\b{re.escape(w)}\b", cap), (w, cap)
    heldout_caps = [DemoVideoDataset("test", 50, wording="heldout").caption(i) for i in range(50)]
    assert all(c.startswith("footage showing") for c in heldout_caps)


def test_captions_vary_and_describe_attributes():
    ds = DemoVideoDataset("train", 200)
    caps = [ds.caption(i) for i in range(200)]
    assert len(set(caps)) == 200
    for i in range(50):
        spec, cap = ds.spec(i), caps[i]
        assert any(w in cap for w in SHAPE_WORDS[spec.shape][0])
        assert any(w.split(" {")[0] in cap for w in MOTION_WORDS[spec.motion][0])
        assert any(w in cap for w in PATTERN_WORDS[spec.pattern][0])
    # several wordings of the same video
    assert len({ds.caption(0, k) for k in range(6)}) >= 3


def _spec(pattern, angle=0.0):
    return ImageSpec(shape="square", color="red", background="black", size="large", pattern=pattern, cx=0.5,
                     cy=0.5, row=1, col=1, radius=0.3, angle=angle)


@pytest.mark.parametrize("angle", [0.0, 17.0])
def test_pattern_visible_at_full_resolution_only(angle):
    plain, striped, dotted = (render_image(_spec(p, angle), 64) for p in PATTERNS)
    # full resolution: clearly different surfaces
    assert (striped - plain).abs().mean() > 0.04 and (dotted - plain).abs().mean() > 0.02
    # 1/4 resolution (area average): the pattern averages out to the plain colour; only a few
    # object-edge pixels keep a trace (at most ~8 of 255 levels), the interior none
    lr = [F.avg_pool2d(x[None], 4)[0] for x in (plain, striped, dotted)]
    for pat in (lr[1], lr[2]):
        diff = (pat - lr[0]).abs()
        assert diff.max() < 0.15 and diff.mean() < 0.008
        assert diff[:, 7:9, 7:9].max() < 0.02  # object interior


def test_antialiased_edges():
    x = render_image(_spec("plain", angle=10.0), 64)
    red = x[0]
    partial = ((red > -0.85) & (red < 0.55)).sum()  # pixels between background and object values
    assert partial > 20


def test_motion_visible_only_over_time():
    ds = DemoVideoDataset("train", 400, num_frames=16)
    seen = set()
    for i in range(400):
        spec = ds.spec(i)
        if spec.motion in seen or spec.motion == "recolor":
            continue
        seen.add(spec.motion)
        v = ds[i]["video"]
        first_last = (v[0] - v[-1]).abs().mean()
        if spec.motion == "still":
            assert first_last == 0
        else:
            assert first_last > 0.005, spec.motion
        if spec.motion in ("left", "right"):
            def cx(frame):  # centre of mass of non-background pixels
                bgv = frame[:, 0, 0][:, None, None]
                m = ((frame - bgv).abs().sum(0) > 0.1).float()
                return (m.sum(0) * torch.arange(frame.shape[-1])).sum() / m.sum()
            moved = cx(v[-1]) - cx(v[0])
            assert (moved < -20) if spec.motion == "left" else (moved > 20)
    assert len(seen) >= 7


def test_recolor_switches_colour():
    ds = DemoVideoDataset("train", 400, num_frames=12)
    i = next(i for i in range(400) if ds.spec(i).motion == "recolor")
    spec = ds.spec(i)
    assert spec.end_color != spec.color and 4 <= spec.switch_frame <= 8
    assert spec.frame(0).color == spec.color and spec.frame(11).color == spec.end_color


def test_video_frame_subset_matches_full():
    ds = DemoVideoDataset("test", 3, num_frames=10, resolution=64)
    full = ds[1]["video"]
    part = ds.get(1, frames=[0, 4, 9])["video"]
    assert torch.equal(part, full[[0, 4, 9]])


def test_bad_split_and_index():
    with pytest.raises(ValueError, match="split must be one of"):
        DemoImageDataset("training")
    with pytest.raises(IndexError):
        DemoImageDataset("train", 5)[5]
