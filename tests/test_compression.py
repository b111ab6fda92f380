"""Real files: compress -> bytes -> decompress, exactness against the evaluation forward pass."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from swinjax import checkpoint
from swinjax.coding import container
from swinjax.compression import ImageCodec
from swinjax.export import export
from swinjax.imageio import load_image

ROOT = pathlib.Path(__file__).resolve().parent.parent
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"


def _export(name, tmp_path_factory, tiny_params, perturb=0.0):
    config, _, params = tiny_params(name)
    if perturb:
        params = jax.tree.map(lambda p: p * (1 + perturb), params)
    out = tmp_path_factory.mktemp(f"export-{name}")
    return export(config, params, out)


@pytest.fixture(scope="session")
def coder(tiny_export):
    return ImageCodec(checkpoint.load_model(tiny_export))


@pytest.fixture(scope="session")
def charm_coder(tmp_path_factory, tiny_params):
    return ImageCodec(checkpoint.load_model(_export("swinnpe", tmp_path_factory, tiny_params)))


def _photo(h=96, w=130):
    path = KODAK / "kodim23.png"
    if path.is_file():
        return load_image(path)[100 : 100 + h, 200 : 200 + w]
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("which, lmbda", [("coder", 64.0), ("charm_coder", None)])
def test_decompress_reproduces_the_evaluation_forward_pass(which, lmbda, request):
    codec = request.getfixturevalue(which)
    img = _photo()
    data = codec.compress(img, lmbda)
    ev = codec.forward_eval(img, lmbda)
    _, y_hat, _ = codec.decode_latents(data)
    np.testing.assert_array_equal(np.asarray(y_hat), ev.y_hat)
    np.testing.assert_array_equal(codec.decompress(data), ev.x_hat)
    assert ev.x_hat.shape == img.shape and ev.x_hat.dtype == np.uint8


def test_charm_entropy_parameters_are_float64_throughout(charm_coder, entropy_precisions):
    """SwinNPE's Swin h_s and ChARM slices: LayerNorm statistics, softmax and the window mask
    follow the float64 inputs, so its scale indexes get the cross-machine margin too."""
    assert charm_coder.num_groups == 10
    assert entropy_precisions(charm_coder) == set()


def test_same_image_twice_gives_identical_bytes(coder):
    img = _photo()
    assert coder.compress(img, 200.0) == coder.compress(img, 200.0)


@pytest.mark.parametrize("size", [(1, 1), (70, 45), (3, 131)])
def test_odd_sizes_round_trip(coder, size):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    data = coder.compress(img, 32.0)
    out = coder.decompress(data)
    assert out.shape == img.shape
    np.testing.assert_array_equal(out, coder.forward_eval(img, 32.0).x_hat)
    header, _ = container.unpack(data)
    assert (header.height, header.width) == size
    assert (header.height + header.pad_h) % 64 == 0 and (header.width + header.pad_w) % 64 == 0


def test_lambda_changes_the_variable_rate_bitstream(coder):
    img = _photo()
    a, b = coder.compress(img, 16.0), coder.compress(img, 1024.0)
    assert a != b
    assert container.unpack(a)[0].lmbda == 16.0
    with pytest.raises(ValueError, match="outside the model's trained range"):
        coder.compress(img, 5000.0)


def test_fixed_rate_files_carry_the_trained_lambda(charm_coder):
    """A fixed-rate model codes at the lambda it was trained at and says so in its files."""
    img = _photo(64, 64)
    data = charm_coder.compress(img)
    assert container.unpack(data)[0].lmbda == 1000.0  # configs/swint_charm.py
    assert charm_coder.compress(img, 1000.0) == data
    with pytest.raises(ValueError, match="fixed-rate model was trained at lambda=1000"):
        charm_coder.compress(img, 64.0)


def test_file_from_another_model_is_refused(coder, charm_coder):
    data = coder.compress(_photo(), 64.0)
    with pytest.raises(container.FormatError, match="swincoder-tiny"):
        charm_coder.decompress(data)


def test_decoder_with_different_weights_reports_a_checksum_mismatch(
    coder, tmp_path_factory, tiny_params
):
    # Same model id and config, slightly different weights: the decoder computes other scale
    # indexes, decodes other symbols, and must say so instead of returning a garbage image.
    other = ImageCodec(
        checkpoint.load_model(_export("swincoder", tmp_path_factory, tiny_params, perturb=0.05))
    )
    data = coder.compress(_photo(), 64.0)
    with pytest.raises(container.FormatError, match="checksum mismatch|corrupt|decod"):
        other.decompress(data)


def test_bad_images_are_refused_with_clear_errors(coder):
    with pytest.raises(ValueError, match="uint8"):
        coder.compress(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        coder.compress(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        coder.compress(np.zeros((0, 8, 3), np.uint8))
    small = ImageCodec(coder.exported, max_pixels=100)
    with pytest.raises(ValueError, match="limit"):
        small.compress(np.zeros((20, 20, 3), np.uint8))


def test_decode_in_another_process_with_other_xla_threading_is_identical(coder, tmp_path):
    """Encode here; decode in a fresh process pinned to one core with Eigen threading off."""
    img = _photo()
    src = tmp_path / "in.swj"
    src.write_bytes(coder.compress(img, 64.0))
    expected = coder.decompress(src.read_bytes())
    out = tmp_path / "out.png"
    # Same compiler flags as this process (if any), plus single-threaded Eigen.
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
    cmd = [
        sys.executable,
        "-m",
        "swinjax",
        "decompress",
        "--ckpt",
        str(coder.exported.path),
        str(src),
        str(out),
    ]
    if hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0", *cmd] if _has_taskset() else cmd
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr  # the symbols' CRC32 passed: the same symbols
    # The float64 means may differ in their last bits with another summation order, and the
    # float32 synthesis may then round an 8-bit value the other way (docs/file-format.md:
    # determinism).
    assert np.abs(load_image(out).astype(int) - expected).max() <= 1


def _has_taskset():
    return subprocess.run(["which", "taskset"], capture_output=True).returncode == 0


def test_a_small_file_declaring_a_huge_image_is_refused_before_decoding(coder):
    import dataclasses
    import resource

    header, streams = container.unpack(coder.compress(_photo(64, 64), 64.0))
    side, g, f = 9984, coder.latent_stride, coder.factor
    c_y, c_z = header.y_shape[2], header.z_shape[2]
    forged = dataclasses.replace(
        header,
        height=side,
        width=side,
        y_shape=(side // g, side // g, c_y),
        z_shape=(side // f, side // f, c_z),
    )
    data = container.pack(forged, streams)
    budget = ImageCodec(coder.exported, max_decode_bytes=2**30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(container.ImageTooLargeError, match="budget of 1.0 GiB") as e:
        budget.decompress(data)
    assert "\n" not in str(e.value) and "9984x9984" in str(e.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 256 * 1024  # KiB
    assert budget.decode_memory_bytes(header) < 2**30  # the real 64x64 file passes
