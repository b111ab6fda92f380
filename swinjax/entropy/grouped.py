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

import dataclasses
import functools
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class WindowTokenSets:
    """Each group's tokens inside a window, and which of them are real (not padding).

    Attributes:
        tokens: per group, the token numbers (``2 * position + half`` in a window) of the group,
            in order; the same in every window.
        valid: per group, ``[nH, nW, M]`` bool: the token's position lies inside the map.
    """

    tokens: tuple[np.ndarray, ...]
    valid: tuple[np.ndarray, ...]


@functools.lru_cache(maxsize=64)
def _window_token_sets(
    size: tuple[int, int], window: tuple[int, int], padded: tuple[int, int]
) -> WindowTokenSets:
    h, w = size
    wh, ww = window
    hp, wp = padded
    if (hp > wh and wh % 2) or (wp > ww and ww % 2):
        raise ValueError(f"windows {window} over {padded} do not share one checkerboard pattern")
    groups = token_groups(wh, ww).reshape(-1)  # the pattern of every window (even origins)
    inside = np.zeros((hp, wp), bool)
    inside[:h, :w] = True
    inside = inside.reshape(hp // wh, wh, wp // ww, ww).transpose(0, 2, 1, 3)
    inside = np.repeat(inside.reshape(hp // wh, wp // ww, wh * ww), 2, axis=-1)
    tokens = tuple(np.flatnonzero(groups == k).astype(np.int32) for k in range(NUM_GROUPS))
    valid = tuple(inside[:, :, t] for t in tokens)
    for a in (*tokens, *valid):
        a.setflags(write=False)
    return WindowTokenSets(tokens, valid)


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

    # -- coding: one pass of work over the four groups ---------------------------------------
    # compress / decompress compute, for group k, only the queries of group k's tokens, and the
    # keys / values of each group's content tokens once, when that group is known. A query of
    # group k sees exactly the keys of groups < k (plus the null token), as in
    # :meth:`one_pass_params`, whose masked weights are exactly zero: the same function, with a
    # quarter of the queries per call and no recomputed keys. Token sets are the same in every
    # window (window origins are even, or there is a single window along that axis), so they
    # are static index lists.

    def coding_state(self, hyper: jax.Array) -> dict[str, Any]:
        """Per-image state of the group loop: hyperprior tokens, no keys yet.

        Args:
            hyper: hyperprior features ``[B, h, w, F]``.

        Returns:
            ``{"tokens": [B, nH, nW, N, D], "kv": ()}``: the hyperprior part of every position's
            token, in windows; ``kv`` collects each known group's keys and values.
        """
        _, h, w, _ = hyper.shape
        win, _, (hp, wp) = window_geometry((h, w), (self.window,) * 2, False)
        t = self.hyper_in(hyper)
        t = jnp.pad(t, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
        return {"tokens": window_partition(t, win), "kv": ()}

    def coding_params(
        self, state: dict[str, Any], k: int, size: tuple[int, int]
    ) -> tuple[jax.Array, jax.Array]:
        """Mean and scale of group k (full-size ``[B, h, w, C]``, zero outside group k).

        Args:
            state: :meth:`coding_state` after :meth:`coding_fill` of groups ``< k``.
            k: the group.
            size: ``(h, w)`` of y.
        """
        h, w = size
        c, d, heads = self.latent_channels, self.dim, self.num_heads
        half, hd = c // 2, d // heads
        win, _, (hp, wp) = window_geometry((h, w), (self.window,) * 2, False)
        tokens = state["tokens"]
        b, nh, nw, n, _ = tokens.shape
        sets = _window_token_sets((h, w), win, (hp, wp))
        qi = sets.tokens[k]
        q0 = tokens[:, :, :, qi // 2] + self.half_query[qi % 2]  # [B, nH, nW, M, D]
        q = self.q(self.norm_q(q0)).reshape(*q0.shape[:4], heads, hd)
        q = q * jnp.asarray(1.0 / np.sqrt(hd), q.dtype)
        if k == 0:  # only the null token to attend to: its value, with weight exactly 1
            out = jnp.broadcast_to(self.null_kv[1], q.shape).astype(q.dtype)
        else:
            kv = jnp.concatenate(state["kv"][:k], axis=3)  # [B, nH, nW, K, 2, heads, hd]
            keys = np.concatenate(sets.tokens[:k])
            logits = jnp.einsum("bxyqhd,bxykhd->bxyhqk", q, kv[..., 0, :, :])
            index = relative_position_index(win, (self.window,) * 2)[qi // 2][:, keys // 2]
            bias = self.relative_position_bias_table[index.reshape(-1)]
            bias = bias.reshape(len(qi), len(keys), heads).transpose(2, 0, 1)
            valid = np.concatenate(sets.valid[:k], axis=-1)  # [nH, nW, K]
            key_mask = np.where(valid, 0.0, -1e9).astype(np.float32)
            logits = logits + bias + jnp.asarray(key_mask, logits.dtype)[None, :, :, None, None]
            null_logit = jnp.einsum("bxyqhd,hd->bxyhq", q, self.null_kv[0])[..., None]
            logits = jnp.concatenate([logits, null_logit], axis=-1)
            attn = jax.nn.softmax(logits, axis=-1)
            out = jnp.einsum("bxyhqk,bxykhd->bxyqhd", attn[..., :-1], kv[..., 1, :, :])
            out = out + jnp.moveaxis(attn[..., -1], 3, 4)[..., None] * self.null_kv[1]
        out = q0 + self.proj(out.reshape(*q0.shape))
        out = out + self.mlp(self.norm2(out))
        params = self.out(self.norm_out(out))  # [B, nH, nW, M, C]: (mean | scale) of its half
        full = jnp.zeros((b, nh, nw, n * 2, c), params.dtype).at[:, :, :, qi].set(params)
        full = window_reverse(full.reshape(b, nh, nw, n, 2 * c), win)[:, :h, :w]
        full = full.reshape(b, h, w, 2, 2, half)
        return full[..., 0, :].reshape(b, h, w, c), full[..., 1, :].reshape(b, h, w, c)

    def coding_fill(self, state: dict[str, Any], k: int, y_ctx: jax.Array) -> dict[str, Any]:
        """Adds group k's keys and values, from its quantized values in ``y_ctx [B, h, w, C]``."""
        b, h, w, c = y_ctx.shape
        win, _, (hp, wp) = window_geometry((h, w), (self.window,) * 2, False)
        tokens = state["tokens"]
        ki = _window_token_sets((h, w), win, (hp, wp)).tokens[k]
        v = jnp.pad(y_ctx, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
        v = window_partition(v, win)  # [B, nH, nW, N, C]
        v = v.reshape(*v.shape[:3], -1, c // 2)[:, :, :, ki]  # [B, nH, nW, M, C / 2]
        c0 = tokens[:, :, :, ki // 2] + self.value_in(v) + self.half_content[ki % 2]
        heads = self.num_heads
        kv = self.kv(self.norm_kv(c0)).reshape(*c0.shape[:4], 2, heads, self.dim // heads)
        return {"tokens": tokens, "kv": (*state["kv"], kv)}

    def _group_index(self, h: int, w: int, k: int) -> tuple[np.ndarray, int]:
        """Raster positions of group k (anchors or non-anchors) and its channel half."""
        positions = np.flatnonzero(checkerboard(h, w).reshape(-1) == (k < 2)).astype(np.int32)
        return positions, k % 2

    def group_gather(self, x: jax.Array, k: int) -> jax.Array:
        """Group k's entries of ``x [B, h, w, C]`` as ``[B, n_k]``, in the C order of its mask."""
        b, h, w, c = x.shape
        positions, half = self._group_index(h, w, k)
        return x.reshape(b, h * w, 2, c // 2)[:, positions, half].reshape(b, -1)

    def group_scatter(self, x: jax.Array, k: int, values: jax.Array) -> jax.Array:
        """``x`` with group k's entries set from ``values [B, n_k]`` (inverse of the gather)."""
        b, h, w, c = x.shape
        positions, half = self._group_index(h, w, k)
        v = values.astype(x.dtype).reshape(b, len(positions), c // 2)
        return x.reshape(b, h * w, 2, c // 2).at[:, positions, half].set(v).reshape(x.shape)

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
