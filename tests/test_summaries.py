"""Validation images in TensorBoard: original | reconstruction per crop, one image per lambda."""

import io
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from swinjax import sharding, summaries


def _images(events):
    """``{tag: [(step, uint8 image)]}``: the image summaries among ``events``."""
    out = {}
    for tag, values in events.items():
        for step, v in values:
            if v.HasField("image"):
                img = np.asarray(Image.open(io.BytesIO(v.image.encoded_image_string)))
                out.setdefault(tag, []).append((step, img))
    return out


def test_image_grid_puts_each_original_beside_its_reconstruction():
    rng = np.random.default_rng(0)
    x = rng.random((2, 4, 5, 3)).astype(np.float32)
    grid = summaries.image_grid(x, 1.0 - x)
    gap = summaries.GAP
    assert grid.shape == (2 * 4 + gap, 2 * 5 + gap, 3) and grid.dtype == np.uint8
    second = slice(4 + gap, 8 + gap)
    np.testing.assert_array_equal(grid[second, :5], summaries.to_uint8(x[1]))
    np.testing.assert_array_equal(grid[second, 5 + gap :], summaries.to_uint8(1.0 - x[1]))
    assert (grid[4 : 4 + gap] == 255).all()  # white between the rows
    with pytest.raises(ValueError, match="two"):
        summaries.image_grid(x, x[:1])


def _fake_trainer(config, tensorboard):
    """What write_validation_images needs of a Trainer; reconstructs x as 1 - x at every lambda."""
    config.tensorboard = tensorboard
    calls = []

    def reconstruct(params, x, lmbda):
        calls.append(lmbda)
        return x, 1.0 - x

    mesh = sharding.make_mesh(1, 1, devices=jax.devices()[:1])
    return types.SimpleNamespace(config=config, mesh=mesh, reconstruct=reconstruct), calls


def test_validation_images_go_to_tensorboard_at_three_lambdas(tmp_path, tensorboard_events, tiny):
    pytest.importorskip("tensorboardX", reason="the [tensorboard] extra is not installed")
    from swinjax.train_log import MetricsWriter

    trainer, calls = _fake_trainer(tiny("swincoder"), tensorboard=True)
    x = np.random.default_rng(1).random((4, 8, 8, 3)).astype(np.float32)
    batches = [{"x": x, "mask": np.ones(4, bool)}]
    writer = MetricsWriter(tmp_path, tensorboard=True)
    summaries.write_validation_images(writer, trainer, None, batches, step=300)
    writer.close()
    assert calls == [16.0, 128.0, 1024.0]
    images = _images(tensorboard_events(tmp_path / "tensorboard"))
    assert sorted(images) == [
        "val/images/lambda_1024",
        "val/images/lambda_128",
        "val/images/lambda_16",
    ]
    step, img = images["val/images/lambda_128"][0]
    assert step == 300
    np.testing.assert_array_equal(img, summaries.image_grid(x[:2], 1.0 - x[:2]))


def test_no_validation_images_without_tensorboard(tmp_path, tiny):
    trainer, calls = _fake_trainer(tiny("swincoder"), tensorboard=False)
    writer = types.SimpleNamespace(tb=None)
    x = jnp.zeros((2, 8, 8, 3))
    summaries.write_validation_images(writer, trainer, None, [{"x": x}], step=1)
    assert calls == []
