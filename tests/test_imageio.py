"""Image input/output policy: every bad-input case with the exact message the user sees."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hdvila.errors import InputFileError, UserError
from hdvila.imageio import list_images, load_image, save_image
from hdvila.tensors import pil_to_tensor, to_pil, unit_to_uint8


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` but holds almost no data (a decompression bomb shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError) as e:
        load_image(tmp_path / "nope.png")
    assert str(e.value) == f"{tmp_path / 'nope.png'}: file not found."


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(InputFileError) as e:
        load_image(tmp_path)
    assert str(e.value) == f"{tmp_path}: is a folder, not an image file."


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(InputFileError) as e:
        load_image(p)
    assert str(e.value) == f"{p}: file is empty (0 bytes); it is not an image."


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello, I am text")
    with pytest.raises(InputFileError) as e:
        load_image(p)
    assert str(e.value) == (f"{p}: not a recognised image file (supported: PNG, JPEG, BMP, WebP, TIFF, GIF). "
                            "The file may be corrupt or of another type.")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    data = buf.getvalue()
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError) as e:
        load_image(p)
    assert str(e.value) == f"{p}: image file is truncated or its data is corrupt; re-export or re-download it."


def test_decompression_bomb_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(InputFileError) as e:
        load_image(p)
    assert str(e.value) == (f"{p}: image is 100000x100000 = 10,000,000,000 pixels, above the limit of 40,000,000. "
                            "Downscale it to at most 40,000,000 pixels first (library users who trust the file: "
                            "hdvila.imageio.load_image(..., max_pixels=N)).")


def test_size_limit_configurable():
    img = Image.new("RGB", (20, 20))
    with pytest.raises(InputFileError, match="above the limit of 100"):
        load_image(_png_bytes(img), max_pixels=100)
    assert load_image(_png_bytes(img), max_pixels=400).size == (20, 20)


def test_bytes_and_label():
    with pytest.raises(InputFileError) as e:
        load_image(b"\x00\x01garbage", name="upload.jpg")
    assert str(e.value).startswith("upload.jpg: not a recognised image file")


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    base = Image.new("RGB", (8, 6), (200, 100, 50))
    img = base.convert(mode) if mode not in ("I;16", "I", "F") else Image.new(mode, (8, 6))
    fmt = "TIFF" if mode in ("CMYK", "I;16", "I", "F", "YCbCr") else "PNG"
    p = tmp_path / f"x.{fmt.lower()}"
    img.save(p, format=fmt)
    out = load_image(p)
    assert out.mode == "RGB" and out.size == (8, 6)


def test_in_memory_ycbcr_and_lab():
    base = Image.new("RGB", (4, 4), (200, 100, 50))
    for mode in ("YCbCr", "LAB", "HSV"):
        assert load_image(base.convert(mode)).mode == "RGB"


def test_sixteen_bit_scaled_to_eight():
    arr = np.full((4, 4), 65535, dtype=np.uint16)
    img = Image.fromarray(arr)
    assert np.asarray(load_image(img)).max() == 255
    assert np.asarray(load_image(arr)).min() == 255


def test_alpha_composited_over_white():
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    out = np.asarray(load_image(_png_bytes(rgba)))
    assert out[0, 0].tolist() == [255, 255, 255]  # transparent -> background
    assert out[0, 1].tolist() == [255, 0, 0]      # opaque stays
    assert np.asarray(load_image(rgba, alpha_background=(0, 0, 0)))[0, 0].tolist() == [0, 0, 0]


def test_palette_with_transparency():
    p = Image.new("P", (2, 2))
    p.putpalette([0, 0, 255] * 256)
    p.info["transparency"] = 0
    assert np.asarray(load_image(p))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif)
    assert load_image(p).size == (20, 40)


def test_numpy_inputs():
    assert load_image(np.zeros((5, 7, 3), np.uint8)).size == (7, 5)
    assert np.asarray(load_image(np.ones((3, 3), np.float32)))[0, 0].tolist() == [255, 255, 255]
    assert load_image(np.zeros((3, 3, 4), np.uint8)).mode == "RGB"
    with pytest.raises(InputFileError) as e:
        load_image(np.zeros((3, 3, 2), np.uint8))
    assert str(e.value) == ("<ndarray>: array of shape (3, 3, 2) is not an image; expected HxW, HxWx1, HxWx3 "
                            "or HxWx4.")
    with pytest.raises(InputFileError, match="NaN"):
        load_image(np.full((2, 2, 3), np.nan, np.float32))


def test_tensor_round_trip_exact():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    t = pil_to_tensor(Image.fromarray(arr))
    assert t.shape == (3, 9, 11) and t.min() >= -1 and t.max() <= 1
    assert np.array_equal(np.asarray(to_pil(t)), arr)
    assert torch.equal(unit_to_uint8(t).permute(1, 2, 0), torch.from_numpy(arr))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_save_image_formats(tmp_path, suffix):
    t = torch.rand(1, 3, 16, 16) * 2 - 1
    p = save_image(t, tmp_path / f"out{suffix}")
    with Image.open(p) as im:
        assert im.format == ("PNG" if suffix == ".png" else "JPEG")
        if suffix == ".png":
            assert np.array_equal(np.asarray(im), np.asarray(to_pil(t)))


def test_save_image_bad_suffix(tmp_path):
    with pytest.raises(UserError) as e:
        save_image(torch.zeros(3, 4, 4), tmp_path / "out.gif")
    assert str(e.value) == f"{tmp_path / 'out.gif'}: output must end in .png, .jpg or .jpeg (got .gif)."


def test_save_image_is_atomic(tmp_path, monkeypatch):
    """A save that dies half-way leaves neither a partial file nor a temporary one."""
    target = tmp_path / "result.png"

    def dying_save(self, fp, format=None, **kw):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_image(torch.zeros(3, 4, 4), target)
    assert list(tmp_path.iterdir()) == []


def test_save_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "result.png"
    save_image(torch.zeros(3, 4, 4), target)
    before = target.read_bytes()
    monkeypatch.setattr(Image.Image, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_image(torch.ones(3, 4, 4), target)
    assert target.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_list_images_skips_hidden_temp(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / ".tmp-b.abc.png").write_bytes(b"x")
    (tmp_path / "c.txt").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png"]
