"""JAX entropy models: causality, one-pass = sequential, likelihoods, quantization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax.entropy.charm import ChARM
from swinjax.entropy.factorized import FactorizedPrior
from swinjax.entropy.gaussian import gaussian_likelihood, lower_bound, scale_index, scale_table
from swinjax.entropy.grouped import MaskedGroupedModel, token_groups
from swinjax.entropy.quantization import dequantize, quantize


def _grouped(h=6, w=10, c=8):
    model = MaskedGroupedModel(latent_channels=c, dim=16, num_heads=2, window=4, mlp_ratio=2.0)
    hyper = jax.random.normal(jax.random.key(0), (1, h, w, 12))
    y = jax.random.normal(jax.random.key(1), (1, h, w, c)) * 3
    params = model.init(jax.random.key(2), hyper, y)
    return model, params, hyper, y


def test_grouped_params_of_group_k_ignore_groups_at_or_after_k():
    model, params, hyper, y = _grouped()
    masks = model.apply(params, 6, 10, method=model.group_masks)
    for k in range(4):
        mu, scale = model.apply(params, hyper, y, k, method=model.group_params)
        later = np.any(masks[k:], axis=0)
        y2 = jnp.where(later, y + 100.0 * jax.random.normal(jax.random.key(k), y.shape), y)
        mu2, scale2 = model.apply(params, hyper, y2, k, method=model.group_params)
        np.testing.assert_array_equal(np.asarray(mu)[0][masks[k]], np.asarray(mu2)[0][masks[k]])
        np.testing.assert_array_equal(
            np.asarray(scale)[0][masks[k]], np.asarray(scale2)[0][masks[k]]
        )
        if k > 0:  # and earlier groups do matter
            earlier = np.any(masks[:k], axis=0)
            y3 = jnp.where(earlier, y + 5.0, y)
            mu3, _ = model.apply(params, hyper, y3, k, method=model.group_params)
            assert not np.allclose(np.asarray(mu)[0][masks[k]], np.asarray(mu3)[0][masks[k]])


def test_grouped_one_pass_equals_sequential():
    model, params, hyper, y = _grouped()
    masks = model.apply(params, 6, 10, method=model.group_masks)
    mu_all, scale_all = model.apply(params, hyper, y, method=model.one_pass_params)
    for k in range(4):
        mu, scale = model.apply(params, hyper, y, k, method=model.group_params)
        np.testing.assert_allclose(
            np.asarray(mu)[0][masks[k]], np.asarray(mu_all)[0][masks[k]], rtol=0, atol=1e-6
        )
        np.testing.assert_allclose(
            np.asarray(scale)[0][masks[k]], np.asarray(scale_all)[0][masks[k]], rtol=0, atol=1e-6
        )


def test_grouped_groups_partition_the_latent_in_checkerboard_order():
    g = token_groups(4, 4)
    assert g[0, 0, 0] == 0 and g[0, 0, 1] == 1 and g[0, 1, 0] == 2 and g[0, 1, 1] == 3
    model, params, _, _ = _grouped()
    masks = model.apply(params, 6, 10, method=model.group_masks)
    np.testing.assert_array_equal(masks.sum(axis=0), 1)
    assert [int(m.sum()) for m in masks] == [6 * 10 * 4 // 2] * 4


def test_charm_slice_depends_only_on_earlier_slices():
    model = ChARM(latent_channels=20, num_slices=5, max_support_slices=-1, lrp=True)
    hyper = jax.random.normal(jax.random.key(0), (1, 5, 7, 40))
    y = jax.random.normal(jax.random.key(1), (1, 5, 7, 20))
    params = model.init(jax.random.key(2), hyper, y)
    masks = model.apply(params, 5, 7, method=model.group_masks)
    for k in range(5):
        mu, _ = model.apply(params, hyper, y, k, method=model.group_params)
        y2 = jnp.where(np.any(masks[k:], 0), y * 7 + 1, y)
        mu2, _ = model.apply(params, hyper, y2, k, method=model.group_params)
        np.testing.assert_array_equal(np.asarray(mu)[0][masks[k]], np.asarray(mu2)[0][masks[k]])


def test_charm_lrp_changes_only_the_filled_slice():
    model = ChARM(latent_channels=20, num_slices=5, lrp=True)
    hyper = jax.random.normal(jax.random.key(0), (1, 4, 4, 40))
    y = jnp.zeros((1, 4, 4, 20))
    params = model.init(jax.random.key(2), hyper, y)
    v = jnp.ones((1, 4, 4, 20))
    out = model.apply(params, hyper, y, 2, v, method=model.fill_group)
    out = np.asarray(out)
    assert np.all(out[..., :8] == 0) and np.all(out[..., 12:] == 0)
    lrp = out[..., 8:12] - 1.0
    assert np.all(np.abs(lrp) <= 0.5) and np.any(lrp != 0)


def test_quantize_modes_share_offsets():
    x = jnp.array([0.2, 0.7, -1.6, 2.5])
    off = jnp.array([0.5, 0.5, -0.3, 0.1])
    sym = quantize(x, "symbols", off)
    assert sym.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(sym), np.round(np.asarray(x - off)))
    np.testing.assert_allclose(
        np.asarray(dequantize(sym, off)), np.asarray(quantize(x, "dequantize", off))
    )
    g = jax.grad(lambda v: jnp.sum(quantize(v, "ste", off) ** 2))(x)
    np.testing.assert_allclose(np.asarray(g), 2 * np.asarray(quantize(x, "dequantize", off)))
    n = quantize(x, "noise", key=jax.random.key(0))
    assert np.all(np.abs(np.asarray(n - x)) <= 0.5)
    with pytest.raises(ValueError, match="PRNG key"):
        quantize(x, "noise")


def test_gaussian_likelihood_sums_to_one_and_is_bounded():
    values = jnp.arange(-60, 61, dtype=jnp.float32)
    for mean, scale in [(0.0, 0.11), (0.3, 1.0), (-2.2, 7.5)]:
        p = gaussian_likelihood(values, mean, jnp.float32(scale))
        assert abs(float(jnp.sum(p)) - 1.0) < 1e-4
        assert float(jnp.min(p)) >= np.float32(1e-9)


def test_lower_bound_gradient_passes_when_it_pushes_up():
    g = jax.grad(lambda s: -lower_bound(s, 0.11))(jnp.float32(0.01))  # descent increases s
    assert float(g) == -1.0
    g = jax.grad(lambda s: lower_bound(s, 0.11))(jnp.float32(0.01))  # descent decreases s: stop
    assert float(g) == 0.0


def test_scale_index_picks_the_table_entry_at_or_above():
    t = scale_table()
    assert t.shape == (64,) and t[0] == np.float32(0.11) and abs(t[-1] - 256) < 1e-3
    s = jnp.array([0.01, t[0], t[5] * 1.0001, t[-1] * 2])
    np.testing.assert_array_equal(np.asarray(scale_index(s, t)), [0, 0, 6, 63])


def test_factorized_prior_integrates_to_one_and_quantiles_train():
    prior = FactorizedPrior(channels=3)
    params = prior.init(jax.random.key(0), jnp.zeros((1, 3)), method=prior.likelihood)
    grid = jnp.arange(-80, 81, dtype=jnp.float32)[:, None] * jnp.ones((1, 3))
    total = jnp.sum(prior.apply(params, grid, method=prior.likelihood), axis=0)
    np.testing.assert_allclose(np.asarray(total), 1.0, atol=1e-3)
    aux = lambda p: prior.apply(p, method=prior.aux_loss)  # noqa: E731
    grads = jax.grad(aux)(params)["params"]
    assert float(jnp.abs(grads["quantiles"]).sum()) > 0
    assert all(float(jnp.abs(v).sum()) == 0 for k, v in grads.items() if k != "quantiles")
    t = prior.apply(params, method=prior.table_inputs)
    assert np.all(np.asarray(t["length"]) >= 1)
    # The escape symbol gets exactly the mass that the table rows leave out.
    covered = np.asarray(t["pmf"]).sum(axis=1) + np.asarray(t["tail_mass"])
    np.testing.assert_allclose(covered, 1.0, atol=1e-4)


def test_factorized_prior_rate_gradient_flows_below_the_likelihood_bound():
    # A value far in the tail: its likelihood is floored at likelihood_bound, but the rate must
    # still pull the density towards it (a plain jnp.maximum gave exactly zero gradients here).
    prior = FactorizedPrior(channels=2)
    params = prior.init(jax.random.key(0), jnp.zeros((1, 2)), method=prior.likelihood)
    x = jnp.full((1, 2), 220.0)
    lik = prior.apply(params, x, method=prior.likelihood)
    np.testing.assert_array_equal(np.asarray(lik), np.float32(prior.likelihood_bound))

    def rate(values, p):
        return jnp.sum(-jnp.log2(prior.apply(p, values, method=prior.likelihood)))

    g_x, g_p = jax.grad(rate, argnums=(0, 1))(x, params)
    assert np.all(np.isfinite(np.asarray(g_x))) and np.all(np.asarray(g_x) != 0)
    g_p = g_p["params"]
    for name in ("matrix0", "bias0", "factor0"):
        assert np.all(np.isfinite(np.asarray(g_p[name])))
        assert float(jnp.abs(g_p[name]).sum()) > 0, name
    assert float(jnp.abs(g_p["quantiles"]).sum()) == 0  # the rate never moves the quantiles
