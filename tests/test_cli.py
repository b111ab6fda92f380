"""python -m swinjax compress/decompress/info on files and folders, with awkward and bad inputs."""

import contextlib
import dataclasses
import io
import pathlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from swinjax import atomic, cli
from swinjax.coding import container, tiled
from swinjax.imageio import load_image
from swinjax.rate_search import compress_to_bpp

SIZE = (170, 180)  # pads to 192x192 like test_evaluate's images: the same compiled programs


def run(*argv):
    """``swinjax.cli.main(argv)`` -> (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def one_line_error(status, stderr, *needles):
    assert status == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for n in needles:
        assert n in lines[0], stderr


def write_png16(path, rgb16):
    """A 16-bit RGB PNG written by hand (Pillow cannot write 16-bit colour)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
    path.write_bytes(png + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def export(tiny_export):
    return tiny_export


@pytest.fixture(scope="module")
def images(tmp_path_factory, photo):
    """A folder tree of awkward but valid images, plus two bad files."""
    d = tmp_path_factory.mktemp("cli-in")
    (d / "deep" / "er").mkdir(parents=True)
    rgb = photo(*SIZE, seed=3)
    Image.fromarray(rgb).save(d / "plain.png")
    Image.fromarray(rgb).convert("L").save(d / "gray.png")
    Image.fromarray(rgb).quantize(64).save(d / "deep" / "palette.png")
    alpha = np.linspace(0, 255, SIZE[1], dtype=np.uint8)[None, :].repeat(SIZE[0], 0)
    Image.fromarray(np.dstack([rgb, alpha])).save(d / "rgba.png")
    rng = np.random.default_rng(0)
    write_png16(d / "deep" / "er" / "sixteen.png", rng.integers(0, 65536, (*SIZE, 3)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    Image.fromarray(rgb).save(d / "rotated.jpg", exif=exif.tobytes(), quality=90)
    Image.fromarray(rgb[:1, :1]).save(d / "one.png")
    (d / "empty.png").write_bytes(b"")
    (d / "deep" / "notes.jpg").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def round_trip(export, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-out")
    c = run("compress", "--ckpt", export, "--lmbda", "100", images, out / "swj")
    d = run("decompress", "--ckpt", export, out / "swj", out / "png")
    return {"compress": c, "decompress": d, "out": out}


def test_folder_compress_mirrors_the_tree_and_reports_bad_files(round_trip, images):
    status, stdout, stderr = round_trip["compress"]
    assert status == 1  # two bad files; the others are done
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2 and "Traceback" not in stderr
    assert any("empty.png" in e and "empty" in e for e in errors)
    assert any("notes.jpg" in e and "not a recognised image" in e for e in errors)
    assert "7 of 9 file(s) done, 2 failed" in stderr and "100%" in stderr
    swj = round_trip["out"] / "swj"
    got = sorted(str(p.relative_to(swj)) for p in swj.rglob("*.swj"))
    assert got == sorted(
        ["plain.swj", "gray.swj", "deep/palette.swj", "rgba.swj", "deep/er/sixteen.swj",
         "rotated.swj", "one.swj"]
    )  # fmt: skip
    assert "alpha channel dropped" in next(ln for ln in stdout.splitlines() if "rgba" in ln)
    assert "bpp (actual, header included), lambda 100" in stdout


def test_folder_decompress_gives_upright_rgb_images_of_the_original_size(round_trip, images):
    status, stdout, stderr = round_trip["decompress"]
    assert status == 0, stderr
    png = round_trip["out"] / "png"
    want = {
        "plain.png": SIZE, "gray.png": SIZE, "deep/palette.png": SIZE, "rgba.png": SIZE,
        "deep/er/sixteen.png": SIZE, "rotated.png": SIZE[::-1], "one.png": (1, 1),
    }  # fmt: skip
    for rel, (h, w) in want.items():
        with Image.open(png / rel) as im:
            assert im.mode == "RGB" and im.size == (w, h), rel


def test_awkward_inputs_are_coded_as_the_loader_reads_them(round_trip, export, images, tmp_path):
    # Alpha dropped, 16 bits rounded to 8, grayscale replicated: the files equal those of the
    # 8-bit RGB images load_image returns (which test_imageio checks against each policy).
    swj = round_trip["out"] / "swj"
    for name, src in (("rgba", "rgba.png"), ("sixteen", "deep/er/sixteen.png"),
                      ("gray", "gray.png")):  # fmt: skip
        Image.fromarray(load_image(images / src)).save(tmp_path / f"{name}.png")
        status, _, err = run("compress", "--ckpt", export, "--lmbda", "100",
                             tmp_path / f"{name}.png", tmp_path / f"{name}.swj")  # fmt: skip
        assert status == 0, err
        ref = swj / pathlib.Path(src).with_suffix(".swj")
        assert (tmp_path / f"{name}.swj").read_bytes() == ref.read_bytes(), name
    rgba = np.asarray(Image.open(images / "rgba.png"))
    np.testing.assert_array_equal(load_image(images / "rgba.png"), rgba[..., :3])


def test_existing_outputs_are_not_overwritten_without_force(export, images, tmp_path):
    src = images / "plain.png"
    out = tmp_path / "a.swj"
    out.write_bytes(b"precious")
    status, _, err = run("compress", "--ckpt", export, src, out)
    one_line_error(status, err, "exists", "--force")
    assert out.read_bytes() == b"precious"
    status, stdout, err = run("compress", "--ckpt", export, "--force", src, out)
    assert status == 0, err
    assert out.read_bytes()[:4] != b"prec" and container.unpack(out.read_bytes())[0].width == 180
    assert list(tmp_path.iterdir()) == [out]  # no temporary files left behind
    # Folder mode checks every output before doing any work.
    dst = tmp_path / "tree"
    (dst / "deep").mkdir(parents=True)
    (dst / "deep" / "palette.swj").write_bytes(b"x")
    status, _, err = run("compress", "--ckpt", export, images, dst)
    one_line_error(status, err, "palette.swj", "--force")
    assert sorted(p.name for p in dst.rglob("*")) == ["deep", "palette.swj"]


def test_an_input_is_never_overwritten_even_with_force(export, images, tmp_path):
    src = tmp_path / "me.png"
    src.write_bytes((images / "plain.png").read_bytes())
    (tmp_path / "alias.png").hardlink_to(src)  # the same file under another name
    before = src.read_bytes()
    for out in (src, tmp_path / "alias.png"):
        status, _, err = run("compress", "--ckpt", export, "--force", src, out)
        one_line_error(status, err, "is an input", "even with --force")
    assert src.read_bytes() == before


def test_a_full_disk_is_a_one_line_error_and_leaves_no_file(export, images, tmp_path, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", full)
    out = tmp_path / "o.swj"
    status, _, err = run("compress", "--ckpt", export, images / "plain.png", out)
    one_line_error(status, err, "cannot write", "No space left on device")
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary file
    monkeypatch.undo()

    status, _, err = run("compress", "--ckpt", export, images / "plain.png", out)
    assert status == 0, err
    monkeypatch.setattr("swinjax.imageio.save_png", full)  # imported where it is used
    status, _, err = run("decompress", "--ckpt", export, out, tmp_path / "o.png")
    one_line_error(status, err, "cannot write", "No space left on device")


def test_a_folder_as_output_of_one_file(export, images, tmp_path):
    status, stdout, err = run("compress", "--ckpt", export, images / "plain.png", tmp_path)
    assert status == 0, err
    assert (tmp_path / "plain.swj").is_file() and str(tmp_path / "plain.swj") in stdout


def test_user_mistakes_are_one_line_errors(export, images, tmp_path):
    ck = ("--ckpt", export)
    cases = [
        (("compress", *ck, tmp_path / "missing.png", tmp_path / "o.swj"), ("no such file",)),
        (("compress", *ck, images / "empty.png", tmp_path / "o.swj"), ("empty file",)),
        (("compress", *ck, images / "deep" / "notes.jpg", tmp_path / "o.swj"), ("not a recog",)),
        (("compress", *ck, images / "plain.png", tmp_path / "no" / "o.swj"), ("does not exist",)),
        (("compress", *ck, "--lmbda", "5000", images / "plain.png", tmp_path / "o.swj"),
         ("outside",)),
        (("compress", *ck, "--lmbda", "64", "--target-bpp", "1", images / "plain.png",
          tmp_path / "o.swj"), ("not both",)),
        (("compress", "--ckpt", tmp_path, images / "plain.png", tmp_path / "o.swj"),
         ("checkpoint",)),
        (("decompress", *ck, images / "plain.png", tmp_path / "o.png"), ("plain.png",)),
        (("decompress", *ck, tmp_path / "nothing.swj", tmp_path / "o.png"), ("no such",)),
        (("info", images / "rgba.png"), ("rgba.png",)),
    ]  # fmt: skip
    for argv, needles in cases:
        status, _, err = run(*argv)
        one_line_error(status, err, *needles)
    assert not (tmp_path / "o.swj").exists() and not (tmp_path / "o.png").exists()


def test_truncated_file_is_a_one_line_error(round_trip, export, tmp_path):
    data = (round_trip["out"] / "swj" / "plain.swj").read_bytes()
    (tmp_path / "cut.swj").write_bytes(data[: len(data) // 2])
    status, _, err = run("decompress", "--ckpt", export, tmp_path / "cut.swj", tmp_path / "o.png")
    one_line_error(status, err, "cut.swj")
    assert not (tmp_path / "o.png").exists()


def test_info_prints_the_header(round_trip):
    f = round_trip["out"] / "swj" / "rotated.swj"
    status, stdout, _ = run("info", f)
    assert status == 0
    fields = dict(line.split(None, 1) for line in stdout.strip().splitlines())
    assert fields["model_id"] == "swincoder-tiny"
    assert (fields["height"], fields["width"]) == ("180", "170")  # upright
    assert float(fields["lmbda"]) == 100.0
    assert float(fields["bpp"]) == pytest.approx(f.stat().st_size * 8 / (170 * 180))


class _FakeCodec:
    """A codec whose file size grows smoothly with lambda: tests the search itself."""

    def __init__(self, variable_rate=True):
        import ml_collections

        self.model_config = ml_collections.ConfigDict(
            {"variable_rate": variable_rate, "lmbda": {"min": 16.0, "max": 1024.0}}
        )
        self.calls = []

    def compress(self, image, lmbda):
        self.calls.append(lmbda)
        return b"x" * int(100 * np.sqrt(lmbda))  # 400 .. 3200 bytes


def test_target_bpp_bisection_finds_the_largest_lambda_under_the_target():
    image = np.zeros((100, 100, 3), np.uint8)  # 10^4 pixels: bpp = bytes * 8e-4
    fake = _FakeCodec()
    data, lm, note = compress_to_bpp(fake, image, target_bpp=1.6)  # 2000 bytes: lambda 400
    assert len(data) * 8 / 1e4 <= 1.6 and len(data) * 8 / 1e4 >= 1.6 * 0.99
    assert lm == pytest.approx(400, rel=0.03) and note == ""
    assert len(fake.calls) <= 14
    _, lm, note = compress_to_bpp(_FakeCodec(), image, target_bpp=0.1)
    assert lm == 16.0 and "below" in note
    _, lm, note = compress_to_bpp(_FakeCodec(), image, target_bpp=9.0)
    assert lm == 1024.0 and "above" in note
    with pytest.raises(ValueError, match="variable-rate"):
        compress_to_bpp(_FakeCodec(variable_rate=False), image, 1.0)
    with pytest.raises(ValueError, match="positive"):
        compress_to_bpp(_FakeCodec(), image, 0.0)


def test_target_bpp_on_a_real_file(export, images, tmp_path):
    src = images / "plain.png"
    lo, hi = tmp_path / "lo.swj", tmp_path / "hi.swj"
    assert run("compress", "--ckpt", export, "--lmbda", "16", src, lo)[0] == 0
    assert run("compress", "--ckpt", export, "--lmbda", "1024", src, hi)[0] == 0
    pixels = SIZE[0] * SIZE[1]
    b_lo, b_hi = (p.stat().st_size * 8 / pixels for p in (lo, hi))
    target = b_lo + 0.5 * (b_hi - b_lo) if b_hi > b_lo else b_lo * 1.01
    status, stdout, err = run(
        "compress", "--ckpt", export, "--target-bpp", f"{target:.5f}", src, tmp_path / "t.swj"
    )
    assert status == 0, err
    data = (tmp_path / "t.swj").read_bytes()
    assert len(data) * 8 / pixels <= target + 1e-9
    assert 16.0 <= container.unpack(data)[0].lmbda <= 1024.0


def test_very_wide_image_round_trips(export, tmp_path, photo):
    img = photo(3, 300, seed=7)
    wide = np.tile(img, (1, 14, 1))[:, :4097]  # 3 x 4097
    Image.fromarray(wide).save(tmp_path / "wide.png")
    status, _, err = run("compress", "--ckpt", export, tmp_path / "wide.png", tmp_path / "w.swj")
    assert status == 0, err
    status, _, err = run("decompress", "--ckpt", export, tmp_path / "w.swj", tmp_path / "w.png")
    assert status == 0, err
    with Image.open(tmp_path / "w.png") as im:
        assert im.size == (4097, 3)


def test_tiled_files_round_trip_and_place_every_tile(export, images, tmp_path):
    src, out = images / "plain.png", tmp_path / "t.swj"
    status, stdout, err = run(
        "compress", "--ckpt", export, "--tile", "64", "--lmbda", "64", src, out
    )
    assert status == 0, err
    assert "9 tiles of 64" in stdout  # 170x180 in 64-pixel tiles: 3 x 3, edge tiles smaller
    data = out.read_bytes()
    assert tiled.is_tiled(data)
    status, _, err = run("decompress", "--ckpt", export, out, tmp_path / "t.png")
    assert status == 0, err
    decoded = np.asarray(Image.open(tmp_path / "t.png"))
    assert decoded.shape == (*SIZE, 3)
    # Each tile is an ordinary swinjax file of its region, placed where it belongs.
    from swinjax.codec_cache import open_codec

    codec = open_codec(export)
    img = load_image(src)
    meta, tiles = tiled.read_tiled(data, 10**8)
    assert meta == {"height": 170, "width": 180, "tile": 64, "tiles": 9}
    assert tiles[0] == codec.compress(np.ascontiguousarray(img[:64, :64]), 64.0)
    np.testing.assert_array_equal(decoded[128:, 128:], codec.decompress(tiles[8]))
    status, stdout, _ = run("info", out)
    assert status == 0 and "tiled_tiles" in stdout and "swincoder-tiny" in stdout


def test_bad_tiled_files_and_tile_sizes_are_one_line_errors(export, images, tmp_path):
    from swinjax.coding.container import FormatError

    out = tmp_path / "t.swj"
    assert run("compress", "--ckpt", export, "--tile", "64", images / "plain.png", out)[0] == 0
    data = out.read_bytes()
    bad = {
        "cut": data[:-10],
        "extra": data + b"\0",
        "count": data[:17] + (5).to_bytes(4, "big") + data[21:],
        "version": data[:4] + b"\x09" + data[5:],
    }
    for name, blob in bad.items():
        with pytest.raises(FormatError):
            tiled.read_tiled(blob, 10**8)
        (tmp_path / f"{name}.swj").write_bytes(blob)
        status, _, err = run(
            "decompress", "--ckpt", export, tmp_path / f"{name}.swj", tmp_path / "o.png"
        )
        one_line_error(status, err, f"{name}.swj")
    status, _, err = run(
        "compress", "--ckpt", export, "--tile", "100", images / "plain.png", tmp_path / "x.swj"
    )
    one_line_error(status, err, "multiple of 64")


# -- shipped models: no --ckpt -------------------------------------------------------------------


def test_without_ckpt_compress_uses_the_default_model_and_decompress_the_file_s(
    ship, export, images, tmp_path
):
    ship("swincoder-ref", export)  # the default name, here the tiny model
    src, f = images / "plain.png", tmp_path / "k.swj"
    status, stdout, err = run("compress", "--lmbda", "100", src, f)
    assert status == 0, err
    with_ckpt = tmp_path / "explicit.swj"
    assert run("compress", "--ckpt", export, "--lmbda", "100", src, with_ckpt)[0] == 0
    assert f.read_bytes() == with_ckpt.read_bytes()
    status, _, err = run("decompress", f, tmp_path / "k.png")
    assert status == 0, err
    assert run("decompress", "--ckpt", export, f, tmp_path / "explicit.png")[0] == 0
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "k.png")),
        np.asarray(Image.open(tmp_path / "explicit.png")),
    )
    # --ckpt NAME selects a shipped model by name.
    status, _, err = run("compress", "--ckpt", "swincoder-ref", "--lmbda", "100", src, tmp_path)
    assert status == 0, err
    assert (tmp_path / "plain.swj").read_bytes() == f.read_bytes()


def test_decompress_without_ckpt_picks_the_model_named_in_the_file(ship, export, images, tmp_path):
    # The default is a decoy that cannot load: decoding must go by the file's model id.
    ship("swincoder-ref", model_id="swincoder-ref")
    ship("tiny", export)
    src = images / "plain.png"
    assert run("compress", "--ckpt", "tiny", "--lmbda", "64", src, tmp_path / "a.swj")[0] == 0
    status, _, err = run("decompress", tmp_path / "a.swj", tmp_path / "a.png")
    assert status == 0, err
    assert np.asarray(Image.open(tmp_path / "a.png")).shape == (*SIZE, 3)
    # Tiled files name their model in every tile.
    status, _, err = run("compress", "--ckpt", export, "--tile", "64", src, tmp_path / "t.swj")
    assert status == 0, err
    status, _, err = run("decompress", tmp_path / "t.swj", tmp_path / "t.png")
    assert status == 0, err
    # Compress without --ckpt does use the default (the decoy here), and says which.
    status, _, err = run("compress", src, tmp_path / "d.swj")
    one_line_error(status, err, "swincoder-ref")


def test_a_file_from_a_model_not_shipped_is_a_one_line_error(ship, export, images, tmp_path):
    ship("tiny", export)
    f = tmp_path / "in" / "ok.swj"
    f.parent.mkdir()
    assert run("compress", "--ckpt", export, "--lmbda", "64", images / "plain.png", f)[0] == 0
    header, streams = container.unpack(f.read_bytes())
    foreign = container.pack(dataclasses.replace(header, model_id="elsewhere-v2"), streams)
    (tmp_path / "in" / "foreign.swj").write_bytes(foreign)
    status, _, err = run("decompress", tmp_path / "in" / "foreign.swj", tmp_path / "o.png")
    one_line_error(status, err, "foreign.swj", "'elsewhere-v2'", "tiny (model id swincoder-tiny)")
    assert "--ckpt" in err and not (tmp_path / "o.png").exists()
    # A folder: each file is decoded by its own model, the foreign one fails alone.
    status, _, err = run("decompress", tmp_path / "in", tmp_path / "out")
    assert status == 1, err
    assert (tmp_path / "out" / "ok.png").is_file() and not (
        tmp_path / "out" / "foreign.png"
    ).exists()
    assert "1 of 2 file(s) done, 1 failed" in err
    # An unknown name that is no path either lists the shipped names.
    status, _, err = run(
        "compress", "--ckpt", "swincoder-v9", images / "plain.png", tmp_path / "x.swj"
    )
    one_line_error(status, err, "'swincoder-v9'", "shipped: tiny")


def test_decode_memory_budget_refuses_a_file_in_one_line(round_trip, export, tmp_path):
    f = round_trip["out"] / "swj" / "plain.swj"
    out = tmp_path / "o.png"
    status, _, err = run("decompress", "--ckpt", export, "--max-decode-mb", "1", f, out)
    one_line_error(
        status, err, "plain.swj", f"{SIZE[0]}x{SIZE[1]} image needs about", "budget of 1 MiB"
    )
    status, _, err = run("decompress", "--ckpt", export, "--max-decode-mb", "0", f, out)
    one_line_error(status, err, "--max-decode-mb must be positive")
    assert not out.exists()
