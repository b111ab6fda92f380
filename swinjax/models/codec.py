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
from swinjax.layers.adaln import LambdaEmbedding, LatentGain
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
            if self.has_gain:
                self.latent_gain = LatentGain(
                    int(self.model.latent_channels), float(lm.min), float(lm.max)
                )

    @property
    def has_gain(self) -> bool:
        """Whether y is scaled by a lambda-dependent gain before quantization (``lmbda.gain``)."""
        return bool(self.model.variable_rate and self.model.lmbda.get("gain", False))

    # -- pieces, each usable with ``apply(..., method=...)`` ------------------------------------
    def embed(self, lmbda: jax.Array) -> jax.Array | None:
        """Embedding of ``lmbda [B]`` for AdaLN, or None for fixed-rate models."""
        if not self.model.variable_rate:
            return None
        return self.lmbda_embedding(lmbda)

    def gain(self, lmbda: jax.Array | None) -> jax.Array | None:
        """The latent's quantization gain ``[B, 1, 1, C]`` (:class:`LatentGain`), or None.

        With a gain, y is *coded* in the gained domain: :meth:`analysis` returns ``gain * g_a(x)``
        and every method that takes y or y_hat (and ``lmbda``) works in that domain, so the
        compression loop rounds ``gain * (y - mu)`` to integers without knowing about the gain.
        """
        if not self.has_gain:
            return None
        if lmbda is None:
            raise ValueError("this model scales its latent by a lambda-dependent gain: pass lmbda")
        return self.latent_gain(lmbda)

    def analysis(self, x: jax.Array, lmbda: jax.Array) -> jax.Array:
        """``y = g_a(x)`` (times the gain, if any) for padded ``x [B, H, W, 3]`` in [0, 1]."""
        validate_image(x)  # shapes are static: a clear error at trace time, free at run time
        if not self.model.variable_rate:
            return self.g_a(x)
        y = self.g_a(x, self.embed(lmbda))
        gain = self.gain(lmbda)
        return y if gain is None else y.astype(jnp.float32) * gain

    def synthesis(self, y_hat: jax.Array, lmbda: jax.Array) -> jax.Array:
        """``x_hat = g_s(y_hat / gain)`` (not clipped)."""
        if not self.model.variable_rate:
            return self.g_s(y_hat)
        gain = self.gain(lmbda)
        return self.g_s(y_hat if gain is None else y_hat / gain, self.embed(lmbda))

    def hyper_analysis(self, y: jax.Array, lmbda: jax.Array | None = None) -> jax.Array:
        """``z = h_a(y / gain)``: the hyperprior describes the un-gained latent."""
        gain = self.gain(lmbda)
        return self.h_a(y if gain is None else y / gain)

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
        self, hyper: jax.Array, y_hat: jax.Array, k: int, lmbda: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Mean and scale of group k from ``hyper`` and groups < k of ``y_hat``.

        With a gain the context model sees ``y_hat / gain`` and its mean and scale are multiplied
        by the gain: a step of ``1 / gain`` in y's own units.
        """
        return self._gained_params(
            lambda h, y: self.context.group_params(h, y, k), hyper, y_hat, self.gain(lmbda)
        )

    def fill_group(
        self,
        hyper: jax.Array,
        y_hat: jax.Array,
        k: int,
        values: jax.Array,
        lmbda: jax.Array | None = None,
    ) -> jax.Array:
        """Writes group k's dequantized values into ``y_hat`` (ChARM adds its LRP)."""
        gain = self.gain(lmbda)
        if gain is None or isinstance(self.context, MaskedGroupedModel):
            return self.context.fill_group(hyper, y_hat, k, values)  # a pure write
        return self.context.fill_group(hyper, y_hat / gain, k, values / gain) * gain

    # -- coding: the group loop of compress, decompress and forward_eval ------------------------
    # The loop's state is a dict: ``y_hat`` (gained domain) plus what the context model keeps
    # between groups (ChARM: the hyperprior features; the masked model: its hyperprior tokens and
    # the keys / values of the groups already known, so each group costs only its own tokens).
    # Group values travel in compact form, ``[B, n_k]`` in the C order of group k's mask over
    # ``[h, w, C]`` (the order of the symbols in a file), via :meth:`group_gather`.

    def coding_state(self, z_hat: jax.Array) -> dict[str, Any]:
        """The group loop's initial state from ``z_hat [B, h_z, w_z, C_z]``.

        Runs ``h_s`` in the dtype of ``z_hat`` (at least float32): compression calls it in
        float64, see :mod:`swinjax.compression`.
        """
        hyper = self.h_s(z_hat)
        hyper = hyper.astype(jnp.promote_types(hyper.dtype, jnp.float32))
        b, h, w, _ = hyper.shape
        y_hat = jnp.zeros((b, h, w, int(self.model.latent_channels)), hyper.dtype)
        if isinstance(self.context, MaskedGroupedModel):
            return {**self.context.coding_state(hyper), "y_hat": y_hat}
        return {"hyper": hyper, "y_hat": y_hat}

    def coding_params(
        self, state: dict[str, Any], k: int, lmbda: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Mean and scale of group k, compact ``[B, n_k]`` (gained domain), from ``state``."""
        y_hat = state["y_hat"]
        if isinstance(self.context, MaskedGroupedModel):
            mu, scale = self.context.coding_params(state, k, y_hat.shape[1:3])
            gain = self.gain(lmbda)
            if gain is not None:
                mu, scale = mu * gain, scale * gain
        else:
            mu, scale = self.group_params(state["hyper"], y_hat, k, lmbda)
        return self.group_gather(mu, k), self.group_gather(scale, k)

    def coding_fill(
        self, state: dict[str, Any], k: int, values: jax.Array, lmbda: jax.Array | None = None
    ) -> dict[str, Any]:
        """The state after group k's dequantized ``values [B, n_k]`` (gained domain) are known."""
        y_hat = state["y_hat"]
        if not isinstance(self.context, MaskedGroupedModel):
            full = self.group_scatter(jnp.zeros_like(y_hat), k, values)
            return {**state, "y_hat": self.fill_group(state["hyper"], y_hat, k, full, lmbda)}
        y_hat = self.group_scatter(y_hat, k, values)
        state = {**state, "y_hat": y_hat}
        if k + 1 < self.context.num_groups:  # the last group's keys would never be used
            gain = self.gain(lmbda)
            y_ctx = y_hat if gain is None else y_hat / gain
            state = {**state, **self.context.coding_fill(state, k, y_ctx)}
        return state

    def group_gather(self, x: jax.Array, k: int) -> jax.Array:
        """Group k's entries of ``x [B, h, w, C]``, compact ``[B, n_k]`` (C order of its mask)."""
        return self.context.group_gather(x, k)

    def group_scatter(self, x: jax.Array, k: int, values: jax.Array) -> jax.Array:
        """``x [B, h, w, C]`` with group k's entries replaced by compact ``values [B, n_k]``."""
        return self.context.group_scatter(x, k, values)

    @staticmethod
    def _gained_params(
        params_fn: Any, hyper: jax.Array, y_ctx: jax.Array, gain: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        """``params_fn`` (mean, scale of y) run on ``y_ctx / gain``, its outputs times the gain."""
        if gain is None:
            return params_fn(hyper, y_ctx)
        mu, scale = params_fn(hyper, y_ctx / gain)
        return mu * gain, scale * gain

    def _one_pass_params(
        self, hyper: jax.Array, y_ctx: jax.Array, gain: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        return self._gained_params(self.context.one_pass_params, hyper, y_ctx, gain)

    def _one_pass_training_params(
        self, hyper: jax.Array, y: jax.Array, y_tilde: jax.Array, gain: jax.Array | None = None
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
            return self._one_pass_params(hyper, y_tilde, gain)
        if context != "rounded":
            raise ValueError(f"model.entropy.context must be 'rounded' or 'noisy', got {context!r}")
        mu0, _ = self._one_pass_params(hyper, jax.lax.stop_gradient(jnp.round(y)), gain)
        y_ctx = quantize(y, "ste", jax.lax.stop_gradient(mu0))
        return self._one_pass_params(hyper, y_ctx, gain)

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
        gain = self.gain(lmbda)
        z = self.hyper_analysis(y, lmbda).astype(jnp.float32)
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
            mu, scale = self._one_pass_training_params(hyper, y, y_tilde, gain)
            y_likelihoods = gaussian_likelihood(y_tilde, mu, scale, SCALE_MIN)
            y_hat = y_tilde if noise_only else quantize(y, "ste", mu)
        else:
            y_rate = None if deterministic else quantize(y, "noise", key=ky)
            y_hat = jnp.zeros_like(y)
            y_likelihoods = jnp.ones_like(y)
            _, h, w, _ = y.shape
            masks = self.context.group_masks(h, w)
            for k in range(self.context.num_groups):
                mu, scale = self.group_params(hyper, y_hat, k, lmbda)
                if deterministic:
                    values = quantize(y, "dequantize", mu)
                    lik = gaussian_likelihood(values, mu, scale, SCALE_MIN)
                else:
                    values = y_rate if noise_only else quantize(y, "ste", mu)
                    lik = gaussian_likelihood(y_rate, mu, scale, SCALE_MIN)
                y_likelihoods = jnp.where(masks[k], lik, y_likelihoods)
                y_hat = self.fill_group(hyper, y_hat, k, values, lmbda)
        x_hat = self.synthesis(y_hat, lmbda)
        return {
            "x_hat": x_hat,
            "y_likelihoods": y_likelihoods,
            "z_likelihoods": z_likelihoods,
            "y": y,
            "y_hat": y_hat,
            "z": z,
        }
