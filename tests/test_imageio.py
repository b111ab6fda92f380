"""Image loading/saving: odd inputs become 8-bit RGB or give a one-line ImageError."""

import io
import os
import pathlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from swinjax import atomic
from swinjax.imageio import ImageError, image_size, load_image, save_png, to_float, to_uint8

BSDS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bsds500"


def _rgb(h=12, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png16(values: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB)."""
    h, w = values.shape[:2]
    big = values.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + big[i].tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def _assert_one_line_error(path, match):
    with pytest.raises(ImageError, match=match) as info:
        load_image(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_rgb_png_roundtrips_exactly(tmp_path):
    img = _rgb()
    save_png(tmp_path / "a.png", img)
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (12, 20, 3)
    np.testing.assert_array_equal(out, img)


def test_grayscale_png_becomes_three_equal_channels(tmp_path):
    gray = _rgb()[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (12, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_palette_png_is_expanded(tmp_path):
    im = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), np.asarray(im.convert("RGB")))


def test_palette_png_with_transparency_drops_alpha(tmp_path):
    im = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.info["transparency"] = 0
    im.save(tmp_path / "pt.png", transparency=0)
    out = load_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))


def test_rgba_png_alpha_is_dropped_by_default(tmp_path):
    rgba = np.concatenate([_rgb(), np.full((12, 20, 1), 0, np.uint8)], axis=-1)
    rgba[:6, :, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgba[..., :3])
    white = load_image(tmp_path / "a.png", alpha="white")
    np.testing.assert_array_equal(white[:6], rgba[:6, :, :3])  # opaque: unchanged
    assert (white[6:] == 255).all()  # fully transparent: the white background


def test_la_png_alpha_is_dropped(tmp_path):
    la = np.stack([_rgb()[..., 0], np.full((12, 20), 7, np.uint8)], axis=-1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out, np.repeat(la[..., :1], 3, axis=-1))


def test_16bit_gray_png_is_rounded_to_8bit(tmp_path):
    v = np.array([[0, 128, 129, 385, 386, 65535, 32896, 1000]], np.uint16)
    Image.fromarray(v).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    expected = np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 2], expected)


@pytest.mark.parametrize("color_type,channels", [(2, 3), (6, 4)])
def test_16bit_rgb_png_is_rounded_not_truncated(tmp_path, color_type, channels):
    rng = np.random.default_rng(1)
    v = rng.integers(0, 65536, (5, 7, channels)).astype(np.uint16)
    v[0, 0, 0] = 0x12FF  # high byte 0x12, but rounds up to 0x13
    (tmp_path / "c16.png").write_bytes(_png16(v, color_type))
    out = load_image(tmp_path / "c16.png")
    expected = np.round(v[..., :3].astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out[0, 0, 0] == 0x13


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    cmyk = Image.fromarray(_rgb(32, 32)).convert("CMYK")
    cmyk.save(tmp_path / "c.jpg", quality=95)
    out = load_image(tmp_path / "c.jpg")
    with Image.open(tmp_path / "c.jpg") as im:
        assert im.mode == "CMYK"
        expected = np.asarray(im.convert("RGB"))
    assert out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out, expected)


def _exif_rotated_jpeg(path, orientation=6):
    """A 40x20 (w x h) image stored sideways, bright on the left half; returns the stored array."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 230
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    return stored


def test_exif_rotated_jpeg_is_loaded_upright(tmp_path):
    path = tmp_path / "r.jpg"
    _exif_rotated_jpeg(path, orientation=6)  # viewer rotates 90 degrees clockwise
    out = load_image(path)
    assert out.shape == (40, 20, 3)
    # After a clockwise turn the stored left half becomes the top half.
    assert out[:20].mean() > 200 and out[20:].mean() < 30
    with Image.open(path) as im:
        np.testing.assert_array_equal(out, np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
    assert image_size(path) == (40, 20)


@pytest.mark.parametrize("fmt,ext", [("TIFF", "tif"), ("WEBP", "webp"), ("BMP", "bmp")])
def test_other_formats_load(tmp_path, fmt, ext):
    img = _rgb()
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(img).save(tmp_path / f"x.{ext}", format=fmt, **kwargs)
    np.testing.assert_array_equal(load_image(tmp_path / f"x.{ext}"), img)


@pytest.mark.parametrize("shape", [(1, 1), (3, 4097)])
def test_extreme_aspect_and_tiny_images_load(tmp_path, shape):
    img = _rgb(*shape)
    save_png(tmp_path / "x.png", img)
    np.testing.assert_array_equal(load_image(tmp_path / "x.png"), img)
    assert image_size(tmp_path / "x.png") == shape


def test_missing_path_is_a_one_line_error(tmp_path):
    _assert_one_line_error(tmp_path / "nope.png", "no such file")


def test_directory_is_a_one_line_error(tmp_path):
    _assert_one_line_error(tmp_path, "directory")


def test_empty_file_is_a_one_line_error(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    _assert_one_line_error(tmp_path / "e.png", "empty file")


def test_garbage_is_not_an_image(tmp_path):
    (tmp_path / "g.jpg").write_bytes(b"this is not an image\n" * 50)
    _assert_one_line_error(tmp_path / "g.jpg", "not a recognised image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_a_one_line_error(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format=fmt)
    path = tmp_path / f"t.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert image_size(path) == (64, 64)  # the header is intact...
    _assert_one_line_error(path, "corrupt or truncated")  # ...the pixels are not


def test_zero_size_image_is_a_one_line_error(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")
    (tmp_path / "z.png").write_bytes(png)
    _assert_one_line_error(tmp_path / "z.png", "zero-size image")


def test_pixel_limit_guards_against_decompression_bombs(tmp_path):
    save_png(tmp_path / "big.png", _rgb(100, 100))
    msg = str(pytest.raises(ImageError, load_image, tmp_path / "big.png", max_pixels=5000).value)
    assert "10000 pixels" in msg and "5000" in msg and "max_pixels" in msg
    assert load_image(tmp_path / "big.png", max_pixels=None).shape == (100, 100, 3)
    # A 40-byte file claiming 100000 x 100000 pixels: refused from the header, nothing allocated.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(bomb)
    _assert_one_line_error(tmp_path / "bomb.png", "decompression")
    with pytest.raises(ImageError, match="decompression"):
        load_image(tmp_path / "bomb.png", max_pixels=None)  # Pillow's own guard still applies


def test_save_png_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "o.png"
    save_png(path, _rgb(seed=1))
    with pytest.raises(FileExistsError, match="already exists"):
        save_png(path, _rgb(seed=2))
    np.testing.assert_array_equal(load_image(path), _rgb(seed=1))
    save_png(path, _rgb(seed=2), overwrite=True)
    np.testing.assert_array_equal(load_image(path), _rgb(seed=2))
    assert sorted(os.listdir(tmp_path)) == ["o.png"]  # no temporary files left behind


def test_save_png_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    save_png(path, _rgb(seed=1))

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_png(path, _rgb(seed=2), overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        save_png(tmp_path / "new.png", _rgb(seed=2))
    monkeypatch.undo()
    np.testing.assert_array_equal(load_image(path), _rgb(seed=1))  # old file intact
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_save_png_rejects_bad_arrays_and_missing_dirs(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[4, 4\]"):
        save_png(tmp_path / "f.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_png(tmp_path / "missing" / "f.png", _rgb())


def test_save_png_gives_normal_permissions(tmp_path):
    path = save_png(tmp_path / "perm.png", _rgb())
    assert path.stat().st_mode & 0o777 == 0o666 & ~atomic._umask()


def test_to_float_and_to_uint8_roundtrip_every_level():
    levels = np.arange(256, dtype=np.uint8)
    x = to_float(levels)
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(to_uint8(x), levels)


def test_to_uint8_clips_rounds_and_handles_nan():
    x = np.array([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.2, 1.0, 7.0, np.nan, np.inf, -np.inf])
    out = to_uint8(x)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 0, 0, 2, 51, 255, 255, 0, 255, 0])  # half to even


def test_to_float_rejects_non_uint8():
    with pytest.raises(TypeError, match="uint8"):
        to_float(np.zeros((2, 2, 3), np.uint16))


def test_real_bsds_photos_load():
    files = sorted(BSDS.glob("*/*.jpg"))[:3] if BSDS.is_dir() else []
    if not files:
        pytest.skip(f"real photos not available: {BSDS} is missing")
    for path in files:
        img = load_image(path)
        assert img.dtype == np.uint8 and sorted(img.shape[:2]) == [321, 481]
        assert image_size(path) == img.shape[:2]
        assert 20 < img.mean() < 235
