"""SwinCoder's perceptual stages 2 and 3 end to end on generated VGG19 weights."""

import json
import pathlib

import flax
import jax
import numpy as np
import pytest
from PIL import Image

import train as train_entry
from swinjax import checkpoint, export
from swinjax.compression import ImageCodec
from swinjax.models import build_codec
from swinjax.models.vgg import random_vgg_arrays

ROOT = pathlib.Path(__file__).resolve().parent.parent
VGG_WIDTH = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny):
    d = tmp_path_factory.mktemp("stages")
    rng = np.random.default_rng(3)
    (d / "images").mkdir()
    for i in range(4):
        img = rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / "images" / f"{i}.png")
    np.savez(d / "vgg19.npz", **random_vgg_arrays(19, VGG_WIDTH, seed=0))
    config = tiny("swincoder")
    codec = build_codec(config)
    x = np.zeros((1, 64, 64, 3), np.float32)
    params = jax.jit(codec.init)(jax.random.key(0), x, np.ones((1,), np.float32), jax.random.key(1))
    stage1 = export.export(config, params, d / "stage1")
    return d, stage1


def _run(stage, work, d, stage1, *extra):
    argv = [
        "train.py",
        f"--config={ROOT / 'configs' / f'swincoder_stage{stage}.py'}:tiny",
        f"--workdir={work}",
        f"--config.init_from={stage1}",
        "--config.perceptual.vgg=vgg19",
        f"--config.perceptual.vgg_weights={d / 'vgg19.npz'}",
        f"--config.perceptual.vgg_width={VGG_WIDTH}",
        "--config.perceptual.sn_warmup=20",
        "--config.total_steps=3",
        "--config.crop=64",
        "--config.batch_size=2",
        "--config.log_every=1",
        "--config.eval_every=0",
        "--config.checkpoint_every=3",
        f"--config.data.train_dirs={d / 'images'}",
        *extra,
    ]
    return train_entry.main(argv)


def _flat(path):
    return flax.traverse_util.flatten_dict(
        flax.serialization.to_state_dict(checkpoint.load_model(path).params)
    )


@pytest.mark.parametrize("stage", [2, 3])
def test_stage_trains_only_the_synthesis_and_keeps_the_bitstream(stage, setup, tmp_path):
    d, stage1 = setup
    work = tmp_path / f"stage{stage}"
    assert _run(stage, work, d, stage1) == 0
    records = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    keys = {"per", "style"} | ({"adv", "d_loss"} if stage == 3 else set())
    assert all(keys <= r.keys() and all(np.isfinite(r[k]) for k in keys) for r in records)
    before, after = _flat(stage1), _flat(work / "export")
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed, "nothing was trained"
    assert all("g_s" in k for k in changed), sorted(k for k in changed if "g_s" not in k)
    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    a = ImageCodec(checkpoint.load_model(stage1))
    b = ImageCodec(checkpoint.load_model(work / "export"))
    assert a.compress(img, 64.0) == b.compress(img, 64.0)


def test_perceptual_stage_without_vgg_weights_stops_with_a_clear_message(setup, tmp_path, capsys):
    d, stage1 = setup
    argv_missing = f"--config.perceptual.vgg_weights={tmp_path / 'missing.npz'}"
    assert _run(2, tmp_path / "w", d, stage1, argv_missing) == 1
    err = capsys.readouterr().err
    assert "missing.npz" in err and "convert_torch_weights" in err
