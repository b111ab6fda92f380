"""Real-ESRGAN U-Net discriminator with spectral normalisation (swinjax.models.discriminator)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax.models.discriminator import Discriminator, UNetDiscriminatorSN
from swinjax.perceptual_losses import d_loss, g_adv_loss

F = 8  # num_feat in tests (Real-ESRGAN: 64); the architecture is otherwise the published one
SN_CONVS = [f"conv{k}" for k in range(1, 9)]


def _x(seed=0, shape=(2, 16, 24, 3)):
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


@pytest.fixture(scope="session")
def disc():
    return UNetDiscriminatorSN(num_feat=F)


@pytest.fixture(scope="session")
def variables(disc, compiled):
    init = lambda key: disc.init(key, jnp.zeros((1, 8, 8, 3)), update_stats=False)  # noqa: E731
    return compiled(init, jax.random.key(0))(jax.random.key(0))


@pytest.fixture(scope="session")
def evaluate(disc, variables, compiled):
    """``(variables, x[2, 16, 24, 3]) -> logits``, compiled once (evaluation mode)."""
    fn = lambda v, x: disc.apply(v, x, update_stats=False)  # noqa: E731
    return compiled(fn, variables, _x())


@pytest.fixture(scope="session")
def converged(disc, variables):
    """Variables after 300 training-mode calls: the stored power-iteration vectors have converged.

    Flax's default (LeCun) init gives kernels whose top singular values are close (sigma_2 /
    sigma_1 up to ~0.99 here), so one power step per call needs a few hundred calls to settle.
    """
    x = jnp.zeros((1, 8, 8, 3))  # the stats do not depend on the input

    def body(_, stats):
        v = {"params": variables["params"], "batch_stats": stats}
        return disc.apply(v, x, update_stats=True, mutable=["batch_stats"])[1]["batch_stats"]

    stats = jax.jit(lambda s: jax.lax.fori_loop(0, 300, body, s))(variables["batch_stats"])
    return {"params": variables["params"], "batch_stats": stats}


def _sigma_max(kernel):
    k = np.asarray(kernel, np.float64)
    return np.linalg.svd(k.reshape(-1, k.shape[-1]), compute_uv=False)[0]


def test_architecture_is_real_esrgans_with_sn_on_all_but_first_and_last():
    v = jax.eval_shape(
        lambda: Discriminator().init(
            jax.random.key(0), jnp.zeros((1, 32, 32, 3)), update_stats=False
        )
    )
    shapes = {k: {n: a.shape for n, a in p.items()} for k, p in v["params"].items()}
    assert shapes == {
        "conv0": {"kernel": (3, 3, 3, 64), "bias": (64,)},
        "conv1": {"kernel": (4, 4, 64, 128)},
        "conv2": {"kernel": (4, 4, 128, 256)},
        "conv3": {"kernel": (4, 4, 256, 512)},
        "conv4": {"kernel": (3, 3, 512, 256)},
        "conv5": {"kernel": (3, 3, 256, 128)},
        "conv6": {"kernel": (3, 3, 128, 64)},
        "conv7": {"kernel": (3, 3, 64, 64)},
        "conv8": {"kernel": (3, 3, 64, 64)},
        "conv9": {"kernel": (3, 3, 64, 1), "bias": (1,)},
    }
    assert sorted(v["batch_stats"]) == sorted(f"sn_{c}" for c in SN_CONVS)


def test_output_is_a_per_pixel_logit_map(evaluate, variables):
    x = _x()
    out = evaluate(variables, x)
    assert out.shape == (2, 16, 24, 1)
    assert np.all(np.isfinite(out))
    assert float(jnp.std(out)) > 0  # not a constant map


@pytest.mark.parametrize("shape", [(1, 20, 24, 3), (1, 16, 12, 3)])
def test_sizes_that_are_not_multiples_of_8_are_rejected(disc, variables, shape):
    with pytest.raises(ValueError, match="multiples of 8"):
        disc.apply(variables, jnp.zeros(shape), update_stats=False)


def test_spectral_state_changes_only_with_update_stats(disc, variables, compiled):
    x = _x()

    def run(update):
        fn = lambda v, x: disc.apply(v, x, update_stats=update, mutable=["batch_stats"])  # noqa: E731
        return compiled(fn, variables, x)(variables, x)[1]

    kept, updated = run(False), run(True)
    for name in SN_CONVS:
        before = variables["batch_stats"][f"sn_{name}"]
        np.testing.assert_array_equal(
            kept["batch_stats"][f"sn_{name}"][f"{name}/kernel/u"], before[f"{name}/kernel/u"]
        )
        np.testing.assert_array_equal(
            kept["batch_stats"][f"sn_{name}"][f"{name}/kernel/sigma"],
            before[f"{name}/kernel/sigma"],
        )
        assert not np.allclose(
            updated["batch_stats"][f"sn_{name}"][f"{name}/kernel/u"], before[f"{name}/kernel/u"]
        )


def test_power_iteration_gives_each_normalised_kernel_unit_spectral_norm(converged):
    for name in SN_CONVS:
        kernel = converged["params"][name]["kernel"]
        sigma = float(converged["batch_stats"][f"sn_{name}"][f"{name}/kernel/sigma"])
        # the kernel the conv uses is kernel / sigma: its largest singular value is ~1
        np.testing.assert_allclose(_sigma_max(kernel) / sigma, 1.0, rtol=1e-3, err_msg=name)
        assert abs(sigma - 1.0) > 0.05  # the raw kernel was not unit-norm: real normalisation


def test_normalised_layers_ignore_kernel_scale_and_the_first_conv_does_not(evaluate, converged):
    x = _x(2)
    ref = evaluate(converged, x)

    def scaled(name, factor):
        params = dict(converged["params"])
        params[name] = {**params[name], "kernel": params[name]["kernel"] * factor}
        return {"params": params, "batch_stats": converged["batch_stats"]}

    np.testing.assert_allclose(evaluate(scaled("conv3", 7.0), x), ref, rtol=1e-4, atol=1e-5)
    assert not np.allclose(evaluate(scaled("conv0", 7.0), x), ref, rtol=1e-3)


def test_gradients_of_both_gan_losses_are_finite_and_nonzero(fast, disc, converged):
    real, fake = jnp.asarray(_x(3)), jnp.asarray(_x(4))

    def losses(params, fake):
        v = {"params": params, "batch_stats": converged["batch_stats"]}
        r = disc.apply(v, real, update_stats=False)
        f = disc.apply(v, fake, update_stats=False)
        return jnp.mean(d_loss(r, f)), jnp.mean(g_adv_loss(f))

    def both(params, fake):
        d_grads = jax.grad(lambda p: losses(p, jax.lax.stop_gradient(fake))[0])(params)
        return d_grads, jax.grad(lambda f: losses(params, f)[1])(fake)

    d_grads, g_grad_fake = fast(both, converged["params"], fake)
    for g in jax.tree_util.tree_leaves(d_grads) + [g_grad_fake]:
        assert np.all(np.isfinite(g)) and float(jnp.max(jnp.abs(g))) > 0


def test_matches_a_torch_transcription_with_exact_spectral_norm(evaluate, converged):
    """Real-ESRGAN's forward (BasicSR UNetDiscriminatorSN) in torch, W / sigma_max(W) by SVD."""
    torch = pytest.importorskip("torch", reason="torch (CPU) not installed: reference test skips")
    tf = torch.nn.functional
    x = _x(5)
    p = converged["params"]

    def w(name, sn):
        k = torch.from_numpy(np.array(p[name]["kernel"]).transpose(3, 2, 0, 1).copy())  # OIHW
        if sn:
            k = k / torch.linalg.matrix_norm(k.reshape(k.shape[0], -1), ord=2)
        return k

    def b(name):
        return torch.from_numpy(np.array(p[name]["bias"]))

    lrelu = lambda v: tf.leaky_relu(v, 0.2)  # noqa: E731
    up = lambda v: tf.interpolate(v, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
    with torch.no_grad():
        t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        x0 = lrelu(tf.conv2d(t, w("conv0", False), b("conv0"), padding=1))
        x1 = lrelu(tf.conv2d(x0, w("conv1", True), stride=2, padding=1))
        x2 = lrelu(tf.conv2d(x1, w("conv2", True), stride=2, padding=1))
        x3 = lrelu(tf.conv2d(x2, w("conv3", True), stride=2, padding=1))
        x4 = lrelu(tf.conv2d(up(x3), w("conv4", True), padding=1)) + x2
        x5 = lrelu(tf.conv2d(up(x4), w("conv5", True), padding=1)) + x1
        x6 = lrelu(tf.conv2d(up(x5), w("conv6", True), padding=1)) + x0
        out = lrelu(tf.conv2d(x6, w("conv7", True), padding=1))
        out = lrelu(tf.conv2d(out, w("conv8", True), padding=1))
        out = tf.conv2d(out, w("conv9", False), b("conv9"), padding=1)
    want = out.numpy().transpose(0, 2, 3, 1)
    got = np.asarray(evaluate(converged, x))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
