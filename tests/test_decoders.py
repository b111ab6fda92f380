"""One file, two decoders: a decoder export (a fine-tuned g_s) decodes the base model's files."""

import contextlib
import io
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from swinjax import cli, export
from swinjax.checkpoint import load_model
from swinjax.compression import ImageCodec


def _perturbed_g_s(params, scale=0.05):
    """The parameters with g_s changed (a stand-in for stage-2 fine-tuning), the rest as is."""
    g_s = jax.tree.map(
        lambda a: a + scale * np.random.default_rng(0).standard_normal(a.shape).astype(a.dtype),
        params["params"]["g_s"],
    )
    return {**params, "params": {**params["params"], "g_s": g_s}}


@pytest.fixture(scope="module")
def pair(tiny_export, tmp_path_factory):
    base = load_model(tiny_export)
    root = tmp_path_factory.mktemp("decoders")
    out = export.export_decoder(
        base,
        _perturbed_g_s(base.params),
        root / "perceptual",
        step=7,
        base_name=str(tiny_export),
        training={"stages": "test"},
    )
    return base, out


def test_a_decoder_export_decodes_the_base_files_with_its_own_synthesis(pair, photo):
    base, out = pair
    dec = load_model(out)
    assert dec.decoder == "perceptual" and dec.step == 7 and dec.pairs_with
    assert (dec.model_id, dec.config_hash) == (base.model_id, base.config_hash)
    # Only g_s travels: the file is a fraction of the full export.
    assert (out / "params.msgpack").stat().st_size < (base.path / "params.msgpack").stat().st_size
    img = photo(64, 96, seed=2)
    a, b = ImageCodec(base), ImageCodec(dec)
    data = a.compress(img, 64.0)
    assert b.compress(img, 64.0) == data  # the same encoder: the same bytes
    x_mse, x_dec = a.decompress(data), b.decompress(data)
    assert x_mse.shape == x_dec.shape == img.shape
    assert not np.array_equal(x_mse, x_dec)


def test_a_decoder_export_refuses_a_trained_encoder_and_a_wrong_pairing(pair, tmp_path):
    base, out = pair
    params = _perturbed_g_s(base.params)
    g_a = jax.tree.map(lambda a: a + 1.0, params["params"]["g_a"])
    bad = {**params, "params": {**params["params"], "g_a": g_a}}
    with pytest.raises(ValueError, match="only g_s may change"):
        export.export_decoder(base, bad, tmp_path / "bad", step=1)
    with pytest.raises(ValueError, match='other than "mse"'):
        export.export_decoder(base, params, tmp_path / "mse", step=1, decoder="mse")
    lost = export.export_decoder(base, params, tmp_path / "lost", step=1, base_name="nowhere")
    with pytest.raises(FileNotFoundError, match="'nowhere'"):
        load_model(lost)


def test_a_decoder_of_an_earlier_training_of_the_same_config_is_refused(
    pair, ship, tiny_export, tmp_path
):
    # The base retrained (same model id and config hash, other encoder weights): the decoder's
    # g_s was fitted to the old latents, so it must neither load nor be offered as a pairing.
    base, out = pair
    retrained = jax.tree.map(lambda a: a * 1.01, base.params)
    cfg = export.to_config({"model": base.model.to_dict()})
    again = export.export(cfg, retrained, tmp_path / "base-again", step=99)
    shutil.copytree(out, tmp_path / "perceptual")
    meta = (tmp_path / "perceptual" / "model.json").read_text()
    (tmp_path / "perceptual" / "model.json").write_text(meta.replace(str(tiny_export), str(again)))
    assert load_model(again).config_hash == base.config_hash
    with pytest.raises(ValueError, match="retrained"):
        load_model(tmp_path / "perceptual")
    ship("base-perceptual", out)
    assert set(export.paired_decoders(base)) == {"perceptual"}
    assert export.paired_decoders(load_model(again)) == {}


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def test_decompress_picks_the_shipped_decoder_by_name(pair, ship, tiny_export, tmp_path, photo):
    base, out = pair
    ship("base", tiny_export)
    ship("base-perceptual", out)
    assert export.paired_decoders(base) == {
        "perceptual": export.shipped_models()["base-perceptual"]
    }
    Image.fromarray(photo(64, 96, seed=3)).save(tmp_path / "in.png")
    assert _run("compress", "--ckpt", tiny_export, "--lmbda", "64", tmp_path / "in.png",
                tmp_path / "f.swj")[0] == 0  # fmt: skip
    status, _, err = _run("decompress", tmp_path / "f.swj", tmp_path / "mse.png")
    assert status == 0, err
    status, _, err = _run(
        "decompress", "--decoder", "perceptual", tmp_path / "f.swj", tmp_path / "p.png"
    )
    assert status == 0, err
    mse = np.asarray(Image.open(tmp_path / "mse.png"))
    per = np.asarray(Image.open(tmp_path / "p.png"))
    data = (tmp_path / "f.swj").read_bytes()
    np.testing.assert_array_equal(mse, ImageCodec(base).decompress(data))
    np.testing.assert_array_equal(per, ImageCodec(load_model(out)).decompress(data))
    status, _, err = _run("decompress", "--decoder", "gan", tmp_path / "f.swj", tmp_path / "g.png")
    assert status == 2 and "no 'gan' decoder is shipped" in err and len(err.splitlines()) == 1
    status, _, err = _run(
        "decompress", "--ckpt", tiny_export, "--decoder", "perceptual", tmp_path / "f.swj",
        tmp_path / "h.png",
    )  # fmt: skip
    assert status == 2 and "give one of --ckpt and --decoder" in err


def test_evaluation_reports_both_decoders_from_the_same_files(
    pair, ship, tiny_export, tmp_path, photo
):
    import json

    import evaluate
    from swinjax import metrics

    base, out = pair
    ship("base", tiny_export)
    ship("base-perceptual", out)
    Image.fromarray(photo(176, 184, seed=1)).save(tmp_path / "a.png")
    argv = ["--ckpt", "base", "--data", tmp_path / "a.png", "--lmbda", "32,512", "--codecs",
            "jpeg", "--perceptual", "lpips_alex", "--quiet", "--plot", "none",
            "--out", tmp_path / "r.json", "--per-image",
            "--keep-files", tmp_path / "files"]  # fmt: skip
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        assert evaluate.main([str(a) for a in argv]) == 0, e.getvalue()
    assert "model:perc" in o.getvalue() and "perceptual decoder" in o.getvalue()
    per = json.loads((tmp_path / "r_decoder-perceptual.json").read_text())
    assert "perceptual decoder" in per["name"] and "jpeg420" in per["bd_rates"]
    records = json.loads((tmp_path / "r_per_image.json").read_text())["records"]
    original = np.asarray(Image.open(tmp_path / "a.png"))
    dec = ImageCodec(load_model(out))
    for lm in (32.0, 512.0):
        (m,) = [r for r in records if r["codec"] == "model" and r["lmbda"] == lm]
        (p,) = [r for r in records if r["codec"] == "model:perceptual" and r["lmbda"] == lm]
        assert p["bytes"] == m["bytes"] and p["bpp"] == m["bpp"]
        x = dec.decompress((tmp_path / "files" / f"a.l{lm:g}.swj").read_bytes())
        assert p["psnr"] == pytest.approx(metrics.psnr(original, x), abs=1e-9)
        assert p["psnr"] != m["psnr"]
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        status = evaluate.main(["--ckpt", "base", "--data", str(tmp_path / "a.png"), "--quiet",
                                "--decoders", "gan", "--codecs", "none"])  # fmt: skip
    assert status == 2 and "--decoders gan" in e.getvalue()


def test_the_plot_legend_keeps_both_decoders_apart():
    from swinjax.evaluation.plot import _label

    name = "swinjax swincoder-ref (33,000 steps in all, 8.6 CPU-core-h)"
    a, b = _label(name), _label(name + " + perceptual decoder")
    assert a != b and len(a) <= 56 and len(b) <= 56 and b.endswith("perceptual decoder")
    assert _label("webp") == "webp"
