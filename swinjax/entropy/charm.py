"""Channel-wise autoregressive entropy model, ChARM (Minnen & Singh 2020), as in SwinT-ChARM.

y is split into ``num_slices`` equal channel slices coded in order. Slice k's mean and scale come
from small 3x3 convolutional networks (Zhu et al. 2022, Fig. 12: three 3x3 convs with widths
interpolated from input to output, ReLU) applied to the slice's share of the hyper features and
the already decoded slices (the ``max_support_slices`` most recent ones; -1 = all). Latent residual
prediction (LRP, Minnen & Singh §3) adds ``0.5 * tanh(lrp(support, y_hat_k))`` to the dequantized
slice, shrinking the quantization error before synthesis and before later slices see it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from swinjax.entropy.context import channel_slices
from swinjax.layers.resample import Conv3x3


class SliceTransform(nn.Module):
    """Three 3x3 convs from ``in_dim`` to ``out_dim``, widths interpolated, ReLU between."""

    in_dim: int
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[B, h, w, in_dim]`` -> ``[B, h, w, out_dim]``."""
        c1 = (self.out_dim - self.in_dim) // 3 + self.in_dim
        c2 = 2 * (self.out_dim - self.in_dim) // 3 + self.in_dim
        x = nn.relu(Conv3x3(c1, name="conv0")(x))
        x = nn.relu(Conv3x3(c2, name="conv1")(x))
        return Conv3x3(self.out_dim, name="conv2")(x)


class ChARM(nn.Module):
    """ChARM over ``latent_channels`` with hyper features of ``2 * latent_channels`` (mean | scale).

    Attributes:
        latent_channels: channels of y.
        num_slices: slices (SwinNPE / SwinT-ChARM: 10).
        max_support_slices: how many previous slices condition a slice; -1: all of them. A cap
            ``n`` keeps the ``n`` most recent slices, whereas Minnen & Singh's reference code
            (tfc ``ms2020.py``, default 5; CompressAI ports) keeps the *first* ``n``
            (``y_hat_slices[:n]``), so the two differ for slices ``k > n`` (0-based). SwinNPE says
            only "the model proposed in [6] with 10 slices" (Sec. III-A). SwinT-ChARM's reported
            32.6 M parameters are matched by all earlier slices without LRP (about 32.5 M with
            the authors' slice widths; about 31.3 M with a cap of 5).
        lrp: use latent residual prediction (Minnen & Singh §3).
    """

    latent_channels: int
    num_slices: int = 10
    max_support_slices: int = -1
    lrp: bool = True

    def setup(self) -> None:
        """Creates one mean, scale (and LRP) transform per slice."""
        self.slices = channel_slices(self.latent_channels, self.num_slices)
        s = self.latent_channels // self.num_slices
        support = [self._num_support(k) * s for k in range(self.num_slices)]
        self.mean_transforms = [
            SliceTransform(s + n, s, name=f"mean{k}") for k, n in enumerate(support)
        ]
        self.scale_transforms = [
            SliceTransform(s + n, s, name=f"scale{k}") for k, n in enumerate(support)
        ]
        if self.lrp:
            self.lrp_transforms = [
                SliceTransform(2 * s + n, s, name=f"lrp{k}") for k, n in enumerate(support)
            ]

    @property
    def num_groups(self) -> int:
        """Groups coded in sequence: one per slice."""
        return self.num_slices

    def _num_support(self, k: int) -> int:
        return k if self.max_support_slices < 0 else min(k, self.max_support_slices)

    def group_masks(self, h: int, w: int) -> np.ndarray:
        """``[num_slices, h, w, C]`` bool: slice k's channels."""
        masks = np.zeros((self.num_slices, h, w, self.latent_channels), bool)
        for k, sl in enumerate(channel_slices(self.latent_channels, self.num_slices)):
            masks[k, :, :, sl] = True
        return masks

    def _support(self, y_hat: jax.Array, k: int) -> list[jax.Array]:
        n = self._num_support(k)
        return [y_hat[..., self.slices[j]] for j in range(k - n, k)]

    def _hyper(self, hyper: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
        mean_h, scale_h = jnp.split(hyper, 2, axis=-1)
        return mean_h[..., self.slices[k]], scale_h[..., self.slices[k]]

    def group_params(
        self, hyper: jax.Array, y_hat: jax.Array, k: int
    ) -> tuple[jax.Array, jax.Array]:
        """Mean and scale of slice k from its hyper features and slices < k (full-size arrays)."""
        mean_h, scale_h = self._hyper(hyper, k)
        support = self._support(y_hat, k)
        mu_k = self.mean_transforms[k](jnp.concatenate([mean_h, *support], axis=-1))
        scale_k = self.scale_transforms[k](jnp.concatenate([scale_h, *support], axis=-1))
        sl = self.slices[k]
        zeros = jnp.zeros(y_hat.shape, mu_k.dtype)
        return zeros.at[..., sl].set(mu_k), zeros.at[..., sl].set(scale_k)

    def group_gather(self, x: jax.Array, k: int) -> jax.Array:
        """Slice k's entries of ``x [B, h, w, C]`` as ``[B, n_k]``, in the C order of its mask."""
        return x[..., channel_slices(x.shape[-1], self.num_slices)[k]].reshape(x.shape[0], -1)

    def group_scatter(self, x: jax.Array, k: int, values: jax.Array) -> jax.Array:
        """``x`` with slice k's entries set from ``values [B, n_k]`` (inverse of the gather)."""
        sl = channel_slices(x.shape[-1], self.num_slices)[k]
        v = values.astype(x.dtype).reshape(*x.shape[:3], -1)
        return x.at[..., sl].set(v)

    def fill_group(
        self, hyper: jax.Array, y_hat: jax.Array, k: int, values: jax.Array
    ) -> jax.Array:
        """Writes slice k's quantized values (plus LRP) into ``y_hat``."""
        sl = self.slices[k]
        v = values[..., sl]
        if self.lrp:
            mean_h, _ = self._hyper(hyper, k)
            support = self._support(y_hat, k)
            r = self.lrp_transforms[k](jnp.concatenate([mean_h, *support, v], axis=-1))
            v = v + 0.5 * jnp.tanh(r)
        return y_hat.at[..., sl].set(v)

    def __call__(self, hyper: jax.Array, y_hat: jax.Array) -> jax.Array:
        """Initialisation entry point: touches every slice network once."""
        for k in range(self.num_slices):
            mu, _ = self.group_params(hyper, y_hat, k)
            y_hat = self.fill_group(hyper, y_hat, k, mu)
        return y_hat
