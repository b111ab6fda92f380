"""VGG features and weights files, perceptual/style/GAN losses, LPIPS and DISTS.

Weights files are generated here (random, He-initialised); nothing is downloaded. The tests that
compare with PyTorch transcriptions of the authors' formulas are skipped when torch is absent.
"""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax import perceptual as P
from swinjax.models import vgg as V
from swinjax.perceptual_losses import (
    REAL_ESRGAN_LAYER_WEIGHTS,
    d_loss,
    g_adv_loss,
    gram_matrix,
    perceptual_loss,
    style_loss,
    vgg_feature_losses,
)

TEST_WIDTH = 8  # the VGG architecture at 1/8 of the channels: same code paths, fast compiles
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _converter():
    spec = importlib.util.spec_from_file_location(
        "convert_torch_weights", ROOT / "scripts" / "convert_torch_weights.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _image(seed, size=32, batch=2):
    """Smooth random images in [0, 1]: low-resolution noise upsampled, plus fine texture."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(size=(batch, size // 8, size // 8, 3))
    x = np.repeat(np.repeat(low, 8, axis=1), 8, axis=2)
    x = 0.8 * x + 0.2 * rng.uniform(size=x.shape)
    return x.astype(np.float32)


def _noisy(x, sigma, seed=1):
    n = np.random.default_rng(seed).standard_normal(x.shape)
    return np.clip(x + sigma * n, 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    np.savez(d / "vgg19.npz", **V.random_vgg_arrays(19, TEST_WIDTH, seed=0))
    np.savez(d / "lpips.npz", **P.random_lpips_arrays(TEST_WIDTH, seed=0))
    np.savez(d / "dists.npz", **P.random_dists_arrays(TEST_WIDTH, seed=0))
    return d


@pytest.fixture(scope="session")
def vgg19_params(weights_dir):
    return V.load_vgg19(weights_dir / "vgg19.npz", width=TEST_WIDTH)


# ----------------------------------------------------------------------------- loading


def test_load_vgg19_missing_file_names_the_file_and_the_conversion_script(tmp_path):
    missing = tmp_path / "nowhere" / "vgg19.npz"
    with pytest.raises(FileNotFoundError) as e:
        V.load_vgg19(missing)
    assert str(missing) in str(e.value)
    assert "convert_torch_weights.py" in str(e.value)
    assert not V.vgg19_available(missing) and not V.vgg19_available(None)
    with pytest.raises(FileNotFoundError, match="no VGG19 weights file was given"):
        V.load_vgg19(None)


def test_load_vgg19_names_a_missing_entry(tmp_path):
    arrays = V.random_vgg_arrays(19, TEST_WIDTH)
    del arrays["conv3_4/kernel"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(V.WeightsFormatError, match="conv3_4/kernel"):
        V.load_vgg19(tmp_path / "partial.npz", width=TEST_WIDTH)


def test_load_vgg19_names_a_misshaped_entry(tmp_path):
    arrays = V.random_vgg_arrays(19, TEST_WIDTH)
    arrays["conv2_1/kernel"] = arrays["conv2_1/kernel"].transpose(3, 2, 0, 1)  # OIHW by mistake
    np.savez(tmp_path / "oihw.npz", **arrays)
    with pytest.raises(V.WeightsFormatError, match=r"conv2_1/kernel.*\(16, 8, 3, 3\)"):
        V.load_vgg19(tmp_path / "oihw.npz", width=TEST_WIDTH)


def test_a_vgg16_file_is_not_accepted_as_vgg19(weights_dir):
    with pytest.raises(V.WeightsFormatError, match="conv3_4"):
        V.load_vgg19(weights_dir / "lpips.npz", width=TEST_WIDTH)


def test_a_file_that_is_not_npz_is_reported(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip archive")
    with pytest.raises(V.WeightsFormatError, match="not a readable .npz"):
        V.load_vgg19(tmp_path / "junk.npz")


def test_lpips_and_dists_loaders_name_missing_head_entries(tmp_path, weights_dir):
    assert P.lpips_available(weights_dir / "lpips.npz")
    assert not P.dists_available(tmp_path / "absent.npz") and not P.dists_available("")
    arrays = P.random_lpips_arrays(TEST_WIDTH)
    del arrays["lin3/kernel"]
    np.savez(tmp_path / "l.npz", **arrays)
    with pytest.raises(V.WeightsFormatError, match="lin3/kernel"):
        P.load_lpips(tmp_path / "l.npz", width=TEST_WIDTH)
    arrays = P.random_dists_arrays(TEST_WIDTH)
    arrays["beta"] = arrays["beta"][:-1]
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(V.WeightsFormatError, match="'beta'"):
        P.load_dists(tmp_path / "d.npz", width=TEST_WIDTH)
    with pytest.raises(FileNotFoundError, match="convert_torch_weights"):
        P.load_dists(tmp_path / "absent.npz")


def test_full_width_shapes_are_torchvision_vgg19():
    shapes = V.param_shapes(19, 64)
    assert len(shapes) == 32  # 16 convs
    assert shapes["conv1_1/kernel"] == (3, 3, 3, 64)
    assert shapes["conv3_4/kernel"] == (3, 3, 256, 256)
    assert shapes["conv5_4/kernel"] == (3, 3, 512, 512)
    n = sum(int(np.prod(s)) for s in shapes.values())
    assert n == 20_024_384  # parameters of torchvision's vgg19().features
    idx = V.torchvision_feature_index(19)
    assert (idx["conv1_1"], idx["conv2_1"], idx["conv3_4"], idx["conv5_4"]) == (0, 5, 16, 34)
    assert V.torchvision_feature_index(16)["conv5_3"] == 28


# ----------------------------------------------------------------------------- VGG features


def _np_conv3x3(x, kernel, bias):
    """Plain numpy 3x3 'same' convolution (cross-correlation, as in torch/Flax), NHWC/HWIO."""
    b, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((b, h, w, kernel.shape[-1]), np.float64)
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("bhwi,io->bhwo", xp[:, dy : dy + h, dx : dx + w], kernel[dy, dx])
    return out + bias


def test_vgg19_features_from_a_file_match_a_numpy_forward(fast, weights_dir, vgg19_params):
    x = _image(0, size=16)
    layers = ("conv1_1", "relu1_2", "pool1", "relu2_2", "relu5_4")
    net = V.VGG19Features(layers=layers, width=TEST_WIDTH)
    feats = fast(lambda p, v: net.apply({"params": p}, v), vgg19_params, x)
    assert set(feats) == set(layers)
    assert feats["relu1_2"].shape == (2, 16, 16, 8)
    assert feats["pool1"].shape == (2, 8, 8, 8)
    assert feats["relu5_4"].shape == (2, 1, 1, 64)
    # The first two layers by hand: ImageNet normalisation, HWIO layout, bias, ReLU, 2x2 max pool.
    a = np.load(weights_dir / "vgg19.npz")
    xn = (x - np.array(V.IMAGENET_MEAN)) / np.array(V.IMAGENET_STD)
    c11 = _np_conv3x3(xn, a["conv1_1/kernel"], a["conv1_1/bias"])
    np.testing.assert_allclose(feats["conv1_1"], c11, rtol=1e-4, atol=1e-4)
    r12 = np.maximum(_np_conv3x3(np.maximum(c11, 0), a["conv1_2/kernel"], a["conv1_2/bias"]), 0)
    np.testing.assert_allclose(feats["relu1_2"], r12, rtol=1e-4, atol=1e-4)
    pool = r12.reshape(2, 8, 2, 8, 2, 8).max(axis=(2, 4))
    np.testing.assert_allclose(feats["pool1"], pool, rtol=1e-4, atol=1e-4)


def test_vgg_rejects_unknown_layer_names(vgg19_params):
    with pytest.raises(ValueError, match="relu3_3x"):
        V.VGG19Features(layers=("relu3_3x",), width=TEST_WIDTH).apply(
            {"params": vgg19_params}, jnp.zeros((1, 16, 16, 3))
        )
    with pytest.raises(ValueError, match="conv5_4"):  # a VGG19 name is not a VGG16 layer
        V.VGG16Features(layers=("conv5_4",)).init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))


def test_converter_maps_torchvision_layout_to_the_file_format(tmp_path):
    conv = _converter()
    arrays = V.random_vgg_arrays(19, TEST_WIDTH, seed=3)
    state = {}  # torchvision layout: features.{i}.weight OIHW
    for name, i in V.torchvision_feature_index(19).items():
        state[f"features.{i}.weight"] = arrays[f"{name}/kernel"].transpose(3, 2, 0, 1)
        state[f"features.{i}.bias"] = arrays[f"{name}/bias"]
    state["classifier.0.weight"] = np.zeros((4, 4), np.float32)  # ignored
    out = conv.convert("vgg19", state, None)
    conv.save_npz(out, str(tmp_path / "vgg19.npz"))
    params = V.load_vgg19(tmp_path / "vgg19.npz", width=TEST_WIDTH)
    for name in V.conv_names(19):
        np.testing.assert_array_equal(params[name]["kernel"], arrays[f"{name}/kernel"])
    del state["features.25.bias"]  # conv4_4
    with pytest.raises(KeyError, match="index 25"):
        conv.convert("vgg19", state, None)


# ----------------------------------------------------------------------------- losses


def _feats(seed, shapes):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}


SHAPES = {"a": (2, 4, 4, 3), "b": (2, 2, 2, 5)}


def test_perceptual_loss_is_weighted_mse_per_layer_and_example():
    fx, fy = _feats(0, SHAPES), _feats(1, SHAPES)
    got = perceptual_loss(fx, fy, {"a": 0.5, "b": 2.0})
    assert got.shape == (2,)
    want = 0.5 * np.mean((np.asarray(fy["a"]) - np.asarray(fx["a"])) ** 2, axis=(1, 2, 3))
    want += 2.0 * np.mean((np.asarray(fy["b"]) - np.asarray(fx["b"])) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    l1 = perceptual_loss(fx, fy, {"a": 1.0}, criterion="l1")
    np.testing.assert_allclose(l1, np.mean(np.abs(fy["a"] - fx["a"]), axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_array_equal(perceptual_loss(fx, fx, {"a": 1.0, "b": 1.0}), 0.0)
    with pytest.raises(ValueError, match="'c'"):
        perceptual_loss(fx, fy, {"c": 1.0})


def test_gram_matrix_is_normalised_by_chw():
    f = np.random.default_rng(0).standard_normal((1, 3, 5, 4)).astype(np.float32)
    g = gram_matrix(jnp.asarray(f))
    flat = f.reshape(15, 4)
    np.testing.assert_allclose(g[0], flat.T @ flat / (4 * 3 * 5), rtol=1e-5)


def test_style_loss_ignores_where_features_are_and_perceptual_loss_does_not():
    fx = _feats(0, SHAPES)
    # the same features at permuted positions: same texture statistics, different layout
    perm = {k: v[:, ::-1, ::-1, :] for k, v in fx.items()}
    w = {"a": 1.0, "b": 1.0}
    np.testing.assert_allclose(style_loss(fx, perm, w), 0.0, atol=1e-7)
    assert np.all(perceptual_loss(fx, perm, w) > 0.1)
    fy = _feats(1, SHAPES)
    g = lambda v: np.asarray(gram_matrix(v))  # noqa: E731
    want = np.mean((g(fy["a"]) - g(fx["a"])) ** 2, axis=(1, 2)) * 1.0
    want += np.mean((g(fy["b"]) - g(fx["b"])) ** 2, axis=(1, 2))
    np.testing.assert_allclose(style_loss(fx, fy, w), want, rtol=1e-5)


def test_gan_losses_are_bce_with_logits_and_non_saturating():
    real = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 4, 1)), jnp.float32)
    fake = jnp.asarray(np.random.default_rng(1).standard_normal((2, 4, 4, 1)), jnp.float32)
    sig = lambda v: 1 / (1 + np.exp(-np.asarray(v, np.float64)))  # noqa: E731
    want_d = -np.mean(np.log(sig(real)), axis=(1, 2, 3)) - np.mean(
        np.log(1 - sig(fake)), axis=(1, 2, 3)
    )
    np.testing.assert_allclose(d_loss(real, fake), want_d, rtol=1e-5)
    np.testing.assert_allclose(
        g_adv_loss(fake), -np.mean(np.log(sig(fake)), axis=(1, 2, 3)), rtol=1e-5
    )
    zeros = jnp.zeros((1, 2, 2, 1))
    np.testing.assert_allclose(d_loss(zeros, zeros), 2 * np.log(2), rtol=1e-6)
    # Non-saturating: a confidently rejected fake (logit -20) still gets a full-size gradient
    # (-1 per pixel / N), where the saturating log(1 - D) form gives ~exp(-20).
    grad = jax.grad(lambda v: g_adv_loss(v).sum())(jnp.full((1, 2, 2, 1), -20.0))
    np.testing.assert_allclose(grad, -0.25, rtol=1e-6)
    # D's loss falls as it separates real (up) from fake (down).
    assert float(d_loss(real + 3, fake - 3).mean()) < float(d_loss(real, fake).mean())


def test_vgg_feature_losses_train_only_x_hat(fast, vgg19_params):
    layers = tuple(REAL_ESRGAN_LAYER_WEIGHTS)
    net = V.VGG19Features(layers=layers, width=TEST_WIDTH)
    x = jnp.asarray(_image(0, size=16))
    x_hat = jnp.asarray(_noisy(np.asarray(x), 0.1))

    def total(params, x, x_hat):
        per, style = vgg_feature_losses(net, params, x, x_hat, REAL_ESRGAN_LAYER_WEIGHTS)
        return jnp.mean(per + 0.1 * style), (per, style)

    grads, (per, style) = fast(
        jax.grad(total, argnums=(0, 1, 2), has_aux=True), vgg19_params, x, x_hat
    )
    g_params, g_x, g_x_hat = grads
    assert per.shape == style.shape == (2,)
    assert np.all(np.asarray(per) > 0) and np.all(np.asarray(style) > 0)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree_util.tree_leaves(g_params))
    assert float(jnp.max(jnp.abs(g_x))) == 0.0  # the target's features are constants
    assert np.all(np.isfinite(g_x_hat)) and float(jnp.max(jnp.abs(g_x_hat))) > 0
    per0, style0 = fast(
        lambda p, a: vgg_feature_losses(net, p, a, a, REAL_ESRGAN_LAYER_WEIGHTS), vgg19_params, x
    )
    np.testing.assert_allclose(per0, 0.0, atol=1e-10)
    np.testing.assert_allclose(style0, 0.0, atol=1e-10)


# ----------------------------------------------------------------------------- LPIPS / DISTS


@pytest.fixture(scope="session")
def lpips_params(weights_dir):
    return P.load_lpips(weights_dir / "lpips.npz", width=TEST_WIDTH)


@pytest.fixture(scope="session")
def dists_params(weights_dir):
    return P.load_dists(weights_dir / "dists.npz", width=TEST_WIDTH)


def test_lpips_is_zero_on_identical_images_symmetric_and_grows_with_noise(lpips_params):
    x = _image(2, size=32)
    np.testing.assert_allclose(P.lpips(lpips_params, x, x), 0.0, atol=1e-7)
    y = _noisy(x, 0.05)
    np.testing.assert_allclose(P.lpips(lpips_params, x, y), P.lpips(lpips_params, y, x), rtol=1e-5)
    scores = [np.asarray(P.lpips(lpips_params, x, _noisy(x, s))) for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(np.all(a < b) for a, b in zip(scores, scores[1:], strict=False)), scores
    with pytest.raises(ValueError, match="at least 16x16"):
        P.lpips(lpips_params, x[:, :8, :8], x[:, :8, :8])


def test_dists_is_zero_on_identical_images_symmetric_and_grows_with_noise(dists_params):
    x = _image(3, size=32)
    np.testing.assert_allclose(P.dists(dists_params, x, x), 0.0, atol=1e-5)
    y = _noisy(x, 0.05)
    np.testing.assert_allclose(P.dists(dists_params, x, y), P.dists(dists_params, y, x), rtol=1e-5)
    scores = [np.asarray(P.dists(dists_params, x, _noisy(x, s))) for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(np.all(a < b) for a, b in zip(scores, scores[1:], strict=False)), scores
    assert np.all(scores[-1] < 1.0)


# ----------------------------------------------------------------------------- torch references
# Independent PyTorch transcriptions of the published definitions (torchvision's VGG layout,
# lpips 0.1's LPIPS.forward, DISTS_pt.py's DISTS.forward), fed the *torch-layout* weights; the
# JAX side reads the same weights through the converter and the .npz loaders.

TORCHVISION_CFG = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"]
    + [512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _torch_state(depth, width, seed):
    """A random torchvision-layout ``features`` state dict (numpy, OIHW), He-initialised."""
    rng = np.random.default_rng(seed)
    state, c_in, i = {}, 3, 0
    for v in TORCHVISION_CFG[depth]:
        if v == "M":
            i += 1
            continue
        c_out = v * width // 64
        fan_in = 9 * c_in
        w = rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2 / fan_in)
        state[f"features.{i}.weight"] = w.astype(np.float32)
        state[f"features.{i}.bias"] = (0.01 * rng.standard_normal(c_out)).astype(np.float32)
        c_in, i = c_out, i + 2
    return state


def _torch_features(torch, state, depth, x, taps, pool):
    """Runs torchvision's ``features`` sequence on NCHW ``x``; returns the outputs at ``taps``."""
    F = torch.nn.functional
    outs, i, h = {}, 0, x
    for v in TORCHVISION_CFG[depth]:
        if v == "M":
            h = pool(h)
            if i in taps:
                outs[i] = h
            i += 1
            continue
        w = torch.from_numpy(state[f"features.{i}.weight"])
        b = torch.from_numpy(state[f"features.{i}.bias"])
        h = F.conv2d(h, w, b, padding=1)
        if i in taps:
            outs[i] = h
        h = F.relu(h)
        if i + 1 in taps:
            outs[i + 1] = h
        i += 2
        if i > max(taps):
            break
    return [outs[t] for t in taps]


def _torch_l2pool(torch, h):
    a = np.hanning(5)[1:-1]
    g = a[:, None] * a[None, :]
    g = torch.from_numpy((g / g.sum()).astype(np.float32))[None, None].repeat(h.shape[1], 1, 1, 1)
    out = torch.nn.functional.conv2d(h**2, g, stride=2, padding=1, groups=h.shape[1])
    return (out + 1e-12).sqrt()


VGG16_TAPS = [3, 8, 15, 22, 29]  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


def _torch_lpips(torch, state, lin, x, y):
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    pool = lambda h: torch.nn.functional.max_pool2d(h, 2, 2)  # noqa: E731
    f0 = _torch_features(torch, state, 16, ((2 * x - 1) - shift) / scale, VGG16_TAPS, pool)
    f1 = _torch_features(torch, state, 16, ((2 * y - 1) - shift) / scale, VGG16_TAPS, pool)
    val = 0
    for k, (a, b) in enumerate(zip(f0, f1, strict=True)):
        a = a / (torch.sqrt(torch.sum(a**2, dim=1, keepdim=True)) + 1e-10)
        b = b / (torch.sqrt(torch.sum(b**2, dim=1, keepdim=True)) + 1e-10)
        d = (a - b) ** 2
        w = torch.from_numpy(lin[f"lin{k}.model.1.weight"])
        val = val + torch.nn.functional.conv2d(d, w).mean([2, 3], keepdim=True)
    return val.flatten()


def _torch_dists(torch, state, alpha, beta, x, y, width):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1)
    pool = lambda h: _torch_l2pool(torch, h)  # noqa: E731
    feats0 = [x] + _torch_features(torch, state, 16, (x - mean) / std, VGG16_TAPS, pool)
    feats1 = [y] + _torch_features(torch, state, 16, (y - mean) / std, VGG16_TAPS, pool)
    chns = [3] + [c * width // 64 for c in (64, 128, 256, 512, 512)]
    alpha, beta = torch.from_numpy(alpha), torch.from_numpy(beta)
    w_sum = alpha.sum() + beta.sum()
    alpha = torch.split(alpha / w_sum, chns, dim=1)
    beta = torch.split(beta / w_sum, chns, dim=1)
    dist1 = dist2 = 0
    c1 = c2 = 1e-6
    for k in range(len(chns)):
        x_mean = feats0[k].mean([2, 3], keepdim=True)
        y_mean = feats1[k].mean([2, 3], keepdim=True)
        s1 = (2 * x_mean * y_mean + c1) / (x_mean**2 + y_mean**2 + c1)
        dist1 = dist1 + (alpha[k] * s1).sum(1, keepdim=True)
        x_var = ((feats0[k] - x_mean) ** 2).mean([2, 3], keepdim=True)
        y_var = ((feats1[k] - y_mean) ** 2).mean([2, 3], keepdim=True)
        xy_cov = (feats0[k] * feats1[k]).mean([2, 3], keepdim=True) - x_mean * y_mean
        s2 = (2 * xy_cov + c2) / (x_var + y_var + c2)
        dist2 = dist2 + (beta[k] * s2).sum(1, keepdim=True)
    return (1 - (dist1 + dist2)).flatten()


def _nchw(torch, x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


@pytest.fixture(scope="session")
def torch_pair():
    torch = pytest.importorskip("torch", reason="torch (CPU) not installed: reference tests skip")
    torch.set_num_threads(2)
    x = _image(4, size=32, batch=2)
    ys = [_noisy(x, 0.03, seed=5), _noisy(x, 0.15, seed=6)]
    return torch, x, np.concatenate([ys[0][:1], ys[1][1:]])  # two distortion levels


def test_lpips_agrees_with_torch_reference_at_full_width(fast, torch_pair, tmp_path):
    torch, x, y = torch_pair
    conv = _converter()
    state = _torch_state(16, 64, seed=7)
    rng = np.random.default_rng(8)
    lin = {  # the lpips package's file layout: lin{k}.model.1.weight (1, C, 1, 1), non-negative
        f"lin{k}.model.1.weight": rng.uniform(0, 1, (1, c, 1, 1)).astype(np.float32)
        for k, c in enumerate((64, 128, 256, 512, 512))
    }
    conv.save_npz(conv.convert("lpips", state, lin), str(tmp_path / "lpips.npz"))
    params = P.load_lpips(tmp_path / "lpips.npz")
    got = np.asarray(fast(P.lpips, params, x, y))
    with torch.no_grad():
        want = _torch_lpips(torch, state, lin, _nchw(torch, x), _nchw(torch, y)).numpy()
    diff = float(np.max(np.abs(got - want)))
    print(f"LPIPS jax {got} torch {want} max|diff| {diff:.3g}")
    assert diff < 1e-4
    assert np.all(want > 0.01)  # a real comparison, not two zeros


def test_dists_agrees_with_torch_reference_at_full_width(fast, torch_pair, tmp_path):
    torch, x, y = torch_pair
    conv = _converter()
    state = _torch_state(16, 64, seed=9)
    rng = np.random.default_rng(10)
    heads = {  # DISTS_pytorch's weights.pt layout: (1, 1475, 1, 1), authors' N(0.1, 0.01) init
        k: (0.1 + 0.01 * rng.standard_normal((1, 1475, 1, 1))).astype(np.float32)
        for k in ("alpha", "beta")
    }
    conv.save_npz(conv.convert("dists", state, heads), str(tmp_path / "dists.npz"))
    params = P.load_dists(tmp_path / "dists.npz")
    got = np.asarray(fast(P.dists, params, x, y))
    with torch.no_grad():
        want = _torch_dists(
            torch, state, heads["alpha"], heads["beta"], _nchw(torch, x), _nchw(torch, y), 64
        ).numpy()
    diff = float(np.max(np.abs(got - want)))
    print(f"DISTS jax {got} torch {want} max|diff| {diff:.3g}")
    assert diff < 1e-4
    assert np.all(want > 1e-3)


def test_vgg19_file_from_a_torch_checkpoint_matches_torch_features(fast, torch_pair, tmp_path):
    torch, x, _ = torch_pair
    conv = _converter()
    state = _torch_state(19, TEST_WIDTH, seed=11)
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "vgg19.pth")
    out = tmp_path / "vgg19.npz"
    assert conv.main(["vgg19", "--vgg", str(tmp_path / "vgg19.pth"), "--out", str(out)]) == 0
    params = V.load_vgg19(out, width=TEST_WIDTH)
    layers = tuple(REAL_ESRGAN_LAYER_WEIGHTS) + ("relu5_4",)  # conv1_2 ... conv5_4, relu5_4
    net = V.VGG19Features(layers=layers, width=TEST_WIDTH)
    feats = fast(lambda p, v: net.apply({"params": p}, v), params, x)
    mean = torch.tensor(V.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(V.IMAGENET_STD).view(1, 3, 1, 1)
    pool = lambda h: torch.nn.functional.max_pool2d(h, 2, 2)  # noqa: E731
    with torch.no_grad():
        want = _torch_features(
            torch, state, 19, (_nchw(torch, x) - mean) / std, [2, 7, 16, 25, 34, 35], pool
        )
    for name, w in zip(layers, want, strict=True):
        w = w.numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(feats[name], w, rtol=1e-4, atol=1e-4 * np.abs(w).max())
