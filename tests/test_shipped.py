"""Models shipped in the package: float16 exports, names for --ckpt, the default model."""

import json
import pathlib

import flax.serialization
import jax
import numpy as np
import pytest

import swinjax
from swinjax import checkpoint, export
from swinjax.coding import container
from swinjax.compression import ImageCodec

MAX_SHIPPED_BYTES = 25_000_000  # what a wheel should carry


# -- float16 exports ------------------------------------------------------------------------------


def test_float16_export_loads_the_rounded_params_and_round_trips(tmp_path, tiny_params):
    config, codec, params = tiny_params("swincoder")
    half = export.export(config, params, tmp_path / "f16", step=7, param_dtype="float16")
    full = export.export(config, params, tmp_path / "f32")

    meta = json.loads((half / "model.json").read_text())
    assert meta["param_dtype"] == "float16" and meta["step"] == 7
    assert json.loads((full / "model.json").read_text())["param_dtype"] == "float32"
    stored = flax.serialization.msgpack_restore((half / "params.msgpack").read_bytes())
    assert {a.dtype for a in jax.tree.leaves(stored)} == {np.dtype(np.float16)}
    ratio = (half / "params.msgpack").stat().st_size / (full / "params.msgpack").stat().st_size
    assert 0.45 < ratio < 0.55

    loaded = checkpoint.load_model(half)
    assert loaded.param_dtype == "float16"
    rounded = jax.tree.map(lambda a: a.astype(np.float16).astype(np.float32), params)
    got, want = jax.tree.leaves(loaded.params), jax.tree.leaves(rounded)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g, w)
    # The rounding is real (else this test proves nothing) ...
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), want, strict=True))
    # ... and the tables are those of the rounded parameters, which is what the decoder runs.
    tables = export.build_tables(codec, rounded)
    assert tables.keys() == loaded.tables.keys()
    for k in tables:
        np.testing.assert_array_equal(loaded.tables[k], tables[k], err_msg=k)
    assert not np.array_equal(loaded.tables["z_cdf"], export.load_export(full).tables["z_cdf"])

    ic = ImageCodec(loaded)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    data = ic.compress(image, 64.0)
    assert container.unpack(data)[0].model_id == "swincoder-tiny"
    np.testing.assert_array_equal(ic.decompress(data), ic.forward_eval(image, 64.0).x_hat)


def test_float16_export_refuses_params_it_cannot_hold(tmp_path):
    params = {"params": {"a": {"kernel": np.array([1.0, 1e6], np.float32)}}}
    with pytest.raises(ValueError, match=r"params/a/kernel.*1e\+06.*float32"):
        export.round_params(params, "float16")
    with pytest.raises(ValueError, match="param_dtype"):
        export.round_params(params, "bfloat16")
    stored, loaded = export.round_params({"w": np.array([0.1], np.float32)}, "float16")
    assert stored["w"].dtype == np.float16 and loaded["w"].dtype == np.float32
    assert loaded["w"][0] == np.float32(np.float16(0.1)) != np.float32(0.1)


# -- the model in the package --------------------------------------------------------------------


def test_the_default_model_is_shipped_in_the_package_compactly():
    models = export.shipped_models()
    assert export.DEFAULT_MODEL in models
    path = models[export.DEFAULT_MODEL]
    assert path.parent == pathlib.Path(swinjax.__file__).parent / "weights"
    meta = json.loads((path / "model.json").read_text())
    assert meta["model_id"] == export.DEFAULT_MODEL and meta["param_dtype"] == "float16"
    assert meta["format"] == export.EXPORT_FORMAT
    assert meta["config_hash"] == export.config_hash(meta["model"])
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    assert size < MAX_SHIPPED_BYTES, size
    assert export.resolve_ckpt(None) == path
    assert export.shipped_model_for(export.DEFAULT_MODEL) == path


# -- names ---------------------------------------------------------------------------------------


def test_names_paths_and_unknown_names(ship, tmp_path, monkeypatch):
    ref = ship("swincoder-ref", model_id="swincoder-ref")
    other = ship("other", model_id="other-id")
    assert export.shipped_models() == {"other": other, "swincoder-ref": ref}
    assert export.resolve_ckpt("other") == other
    assert export.resolve_ckpt(None) == ref  # DEFAULT_MODEL
    # A path is used as given, also when a shipped model has the same name.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other").mkdir()
    assert export.resolve_ckpt("other") == pathlib.Path("other")
    assert export.resolve_ckpt(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError) as e:
        export.resolve_ckpt("swincoder-nope")
    msg = str(e.value)
    assert "\n" not in msg and "'swincoder-nope'" in msg and "shipped: other, swincoder-ref" in msg
    with pytest.raises(FileNotFoundError, match="swincoder-nope"):
        checkpoint.load_model("swincoder-nope")


def test_without_the_default_model_the_error_says_to_give_ckpt(ship):
    ship("other", model_id="other-id")
    with pytest.raises(FileNotFoundError, match=r"default model 'swincoder-ref'.*other.*--ckpt"):
        export.resolve_ckpt(None)


def test_a_file_s_model_id_picks_the_shipped_model(ship, tmp_path):
    a = ship("a", model_id="m1")
    b = ship("b", model_id="m2")
    assert export.shipped_model_for("m2") == b
    assert export.shipped_model_for("m1") == a
    # Two with one id: the matching config hash wins, whatever the names' order.
    (b / "model.json").write_text(json.dumps({"model_id": "m1", "config_hash": "beef"}))
    assert export.shipped_model_for("m1", "beef") == b
    assert export.shipped_model_for("m1", "0000") == a
    with pytest.raises(FileNotFoundError) as e:
        export.shipped_model_for("m3")
    assert "'m3'" in str(e.value) and "a (model id m1)" in str(e.value)


def test_the_shipped_perceptual_decoder_pairs_with_the_shipped_model():
    from flax import traverse_util

    from swinjax.checkpoint import load_model

    name = f"{export.DEFAULT_MODEL}-perceptual"
    if name not in export.shipped_models():
        pytest.skip("no perceptual decoder is shipped")
    base = load_model()
    assert export.paired_decoders(base) == {"perceptual": export.shipped_models()[name]}
    assert export.shipped_model_for(base.model_id, base.config_hash, "perceptual").name == name
    dec = load_model(name)
    assert dec.decoder == "perceptual" and dec.tables.keys() == base.tables.keys()
    a = traverse_util.flatten_dict(base.params, sep="/")
    b = traverse_util.flatten_dict(dec.params, sep="/")
    assert a.keys() == b.keys()
    changed = {k for k in a if not np.array_equal(a[k], b[k])}
    assert changed and all("/g_s/" in f"/{k}" for k in changed)
    # Only g_s is stored: a small fraction of the full model.
    size = (export.shipped_models()[name] / "params.msgpack").stat().st_size
    assert (
        size < (export.shipped_models()[export.DEFAULT_MODEL] / "params.msgpack").stat().st_size / 3
    )
