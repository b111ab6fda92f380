"""Rate-distortion training end to end: metrics, checkpoints, exact resume (also after SIGKILL)."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import flax.serialization
import numpy as np
import pytest
from PIL import Image

import train as train_entry
from swinjax import checkpoint

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 12


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Eight smooth synthetic photos-to-be (no dependency on ../shared in this module)."""
    d = tmp_path_factory.mktemp("train-images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:120] / 96.0
    for i in range(8):
        base = np.stack([np.sin(3 * xx + i), np.cos(2 * yy - i), np.sin(xx * yy * 5)], -1)
        img = (0.5 + 0.4 * base + 0.05 * rng.standard_normal(base.shape)).clip(0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(d / f"img{i}.png")
    return d


def _argv(workdir, images, **overrides):
    opts = {
        "total_steps": STEPS,
        "crop": 64,
        "batch_size": 2,
        "log_every": 1,
        "checkpoint_every": 4,
        "eval_every": 0,
        "keep_checkpoints": 10,
        "warmup_steps": 2,
        "data.train_dirs": str(images),
    }
    opts.update(overrides)
    argv = ["train.py", f"--config={ROOT / 'configs' / 'tiny.py'}", f"--workdir={workdir}"]
    return argv + [f"--config.{k}={v}" for k, v in opts.items()]


def _final_params(workdir):
    exported = checkpoint.load_model(pathlib.Path(workdir) / "export")
    return flax.serialization.to_state_dict(exported.params)


def _records(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, images):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    assert train_entry.main(_argv(workdir, images)) == 0
    return workdir


def test_training_writes_metrics_checkpoints_and_an_export(reference_run):
    records = _records(reference_run)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert all(np.isfinite(r["loss"]) and r["bpp"] > 0 for r in records)
    assert records[-1]["skipped"] == 0
    steps = sorted(
        int(p.name) for p in (reference_run / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert steps == [4, 8, 12]
    assert (reference_run / "export" / "model.json").is_file()
    assert (
        json.loads((reference_run / "config.json").read_text())["model"]["id"] == "swincoder-tiny"
    )


def test_a_wall_clock_budget_stops_at_a_logged_step_and_still_exports(tmp_path, images):
    # A budget already spent at the first log: the run must stop there (not at total_steps),
    # with that step validated, checkpointed and exported, so nothing trained is lost.
    workdir = tmp_path / "budget"
    argv = _argv(workdir, images, max_train_seconds=1e-9, log_every=3, checkpoint_every=100)
    assert train_entry.main(argv) == 0
    assert [r["step"] for r in _records(workdir) if "loss" in r] == [3]
    assert checkpoint.latest_step(workdir) == 3
    assert json.loads((workdir / "export" / "model.json").read_text())["step"] == 3


def _scalars(events):
    """``{tag: [(step, value)]}`` from :func:`read_tensorboard`'s output."""
    return {tag: [(step, v.simple_value) for step, v in vs] for tag, vs in events.items()}


def test_training_writes_tensorboard_scalars_beside_the_json_lines(
    reference_run, tensorboard_events
):
    pytest.importorskip("tensorboardX", reason="the [tensorboard] extra is not installed")
    scalars = _scalars(tensorboard_events(reference_run / "tensorboard"))
    records = _records(reference_run)
    assert [s for s, _ in scalars["train/loss"]] == [r["step"] for r in records if "loss" in r]
    for (_, v), r in zip(scalars["train/bpp"], [r for r in records if "bpp" in r], strict=True):
        assert v == pytest.approx(r["bpp"], rel=1e-5, abs=1e-6)


def test_validation_records_go_under_val_in_tensorboard(tmp_path, tensorboard_events):
    pytest.importorskip("tensorboardX", reason="the [tensorboard] extra is not installed")
    from swinjax.train_log import MetricsWriter

    w = MetricsWriter(tmp_path, tensorboard=True)
    w.write({"step": 1000, "val_bpp@16": 0.25, "val_psnr_db@16": 27.5, "note": "text"})
    w.close()
    scalars = _scalars(tensorboard_events(tmp_path / "tensorboard"))
    assert scalars == {"val/bpp/lambda_16": [(1000, 0.25)], "val/psnr_db/lambda_16": [(1000, 27.5)]}
    off = MetricsWriter(tmp_path / "off", tensorboard=False)
    off.write({"step": 1, "loss": 1.0})
    assert not (tmp_path / "off" / "tensorboard").exists()
    assert (tmp_path / "off" / "metrics.jsonl").read_text().count("\n") == 1


def test_restart_skips_an_unreadable_checkpoint_and_resumes_exactly(
    reference_run, tmp_path, images, capsys
):
    # A copy of the finished run whose last checkpoint is half-written (every file truncated) and
    # without its export: restarting must set checkpoint 12 aside, redo steps 9..12 from
    # checkpoint 8 and land on the same parameters and loss.
    import shutil

    work = tmp_path / "resumed"
    shutil.copytree(reference_run, work)
    for f in (work / "checkpoints" / "12").rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    shutil.rmtree(work / "export")
    capsys.readouterr()
    assert train_entry.main(_argv(work, images)) == 0
    err = capsys.readouterr().err
    assert "checkpoint at step 12 is unreadable" in err and "at step 8" in err, err[-2000:]
    assert (work / "checkpoints" / "12.unreadable").is_dir()  # kept, not deleted
    assert (work / "checkpoints" / "12").is_dir()  # written again
    a, b = _final_params(reference_run), _final_params(work)
    flat_a = flax.traverse_util.flatten_dict(a)
    flat_b = flax.traverse_util.flatten_dict(b)
    assert flat_a.keys() == flat_b.keys()
    for k in flat_a:
        np.testing.assert_array_equal(flat_a[k], flat_b[k], err_msg=str(k))
    assert _records(work)[-1]["loss"] == _records(reference_run)[-1]["loss"]


def test_sigkill_mid_run_then_restart_matches_an_uninterrupted_run(reference_run, tmp_path, images):
    work = tmp_path / "killed"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, *_argv(work, images)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    killed_at = None
    for line in proc.stderr:
        if line.startswith(f"step 6/{STEPS}"):
            proc.send_signal(signal.SIGKILL)
            killed_at = 6
            break
    proc.wait(timeout=300)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL
    assert not (work / "export").exists()  # it really died before the end
    assert train_entry.main(_argv(work, images)) == 0
    a, b = _final_params(reference_run), _final_params(work)
    for k, v in flax.traverse_util.flatten_dict(a).items():
        np.testing.assert_array_equal(v, flax.traverse_util.flatten_dict(b)[k], err_msg=str(k))
    assert _records(work)[-1]["loss"] == _records(reference_run)[-1]["loss"]


def test_bad_config_key_is_an_error(tmp_path, images, capsys):
    argv = _argv(tmp_path / "w", images) + ["--config.total_stpes=3"]
    assert train_entry.main(argv) == 2
    assert "total_stpes" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_the_flags(capsys, flag):
    assert train_entry.main(["train.py", flag]) == 0
    out = capsys.readouterr().out
    assert "python train.py --config" in out and "--workdir" in out


def test_missing_data_folder_names_the_flag(tmp_path, images, capsys):
    argv = _argv(tmp_path / "w", images, **{"data.train_dirs": str(tmp_path / "nope")})
    assert train_entry.main(argv) == 1
    assert "data.train_dirs" in capsys.readouterr().err


def test_a_workdir_loads_as_a_model_from_its_parameters_alone(reference_run, tmp_path, monkeypatch):
    # load_model on a workdir restores the params of its latest checkpoint (no optimizer state,
    # no Trainer) and caches them as an export, equal to the one training wrote.
    import shutil

    from swinjax import train_lib

    work = tmp_path / "copy"
    shutil.copytree(reference_run, work, ignore=shutil.ignore_patterns("export*"))

    def no_trainer(*args, **kwargs):
        raise AssertionError("load_model built a Trainer")

    monkeypatch.setattr(train_lib.Trainer, "__init__", no_trainer)
    loaded = checkpoint.load_model(work)
    assert loaded.step == STEPS and loaded.path == work / f"export-{STEPS}"
    got = flax.traverse_util.flatten_dict(flax.serialization.to_state_dict(loaded.params))
    want = flax.traverse_util.flatten_dict(_final_params(reference_run))
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=str(k))


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"crop": 96}, "multiple of"),  # the tiny model's downsampling factor is 64
        ({"batch_size": 0}, "batch_size=0"),
        ({"log_every": 0}, "log_every=0"),
        ({"stage": 2, "perceptual.vgg": "vgg19"}, "vgg_weights"),
        ({"stage": 2, "perceptual.vgg": "vgg11"}, "perceptual.vgg='vgg11'"),
    ],
)
def test_config_mistakes_are_one_line_errors(tmp_path, images, capsys, override, needle):
    argv = _argv(tmp_path / "w", images, **override)
    assert train_entry.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err, err


def test_the_smallest_crop_comes_from_the_model(tiny):
    from swinjax.train_config import ConfigError, min_crop, validate_train_config

    small, full = tiny("swincoder"), tiny("swincoder")
    full.model.g_a.window = 8  # a full model's window: its deepest stage needs 8 tokens a side
    assert min_crop(small.model) == 64 and min_crop(full.model) == 128
    full.crop = 64
    with pytest.raises(ConfigError, match="below 128"):
        validate_train_config(full, 1)
    full.crop = 128
    validate_train_config(full, 1)


def test_an_internal_error_keeps_its_traceback(tmp_path, images, monkeypatch):
    # Not a user mistake: a bug must not be reduced to one line.
    from swinjax import train_lib

    def bug(*args, **kwargs):
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(train_lib, "train", bug)
    with pytest.raises(ValueError, match="a bug deep inside"):
        train_entry.main(_argv(tmp_path / "w", images))


# Parameters that must never be weight-decayed, by their own name (last key of the path).
_NEVER_DECAYED = {
    "relative_position_bias_table",
    "null_kv",
    "half_query",
    "half_content",
    "bias",
    "scale",
    "layer_scale",
    "quantiles",
}


@pytest.mark.parametrize("arch", ["swincoder", "swinnpe", "swint_charm"])
def test_weight_decay_reaches_dense_and_conv_kernels_only(tiny, fast, arch):
    import jax
    import jax.numpy as jnp

    from swinjax.models import build_codec
    from swinjax.optim import _decays, make_optimizer

    config = tiny(arch)
    codec = build_codec(config)
    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    shapes = jax.eval_shape(codec.init, jax.random.key(0), x, jnp.ones((1,)), jax.random.key(1))
    flat = {
        tuple(str(k.key) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]
    }
    mask = {
        tuple(str(k.key) for k in path): m
        for path, m in jax.tree_util.tree_flatten_with_path(
            jax.tree_util.tree_map_with_path(_decays, shapes)
        )[0]
    }
    names = {path[-1] for path in flat}
    # Dense kernels [in, out], Conv3x3 (a Dense named "kernel": .../kernel/kernel), depthwise
    # 3x3 kernels [3, 3, C]: all decay.
    kernels = [p for p in flat if p[-1] == "kernel"]
    assert kernels and all(mask[p] for p in kernels), [p for p in kernels if not mask[p]]
    assert any(p[-2:] == ("kernel", "kernel") for p in kernels)  # Conv3x3 weights are among them
    if arch == "swinnpe":
        assert any(flat[p].ndim == 3 for p in kernels)  # depthwise Q/K/V convolutions
    # Nothing else does: tables, learned tokens, biases, norms, the factorized density.
    decayed = {p for p, m in mask.items() if m}
    assert decayed == set(kernels), sorted(decayed - set(kernels))
    for p in flat:
        if p[-1] in _NEVER_DECAYED or "entropy_bottleneck" in p:
            assert not mask[p], p
    if arch != "swinnpe":  # SwinNPE has no positional encoding
        assert "relative_position_bias_table" in names
    if arch == "swincoder":  # the masked grouped entropy model's learned embeddings
        assert {"null_kv", "half_query", "half_content"} <= names
    density = [p for p in flat if "entropy_bottleneck" in p]
    assert any(p[-1].startswith("matrix") for p in density) and not any(mask[p] for p in density)

    if arch != "swincoder":
        return
    # The mask is what AdamW applies: with zero gradients only the kernels move (decay alone).
    config.warmup_steps, config.weight_decay = 1, 0.1
    params = jax.tree_util.tree_map(lambda s: jnp.ones(s.shape, s.dtype), shapes)
    opt = make_optimizer(config, params)

    def decay_only(params):
        state = opt.init(params)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        for _ in range(2):  # the first step has learning rate 0 (warm-up from 0)
            updates, state = opt.update(zeros, state, params)
        return updates

    moved = {
        tuple(str(k.key) for k in path): bool(jnp.any(u != 0))
        for path, u in jax.tree_util.tree_flatten_with_path(fast(decay_only, params))[0]
    }
    assert {p for p, m in moved.items() if m} == set(kernels)


def test_warm_start_copies_every_old_parameter_and_keeps_the_new_ones(tiny):
    """A gain-less model seeds one with the latent gain; a wider model is refused."""
    import jax
    import jax.numpy as jnp
    from flax import traverse_util

    from swinjax.models import build_codec
    from swinjax.train_lib import warm_start_params

    def shapes(config, fill):
        codec = build_codec(config)
        x = jnp.zeros((1, 64, 64, 3), jnp.float32)
        tree = jax.eval_shape(codec.init, jax.random.key(0), x, jnp.ones((1,)), jax.random.key(1))
        return jax.tree.map(lambda s: np.full(s.shape, fill, s.dtype), tree)

    old = tiny("swincoder")
    old.model.lmbda.gain = False
    merged, new = warm_start_params(shapes(old, 1.0), shapes(tiny("swincoder"), 0.0))
    assert new == ["params/latent_gain/offset", "params/latent_gain/slope"]
    flat = traverse_util.flatten_dict(merged, sep="/")
    assert all(np.all(v == (0.0 if k in new else 1.0)) for k, v in flat.items())
    assert len(flat) == len(traverse_util.flatten_dict(shapes(old, 1.0))) + 2

    wider = tiny("swincoder")
    wider.model.latent_channels = 40
    wider.model.g_a.out_channels = 40
    with pytest.raises(ValueError, match="do not fit"):
        warm_start_params(shapes(old, 1.0), shapes(wider, 0.0), "old")


def test_an_export_records_the_whole_training_history(tmp_path, tiny):
    import jax

    from swinjax import export, train_lib
    from swinjax.evaluation.report import _steps
    from swinjax.models import build_codec

    config = tiny("swincoder")
    codec = build_codec(config)
    x = np.zeros((1, 64, 64, 3), np.float32)
    params = jax.jit(codec.init)(jax.random.key(0), x, np.ones((1,), np.float32), jax.random.key(1))
    past = {"total_steps": 100, "cpu_core_hours": 1.0, "runs": [{"steps": 100}]}
    src = export.export(config, params, tmp_path / "src", 100, history=past)
    config.init_from = str(src)
    config.total_steps = 5
    h = train_lib.run_history(config, 5, 7200.0)
    assert h["total_steps"] == 105 and h["cpu_core_hours"] == 3.0 and len(h["runs"]) == 2
    assert "cpu_core_hours_partial" not in h
    out = export.export(config, params, tmp_path / "out", 5, history=h)
    assert export.history_of(out) == h
    assert _steps(export.load_export(out)) == "105 steps in all, 3 CPU-core-h"
    # Without a recorded history the source's step counts; a resumed run says its hours are partial.
    config.init_from = str(export.export(config, params, tmp_path / "bare", 40))
    h = train_lib.run_history(config, 5, 0.0, resumed=True)
    assert h["total_steps"] == 45 and h["cpu_core_hours_partial"] is True
