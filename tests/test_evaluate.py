"""evaluate.py end to end on a tiny model: real files, metrics, codecs, BD-rates, JSON, plot."""

import contextlib
import io
import json
import math
import pathlib

import numpy as np
import pytest
from PIL import Image

import evaluate
from swinjax import evaluation, metrics

ROOT = pathlib.Path(__file__).resolve().parent.parent
VTM = ROOT.parent / "shared" / "anchors" / "kodak" / "vtm.json"


def run(argv):
    """``evaluate.main(argv)`` -> (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = evaluate.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


# Both sides in 161..192: MS-SSIM is defined and every image pads to the same 192x192 program.
SIZE = (176, 184)


@pytest.fixture(scope="module")
def export(tiny_export):
    return tiny_export


@pytest.fixture(scope="module")
def data(tmp_path_factory, photo):
    d = tmp_path_factory.mktemp("eval-data")
    (d / "sub").mkdir()
    Image.fromarray(photo(*SIZE, seed=0)).save(d / "a.png")
    Image.fromarray(photo(SIZE[1], SIZE[0], seed=5)).save(d / "sub" / "b.png")
    return d


@pytest.fixture(scope="module")
def evaluated(export, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-out")
    anchors = []
    if VTM.is_file():
        anchors.append(VTM)
    fake = out / "anchor.json"  # a published-style curve in the model's rate range
    metrics.write_json_atomic(
        fake,
        metrics.compressai_json("toy", "", {"bpp": [0.05, 5.0], "psnr-rgb": [5.0, 60.0]}),
    )
    anchors.append(fake)
    status, stdout, stderr = run(
        [
            "--ckpt", export, "--data", data, "--lmbda", "32,512",
            "--out", out / "results.json", "--per-image", "--plot", out / "rd.png",
            "--codecs", "jpeg,webp,jxl", "--anchors", ",".join(map(str, anchors)),
            "--keep-files", out / "files", "--perceptual", "lpips_alex",
        ]
    )  # fmt: skip
    return {"status": status, "stdout": stdout, "stderr": stderr, "out": out}


def _json(path):
    return json.loads(pathlib.Path(path).read_text())


def test_results_follow_the_compressai_schema(evaluated):
    assert evaluated["status"] == 0, evaluated["stderr"]
    res = _json(evaluated["out"] / "results.json")
    assert isinstance(res["name"], str) and "swincoder-tiny" in res["name"]
    assert "actual" in res["description"] and "estimated" in res["description"]
    r = res["results"]
    for key in ("bpp", "estimated_bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time",
                "decoding_time", "lmbda", "lpips-alex", "lpips-vgg", "dists"):  # fmt: skip
        assert isinstance(r[key], list) and len(r[key]) == 2, key
    assert r["lmbda"] == [32.0, 512.0]
    for key in ("bpp", "estimated_bpp", "psnr-rgb", "encoding_time", "decoding_time"):
        assert all(isinstance(v, float) and v > 0 for v in r[key]), key
    assert all(0 < v <= 1 for v in r["ms-ssim-rgb"])
    # --perceptual lpips_alex: that one is measured (packaged weights), the others null and noted.
    assert all(isinstance(v, float) and v > 0 for v in r["lpips-alex"]), r["lpips-alex"]
    assert r["lpips-vgg"] == [None, None] and r["dists"] == [None, None]
    assert any(n.startswith("lpips_vgg, dists: not computed") for n in res["notes"])
    jpeg = _json(evaluated["out"] / "results_jpeg420.json")["results"]
    assert all(isinstance(v, float) and v >= 0 for v in jpeg["lpips-alex"])
    # Lower is better: the model's LPIPS falls as its rate rises, and so does JPEG's.
    assert r["lpips-alex"][1] < r["lpips-alex"][0]
    assert jpeg["lpips-alex"][-1] < jpeg["lpips-alex"][0]
    assert "lpips-alex" in res["bd_rates"]["jpeg420"]
    assert res["model"]["variable_rate"] is True and res["dataset"]["images"] == 2


def test_actual_bpp_is_the_file_size_and_metrics_are_on_the_decoded_file(evaluated, export, data):
    per = _json(evaluated["out"] / "results_per_image.json")["records"]
    model = [r for r in per if r["codec"] == "model"]
    assert len(model) == 4  # 2 images x 2 lambdas
    codec = evaluation.open_codec(export)  # the evaluation's own (cached, compiled) codec
    for rec in model:
        stem = pathlib.Path(rec["image"]).with_suffix("")
        f = evaluated["out"] / "files" / f"{stem}.l{rec['lmbda']:g}.swj"
        size = f.stat().st_size
        assert rec["bytes"] == size
        assert rec["bpp"] == pytest.approx(size * 8 / (rec["height"] * rec["width"]))
        # Actual and estimated are different numbers of the same size (header, coder overhead
        # and, for this untrained model, scales clipped to the scale table when coding).
        assert rec["estimated_bpp"] != rec["bpp"]
        assert 0.5 < rec["bpp"] / rec["estimated_bpp"] < 2.0
        assert rec["decoded_equals_forward_pass"] is True
        original = np.asarray(Image.open(data / rec["image"]).convert("RGB"))
        decoded = codec.decompress(f.read_bytes())
        assert rec["psnr"] == pytest.approx(metrics.psnr(original, decoded), abs=1e-9)
        assert rec["ms_ssim"] == pytest.approx(metrics.ms_ssim(original, decoded), abs=1e-9)
    res = _json(evaluated["out"] / "results.json")["results"]
    for i, lm in enumerate(res["lmbda"]):
        rows = [r for r in model if r["lmbda"] == lm]
        assert res["bpp"][i] == pytest.approx(np.mean([r["bpp"] for r in rows]))
        assert res["psnr-rgb"][i] == pytest.approx(np.mean([r["psnr"] for r in rows]))


def test_classical_codecs_run_on_the_same_images(evaluated):
    out = evaluated["out"]
    res = _json(out / "results.json")
    for name in ("jpeg420", "webp"):
        c = _json(out / f"results_{name}.json")
        assert c["name"] == name and "Pillow" in c["description"]
        r = c["results"]
        assert r["quality"] == list(range(5, 100, 5))
        assert len(r["bpp"]) == len(r["psnr-rgb"]) == len(r["ms-ssim-rgb"]) == 19
        assert np.all(np.diff(r["bpp"]) > 0) and r["psnr-rgb"][-1] > r["psnr-rgb"][0] + 8
        assert len(list((out / "files").rglob(f"*.{name}.*"))) == 2 * 19
        assert set(res["bd_rates"][name]) >= {"psnr", "ms-ssim-db"}
    # JPEG XL runs when imagecodecs is installed, and is a note otherwise: each way checked.
    jxl_skipped = any(n.startswith("jxl skipped") for n in res["notes"])
    if "jxl" in evaluation.classical_codecs()[0]:
        assert (out / "results_jxl.json").is_file() and not jxl_skipped
    else:
        assert not (out / "results_jxl.json").exists() and jxl_skipped


def test_bd_rates_against_codecs_and_anchors(evaluated):
    res = _json(evaluated["out"] / "results.json")
    bd = res["bd_rates"]
    assert "PCHIP" in bd["description"] and "overlap" in bd["description"]
    toy = bd["toy"]  # covers the model's range: a number, recomputable from the files
    model = metrics.read_curve(evaluated["out"] / "results.json")
    want = metrics.bd_rate([0.05, 5.0], [5.0, 60.0], model.bpp, model.psnr)
    assert toy["psnr"] == pytest.approx(want)
    assert toy["ms-ssim-db"] is None and "not in both" in toy["ms-ssim-db_note"]
    for name, entry in bd.items():
        if name == "description":
            continue
        for key in ("psnr", "ms-ssim-db"):  # a number and its overlap, or null with the reason
            if entry[key] is None:
                assert isinstance(entry[f"{key}_note"], str) and entry[f"{key}_note"], (name, key)
            else:
                assert isinstance(entry[key], float) and f"{key}_note" not in entry, (name, key)
                assert 0 < entry[f"{key}_overlap"] <= 1, (name, key)


def test_table_progress_and_plot(evaluated):
    stdout, stderr = evaluated["stdout"], evaluated["stderr"]
    assert "λ=32" in stdout and "λ=512" in stdout and "jpeg420" in stdout and "BD-rate" in stdout
    assert "est.bpp" in stdout
    assert "evaluate" in stderr and "100%" in stderr  # the progress bar (not a terminal here)
    assert "Traceback" not in stderr
    from swinjax.evaluation import plot

    assert "LPIPS-Alex" in stdout
    with Image.open(evaluated["out"] / "rd.png") as im:
        # LPIPS-Alex measured: a second row of panels (the perceptual figure's size).
        size = tuple(int(v * plot.DPI) for v in plot.FIGURE_SIZE_PERCEPTUAL)
        assert im.format == "PNG" and im.size == size
        px = np.asarray(im.convert("RGB"))
        red = tuple(int(plot.MODEL_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
        # The model's curve is drawn in its colour (red) in the top-left (PSNR) panel and in the
        # bottom-left (LPIPS-Alex) panel.
        h, w = px.shape[:2]
        for panel in (px[: h // 2, : w // 3], px[h // 2 :, : w // 3]):
            assert np.any(np.all(panel.reshape(-1, 3) == red, axis=1))


def _one_line_error(status, stderr, *needles):
    assert status == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for n in needles:
        assert n in lines[0], stderr


def test_missing_data_folder_names_the_flag(export, tmp_path):
    status, _, err = run(["--ckpt", export, "--data", tmp_path / "nope", "--quiet"])
    _one_line_error(status, err, "--data", "nope")


def test_user_errors_are_one_line(export, data, tmp_path):
    status, _, err = run(["--ckpt", export, "--data", data, "--lmbda", "2", "--quiet"])
    _one_line_error(status, err, "--lmbda", "range")
    status, _, err = run(["--ckpt", export, "--data", data, "--codecs", "bpg", "--quiet"])
    _one_line_error(status, err, "unknown codec")
    status, _, err = run(["--ckpt", tmp_path, "--data", data, "--quiet"])
    _one_line_error(status, err, "checkpoint")
    status, _, err = run(["--ckpt", export, "--data", data, "--anchors", tmp_path / "x.json"])
    _one_line_error(status, err, "--anchors")
    status, _, err = run(["--ckpt", export, "--data", data, "--out", tmp_path / "no" / "r.json"])
    _one_line_error(status, err, "--out")
    status, _, err = run(
        ["--ckpt", export, "--lpips-vgg-weights", tmp_path / "w.npz", "--data", data]
    )
    _one_line_error(status, err, "--lpips-vgg-weights")
    status, _, err = run(["--ckpt", export, "--perceptual", "ssim2", "--data", data])
    _one_line_error(status, err, "--perceptual ssim2", "unknown metric")


def test_bad_image_in_the_data_folder_is_a_one_line_error(export, tmp_path, photo):
    (tmp_path / "a_empty.png").write_bytes(b"")
    Image.fromarray(photo(*SIZE)).save(tmp_path / "b.png")
    status, _, err = run(["--ckpt", export, "--data", tmp_path, "--codecs", "none", "--quiet"])
    _one_line_error(status, err, "a_empty.png", "empty")


def test_fixed_rate_models_evaluate_one_point():
    import ml_collections

    fixed = ml_collections.ConfigDict({"variable_rate": False})
    lms, note = evaluation.lmbdas_for(fixed, [32.0, 128.0])
    assert lms == [None] and "ignored" in note and "32,128" in note
    var = ml_collections.ConfigDict({"variable_rate": True, "lmbda": {"min": 16.0, "max": 1024.0}})
    lms, _ = evaluation.lmbdas_for(var, None)
    assert lms[0] == pytest.approx(16) and lms[-1] == pytest.approx(1024) and len(lms) == 5


def test_every_perceptual_metric_is_reported_by_default_from_the_packaged_weights(
    export, data, tmp_path
):
    from swinjax import perceptual

    assert evaluate.build_parser().parse_args([]).perceptual == list(evaluation.PERCEPTUAL_METRICS)
    status, stdout, err = run(
        ["--ckpt", export, "--data", data / "a.png", "--lmbda", "64", "--codecs", "none",
         "--quiet", "--plot", "none", "--out", tmp_path / "r.json", "--per-image",
         "--keep-files", tmp_path / "files"]
    )  # fmt: skip
    assert status == 0, err
    assert "LPIPS-Alex" in stdout and "DISTS" in stdout
    res = _json(tmp_path / "r.json")
    assert not any("(--perceptual)" in n for n in res["notes"])
    codec = evaluation.open_codec(export)
    (rec,) = _json(tmp_path / "r_per_image.json")["records"]
    original = np.asarray(Image.open(data / "a.png").convert("RGB"), np.float32)[None] / 255
    decoded = codec.decompress((tmp_path / "files" / "a.l64.swj").read_bytes())
    decoded = decoded.astype(np.float32)[None] / 255
    for name, key in evaluation.PERCEPTUAL_KEYS.items():
        want = float(perceptual.packaged_metric(name)(original, decoded)[0])
        assert rec[name] == pytest.approx(want, abs=1e-5), name
        assert res["results"][key] == [pytest.approx(want, abs=1e-5)], name
        assert want > 0


def test_without_flags_the_shipped_model_meets_jpeg_webp_avif_and_a_plot(
    ship, export, data, tmp_path, monkeypatch
):
    defaults = evaluate.build_parser().parse_args([])
    assert defaults.ckpt is None and defaults.data == evaluation.DEFAULT_DATA
    assert defaults.codecs == ["jpeg", "webp", "avif"] and defaults.plot == "rd.png"
    ship("swincoder-ref", export)  # the default model, here the tiny one
    monkeypatch.chdir(tmp_path)
    # Only --data (no Kodak in a test), one image and one lambda to keep it short.
    status, stdout, err = run(["--data", data, "--max-images", "1", "--lmbda", "64", "--quiet"])
    assert status == 0, err
    assert stdout.startswith("swinjax swincoder-tiny")
    assert "jpeg420" in stdout and "webp" in stdout
    avif_ok = "avif" in evaluation.classical_codecs()[0]
    assert ("avif444" in stdout) if avif_ok else ("avif skipped" in stdout)
    assert "wrote rd.png" in stdout
    with Image.open(tmp_path / "rd.png") as im:
        assert im.format == "PNG"
    # --plot none: no plot.
    (tmp_path / "rd.png").unlink()
    status, _, err = run(
        ["--data", data, "--max-images", "1", "--lmbda", "64", "--codecs", "none", "--quiet",
         "--plot", "none"]
    )  # fmt: skip
    assert status == 0, err
    assert not (tmp_path / "rd.png").exists()


def test_plot_leaves_out_the_panel_of_a_metric_that_was_not_computed(tmp_path):
    """Only LPIPS-Alex measured (LPIPS-VGG and DISTS all null): one perceptual panel, not three."""
    from swinjax.evaluation import plot

    nan = math.nan
    bpp = [0.1, 0.2, 0.4]
    model = metrics.RDCurve(
        "model",
        bpp,
        psnr=[25.0, 27.0, 29.0],
        ms_ssim_db=[10.0, 12.0, 14.0],
        perceptual={"lpips-alex": [0.5, 0.4, 0.3], "lpips-vgg": [nan] * 3, "dists": [nan] * 3},
    )
    path = plot.plot_rd([model], tmp_path / "rd.png")
    with Image.open(path) as im:
        px = np.asarray(im.convert("RGB")).astype(int)
    assert px.shape[:2] == tuple(int(v * plot.DPI) for v in plot.FIGURE_SIZE_PERCEPTUAL[::-1])
    red = np.array([int(plot.MODEL_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])
    h, w = px.shape[:2]
    bottom = px[h // 2 :]
    is_red = np.all(bottom == red, axis=-1)
    dark = np.all(bottom < 128, axis=-1)  # axis spines, ticks and labels
    left, rest = slice(0, w // 3), slice(w // 3 + 20, 2 * w // 3)
    assert is_red[:, left].any()  # the LPIPS-Alex panel, with the model's curve
    # Where LPIPS-VGG's panel would be: no axes at all (a drawn empty panel has dark spines).
    assert dark[:, rest].mean() < 1e-3, dark[:, rest].mean()


def test_an_interrupted_evaluation_resumes_and_codec_rows_are_measured_once(
    export, data, tmp_path, monkeypatch
):
    """Each finished image's rows are saved: a rerun codes only the others and reports the same;
    the classical codecs' rows are kept for the next evaluation of the same images."""
    from swinjax.evaluation import runner

    saved = tmp_path / "saved"
    monkeypatch.setenv("SWINJAX_EVAL_CACHE", str(saved))
    coded, measured = [], []  # images the model coded; classical (image, setting) measured
    real_eval_model, real_eval_classical = runner._eval_model, runner._eval_classical

    def eval_model(codec, image, rel, *args, **kwargs):
        coded.append(rel)
        return real_eval_model(codec, image, rel, *args, **kwargs)

    def eval_classical(cc, setting, image, rel, *args, **kwargs):
        measured.append((rel, setting))
        return real_eval_classical(cc, setting, image, rel, *args, **kwargs)

    monkeypatch.setattr(runner, "_eval_model", eval_model)
    monkeypatch.setattr(runner, "_eval_classical", eval_classical)
    n_jpeg = len(evaluation.classical_codecs()[0]["jpeg"].settings)

    def argv(name, *more, lmbdas="32,512"):
        return ["--ckpt", export, "--data", data, "--lmbda", lmbdas, "--codecs", "jpeg",
                "--perceptual", "lpips_alex", "--plot", "none", "--quiet",
                "--out", tmp_path / f"{name}.json", *more]  # fmt: skip

    def interrupted_runs():
        return sorted(saved.glob("*.jsonl"))

    status, _, err = run(argv("whole"))
    assert status == 0, err
    assert coded == ["a.png", "sub/b.png"] and len(measured) == 2 * n_jpeg
    assert interrupted_runs() == []  # a run that wrote its results leaves no rows to resume

    real_load = runner._load

    def dies_at_the_second_image(path, max_pixels):
        if path.name == "b.png":
            raise RuntimeError("killed")
        return real_load(path, max_pixels)

    monkeypatch.setattr(runner, "_load", dies_at_the_second_image)
    coded.clear()
    with pytest.raises(RuntimeError, match="killed"):
        run(argv("broken", lmbdas="32,256"))
    (file,) = interrupted_runs()
    assert len(file.read_text().splitlines()) == 2  # the fingerprint and a.png's rows

    monkeypatch.setattr(runner, "_load", real_load)
    coded.clear()
    status, _, err = run(argv("resumed", lmbdas="32,256"))
    assert status == 0, err
    assert coded == ["sub/b.png"]  # a.png's rows came from the interrupted run
    assert not file.exists()
    resumed = _json(tmp_path / "resumed.json")
    assert any(n.startswith("resumed: 1 of 2 image(s)") for n in resumed["notes"])

    # The rows of an uninterrupted run at the same lambdas: the same numbers.
    coded.clear()
    status, _, err = run(argv("again", "--recompute", lmbdas="32,256"))
    assert status == 0, err
    assert coded == ["a.png", "sub/b.png"]
    for curve in ("", "_jpeg420"):
        a = _json(tmp_path / f"again{curve}.json")["results"]
        b = _json(tmp_path / f"resumed{curve}.json")["results"]
        for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "lpips-alex"):
            assert a[key] == b[key], (curve, key)

    # The codec rows were measured by the first run only, and by --recompute; the others took
    # them (another model's evaluation would too: they do not depend on the model).
    assert len(measured) == 2 * n_jpeg + 2 * n_jpeg
    assert any("classical codecs: " in n and "earlier evaluations" in n for n in resumed["notes"])
    whole_jpeg = _json(tmp_path / "whole_jpeg420.json")["results"]
    assert whole_jpeg == _json(tmp_path / "resumed_jpeg420.json")["results"]
    assert interrupted_runs() == []
