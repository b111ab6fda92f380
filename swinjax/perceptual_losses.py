"""Perceptual, style and adversarial losses of SwinCoder's stages 2 and 3: pure functions.

SwinCoder (Li et al., CLIC 2025, §II-B) fine-tunes with

* stage 2: ``150 * L_MSE + 1.0 * L_per + 0.1 * L_style``;
* stage 3: the same ``+ 0.01 * L_adv``,

taking the recipe from Real-ESRGAN (Wang et al., ICCVW 2021). What is implemented, exactly:

* ``L_per`` (:func:`perceptual_loss`): ``sum_l w_l * mean_{h,w,c} (phi_l(x_hat) - phi_l(x))**2``
  over named VGG19 layers ``phi_l`` (:mod:`swinjax.models.vgg`). The paper says "L2"; Real-ESRGAN's
  own configs use L1 on pre-ReLU ``conv{b}_{i}`` features with weights
  ``{conv1_2: 0.1, conv2_2: 0.1, conv3_4: 1, conv4_4: 1, conv5_4: 1}``
  (:data:`REAL_ESRGAN_LAYER_WEIGHTS`); ``criterion="l1"`` reproduces that choice.
* ``L_style`` (:func:`style_loss`): the same distance between Gram matrices
  ``G_l = phi_l^T phi_l / (C * H * W)`` (Gatys et al. 2016; the normalisation of BasicSR's
  ``PerceptualLoss._gram_mat``), so ``G`` does not grow with the crop size.
* ``L_adv``: Real-ESRGAN's "vanilla" GAN loss, BCE-with-logits on the per-pixel logits of the
  U-Net discriminator (:mod:`swinjax.models.discriminator`), averaged over pixels.
  Discriminator (:func:`d_loss`): ``mean softplus(-D(x)) + mean softplus(D(x_hat))``, i.e.
  ``BCE(D(x), 1) + BCE(D(x_hat), 0)``; Real-ESRGAN back-propagates the two terms one after the
  other into the same gradients, which is their sum. Generator (:func:`g_adv_loss`):
  ``mean softplus(-D(x_hat)) = BCE(D(x_hat), 1)``, the *non-saturating* form of Goodfellow et al.
  2014 (it keeps a gradient when the discriminator confidently rejects x_hat, where
  ``log(1 - sigmoid)`` would vanish). The 0.01 weight belongs to the caller.

Every loss returns one value per example, ``[B]`` (like :func:`swinjax.losses.mse`): the caller
takes ``jnp.mean`` after adding the terms. Inputs are promoted to float32.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

#: Real-ESRGAN's perceptual layer weights (``train_realesrgan_x4plus.yml``, pre-ReLU features).
REAL_ESRGAN_LAYER_WEIGHTS: dict[str, float] = {
    "conv1_2": 0.1,
    "conv2_2": 0.1,
    "conv3_4": 1.0,
    "conv4_4": 1.0,
    "conv5_4": 1.0,
}

_CRITERIA = ("l2", "l1")


def _distance(a: jax.Array, b: jax.Array, criterion: str) -> jax.Array:
    """Per-example mean of ``(a - b)**2`` (``"l2"``) or ``|a - b|`` (``"l1"``), ``[B]``."""
    d = a.astype(jnp.float32) - b.astype(jnp.float32)
    if criterion == "l2":
        d = jnp.square(d)
    elif criterion == "l1":
        d = jnp.abs(d)
    else:
        raise ValueError(f"criterion must be one of {_CRITERIA}, got {criterion!r}")
    return jnp.mean(d, axis=tuple(range(1, d.ndim)))


def _check_layers(
    feats_x: Mapping[str, jax.Array], feats_x_hat: Mapping[str, jax.Array], weights: Mapping
) -> None:
    if not weights:
        raise ValueError("layer weights must name at least one layer")
    for name in weights:
        if name not in feats_x or name not in feats_x_hat:
            raise ValueError(
                f"layer {name!r} has a weight but no features; the VGG module returns "
                f"{sorted(feats_x)} (add it to its `layers`)"
            )


def perceptual_loss(
    feats_x: Mapping[str, jax.Array],
    feats_x_hat: Mapping[str, jax.Array],
    weights: Mapping[str, float],
    criterion: str = "l2",
) -> jax.Array:
    """``sum_l w_l * mean (phi_l(x_hat) - phi_l(x))**2`` per example (SwinCoder's ``L_per``).

    Args:
        feats_x: ``{layer: [B, h, w, C]}`` VGG features of the original x (the target).
        feats_x_hat: the same layers for the reconstruction x_hat.
        weights: ``{layer: weight}``; only these layers are used.
        criterion: ``"l2"`` (mean squared error, the paper's "L2") or ``"l1"`` (Real-ESRGAN).

    Returns:
        ``[B]`` float32.
    """
    _check_layers(feats_x, feats_x_hat, weights)
    return sum(
        float(w) * _distance(feats_x_hat[k], feats_x[k], criterion) for k, w in weights.items()
    )


def gram_matrix(features: jax.Array) -> jax.Array:
    """``phi^T phi / (C * H * W)``: ``[B, H, W, C]`` -> ``[B, C, C]`` (float32).

    The C*H*W normalisation (BasicSR ``_gram_mat``) keeps the style loss independent of the crop
    size and of the layer's width.
    """
    b, h, w, c = features.shape
    f = features.astype(jnp.float32).reshape(b, h * w, c)
    return jnp.einsum("bnc,bnd->bcd", f, f) / (c * h * w)


def style_loss(
    feats_x: Mapping[str, jax.Array],
    feats_x_hat: Mapping[str, jax.Array],
    weights: Mapping[str, float],
    criterion: str = "l2",
) -> jax.Array:
    """``sum_l w_l * mean (G(phi_l(x_hat)) - G(phi_l(x)))**2`` per example (``L_style``).

    Gram matrices (:func:`gram_matrix`) discard *where* features occur and keep their
    correlations, i.e. texture statistics (Gatys et al. 2016): two images with the same textures
    in different places have a small style loss but a large perceptual loss.

    Args and Returns: as :func:`perceptual_loss`.
    """
    _check_layers(feats_x, feats_x_hat, weights)
    return sum(
        float(w) * _distance(gram_matrix(feats_x_hat[k]), gram_matrix(feats_x[k]), criterion)
        for k, w in weights.items()
    )


def vgg_feature_losses(
    vgg: nn.Module,
    vgg_params: Mapping,
    x: jax.Array,
    x_hat: jax.Array,
    perceptual_weights: Mapping[str, float],
    style_weights: Mapping[str, float] | None = None,
    criterion: str = "l2",
) -> tuple[jax.Array, jax.Array]:
    """``(L_per, L_style)`` per example from VGG features of x and x_hat.

    VGG is a fixed feature extractor and x is the target: its parameters and x's features are
    wrapped in ``stop_gradient``, and x goes through VGG in a pass of its own, so the backward
    pass runs over x_hat's B images only (one ``[2B, ...]`` batch would differentiate 2B).

    Args:
        vgg: a :class:`swinjax.models.vgg.VGGFeatures` whose ``layers`` include every weighted
            layer.
        vgg_params: its ``params`` (:func:`swinjax.models.vgg.load_vgg19`).
        x: ``[B, H, W, 3]`` originals in [0, 1].
        x_hat: ``[B, H, W, 3]`` reconstructions in [0, 1].
        perceptual_weights: ``{layer: weight}`` of ``L_per``.
        style_weights: ``{layer: weight}`` of ``L_style`` (default: the perceptual weights).
        criterion: ``"l2"`` or ``"l1"``, for both.

    Returns:
        ``(per, style)``, each ``[B]`` float32.
    """
    style_weights = perceptual_weights if style_weights is None else style_weights
    params = jax.lax.stop_gradient(vgg_params)
    feats_x = jax.lax.stop_gradient(vgg.apply({"params": params}, jax.lax.stop_gradient(x)))
    feats_x_hat = vgg.apply({"params": params}, x_hat.astype(x.dtype))
    per = perceptual_loss(feats_x, feats_x_hat, perceptual_weights, criterion)
    style = style_loss(feats_x, feats_x_hat, style_weights, criterion)
    return per, style


def _per_example_mean(v: jax.Array) -> jax.Array:
    v = v.astype(jnp.float32)
    return jnp.mean(v, axis=tuple(range(1, v.ndim)))


def d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Discriminator loss ``BCE(D(x), 1) + BCE(D(x_hat), 0)`` per example, ``[B]``.

    ``softplus(-l) = -log sigmoid(l)`` and ``softplus(l) = -log(1 - sigmoid(l))``, averaged over
    the per-pixel logits ``[B, H, W, 1]`` of the U-Net discriminator (Real-ESRGAN's vanilla
    ``GANLoss``). The caller passes ``stop_gradient(x_hat)`` through D for the fake term.
    """
    return _per_example_mean(jax.nn.softplus(-real_logits)) + _per_example_mean(
        jax.nn.softplus(fake_logits)
    )


def g_adv_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating generator loss ``BCE(D(x_hat), 1) = mean softplus(-D(x_hat))``, ``[B]``."""
    return _per_example_mean(jax.nn.softplus(-fake_logits))
