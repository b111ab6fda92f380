"""Mixed precision: ``dtype=bfloat16`` computes the transforms in bfloat16 and tracks float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax import precision
from swinjax.models import build_codec
from swinjax.train_lib import Trainer

STEPS = 6


def _images(n, size, seed):
    """Smooth random images (a learnable signal, unlike white noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, size // 8, size // 8, 3)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)


def _trainer(tiny, dtype):
    config = tiny("swincoder")
    config.dtype, config.crop, config.batch_size = dtype, 64, 2
    config.lr, config.warmup_steps = 1e-3, 1
    return Trainer(config)


def _train(compile_lowered, trainer, state, batches, key):
    step = compile_lowered(trainer._step.lower(state, batches[0], key, trainer.extra))
    losses = []
    for x in batches:
        state, m = step(state, x, key, trainer.extra)
        losses.append(float(m["loss"]))
    return state, m, losses


@pytest.fixture(scope="module")
def runs(tiny, compiled_lowered):
    """The tiny SwinCoder trained STEPS steps in float32 and in bfloat16 from the same init."""
    trainers = {dtype: _trainer(tiny, dtype) for dtype in ("float32", "bfloat16")}
    key = jax.random.key(0)
    # Parameters do not depend on the computation dtype: one init serves both runs.
    init = compiled_lowered(trainers["float32"]._init.lower(key))(key)
    batches = [jnp.asarray(_images(2, 64, seed)) for seed in range(STEPS)]
    out = {}
    for dtype, trainer in trainers.items():
        state = jax.tree.map(jnp.copy, init)  # the step donates its state
        out[dtype] = (
            trainer,
            *_train(compiled_lowered, trainer, state, batches, jax.random.key(3)),
        )
    return out


def test_bfloat16_training_tracks_float32_from_the_same_init(runs):
    f32 = np.array(runs["float32"][3])
    bf16 = np.array(runs["bfloat16"][3])
    assert np.all(np.isfinite(bf16))
    # Same parameters, batches, lambdas and noise: only the transforms' rounding differs, at
    # the first step and after STEPS updates (measured: within 0.3 %; diverging runs would not
    # be). The losses themselves move by 5x between batches.
    np.testing.assert_allclose(bf16[0], f32[0], rtol=0.01)
    np.testing.assert_allclose(bf16, f32, rtol=0.02)
    assert not np.array_equal(bf16, f32)  # the bfloat16 run is another computation


def test_bfloat16_keeps_parameters_optimizer_state_and_metrics_in_float32(runs):
    _, state, metrics, _ = runs["bfloat16"]
    floats = [
        a
        for a in jax.tree.leaves((state.params, state.opt_state))
        if jnp.issubdtype(a.dtype, jnp.floating)
    ]
    assert floats and all(a.dtype == jnp.float32 for a in floats)
    for name in ("loss", "bpp", "mse"):
        if name in metrics:
            assert metrics[name].dtype == jnp.float32, name


def test_bfloat16_runs_the_transforms_but_not_the_entropy_parameters_in_bfloat16(runs):
    trainer, state, _, _ = runs["bfloat16"]
    codec = trainer.codec
    params = state.params
    x = jnp.asarray(_images(1, 64, 9))
    lm = jnp.full((1,), 128.0)
    text = jax.jit(lambda p: codec.apply(p, x, lm, method=codec.analysis)).lower(params).as_text()
    assert "bf16" in text  # g_a computes in bfloat16
    f32_codec = build_codec(trainer.config)
    z = jnp.asarray(np.random.default_rng(0).normal(size=(1, 1, 1, 128)), jnp.float32)
    z = z[..., : int(trainer.config.model.hyper_channels)]
    hs = codec.apply(params, z, method=codec.hyper_synthesis)
    hs32 = f32_codec.apply(params, z, method=f32_codec.hyper_synthesis)
    # h_s (entropy parameters) is float32 in both: bit-identical.
    np.testing.assert_array_equal(np.asarray(hs), np.asarray(hs32))
    # Validation, like compress and decompress, uses the float32 codec.
    assert trainer.eval_codec.dtype is None


def test_unknown_dtype_and_kernels_are_rejected(tiny):
    config = tiny("swincoder")
    config.dtype = "float16"
    with pytest.raises(ValueError, match="dtype must be one of"):
        precision.compute_dtype(config)
    config.dtype, config.kernels = "bfloat16", "tpu"
    assert precision.compute_dtype(config) == jnp.bfloat16
    with pytest.raises(ValueError, match="kernels must be one of"):
        precision.kernel_choice(config)


def test_validation_of_a_bfloat16_run_codes_in_float32(runs):
    """Validation (estimate, reconstruct) runs the float32 inference codec, as compress does."""
    trainer, state, _, _ = runs["bfloat16"]
    x = jnp.asarray(_images(2, 64, 9))
    lm = jnp.asarray(128.0)
    for fn in (trainer._eval, trainer._reconstruct):
        assert "bf16" not in fn.lower(state.params, x, lm).as_text()
