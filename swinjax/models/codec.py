"""The codec: transforms, factorized prior for z, conditional model for y, lambda conditioning.

One Flax module serves the three architectures; ``config.model`` decides the transforms
(:mod:`swinjax.transforms`) and the entropy model of y (``model.entropy.kind``: ``"charm"`` for
SwinNPE / SwinT-ChARM, ``"masked_grouped"`` for SwinCoder).

Training runs :meth:`Codec.__call__` (by default noisy rate, straight-through distortion and
context: the "mixed" quantization of Minnen & Singh 2020; see :func:`training_quantization`).
Evaluation, compress and decompress run the deterministic
group loop of :mod:`swinjax.compression` through :meth:`Codec.group_params` /
:meth:`Codec.fill_group`, the same functions that training's loop uses for ChARM.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from swinjax.entropy.charm import ChARM
from swinjax.entropy.factorized import FactorizedPrior
from swinjax.entropy.gaussian import SCALE_MIN, gaussian_likelihood
from swinjax.entropy.grouped import MaskedGroupedModel
from swinjax.entropy.quantization import quantize
from swinjax.layers.adaln import LambdaEmbedding
from swinjax.transforms import build_transforms, validate_image


def training_quantization(model: Any) -> str:
    """How training stands in for rounding: ``"mixed"`` or ``"noise"`` (``model.quantization``).

    ``"mixed"`` (Minnen & Singh 2020): additive uniform noise for the rate, straight-through
    rounding (around the predicted means) for the distortion and the context. ``"noise"`` (Balle
    et al. 2018): the noisy latents everywhere, as SwinNPE trains.
    """
    mode = str(model.get("quantization", "mixed"))
    if mode not in ("mixed", "noise"):
        raise ValueError(f"model.quantization must be 'mixed' or 'noise', got {mode!r}")
    return mode


def build_context_model(model: Any) -> nn.Module:
    """The conditional entropy model of y named by ``model.entropy.kind``."""
    e = model.entropy
    if e.kind == "charm":
        return ChARM(
            int(model.latent_channels), int(e.num_slices), int(e.max_support_slices), bool(e.lrp)
        )
    if e.kind == "masked_grouped":
        return MaskedGroupedModel(
            int(model.latent_channels),
            int(e.dim),
            int(e.num_heads),
            int(e.window),
            float(e.mlp_ratio),
        )
    raise ValueError(f"model.entropy.kind must be 'charm' or 'masked_grouped', got {e.kind!r}")


class Codec(nn.Module):
    """A learned image codec built from ``config.model``.

    Attributes:
        model: the (frozen) ``model`` ConfigDict.
        dtype: computation dtype of the transforms (entropy parameters stay float32).
    """

    model: Any
    dtype: Any = None

    def setup(self) -> None:
        """Builds the submodules named as in the papers: g_a, g_s, h_a, h_s."""
        t = build_transforms(self.model, self.dtype)
        self.g_a, self.g_s, self.h_a, self.h_s = t["g_a"], t["g_s"], t["h_a"], t["h_s"]
        self.entropy_bottleneck = FactorizedPrior(int(self.model.hyper_channels))
        self.context = build_context_model(self.model)
        if self.model.variable_rate:
            lm = self.model.lmbda
            self.lmbda_embedding = LambdaEmbedding(int(lm.embedding), float(lm.min), float(lm.max))

    # -- pieces, each usable with ``apply(..., method=...)`` ------------------------------------
    def embed(self, lmbda: jax.Array) -> jax.Array | None:
        """Embedding of ``lmbda [B]`` for AdaLN, or None for fixed-rate models."""
        if not self.model.variable_rate:
            return None
        return self.lmbda_embedding(lmbda)

    def analysis(self, x: jax.Array, lmbda: jax.Array) -> jax.Array:
        """``y = g_a(x)`` for padded ``x [B, H, W, 3]`` in [0, 1]."""
        validate_image(x)  # shapes are static: a clear error at trace time, free at run time
        return self.g_a(x, self.embed(lmbda)) if self.model.variable_rate else self.g_a(x)

    def synthesis(self, y_hat: jax.Array, lmbda: jax.Array) -> jax.Array:
        """``x_hat = g_s(y_hat)`` (not clipped)."""
        if self.model.variable_rate:
            return self.g_s(y_hat, self.embed(lmbda))
        return self.g_s(y_hat)

    def hyper_analysis(self, y: jax.Array) -> jax.Array:
        """``z = h_a(y)``."""
        return self.h_a(y)

    def hyper_synthesis(self, z_hat: jax.Array) -> jax.Array:
        """Hyperprior features ``h_s(z_hat)`` consumed by the entropy model of y."""
        return self.h_s(z_hat).astype(jnp.float32)

    def z_medians(self) -> jax.Array:
        """Quantization offsets of z, ``[C_z]``."""
        return self.entropy_bottleneck.medians()

    def z_likelihood(self, z_hat: jax.Array) -> jax.Array:
        """Likelihoods of z values under the factorized prior."""
        return self.entropy_bottleneck.likelihood(z_hat)

    def z_table_inputs(self) -> dict[str, jax.Array]:
        """Probability tables of the factorized prior on integer grids (for the coding tables)."""
        return self.entropy_bottleneck.table_inputs()

    def aux_loss(self) -> jax.Array:
        """Quantile loss of the factorized prior (own optimizer)."""
        return self.entropy_bottleneck.aux_loss()

    def group_params(
        self, hyper: jax.Array, y_hat: jax.Array, k: int
    ) -> tuple[jax.Array, jax.Array]:
        """Mean and scale of group k from ``hyper`` and groups < k of ``y_hat``."""
        return self.context.group_params(hyper, y_hat, k)

    def fill_group(
        self, hyper: jax.Array, y_hat: jax.Array, k: int, values: jax.Array
    ) -> jax.Array:
        """Writes group k's dequantized values into ``y_hat``."""
        return self.context.fill_group(hyper, y_hat, k, values)

    def _one_pass_training_params(
        self, hyper: jax.Array, y: jax.Array, y_tilde: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Masked grouped model in training: every group's parameters in one masked pass.

        ``model.entropy.context`` says what the earlier groups look like as context:

        * ``"rounded"`` (default): what the decoder has, ``round(y - mu) + mu``, with gradients
          passed straight through. The means come from a first pass without gradient (on
          ``round(y)``); groups 0 and 1 then see exactly the decoder's context, and groups 2
          and 3 the decoder's context wherever the first pass's means round alike.
        * ``"noisy"``: ``y + u``, the rate proxy's noisy latents (one pass; the decoder never sees
          noise, which shifts the learned means and scales away from the ones it needs).
        """
        context = self.model.entropy.get("context", "rounded")
        if training_quantization(self.model) == "noise" or context == "noisy":
            return self.context.one_pass_params(hyper, y_tilde)
        if context != "rounded":
            raise ValueError(f"model.entropy.context must be 'rounded' or 'noisy', got {context!r}")
        mu0, _ = self.context.one_pass_params(hyper, jax.lax.stop_gradient(jnp.round(y)))
        y_ctx = quantize(y, "ste", jax.lax.stop_gradient(mu0))
        return self.context.one_pass_params(hyper, y_ctx)

    # -- training forward ---------------------------------------------------------------------
    def __call__(
        self,
        x: jax.Array,
        lmbda: jax.Array,
        key: jax.Array | None = None,
        deterministic: bool = False,
    ) -> dict[str, jax.Array]:
        """Forward pass on padded ``x``.

        Training (``deterministic=False``) uses the quantization proxy of
        :func:`training_quantization` (default: noisy latents for the rate, straight-through
        rounding for the distortion and the context). SwinCoder's masked model computes all four
        groups in one masked pass (:meth:`_one_pass_training_params`); ChARM loops over slices.
        ``deterministic=True`` rounds around medians/means and runs the group loop: the
        estimated rate of real coding (used for validation during training).

        Args:
            x: ``[B, H, W, 3]`` in [0, 1], H and W multiples of the downsampling factor.
            lmbda: ``[B]`` rate-distortion weights (used by variable-rate models).
            key: PRNG key for the quantization noise (training only).
            deterministic: evaluation mode.

        Returns:
            ``x_hat``, ``y_likelihoods``, ``z_likelihoods``, ``y``, ``y_hat``, ``z``.
        """
        y = self.analysis(x, lmbda).astype(jnp.float32)
        z = self.hyper_analysis(y).astype(jnp.float32)
        medians = jax.lax.stop_gradient(self.z_medians())
        noise_only = training_quantization(self.model) == "noise"
        if deterministic:
            z_hat = quantize(z, "dequantize", medians)
            z_likelihoods = self.z_likelihood(z_hat)
        else:
            if key is None:
                raise ValueError("training forward needs a PRNG key (or deterministic=True)")
            kz, ky = jax.random.split(key)
            z_noisy = quantize(z, "noise", key=kz)
            z_likelihoods = self.z_likelihood(z_noisy)
            z_hat = z_noisy if noise_only else quantize(z, "ste", medians)
        hyper = self.hyper_synthesis(z_hat)
        if not deterministic and isinstance(self.context, MaskedGroupedModel):
            y_tilde = quantize(y, "noise", key=ky)
            mu, scale = self._one_pass_training_params(hyper, y, y_tilde)
            y_likelihoods = gaussian_likelihood(y_tilde, mu, scale, SCALE_MIN)
            y_hat = y_tilde if noise_only else quantize(y, "ste", mu)
        else:
            y_rate = None if deterministic else quantize(y, "noise", key=ky)
            y_hat = jnp.zeros_like(y)
            y_likelihoods = jnp.ones_like(y)
            _, h, w, _ = y.shape
            masks = self.context.group_masks(h, w)
            for k in range(self.context.num_groups):
                mu, scale = self.group_params(hyper, y_hat, k)
                if deterministic:
                    values = quantize(y, "dequantize", mu)
                    lik = gaussian_likelihood(values, mu, scale, SCALE_MIN)
                else:
                    values = y_rate if noise_only else quantize(y, "ste", mu)
                    lik = gaussian_likelihood(y_rate, mu, scale, SCALE_MIN)
                y_likelihoods = jnp.where(masks[k], lik, y_likelihoods)
                y_hat = self.fill_group(hyper, y_hat, k, values)
        x_hat = self.synthesis(y_hat, lmbda)
        return {
            "x_hat": x_hat,
            "y_likelihoods": y_likelihoods,
            "z_likelihoods": z_likelihoods,
            "y": y,
            "y_hat": y_hat,
            "z": z,
        }
