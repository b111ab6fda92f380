"""Behaviour of g_a, g_s, h_a, h_s for the tiny config of each architecture, and of bad input."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax.layers.adaln import LambdaEmbedding
from swinjax.transforms import build_transforms, downsampling_factor, pad_image, validate_image

ARCHITECTURES = ("swincoder", "swinnpe", "swint_charm")
ODD_SIZE = (70, 45)
LMBDAS = (16.0, 1024.0)


class Transforms(nn.Module):
    """The four transforms of ``config.model`` (and the lambda embedding when variable-rate)."""

    model: Any

    def setup(self) -> None:
        t = build_transforms(self.model)
        self.g_a, self.g_s, self.h_a, self.h_s = t["g_a"], t["g_s"], t["h_a"], t["h_s"]
        if self.model.variable_rate:
            lm = self.model.lmbda
            self.lmbda_embedding = LambdaEmbedding(int(lm.embedding), float(lm.min), float(lm.max))

    def __call__(self, x, lmbda):
        """Returns ``y = g_a(x)``, ``z = h_a(y)``, ``h_s(z)`` and ``x_hat = g_s(y)``."""
        if self.model.variable_rate:
            e = self.lmbda_embedding(lmbda)
            y, x_hat_of = self.g_a(x, e), (lambda y: self.g_s(y, e))
        else:
            y, x_hat_of = self.g_a(x), self.g_s
        z = self.h_a(y)
        return {"y": y, "z": z, "hyper": self.h_s(z), "x_hat": x_hat_of(y)}


def _image(shape, seed=0):
    """A smooth random image ``[B, H, W, 3]`` in [0, 1]: random low-frequency waves plus noise."""
    b, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    f, phase = rng.uniform(0.02, 0.3, size=(2, b, 3, 2))
    waves = np.sin(f[..., 0, None, None] * yy + 6 * phase[..., 0, None, None])
    waves = waves * np.cos(f[..., 1, None, None] * xx + 6 * phase[..., 1, None, None])
    x = 0.5 + 0.4 * waves.transpose(0, 2, 3, 1) + 0.05 * rng.normal(size=(b, h, w, 3))
    return np.clip(x, 0, 1).astype(np.float32)


def _init_like_params(shapes, seed=0):
    """Parameters drawn in numpy with the distributions of the modules' initialisers.

    Compiling the real initialisers of a tiny model takes XLA 5-15 s on a 2-core machine (each
    truncated normal is a sizeable program); these tests need parameters of the right shapes and
    scales, not the exact initialisers: Dense/conv kernels lecun-normal (variance 1/fan_in), AdaLN
    modulation N(0, 0.02^2), relative position biases N(0, 0.02^2), biases 0, LayerNorm and layer
    scales 1.
    The real initialisation is exercised by :func:`test_lambda_changes_g_a_at_init`.
    """
    rng = np.random.default_rng(seed)

    def draw(path, s):
        names = [str(getattr(k, "key", k)) for k in path]
        leaf = names[-1]
        if leaf == "kernel":
            std = 0.02 if "modulation" in names else 1.0 / np.sqrt(np.prod(s.shape[:-1]))
            return (std * rng.normal(size=s.shape)).astype(s.dtype)
        if leaf == "relative_position_bias_table":
            return (0.02 * rng.normal(size=s.shape)).astype(s.dtype)
        if leaf == "bias":
            return np.zeros(s.shape, s.dtype)
        if leaf in ("scale", "layer_scale"):
            return np.ones(s.shape, s.dtype)
        raise AssertionError(f"no initialiser for parameter {'/'.join(names)}")

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def run(request, tiny, fast):
    """One architecture's tiny transforms, run once and shared by the tests below.

    * ``one``: the forward pass on a 1x1 image padded to the downsampling factor.
    * ``odd``: value and gradient of a simple loss on a 70x45 image padded likewise, as a batch of
      two copies of the image with lambda 16 and 1024.
    """
    model = tiny(request.param).model
    module = Transforms(model)
    factor = downsampling_factor(model)

    x1 = _image((1, 1, 1))
    x1_padded, pad1 = pad_image(jnp.asarray(x1), factor)
    lmbda1 = jnp.full((1,), 64.0)
    params = _init_like_params(jax.eval_shape(module.init, jax.random.key(0), x1_padded, lmbda1))
    out1 = fast(module.apply, params, x1_padded, lmbda1)

    x = np.repeat(_image((1, *ODD_SIZE)), 2, axis=0)
    x_padded, pad = pad_image(jnp.asarray(x), factor)

    def loss_fn(params, x, lmbda):
        out = module.apply(params, x, lmbda)
        # Touches every transform: distortion through g_a/g_s, a rate-like term through h_a/h_s.
        loss = jnp.mean((out["x_hat"] - x) ** 2) + 0.1 * jnp.mean(out["hyper"] ** 2)
        return loss, out

    (loss, out), grads = fast(
        jax.value_and_grad(loss_fn, has_aux=True), params, x_padded, jnp.asarray(LMBDAS)
    )
    return dict(
        name=request.param,
        model=model,
        factor=factor,
        params=params,
        grads=grads,
        loss=loss,
        one=dict(x=x1, x_padded=x1_padded, pad=pad1, out=out1),
        odd=dict(x=x, x_padded=x_padded, pad=pad, out=out),
    )


def test_downsampling_factor_is_16_for_g_a_times_4_for_h_a(run):
    assert run["factor"] == 64


@pytest.mark.parametrize("case", ["odd", "one"])
def test_g_a_downsamples_by_16(run, case):
    r = run[case]
    b, hp, wp, _ = r["x_padded"].shape
    assert hp % 64 == 0 and wp % 64 == 0
    assert r["out"]["y"].shape == (b, hp // 16, wp // 16, run["model"].latent_channels)
    assert r["out"]["z"].shape[1:3] == (hp // 64, wp // 64)
    # h_s brings the hyper-latent back to the latent grid.
    assert r["out"]["hyper"].shape[:3] == r["out"]["y"].shape[:3]


@pytest.mark.parametrize("case", ["odd", "one"])
def test_pad_g_a_g_s_crop_restores_the_image_size(run, case):
    r = run[case]
    b, h, w, _ = r["x"].shape
    hp, wp = r["x_padded"].shape[1:3]
    assert r["pad"] == (hp - h, wp - w)
    # Edge replication keeps the image in the top-left corner.
    np.testing.assert_array_equal(np.asarray(r["x_padded"])[:, :h, :w], r["x"])
    x_hat = np.asarray(r["out"]["x_hat"])
    assert x_hat.shape == r["x_padded"].shape
    assert x_hat[:, :h, :w].shape == (b, h, w, 3)
    assert np.isfinite(x_hat).all()


def test_pad_image_pads_by_edge_replication_to_the_multiple():
    x = jnp.arange(2 * 3 * 5 * 3, dtype=jnp.float32).reshape(2, 3, 5, 3)
    padded, pad = pad_image(x, 4)
    assert pad == (1, 3) and padded.shape == (2, 4, 8, 3)
    np.testing.assert_array_equal(padded[:, 3], padded[:, 2])
    np.testing.assert_array_equal(padded[:, :, 5:], np.repeat(np.asarray(padded[:, :, 4:5]), 3, 2))
    same, no_pad = pad_image(x[:, :, :4], 1)
    assert no_pad == (0, 0) and same.shape == (2, 3, 4, 3)


class LambdaConditionedAnalysis(nn.Module):
    """g_a of a variable-rate config with its lambda embedding."""

    model: Any

    def setup(self) -> None:
        lm = self.model.lmbda
        self.lmbda_embedding = LambdaEmbedding(int(lm.embedding), float(lm.min), float(lm.max))
        self.g_a = build_transforms(self.model)["g_a"]

    def __call__(self, x, lmbda):
        return self.g_a(x, self.lmbda_embedding(lmbda))


def test_lambda_changes_g_a_at_init(tiny, fast):
    """AdaLN conditions y on lambda from the real initialisation on (tiny SwinCoder)."""
    model = tiny("swincoder").model
    assert model.variable_rate
    module = LambdaConditionedAnalysis(model)
    x = np.repeat(_image((1, 32, 48)), 2, axis=0)
    y, _ = fast(
        lambda k, x, lm: module.init_with_output(k, x, lm),
        jax.random.key(0),
        x,
        jnp.asarray(LMBDAS),
    )
    y = np.asarray(y)
    assert y.shape == (2, 2, 3, model.latent_channels)
    assert np.abs(y[0] - y[1]).max() > 1e-3 * np.abs(y).max()


def test_lambda_changes_the_latent_of_the_variable_rate_model(run):
    """AdaLN conditions g_a and g_s on lambda from initialisation (SwinCoder only)."""
    y, x_hat = np.asarray(run["odd"]["out"]["y"]), np.asarray(run["odd"]["out"]["x_hat"])
    if run["model"].variable_rate:
        assert np.abs(y[0] - y[1]).max() > 1e-3 * np.abs(y).max()
        assert np.abs(x_hat[0] - x_hat[1]).max() > 0
    else:  # fixed-rate models ignore lambda: same image, same outputs
        np.testing.assert_array_equal(y[0], y[1])
        np.testing.assert_array_equal(x_hat[0], x_hat[1])


def test_gradients_through_all_transforms_are_finite_and_nonzero(run):
    assert np.isfinite(float(run["loss"]))
    leaves = jax.tree_util.tree_flatten_with_path(run["grads"]["params"])[0]
    assert leaves
    for path, g in leaves:
        g = np.asarray(g)
        name = jax.tree_util.keystr(path)
        assert np.isfinite(g).all(), f"non-finite gradient for {name}"
        assert np.any(g != 0), f"zero gradient for {name}"
    parts = set(run["grads"]["params"])
    expected = {"g_a", "g_s", "h_a", "h_s"} | (
        {"lmbda_embedding"} if run["model"].variable_rate else set()
    )
    assert parts == expected


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((1, 0, 8, 3), np.float32), "empty"),
        (np.zeros((1, 8, 0, 3), np.float32), "empty"),
        (np.zeros((0, 8, 8, 3), np.float32), "empty"),
        (np.zeros((1, 8, 8, 2), np.float32), "3 channels, got 2"),
        (np.zeros((1, 8, 8, 4), np.float32), "3 channels, got 4"),
        (np.zeros((1, 8, 8, 1), np.float32), "3 channels, got 1"),
        (np.zeros((1, 8, 8, 3), np.uint8), "dtype uint8"),
        (np.zeros((1, 8, 8, 3), np.int32), "dtype int32"),
        (np.zeros((8, 8, 3), np.float32), r"\[B, H, W, 3\].*\(8, 8, 3\)"),
        (np.zeros((1, 1, 8, 8, 3), np.float32), r"\[B, H, W, 3\]"),
        ([[0.0, 1.0]], "image array"),
    ],
)
def test_validate_image_names_the_problem(x, message):
    with pytest.raises(ValueError, match=message):
        validate_image(x)


def test_validate_image_accepts_float_rgb_batches():
    validate_image(np.zeros((2, 5, 7, 3), np.float32))
    validate_image(jnp.zeros((1, 1, 1, 3), jnp.bfloat16))


def _set(model, key, value):
    """Sets a dotted key (``g_a.heads``) of a ConfigDict."""
    *parents, last = key.split(".")
    node = model
    for p in parents:
        node = node[p]
    node[last] = value


@pytest.mark.parametrize(
    "name, key, value, message",
    [
        ("swincoder", "g_a.depths", (0, 1, 1), r"model\.g_a: .*same length.*4, 3, 4"),
        ("swincoder", "g_s.heads", (2, 1, 1), r"model\.g_s: .*same length"),
        ("swincoder", "g_a.heads", (1, 1, 3, 2), r"model\.g_a: 3 heads do not divide 32"),
        ("swinnpe", "g_s.heads", (2, 2, 3, 1), r"model\.g_s: 3 heads do not divide 16"),
        ("swinnpe", "g_a.projection", "conv", r"model\.g_a\.projection.*'conv'"),
        ("swint_charm", "hyper.h_a.projection", "dwpw", r"model\.hyper\.h_a\.projection"),
        ("swint_charm", "hyper.h_s.channels", (16,), r"model\.hyper\.h_s: .*same length"),
        ("swint_charm", "hyper.h_a.heads", (1, 5), r"model\.hyper\.h_a: 5 heads do not divide 16"),
        ("swincoder", "hyper.kind", "mlp", r"model\.hyper\.kind.*'mlp'"),
        ("swint_charm", "hyper.kind", "factorized", r"model\.hyper\.kind"),
        ("swincoder", "hyper.h_a_strides", (1, 2, 2), r"model\.hyper.*h_a_strides"),
        ("swincoder", "g_a.window", 0, r"model\.g_a\.window"),
        ("swincoder", "g_s.depths", (2, -1, 1, 0), r"model\.g_s"),
    ],
)
def test_invalid_config_raises_value_error_naming_the_key(tiny, name, key, value, message):
    model = tiny(name).model
    _set(model, key, value)
    with pytest.raises(ValueError, match=message):
        build_transforms(model)


@pytest.mark.parametrize(
    "name, changes, message",
    [
        ("swinnpe", {"g_a.kv_stride": 3}, r"model\.g_a\.kv_stride"),
        # strided K/V needs convolutional projections and no relative position bias
        ("swint_charm", {"g_s.kv_stride": 2}, r"model\.g_s\.kv_stride"),
        (
            "swinnpe",
            {"hyper.h_a.kv_stride": 2, "hyper.h_a.relative_position_bias": True},
            r"model\.hyper\.h_a\.kv_stride",
        ),
        # g_s must upsample as often as g_a downsamples, h_s as often as h_a
        (
            "swincoder",
            {"g_s.channels": (32, 16, 8), "g_s.depths": (2, 1, 0), "g_s.heads": (2, 1, 1)},
            r"model\.g_s.*model\.g_a",
        ),
        (
            "swint_charm",
            {"hyper.h_s.channels": (16,), "hyper.h_s.depths": (1,), "hyper.h_s.heads": (1,)},
            r"model\.hyper\.h_s.*model\.hyper\.h_a",
        ),
        ("swincoder", {"hyper.h_a_strides": (1, 1, 3, 1, 2)}, r"model\.hyper\.h_a_strides"),
        ("swincoder", {"hyper.h_s_upsample": (1, 2, 1, 1, 1)}, r"model\.hyper\.h_s_upsample"),
    ],
)
def test_inconsistent_config_is_reported_by_build_transforms(tiny, name, changes, message):
    """Settings that would otherwise fail later as a shape error deep inside a trace."""
    model = tiny(name).model
    for key, value in changes.items():
        _set(model, key, value)
    with pytest.raises(ValueError, match=message):
        build_transforms(model)
