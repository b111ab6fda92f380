"""Lambda: one owner of range, default, sweep, sampling and checks; smooth conditioning."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from swinjax.layers.adaln import LambdaBlock, LambdaEmbedding, LatentGain, smooth_embedding
from swinjax.lmbda import LmbdaError, LmbdaRange, lmbda_range
from swinjax.models import build_codec


def test_variable_range_default_sweep_and_validation_points():
    r = LmbdaRange(16.0, 1024.0, True)
    assert r.default == pytest.approx(128.0)
    sweep = r.sweep(5)
    assert sweep[0] == 16.0 and sweep[-1] == pytest.approx(1024.0)
    assert np.allclose(np.diff(np.log(sweep)), np.log(64.0) / 4)
    assert r.validation_points() == [16.0, pytest.approx(128.0), 1024.0]
    assert r.check(None) == pytest.approx(128.0)
    assert r.check(300) == 300.0


@pytest.mark.parametrize("bad", [5000.0, 8.0, float("nan"), float("inf")])
def test_variable_range_refuses_lambdas_it_was_not_trained_on(bad):
    with pytest.raises(LmbdaError):
        LmbdaRange(16.0, 1024.0, True).check(bad)


def test_fixed_rate_has_one_point_and_refuses_others():
    r = LmbdaRange(1000.0, 1000.0, False)
    assert r.default == 1000.0 and r.sweep(5) == [1000.0] and r.validation_points() == [1000.0]
    assert r.check(None) == 1000.0
    with pytest.raises(LmbdaError, match="trained at lambda=1000"):
        r.check(64.0)
    lm = np.asarray(r.sample(jax.random.key(0), 4))
    np.testing.assert_array_equal(lm, 1000.0)


def test_sampling_is_log_uniform_over_the_range():
    r = LmbdaRange(16.0, 1024.0, True)
    lm = np.asarray(r.sample(jax.random.key(0), 20000))
    assert lm.min() >= 16.0 and lm.max() <= 1024.0 * (1 + 1e-6)
    t = (np.log(lm) - np.log(16.0)) / (np.log(1024.0) - np.log(16.0))
    # Uniform on [0, 1] in log space: each of 6 octaves gets about a sixth.
    counts, _ = np.histogram(t, bins=6, range=(0, 1))
    assert np.all(np.abs(counts / lm.size - 1 / 6) < 0.02)


def test_model_configs_say_their_lambdas(tiny):
    var = lmbda_range(tiny("swincoder"))
    assert var.variable and (var.min, var.max) == (16.0, 1024.0)
    fixed = lmbda_range(tiny("swint_charm"))
    assert not fixed.variable and fixed.min == 1000.0
    with pytest.raises(LmbdaError, match="model.lmbda.value"):
        lmbda_range(ml_collections.ConfigDict({"id": "m", "variable_rate": False}))


def test_embedding_is_smooth_in_log_lambda():
    """Nearby lambdas get nearby codes; the two ends of the range get different ones."""
    lm = jnp.asarray(np.geomspace(16.0, 1024.0, 13), jnp.float32)  # half-octave steps
    t = (jnp.log(lm) - np.log(16.0)) / (np.log(1024.0) - np.log(16.0))
    e = np.asarray(smooth_embedding(t, 64))
    e = e - e.mean(axis=0)  # correlations of the deviations from the mean code
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    corr = unit @ unit.T
    # lambda vs sqrt(2) lambda: strongly correlated everywhere in the range (a code with
    # periods of ~1/27 octave, as diffusion timestep embeddings over [0, 1000] have, gives ~0).
    assert np.diag(corr, 1).min() > 0.7
    assert np.diag(corr, 2).min() > 0.2  # still related an octave apart
    assert corr[0, -1] < 0.0  # 16 and 1024 look different


def test_lambda_embedding_mlp_gives_per_example_codes(fast):
    module = LambdaEmbedding(32, 16.0, 1024.0)
    lm = jnp.asarray([16.0, 17.0, 1024.0])

    def run(lm):
        params = module.init(jax.random.key(0), lm)
        return module.apply(params, lm)

    e = np.asarray(fast(run, lm))
    near, far = np.abs(e[0] - e[1]).max(), np.abs(e[0] - e[2]).max()
    assert far > 10 * near > 0


def test_lambda_block_is_residual_and_keeps_the_stream_energy(fast):
    """No normalisation of the stream: scaling the input scales the identity path with it."""
    module = LambdaBlock()
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 16))
    emb = jax.random.normal(jax.random.key(1), (2, 8))

    def run(x, emb):
        params = module.init(jax.random.key(2), x, emb)
        return (
            module.apply(params, x, emb),
            module.apply(params, 10.0 * x, emb),
            module.apply(params, x, emb[::-1]),
        )

    y, y10, y_swapped = (np.asarray(a) for a in fast(run, x, emb))
    x = np.asarray(x)
    # The residual branch sees LN(x), so 10 x changes the output by the identity path: 9 x.
    np.testing.assert_allclose(y10 - y, 9.0 * x, rtol=1e-4, atol=1e-4)
    assert np.abs(y - y_swapped).max() > 1e-3  # the embedding modulates the block
    assert np.linalg.norm(y10) > 5 * np.linalg.norm(y)


def test_training_context_of_the_first_groups_is_the_decoders(fast, tiny):
    """With context="rounded", groups 0 and 1 get the parameters the decoder computes."""
    config = tiny("swincoder")
    assert config.model.entropy.context == "rounded"
    assert config.model.lmbda.gain  # the gained domain is what both sides must agree on
    codec = build_codec(config)
    x = jax.random.uniform(jax.random.key(0), (1, 64, 64, 3))
    lm = jnp.asarray([64.0])

    def run(x, lm):
        params = codec.init(jax.random.key(1), x, lm, jax.random.key(2))

        def pieces(m, x, lm):
            y = m.analysis(x, lm).astype(jnp.float32) * 4.0  # spread y over several integers
            hyper = m.hyper_synthesis(jnp.round(m.hyper_analysis(y, lm)))
            mu_train, scale_train = m._one_pass_training_params(hyper, y, y, m.gain(lm))
            y_hat = jnp.zeros_like(y)
            decoded = []
            for k in range(2):
                mu, scale = m.group_params(hyper, y_hat, k, lm)
                decoded.append((mu, scale))
                y_hat = m.fill_group(hyper, y_hat, k, jnp.round(y - mu) + mu, lm)
            return mu_train, scale_train, decoded, m.context.group_masks(y.shape[1], y.shape[2])

        return codec.apply(params, x, lm, method=pieces)

    mu_t, s_t, decoded, masks = fast(run, x, lm)
    for k, (mu, scale) in enumerate(decoded):
        sel = np.asarray(masks)[k][None]
        np.testing.assert_allclose(np.asarray(mu_t)[sel], np.asarray(mu)[sel], atol=1e-5)
        np.testing.assert_allclose(np.asarray(s_t)[sel], np.asarray(scale)[sel], atol=1e-5)


def test_latent_gain_starts_as_an_8x_step_range_and_is_one_at_the_middle():
    """Slope 0.5 of log gain in log lambda: sqrt(1024 / 16) = 8 between the ends, 1 at 128."""
    gain = LatentGain(4, 16.0, 1024.0)
    lm = jnp.asarray([16.0, 128.0, 1024.0])
    params = gain.init(jax.random.key(0), lm)
    g = np.asarray(gain.apply(params, lm))[:, 0, 0, :]
    assert g.shape == (3, 4)
    np.testing.assert_allclose(g[1], 1.0, rtol=1e-6)
    np.testing.assert_allclose(g[2] / g[0], 8.0, rtol=1e-5)
    np.testing.assert_allclose(g[0] * g[2], 1.0, rtol=1e-5)  # geometric about the middle


def test_gain_moves_the_rate_of_an_untrained_model(fast, tiny):
    """The step of 1 / gain alone spreads the estimated rate: more bits at higher lambda.

    The entropy model works on y / gain, so its scales grow with the gain and the coded symbols
    span more integers; with the gain switched off the same weights give one rate for all lambdas
    except for what AdaLN's small random modulation does.
    """
    x = jax.random.uniform(jax.random.key(0), (3, 64, 64, 3))
    lm = jnp.asarray([16.0, 128.0, 1024.0])

    def bits(gain: bool) -> np.ndarray:
        config = tiny("swincoder")
        config.model.lmbda.gain = gain
        codec = build_codec(config)

        def run(x, lm):
            params = codec.init(jax.random.key(1), x[:1], lm[:1], jax.random.key(2))
            out = codec.apply(params, x, lm, deterministic=True)
            return -jnp.sum(jnp.log2(out["y_likelihoods"]), axis=(1, 2, 3))

        return np.asarray(fast(run, jnp.broadcast_to(x[:1], x.shape), lm))

    with_gain, without = bits(True), bits(False)
    assert with_gain[0] < with_gain[1] < with_gain[2]
    assert with_gain[2] > 2.0 * with_gain[0]
    assert abs(without[2] / without[0] - 1.0) < 0.2


def test_sampling_bias_leans_towards_the_top_of_the_range():
    r = LmbdaRange(16.0, 1024.0, True)
    lm = np.asarray(r.sample(jax.random.key(0), 20000, bias=2.0))
    assert lm.min() >= 16.0 and lm.max() <= 1024.0 * (1 + 1e-6)
    t = (np.log(lm) - np.log(16.0)) / (np.log(1024.0) - np.log(16.0))
    # Density 2t: the top sixth gets 1 - (5/6)^2 = 30.6 % of the draws, the bottom 2.8 %.
    counts, _ = np.histogram(t, bins=6, range=(0, 1))
    assert abs(counts[-1] / lm.size - 11 / 36) < 0.02
    assert abs(counts[0] / lm.size - 1 / 36) < 0.01
    with pytest.raises(LmbdaError, match="positive"):
        r.sample(jax.random.key(0), 4, bias=0.0)
