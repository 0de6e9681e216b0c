"""Face detection, FFHQ alignment, paste-back and clip smoothing (generation/faces) on real photos
that ship with scikit-image and matplotlib. One thread; a few seconds in all."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from generation.faces import (
    AlignedFace,
    DetectorMissingError,
    Face,
    FaceTooSmallError,
    NoFaceError,
    align_clip,
    align_face,
    apply_matrix,
    detect_faces,
    ffhq_quad,
    paste_back,
    paste_mask,
    quad_to_matrix,
    select_faces,
    smooth_landmarks,
    track_face,
)
from hdvila.errors import UserError
from hdvila.tensors import uint8_to_unit, unit_to_uint8

pytest.importorskip("facenet_pytorch", reason="needs facenet-pytorch (make setup installs it)")
skimage_data = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.usefixtures("one_thread")

#: Eye centres (mean of the six eye-contour points of dlib's 68-point model, the FFHQ recipe's
#: landmarks), measured once offline: a reference independent of the detector under test.
DLIB_EYES = {"astronaut": [(203.2, 101.5), (246.5, 104.2)], "grace_hopper": [(223.7, 192.3), (305.3, 189.2)]}


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    return uint8_to_unit(torch.from_numpy(np.array(arr)).permute(2, 0, 1))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return 10 * math.log10(4.0 / mse) if mse > 0 else math.inf


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


@pytest.fixture(scope="module")
def astronaut_face(astronaut) -> Face:
    return detect_faces(astronaut)[0]


# ---- alignment geometry ---------------------------------------------------------------------------

def ffhq_quad_complex(lm: np.ndarray) -> np.ndarray:
    """The FFHQ recipe written independently, with points as complex numbers: flipud(v) * [-1, 1]
    is v rotated by +90 degrees, i.e. 1j * v."""
    z = lm[:, 0] + 1j * lm[:, 1]
    eye_avg, eye_to_eye = (z[0] + z[1]) / 2, z[1] - z[0]
    eye_to_mouth = (z[3] + z[4]) / 2 - eye_avg
    x = eye_to_eye - 1j * eye_to_mouth
    x = x / abs(x) * max(abs(eye_to_eye) * 2.0, abs(eye_to_mouth) * 1.8)
    y = 1j * x
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.array([c - x - y, c - x + y, c + x + y, c + x - y])
    return np.stack([quad.real, quad.imag], -1)


def test_quad_is_the_ffhq_formula():
    rng = np.random.default_rng(0)
    base = np.array([[40.0, 50], [80, 48], [60, 70], [45, 90], [78, 91]])
    cases = [base, base * 3 + 7]
    for _ in range(20):  # rotated, scaled, moved, and with the mouth long or short against the eyes
        a = rng.uniform(-0.6, 0.6)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        lm = (base - 60) * [1, rng.uniform(0.6, 1.6)] @ rot.T * rng.uniform(0.3, 5) + rng.uniform(-500, 500, 2)
        cases.append(lm + rng.normal(0, 1, lm.shape))
    for lm in cases:
        expected = ffhq_quad_complex(lm)
        got = ffhq_quad(lm)
        side = np.hypot(*(expected[3] - expected[0]))
        assert np.abs(got - expected).max() <= 1e-4 * side, (lm, got, expected)


def test_matrix_maps_the_crop_edges_onto_the_quad(astronaut_face):
    quad = ffhq_quad(astronaut_face.landmarks)
    for size in (64, 1024):
        m = quad_to_matrix(quad, size)
        corners = np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5], [size - 0.5, -0.5]])
        assert np.allclose(apply_matrix(m, corners), quad, atol=1e-6)
        assert np.allclose(m[2], [0, 0, 1])  # a square: affine
        centre = apply_matrix(m, [(size - 1) / 2, (size - 1) / 2])
        assert np.allclose(centre, quad.mean(0), atol=1e-6)


def test_crop_matches_pil_quad_transform(astronaut, astronaut_face):
    """Sampling convention: the crop equals PIL's QUAD transform of the same quad (+0.5, PIL's
    pixel-centre offset, as the FFHQ script passes it) where the crop upsamples."""
    aligned = align_face(to_tensor(astronaut), astronaut_face, 256)
    assert aligned.crop.shape == (3, 256, 256) and aligned.side < 256
    ref = Image.fromarray(astronaut).transform((256, 256), Image.QUAD, tuple((aligned.quad + 0.5).flatten()),
                                               Image.BICUBIC)
    assert psnr(aligned.crop[:, 4:-4, 4:-4], to_tensor(np.asarray(ref))[:, 4:-4, 4:-4]) > 40
    # the landmarks land where FFHQ puts them: eyes level, in the upper half, centred
    lm = aligned.crop_landmarks()
    assert abs(lm[0, 1] - lm[1, 1]) < 1 and 0.3 < lm[0, 1] / 256 < 0.5 and abs((lm[0, 0] + lm[1, 0]) / 2 - 127.5) < 4


def test_sidecar_json_round_trip(tmp_path, astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face, 64)
    path = tmp_path / "face.json"
    aligned.write_json(path)
    d = json.loads(path.read_text())
    assert {"box", "landmarks", "quad", "matrix", "inverse", "size", "image_size"} <= set(d)
    back = AlignedFace.from_json(d, crop=aligned.crop)
    assert np.array_equal(back.matrix, aligned.matrix) and np.array_equal(back.quad, aligned.quad)
    assert back.box == aligned.box and back.image_size == (512, 512)
    assert np.allclose(back.inverse @ back.matrix, np.eye(3), atol=1e-9)


# ---- paste-back ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [256, 1024])
def test_round_trip_is_exact_outside_and_close_inside(astronaut, astronaut_face, size):
    img = to_tensor(astronaut)
    aligned = align_face(img, astronaut_face, size)
    out, mask = paste_back(img, aligned, return_mask=True)
    outside = mask == 0
    assert torch.equal(out[:, outside], img[:, outside])  # bit for bit
    original_uint8 = torch.from_numpy(np.array(astronaut)).permute(2, 0, 1)
    assert torch.equal(unit_to_uint8(out)[:, outside], original_uint8[:, outside])
    inside = psnr(out[:, mask > 0], img[:, mask > 0])
    print(f"\nround trip, {size} px crop of a {aligned.side:.0f} px square: PSNR inside the mask {inside:.2f} dB")
    assert inside >= 35
    assert 0.5 * aligned.side ** 2 < int((mask > 0).sum()) <= aligned.side ** 2 + 4 * aligned.side


def test_paste_mask_shape_and_feather(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face, 64)
    mask = paste_mask(aligned)
    assert mask.shape == (512, 512) and float(mask.min()) == 0 and float(mask.max()) == 1
    cx, cy = (int(round(v)) for v in aligned.quad.mean(0))
    feather = aligned.side / 20
    row = mask[cy]
    ramp = int(((row > 0) & (row < 1)).sum())  # both sides of the square, about feather px each
    assert 2 * feather - 3 <= ramp <= 2 * feather + 3, (ramp, feather)
    assert float(mask[cy, cx]) == 1
    wider = paste_mask(aligned, feather=3 * feather)
    assert int(((wider > 0) & (wider < 1)).sum()) > int(((mask > 0) & (mask < 1)).sum())


def test_edited_crop_lands_in_the_square_only(astronaut, astronaut_face):
    img = to_tensor(astronaut)
    aligned = align_face(img, astronaut_face, 128)
    edited = torch.full((3, 512, 512), 0.25)  # another size than the alignment's: placed all the same
    out, mask = paste_back(img, aligned, edited, return_mask=True)
    assert torch.equal(out[:, mask == 0], img[:, mask == 0])
    assert torch.allclose(out[:, mask == 1], torch.tensor(0.25), atol=1e-5)
    # a crop at twice the size, upsampled from the aligned one, pastes back as the original would
    double = torch.nn.functional.interpolate(aligned.crop[None], scale_factor=2, mode="bicubic")[0]
    assert psnr(paste_back(img, aligned, double), paste_back(img, aligned)) > 40


def test_colour_matching_fixes_a_tone_shift(astronaut, astronaut_face):
    img = to_tensor(astronaut)
    aligned = align_face(img, astronaut_face, 128)
    shifted = (aligned.crop * 0.8 + 0.3).clamp(-1, 1)  # an "edit" that also changed the overall tone
    mask = paste_mask(aligned) > 0
    plain = psnr(paste_back(img, aligned, shifted)[:, mask], img[:, mask])
    matched = psnr(paste_back(img, aligned, shifted, match_colour=True)[:, mask], img[:, mask])
    assert matched > plain + 6, (plain, matched)


# ---- real photos, several faces, bad input ---------------------------------------------------------

@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_faces_in_real_photos(photo, request):
    image = request.getfixturevalue(photo)
    faces = detect_faces(image)
    assert len(faces) == 1 and faces[0].score > 0.99
    x0, y0, x1, y1 = faces[0].box
    eyes = np.array(DLIB_EYES[photo])
    assert all(x0 < x < x1 and y0 < y < y1 for x, y in eyes), (faces[0].box, eyes)
    # MTCNN's pupils sit within a tenth of the eye distance of dlib's eye-contour centres
    assert np.abs(faces[0].landmarks[:2] - eyes).max() < 0.1 * np.hypot(*(eyes[1] - eyes[0]))
    assert detect_faces(to_tensor(image))[0].box == faces[0].box  # tensors in [-1, 1] too; deterministic


def test_no_face_in_coffee():
    coffee = skimage_data.coffee()
    with pytest.raises(NoFaceError) as e:
        detect_faces(coffee, name="coffee.png")
    msg = str(e.value)
    assert msg.startswith("coffee.png: no face found") and "\n" not in msg and "use a photo" in msg
    assert isinstance(e.value, UserError)
    assert detect_faces(coffee, required=False) == []


def test_two_faces_all_and_largest(astronaut, grace_hopper):
    small = np.asarray(Image.fromarray(astronaut[20:276, 100:356]).resize((160, 160), Image.BICUBIC))
    big = np.asarray(Image.fromarray(grace_hopper[60:460, 40:440]).resize((320, 320), Image.BICUBIC))
    canvas = np.full((320, 500, 3), 128, np.uint8)
    canvas[80:240, :160] = small
    canvas[:, 180:] = big
    faces = detect_faces(canvas)
    everyone = select_faces(faces, "all")
    assert len(everyone) == 2
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in everyone)
    assert centres[0] < 160 < 180 < centres[1]
    (largest,) = select_faces(faces, "largest")
    assert (largest.box[0] + largest.box[2]) / 2 > 180 and largest.area > everyone[1].area
    with pytest.raises(UserError, match="'largest' or 'all'"):
        select_faces(faces, "biggest")
    with pytest.raises(NoFaceError):
        select_faces([], "all")


def test_too_small_face(astronaut):
    tiny = np.asarray(Image.fromarray(astronaut).resize((128, 128), Image.BICUBIC))  # ~10 px between the eyes
    with pytest.raises(FaceTooSmallError) as e:
        detect_faces(tiny, name="tiny.png")
    assert str(e.value).startswith("tiny.png: the largest face found has") and "16 px" in str(e.value)
    assert detect_faces(tiny, min_eye_distance=8)  # a caller may accept smaller faces


def test_face_near_the_border_is_padded_not_refused(astronaut):
    near = np.ascontiguousarray(astronaut[60:, 150:])  # the hair touches the top edge
    img = to_tensor(near)
    (face,) = detect_faces(near)
    aligned = {pad: align_face(img, face, 256, padding=pad) for pad in ("fade", "ffhq", "reflect")}
    quad = aligned["fade"].quad
    assert quad[:, 1].min() < -20  # the square reaches well outside the image
    for a in aligned.values():
        assert a.crop.shape == (3, 256, 256) and torch.isfinite(a.crop).all()
    # crop pixels that show the image are untouched by "fade" (FFHQ's own formula blurs them near the
    # edge); those that show the pad are blurred and faded, unlike the plain reflection
    ys, xs = np.mgrid[0:256, 0:256]
    at = apply_matrix(aligned["fade"].matrix, np.stack([xs, ys], -1))
    h, w = near.shape[:2]
    shown = torch.from_numpy((at[..., 0] >= 0) & (at[..., 0] <= w - 1) & (at[..., 1] >= 0) & (at[..., 1] <= h - 1))
    pad = torch.from_numpy((at[..., 1] < -0.05 * aligned["fade"].side))
    fade, reflect, ffhq = aligned["fade"].crop, aligned["reflect"].crop, aligned["ffhq"].crop
    assert shown.float().mean() > 0.5 and pad.float().mean() > 0.1
    assert torch.equal(fade[:, shown], reflect[:, shown])
    assert not torch.equal(ffhq[:, shown], reflect[:, shown])
    assert psnr(fade[:, pad], reflect[:, pad]) < 30
    out, mask = paste_back(img, aligned["fade"], return_mask=True)
    assert torch.equal(out[:, mask == 0], img[:, mask == 0]) and psnr(out[:, mask > 0], img[:, mask > 0]) > 35


def test_face_cut_by_the_edge_is_refused(astronaut):
    with pytest.raises(NoFaceError, match="cut by the image's edge"):
        detect_faces(np.ascontiguousarray(astronaut[100:, 150:]))  # the eyes at the top edge


def test_missing_detector_says_how_to_install(monkeypatch):
    import sys

    import generation.faces.detect as detect

    monkeypatch.setattr(detect, "_DETECTOR", None)
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    with pytest.raises(DetectorMissingError, match=r"pip install --no-deps facenet-pytorch==2\.6\.0"):
        detect_faces(np.zeros((64, 64, 3), np.uint8))


# ---- clips -------------------------------------------------------------------------------------------

def test_smooth_landmarks_keeps_lines_and_fills_gaps():
    t = np.arange(40, dtype=float)
    line = np.stack([3 + 0.7 * t, 5 - 0.2 * t], -1)[:, None, :].repeat(5, 1)  # [T, 5, 2]
    parabola = line + 0.05 * (t - 20)[:, None, None] ** 2
    for degree in (1, 2):
        assert np.allclose(smooth_landmarks(line, sigma=3, degree=degree), line, atol=1e-9)  # ends included
    assert np.allclose(smooth_landmarks(parabola, sigma=3, degree=2), parabola, atol=1e-9)
    gappy = line.copy()
    gappy[10:14] = np.nan  # a short gap inside
    gappy[30:] = np.nan    # a long one at the end: held at the last frame with the face
    out = smooth_landmarks(gappy, sigma=2)
    assert np.isfinite(out).all() and np.allclose(out[:20], line[:20], atol=1e-6)
    assert np.allclose(out[37:], line[29], atol=1e-6)
    noise = np.random.default_rng(0).normal(0, 1, (4000, 5, 2))
    for degree, factor in [(1, math.sqrt(2 * math.sqrt(math.pi) * 3)), (2, 2.47)]:
        ratio = noise.std() / smooth_landmarks(noise, sigma=3, degree=degree).std()
        assert 0.9 * factor < ratio < 1.1 * factor, (degree, ratio)
    with pytest.raises(ValueError):
        smooth_landmarks(np.full((5, 5, 2), np.nan))


def _similarity(scale: float, angle: float, shift: tuple[float, float], centre: tuple[float, float]) -> np.ndarray:
    """3x3: source px -> frame px, about ``centre`` of the source, then moved by ``shift``."""
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    cx, cy = centre
    return np.array([[c, -s, cx + shift[0] - c * cx + s * cy], [s, c, cy + shift[1] - s * cx - c * cy], [0, 0, 1.0]])


def test_clip_alignment_does_not_jitter(astronaut, astronaut_face):
    """A real photo moved, turned and scaled smoothly over 30 frames (a curved path), with MTCNN's
    own errors plus 1 px of synthetic landmark noise. Measured on the true landmarks' positions in
    each frame's 256 px crop (which a perfect alignment would keep still): the jitter (frame to
    frame: RMS of the second difference in time over sqrt(6), which is the RMS displacement for white
    noise and 0 for any steady motion) and the drift (RMS distance from the clip's mean position),
    before and after smoothing."""
    src = Image.fromarray(astronaut[0:320, 64:384])  # 320 px around the face
    truth_src = astronaut_face.landmarks - [64, 0]
    frames, truth = [], []
    for t in range(30):
        u = t / 29
        m = _similarity(0.55 + 0.15 * u, 0.08 * math.sin(2 * math.pi * u), (40 * math.sin(math.pi * u) - 20, 12 * u),
                        (160, 160))
        inv = np.linalg.inv(m)  # PIL wants frame -> source, with pixel centres at +0.5
        coeffs = (inv[0, 0], inv[0, 1], inv[0, 2] + 0.5 - 0.5 * (inv[0, 0] + inv[0, 1]),
                  inv[1, 0], inv[1, 1], inv[1, 2] + 0.5 - 0.5 * (inv[1, 0] + inv[1, 1]))
        frame = src.transform((224, 224), Image.AFFINE, coeffs, Image.BICUBIC, fillcolor=(90, 90, 90))
        frames.append(np.asarray(frame))
        truth.append(apply_matrix(m, truth_src))
    truth = np.stack(truth)
    track = track_face(frames)
    assert track.found.all()
    assert np.abs(track.landmarks - truth).mean() < 1.5  # the frames put the face where the truth says
    track.landmarks = track.landmarks + np.random.default_rng(0).normal(0, 1.0, track.landmarks.shape)

    def jitter_and_drift(aligned: list[AlignedFace]) -> tuple[float, float]:
        pos = np.stack([apply_matrix(a.inverse, tr) for a, tr in zip(aligned, truth)])  # [T, 5, 2] crop px
        second = pos[2:] - 2 * pos[1:-1] + pos[:-2]
        return (float(np.sqrt((second ** 2).sum(-1).mean() / 6)),
                float(np.sqrt(((pos - pos.mean(0)) ** 2).sum(-1).mean())))

    raw = [align_face(f, lm, 256) for f, lm in zip(frames, track.landmarks)]
    smoothed = align_clip(frames, 256, track=track)
    (j0, d0), (j1, d1) = jitter_and_drift(raw), jitter_and_drift(smoothed)
    eyes = np.median(np.hypot(*(truth[:, 1] - truth[:, 0]).T))
    print(f"\ncrop landmark jitter, 256 px crops of a face {eyes:.0f} px between the eyes: per-frame {j0:.2f} px, "
          f"smoothed {j1:.2f} px; drift over the clip {d0:.2f} px -> {d1:.2f} px")
    assert j1 < 0.5 and j1 < j0 / 4 and d1 < d0
    assert all(a.box is not None for a in smoothed) and smoothed[0].crop.shape == (3, 256, 256)
