"""SwinCoder's masked grouped entropy model (Li et al., CLIC 2025, §II-A).

y is split by a checkerboard (He et al. 2021) into anchors and non-anchors, and each of those into
two channel halves: four groups, coded in the order (anchor, first half), (anchor, second half),
(non-anchor, first half), (non-anchor, second half). One Swin block with *masked* self-attention
predicts a single Gaussian (mean, scale) for every element of group k from the hyperprior and
groups < k only (the group-wise causal modelling of Li et al.'s Grouped-Mixer, 2024).

Tokens are (latent position, channel half) pairs, so a window of N positions holds 2N tokens.
Each token has two streams (as in two-stream attention): its *query* stream carries only the
hyperprior feature of its position (and a learned embedding of its half), its *content* stream
adds its own quantized values. A query of group k attends to content tokens of groups < k in its
window (plus one learned "null" token, so group 0 attends to something), with Swin's relative
position bias. Because the mask is exact (masked weights are exactly 0), training computes all
four groups in one pass on noisy latents, while compress/decompress run the same function four
times with the groups >= k zeroed, and get the same parameters.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from swinjax.entropy.context import checkerboard
from swinjax.layers.blocks import Mlp, window_geometry
from swinjax.layers.windows import relative_position_index, window_partition, window_reverse

NUM_GROUPS = 4


def token_groups(h: int, w: int) -> np.ndarray:
    """``[h, w, 2]`` int: the coding group of each (position, channel half) token."""
    spatial = np.where(checkerboard(h, w), 0, 1)
    return 2 * spatial[..., None] + np.arange(2)[None, None, :]


@functools.lru_cache(maxsize=64)
def group_attention_mask(
    size: tuple[int, int], window: tuple[int, int], padded: tuple[int, int]
) -> np.ndarray:
    """Additive mask ``[nH, nW, 2N, 2N]``: query t may see key s iff group(s) < group(t).

    Padding positions (beyond ``size``) are never keys. Token order inside a window is
    (position, half).
    """
    h, w = size
    hp, wp = padded
    groups = np.full((hp, wp, 2), 99, np.int64)
    groups[:h, :w] = token_groups(h, w)
    wh, ww = window
    g = groups.reshape(hp // wh, wh, wp // ww, ww, 2).transpose(0, 2, 1, 3, 4)
    g = g.reshape(hp // wh, wp // ww, wh * ww * 2)
    allowed = g[..., None, :] < g[..., :, None]
    mask = np.where(allowed, 0.0, -1e9).astype(np.float32)
    mask.setflags(write=False)
    return mask


class MaskedGroupedModel(nn.Module):
    """Masked Swin-block entropy model over four checkerboard x channel-half groups.

    Attributes:
        latent_channels: channels C of y (even).
        dim: token width of the Swin block.
        num_heads: attention heads.
        window: window size over latent positions.
        mlp_ratio: MLP width relative to ``dim``.
    """

    latent_channels: int
    dim: int = 256
    num_heads: int = 8
    window: int = 8
    mlp_ratio: float = 4.0

    def setup(self) -> None:
        """Creates the block's parameters."""
        if self.latent_channels % 2:
            raise ValueError(f"latent_channels must be even, got {self.latent_channels}")
        if self.dim % self.num_heads:
            raise ValueError(f"{self.num_heads} heads do not divide dim {self.dim}")
        d, heads = self.dim, self.num_heads
        self.hyper_in = nn.Dense(d)
        self.value_in = nn.Dense(d, use_bias=False)
        emb = nn.initializers.normal(0.02)
        self.half_query = self.param("half_query", emb, (2, d))
        self.half_content = self.param("half_content", emb, (2, d))
        self.norm_q = nn.LayerNorm(epsilon=1e-5)
        self.norm_kv = nn.LayerNorm(epsilon=1e-5)
        self.q = nn.Dense(d)
        self.kv = nn.Dense(2 * d)
        self.null_kv = self.param("null_kv", emb, (2, heads, d // heads))
        ws = self.window
        self.relative_position_bias_table = self.param(
            "relative_position_bias_table",
            nn.initializers.truncated_normal(0.02),
            ((2 * ws - 1) ** 2, heads),
        )
        self.proj = nn.Dense(d)
        self.norm2 = nn.LayerNorm(epsilon=1e-5)
        self.mlp = Mlp(int(round(d * self.mlp_ratio)))
        self.norm_out = nn.LayerNorm(epsilon=1e-5)
        self.out = nn.Dense(self.latent_channels)  # per token: mean and scale of its half

    @property
    def num_groups(self) -> int:
        """Groups coded in sequence."""
        return NUM_GROUPS

    def group_masks(self, h: int, w: int) -> np.ndarray:
        """``[4, h, w, C]`` bool masks of the groups over y."""
        g = np.repeat(token_groups(h, w), self.latent_channels // 2, axis=-1)
        return np.stack([g == k for k in range(NUM_GROUPS)])

    def one_pass_params(self, hyper: jax.Array, y_ctx: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and scale of every element, each from groups strictly before its own.

        Args:
            hyper: hyperprior features ``[B, h, w, F]``.
            y_ctx: quantized (or noisy, in training) latents ``[B, h, w, C]``.

        Returns:
            ``(mu, scale)``, each ``[B, h, w, C]``.
        """
        b, h, w, c = y_ctx.shape
        half, d, heads = c // 2, self.dim, self.num_heads
        hd = d // heads
        ws = (self.window, self.window)
        win, _, (hp, wp) = window_geometry((h, w), ws, False)
        hq = self.hyper_in(hyper)[:, :, :, None, :]  # [B, h, w, 1, D]
        q0 = hq + self.half_query  # [B, h, w, 2, D]
        c0 = hq + self.value_in(y_ctx.reshape(b, h, w, 2, half)) + self.half_content

        def to_windows(t: jax.Array) -> jax.Array:
            t = jnp.pad(t, ((0, 0), (0, hp - h), (0, wp - w), (0, 0), (0, 0)))
            t = window_partition(t.reshape(b, hp, wp, 2 * d), win)  # [B, nH, nW, N, 2D]
            return t.reshape(*t.shape[:3], -1, d)  # [B, nH, nW, 2N, D] in (position, half) order

        q0w, c0w = to_windows(q0), to_windows(c0)
        n2 = q0w.shape[3]
        q = self.q(self.norm_q(q0w)).reshape(*q0w.shape[:4], heads, hd)
        kv = self.kv(self.norm_kv(c0w)).reshape(*c0w.shape[:4], 2, heads, hd)
        k, v = kv[..., 0, :, :], kv[..., 1, :, :]
        scale = 1.0 / np.sqrt(hd)
        logits = jnp.einsum("bxyqhd,bxykhd->bxyhqk", q * scale, k)
        index = relative_position_index(win, ws)
        npos = win[0] * win[1]
        bias = self.relative_position_bias_table[index.reshape(-1)].reshape(npos, npos, heads)
        bias = jnp.repeat(jnp.repeat(bias, 2, axis=0), 2, axis=1).transpose(2, 0, 1)
        mask = group_attention_mask((h, w), win, (hp, wp))
        logits = logits + bias + jnp.asarray(mask)[None, :, :, None]
        null_logit = jnp.einsum("bxyqhd,hd->bxyhq", q * scale, self.null_kv[0])[..., None]
        logits = jnp.concatenate([logits, null_logit], axis=-1).astype(jnp.float32)
        attn = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bxyhqk,bxykhd->bxyqhd", attn[..., :n2], v)
        out = out + jnp.moveaxis(attn[..., n2], 3, 4)[..., None] * self.null_kv[1]
        out = q0w + self.proj(out.reshape(*q0w.shape))
        out = out + self.mlp(self.norm2(out))
        params = self.out(self.norm_out(out))  # [B, nH, nW, 2N, C]: (mean | scale) of a half
        params = params.reshape(*params.shape[:3], -1, 2 * c)  # [B, nH, nW, N, 2 * C]
        params = window_reverse(params, win)[:, :h, :w].reshape(b, h, w, 2, 2, half)
        mu = params[..., 0, :].reshape(b, h, w, c)
        sigma = params[..., 1, :].reshape(b, h, w, c)
        return mu, sigma

    def group_params(
        self, hyper: jax.Array, y_hat: jax.Array, k: int
    ) -> tuple[jax.Array, jax.Array]:
        """Parameters of group k with every group ``>= k`` zeroed (decoding order)."""
        _, h, w, _ = y_hat.shape
        known = np.repeat(token_groups(h, w) < k, self.latent_channels // 2, axis=-1)
        return self.one_pass_params(hyper, jnp.where(known, y_hat, 0.0))

    def fill_group(
        self, hyper: jax.Array, y_hat: jax.Array, k: int, values: jax.Array
    ) -> jax.Array:
        """Writes group k's values into ``y_hat``."""
        del hyper
        _, h, w, _ = y_hat.shape
        return jnp.where(self.group_masks(h, w)[k], values, y_hat)

    def __call__(self, hyper: jax.Array, y_hat: jax.Array) -> jax.Array:
        """Initialisation entry point."""
        mu, _ = self.one_pass_params(hyper, y_hat)
        return mu
