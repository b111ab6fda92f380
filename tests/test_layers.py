"""Behaviour of the Swin layers: windows, masks, relative positions, (convolutional) attention."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax.layers import (
    AdaLN,
    ConvWindowAttention,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from swinjax.layers.attention import effective_kv_stride
from swinjax.transforms import build_transforms


def _normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# -- window partition / reverse -----------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, window",
    [
        ((2, 8, 8, 3), (4, 4)),
        ((1, 6, 10, 5), (3, 2)),
        ((3, 4, 12, 1), (4, 3)),
        ((1, 5, 7, 2), (5, 7)),
        ((1, 2, 6, 4), (1, 2)),
    ],
)
def test_window_reverse_inverts_window_partition(shape, window):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    windows = np.asarray(window_partition(jnp.asarray(x), window))
    b, h, w, c = shape
    wh, ww = window
    assert windows.shape == (b, h // wh, w // ww, wh * ww, c)
    # Token t of window (r, s) is the pixel (r*wh + t // ww, s*ww + t % ww), row-major.
    for r, s, t in itertools.product(range(h // wh), range(w // ww), range(wh * ww)):
        np.testing.assert_array_equal(windows[:, r, s, t], x[:, r * wh + t // ww, s * ww + t % ww])
    np.testing.assert_array_equal(np.asarray(window_reverse(jnp.asarray(windows), window)), x)


def test_window_partition_rejects_maps_not_a_multiple_of_the_window():
    with pytest.raises(ValueError, match="not a multiple of the window"):
        window_partition(jnp.zeros((1, 6, 8, 2)), (4, 4))


# -- relative position index ----------------------------------------------------------------------


def _loop_relative_position_index(window, table_window):
    """Index of (query, key) into the (2*th-1) x (2*tw-1) table, by explicit loops."""
    wh, ww = window
    th, tw = table_window
    n = wh * ww
    index = np.zeros((n, n), np.int64)
    for qi in range(n):
        qy, qx = divmod(qi, ww)
        for ki in range(n):
            ky, kx = divmod(ki, ww)
            # Row of the table for displacement (dy, dx), dy in [-(th-1), th-1], row-major.
            index[qi, ki] = (qy - ky + th - 1) * (2 * tw - 1) + (qx - kx + tw - 1)
    return index


@pytest.mark.parametrize(
    "window, table_window",
    [((4, 4), (4, 4)), ((2, 3), (2, 3)), ((3, 2), (4, 4)), ((1, 4), (4, 4)), ((2, 2), (8, 8))],
)
def test_relative_position_index_matches_explicit_loops(window, table_window):
    index = relative_position_index(window, table_window)
    np.testing.assert_array_equal(index, _loop_relative_position_index(window, table_window))


@pytest.mark.parametrize("table_window", [(4, 4), (3, 5)])
def test_relative_position_index_covers_the_table_once_per_displacement(table_window):
    th, tw = table_window
    index = relative_position_index(table_window, table_window)
    n = th * tw
    assert set(np.unique(index)) == set(range((2 * th - 1) * (2 * tw - 1)))
    # Same displacement <=> same table row, over all pairs of (query, key) pairs.
    disp = {}
    for qi, ki in itertools.product(range(n), repeat=2):
        (qy, qx), (ky, kx) = divmod(qi, tw), divmod(ki, tw)
        disp.setdefault((qy - ky, qx - kx), set()).add(int(index[qi, ki]))
    assert all(len(rows) == 1 for rows in disp.values())
    assert len({r for rows in disp.values() for r in rows}) == len(disp)


def test_clamped_window_indexes_the_table_like_the_full_window():
    """A window clamped to a small map reuses the table rows of the same displacements."""
    full = relative_position_index((4, 4), (4, 4))
    small = relative_position_index((2, 3), (4, 4))
    tokens = [y * 4 + x for y in range(2) for x in range(3)]  # the 2x3 top-left corner
    np.testing.assert_array_equal(small, full[np.ix_(tokens, tokens)])
    with pytest.raises(ValueError, match="larger than"):
        relative_position_index((5, 4), (4, 4))


# -- shifted-window mask, against a brute-force reference -----------------------------------------


def test_mask_is_none_without_shift_and_padding():
    assert shifted_window_mask((8, 8), (4, 4), (0, 0)) is None
    assert shifted_window_mask((8, 8), (4, 4), (0, 0), (8, 8)) is None
    assert shifted_window_mask((8, 8), (4, 4), (0, 0), (7, 8)) is not None


def _allowed_1d(u_q, u_k, size, window, shift):
    """Can unrolled position u_q attend to u_k along one axis (window and region only)?

    After a cyclic roll by -shift, rolled position p holds unrolled (p + shift) mod size; keys must
    be in the query's window, and on the same side of the wrap (the first ``shift`` positions are
    the ones the roll carried to the far end of the map).
    """
    p_q, p_k = (u_q - shift) % size, (u_k - shift) % size
    return p_q // window == p_k // window and (u_q < shift) == (u_k < shift)


def _dwconv(x, kernel, bias):
    """Depthwise 3x3 'SAME' convolution with zero padding, by explicit taps (float64)."""
    _, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros_like(x)
    for i, j in itertools.product(range(3), range(3)):
        out += xp[:, i : i + h, j : j + w] * kernel[i, j]
    return out + bias


def _reference_attention(
    params, x, *, heads, window, table_window, shift, valid, projection, kv_stride, bias
):
    """Per-query softmax over exactly the allowed keys, from the module's own parameters."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["params"])
    x = np.asarray(x, np.float64)
    b, h, w, c = x.shape
    hd = c // heads
    if projection == "linear":
        q, k, v = np.split(x @ p["qkv"]["kernel"] + p["qkv"]["bias"], 3, axis=-1)
    else:
        q, k, v = (_dwconv(x, p[f"{n}_dw"]["kernel"], p[f"{n}_dw"]["bias"]) for n in "qkv")
        if projection == "dw_pw":
            q, k, v = (
                t @ p[f"{n}_pw"]["kernel"] + p[f"{n}_pw"]["bias"]
                for t, n in zip((q, k, v), "qkv", strict=True)
            )
    (wh, ww), (th, tw), (sh, sw), (vh, vw) = window, table_window, shift, valid
    out = np.zeros((b, vh, vw, c))
    for i, j in itertools.product(range(vh), range(vw)):
        keys = [
            (a, e)
            for a in range(0, vh, kv_stride)  # strided keys sit on even positions; never padding
            for e in range(0, vw, kv_stride)
            if _allowed_1d(i, a, h, wh, sh) and _allowed_1d(j, e, w, ww, sw)
        ]
        assert keys, "every valid query has at least itself (or a strided neighbour)"
        ka = np.array([k[:, a, e] for a, e in keys])  # [K, B, C]
        va = np.array([v[:, a, e] for a, e in keys])
        for hh in range(heads):
            sl = slice(hh * hd, (hh + 1) * hd)
            logits = np.einsum("bd,kbd->bk", q[:, i, j, sl], ka[:, :, sl]) / math.sqrt(hd)
            if bias:
                rows = [(i - a + th - 1) * (2 * tw - 1) + (j - e + tw - 1) for a, e in keys]
                logits = logits + p["relative_position_bias_table"][rows, hh][None]
            attn = np.exp(logits - logits.max(-1, keepdims=True))
            attn /= attn.sum(-1, keepdims=True)
            out[:, i, j, sl] = np.einsum("bk,kbd->bd", attn, va[:, :, sl])
    return out @ p["proj"]["kernel"] + p["proj"]["bias"]


# (size of the valid map, padded size, window used, table window, shift, projection, kv_stride)
ATTENTION_CASES = {
    "linear-shift-pad": ((6, 10), (8, 12), (4, 4), (4, 4), (2, 2), "linear", 1),
    "linear-nonsquare": ((5, 7), (6, 8), (2, 4), (2, 4), (1, 2), "linear", 1),
    "linear-clamped": ((3, 7), (3, 8), (3, 4), (4, 4), (0, 2), "linear", 1),
    "linear-noshift-pad": ((7, 5), (8, 8), (4, 4), (4, 4), (0, 0), "linear", 1),
    "linear-shift-nopad": ((8, 8), (8, 8), (4, 4), (4, 4), (2, 2), "linear", 1),
    "dw-shift-pad": ((6, 10), (8, 12), (4, 4), (4, 4), (2, 2), "dw", 1),
    "dw_pw-shift-pad": ((7, 6), (8, 8), (4, 4), (4, 4), (2, 2), "dw_pw", 1),
    "dw-kvstride-shift-pad": ((7, 10), (8, 12), (4, 4), (4, 4), (2, 2), "dw", 2),
    "dw_pw-kvstride-nopad": ((8, 8), (8, 8), (4, 4), (4, 4), (2, 2), "dw_pw", 2),
}


@functools.lru_cache
def _attention_params(fast, projection, kv_stride, table_window, bias, dim=8, heads=2):
    """Parameters of a WindowAttention (they do not depend on the map size), made once."""
    module = WindowAttention(dim, heads, table_window, projection, bias, kv_stride)
    x = jnp.zeros((1, *table_window, dim))
    params = fast(lambda k, x: module.init(k, x, table_window, (0, 0), None), jax.random.key(0), x)
    if bias:  # a bias table of std 0.02 would hardly matter at 1e-5: make it count
        table = params["params"]["relative_position_bias_table"]
        params["params"]["relative_position_bias_table"] = _normal(3, table.shape)
    return params


@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_window_attention_matches_brute_force_reference(fast, case):
    valid, size, window, table_window, shift, projection, kv_stride = ATTENTION_CASES[case]
    dim, heads = 8, 2
    bias = projection == "linear"
    module = WindowAttention(dim, heads, table_window, projection, bias, kv_stride)
    stride = effective_kv_stride(kv_stride, window, shift)
    assert stride == kv_stride
    mask = shifted_window_mask(size, window, shift, valid, stride)
    # Zeros in the padding, as SwinBlock pads its normalised map.
    x = np.zeros((2, *size, dim), np.float32)
    x[:, : valid[0], : valid[1]] = np.random.default_rng(1).normal(size=(2, *valid, dim))
    params = _attention_params(fast, projection, kv_stride, table_window, bias, dim, heads)
    with jax.default_matmul_precision("highest"):
        out = fast(lambda p, x: module.apply(p, x, window, shift, mask), params, x)
    ref = _reference_attention(
        params,
        x,
        heads=heads,
        window=window,
        table_window=table_window,
        shift=shift,
        valid=valid,
        projection=projection,
        kv_stride=kv_stride,
        bias=bias,
    )
    out = np.asarray(out)[:, : valid[0], : valid[1]]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_shifted_mask_blocks_attention_across_the_wrap(fast):
    """Changing a token of another region of the same rolled window leaves a query unchanged."""
    dim, size, window, shift = 8, (8, 8), (4, 4), (2, 2)
    module = WindowAttention(dim, 2, window)
    mask = shifted_window_mask(size, window, shift)
    params = _attention_params(fast, "linear", 1, window, True, dim, 2)
    x = _normal(0, (size[0], size[1], dim))
    # Rolled window (1, 1) holds unrolled rows/cols {6, 7, 0, 1}: (7, 7) and (0, 0) share it
    # but sit in different regions; (7, 6) shares the region of (7, 7).
    batch = np.stack([x, x, x])
    batch[1, 0, 0] += 10.0
    batch[2, 7, 6] += 10.0
    masked, unmasked = fast(
        lambda p, x: (
            module.apply(p, x, window, shift, mask),
            module.apply(p, x, window, shift, None),
        ),
        params,
        batch,
    )
    out, far, near = np.asarray(masked[:, 7, 7])
    np.testing.assert_array_equal(out, far)
    assert not np.allclose(out, near)
    # Without the mask the roll would let them interact.
    assert not np.allclose(np.asarray(unmasked[0, 7, 7]), np.asarray(unmasked[1, 7, 7]))


@pytest.mark.parametrize("shift", [(0, 0), (2, 2)])
def test_window_attention_ignores_padding_values(fast, shift):
    """With the padding masked out, whatever the padded tokens hold does not reach valid ones."""
    dim, valid, size, window = 8, (6, 7), (8, 8), (4, 4)
    module = WindowAttention(dim, 2, window)
    mask = shifted_window_mask(size, window, shift, valid)
    params = _attention_params(fast, "linear", 1, window, True, dim, 2)
    x = _normal(0, (1, *size, dim))
    garbage = x.copy()
    garbage[:, valid[0] :] = 1e3
    garbage[:, :, valid[1] :] = -1e3
    out = fast(
        lambda p, x: module.apply(p, x, window, shift, mask), params, np.concatenate([x, garbage])
    )
    out = np.asarray(out)[:, : valid[0], : valid[1]]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-5)


# -- convolutional attention: no positions, equivariant to whole-window translations --------------


def _param_paths(params):
    return [
        "/".join(str(getattr(k, "key", k)) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]


def _interior_positions(size, window, shift):
    """Unrolled positions of the (rolled) windows whose 3x3 halo lies inside the map."""
    keep = []
    n_windows = size // window
    for r in range(n_windows - (1 if shift else 0)):  # the last shifted window wraps around
        lo, hi = r * window + shift, (r + 1) * window + shift
        if lo - 1 >= 0 and hi + 1 <= size:
            keep.extend(range(lo, hi))
    return set(keep)


@pytest.mark.parametrize(
    "projection, kv_stride, shift, k",
    [
        ("dw", 1, (0, 0), 1),
        ("dw", 1, (2, 2), 1),
        ("dw_pw", 1, (2, 2), 2),
        ("dw", 2, (2, 2), 1),
        ("dw_pw", 2, (0, 0), 1),
    ],
)
def test_conv_attention_is_equivariant_to_whole_window_translations(
    fast, projection, kv_stride, shift, k
):
    dim, win, size = 8, 4, 20
    module = ConvWindowAttention(dim, 2, (win, win), projection, kv_stride)
    mask = shifted_window_mask((size, size), (win, win), shift, None, kv_stride)
    params = _attention_params(fast, projection, kv_stride, (win, win), False, dim, 2)
    assert not any("relative_position" in p for p in _param_paths(params))
    canvas = _normal(0, (1, size + k * win, size + k * win, dim))
    a = canvas[:, :size, :size]
    b = canvas[:, k * win :, k * win :]  # b[i, j] = a[i + k*win, j + k*win]
    out = fast(
        lambda p, x: module.apply(p, x, (win, win), shift, mask), params, np.concatenate([a, b])
    )
    out_a, out_b = np.asarray(out[0]), np.asarray(out[1])
    interior = _interior_positions(size, win, shift[0])
    rows = sorted(i for i in interior if i + k * win in interior)
    assert rows, "the test must compare something"
    ia = np.ix_([i + k * win for i in rows], [i + k * win for i in rows])
    ib = np.ix_(rows, rows)
    np.testing.assert_allclose(out_b[ib], out_a[ia], rtol=1e-5, atol=1e-5)
    # ... while a translation by less than a window is not an exact symmetry of the windows.
    assert not np.allclose(
        np.asarray(out_b[ib]),
        np.asarray(out_a[np.ix_([i + k * win - 1 for i in rows], [i + k * win for i in rows])]),
        atol=1e-3,
    )


def test_linear_projection_rejects_kv_stride():
    x = jnp.zeros((1, 4, 4, 4))
    with pytest.raises(ValueError, match="kv_stride"):
        WindowAttention(4, 1, (4, 4), "linear", False, 2).init(
            jax.random.key(0), x, (4, 4), (0, 0), None
        )
    with pytest.raises(ValueError, match="projection"):
        ConvWindowAttention(4, 1, (4, 4), "linear")


@pytest.mark.parametrize("name, has_bias", [("swinnpe", False), ("swint_charm", True)])
def test_only_swin_attention_has_position_parameters(tiny, name, has_bias):
    model = tiny(name).model
    g_a = build_transforms(model)["g_a"]
    params = jax.eval_shape(g_a.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    paths = _param_paths(params)
    assert any("attn" in p for p in paths)
    assert any("relative_position_bias_table" in p for p in paths) == has_bias
    if not has_bias:
        assert any("q_dw" in p for p in paths) and not any("qkv" in p for p in paths)


# -- AdaLN -----------------------------------------------------------------------------------------


def test_adaln_output_depends_on_the_embedding(fast):
    module = AdaLN()
    x, e = _normal(0, (2, 4, 4, 8)), _normal(1, (2, 16))

    def run(x, e):
        params = module.init(jax.random.key(2), x, e)
        return [module.apply(params, x, ee) for ee in (e, e[::-1], e.at[1].set(0.0))]

    y1, y2, y3 = (np.asarray(y) for y in fast(run, x, e))
    assert np.abs(y1 - y2).max() > 1e-3
    # Modulation is per example: example 0 does not see example 1's embedding.
    np.testing.assert_array_equal(y1[0], y3[0])


# -- hand-written CPU kernels vs the plain JAX formulation ---------------------------------------


def _both_paths(fast, fn, *args):
    """``fn(*args)`` traced once with the CPU kernels and once with the generic formulation."""
    from swinjax.layers.ops import kernels

    out = {}
    for kind in ("cpu", "generic"):
        with kernels(kind):
            # A new function object per path: jit's cache does not know the kernel choice.
            out[kind] = jax.tree.map(np.asarray, fast(lambda *a: fn(*a), *args))
    return out["cpu"], out["generic"]


def _assert_trees_close(a, b, rtol, atol):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _value_and_grads(f):
    """``(f(*args), grad of sum(f * w) w.r.t. every argument)`` with a fixed random cotangent."""

    def run(*args):
        y, vjp = jax.vjp(f, *args)
        w = jax.random.normal(jax.random.key(5), y.shape, y.dtype)
        return y, vjp(w)

    return run


def test_cpu_kernels_and_plain_jax_give_the_same_primitives_and_gradients(fast):
    from swinjax.layers.ops import NormParams, fused_dense, gelu, layer_norm

    x = _normal(0, (3, 5, 24)) * 2.0
    scale, bias = 1.0 + 0.3 * _normal(1, (24,)), _normal(2, (24,))
    kernel, dbias = _normal(3, (24, 16)) / 5.0, _normal(4, (16,))

    def ln_dense(x, s, b, k, c):
        return fused_dense(x, k, c, norm=NormParams(s, b, 1e-5))

    cases = {
        "gelu": (gelu, (x,)),
        "layer_norm": (lambda x, s, b: layer_norm(x, s, b, 1e-5), (x, scale, bias)),
        "fused_dense(norm)": (ln_dense, (x, scale, bias, kernel, dbias)),
        "fused_dense(gelu)": (
            lambda x, k, c: fused_dense(x, k, c, activation="gelu"),
            (x, kernel, dbias),
        ),
    }
    for name, (f, args) in cases.items():
        cpu, generic = _both_paths(fast, _value_and_grads(f), *args)
        try:
            _assert_trees_close(cpu, generic, rtol=2e-5, atol=2e-5)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


@pytest.mark.parametrize("with_bias", [True, False])
def test_cpu_attention_backward_pass_matches_autodiff(fast, with_bias):
    from swinjax.layers.attention import window_attention_core

    grid, heads, n, d = (2, 2, 3), 2, 8, 4
    w = grid[0] * grid[1] * grid[2]
    q, k, v = (_normal(s, (w, heads, n, d)) for s in (0, 1, 2))
    bias = _normal(3, (heads, n, n)) if with_bias else None
    mask = np.where(np.random.default_rng(4).random((grid[1], grid[2], n, n)) < 0.3, -1e9, 0.0)
    mask[..., np.arange(n), np.arange(n)] = 0.0  # every query keeps a key
    mask = mask.astype(np.float32)

    def f(q, k, v, *b):
        return window_attention_core(q, k, v, b[0] if b else None, mask, grid)

    args = (q, k, v, bias) if with_bias else (q, k, v)
    cpu, generic = _both_paths(fast, _value_and_grads(f), *args)
    _assert_trees_close(cpu, generic, rtol=2e-5, atol=2e-5)


def _random_params(abstract, seed):
    """Random parameters of the shapes in ``abstract`` (cheaper than compiling an init)."""
    rng = np.random.default_rng(seed)

    def make(path, leaf):
        name = str(getattr(path[-1], "key", ""))
        if name in ("scale", "layer_scale"):
            return (1.0 + 0.2 * rng.normal(size=leaf.shape)).astype(np.float32)
        fan_in = leaf.shape[0] if leaf.ndim == 2 else 9 if leaf.ndim == 3 else 10
        return (rng.normal(size=leaf.shape) / math.sqrt(fan_in)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(make, abstract)


def test_both_layer_paths_train_the_transforms_alike(fast):
    """A small g_a -> g_s (merges, shifted padded windows, linear and convolutional attention,
    AdaLN, splits): the same loss and parameter gradients from both layer formulations."""
    from swinjax.transforms import Analysis, Synthesis

    g_a = Analysis((8, 16), (0, 2), (1, 2), window=4, out_channels=12, adaln=True)
    g_s = Synthesis(
        (16, 8),
        (2, 0),
        (2, 1),
        window=4,
        out_channels=3,
        in_proj=True,
        adaln=True,
        projection="dw",
        relative_position_bias=False,
    )
    x = np.random.default_rng(0).random((2, 40, 24, 3), np.float32)  # 10x6 latent: padding
    emb = _normal(1, (2, 16))
    y = jax.ShapeDtypeStruct((2, 10, 6, 12), jnp.float32)
    abstract = {
        "g_a": jax.eval_shape(lambda: g_a.init(jax.random.key(0), x, emb)),
        "g_s": jax.eval_shape(lambda: g_s.init(jax.random.key(0), jnp.zeros(y.shape), emb)),
    }
    params = _random_params(abstract, 2)

    def loss_and_grads(params, x):
        def loss(p):
            x_hat = g_s.apply(p["g_s"], g_a.apply(p["g_a"], x, emb), emb)
            return jnp.mean(jnp.square(x_hat - x))

        return jax.value_and_grad(loss)(params)

    cpu, generic = _both_paths(fast, loss_and_grads, params, x)
    np.testing.assert_allclose(cpu[0], generic[0], rtol=1e-5)
    scale = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(cpu[1]))
    assert scale > 0
    _assert_trees_close(cpu[1], generic[1], rtol=1e-3, atol=1e-4 * scale)


def test_kernels_auto_follows_the_platform_and_rejects_unknown_names():
    from swinjax.layers.ops import kernels, use_cpu_kernels

    assert jax.default_backend() == "cpu"
    assert use_cpu_kernels()
    with kernels("generic"):
        assert not use_cpu_kernels()
        with kernels("auto"), jax.default_device(jax.devices("cpu")[0]):
            assert use_cpu_kernels()
    with kernels("cpu"):
        assert use_cpu_kernels()
    with pytest.raises(ValueError, match="kernels must be one of"):
        with kernels("gpu"):
            pass


def test_layer_norm_params_has_the_parameters_of_layer_norm(fast):
    """A module written with LayerNormParams + Dense(norm=) loads LayerNorm's checkpoints."""
    from swinjax.layers.ops import Dense, LayerNorm, LayerNormParams

    x = _normal(0, (2, 3, 8))
    fused = LayerNormParams(name="norm")
    plain = LayerNorm(name="norm")
    pf = fast(lambda: fused.init(jax.random.key(0), 8))
    pp = fast(lambda x: plain.init(jax.random.key(0), x), x)
    assert jax.tree.map(np.shape, pf) == jax.tree.map(np.shape, pp)
    pp = jax.tree.map(lambda a: a + _normal(1, a.shape), pp)  # non-trivial scale and bias
    dense = Dense(5)
    pd = fast(lambda x: dense.init(jax.random.key(1), x), x)

    def both(x):
        norm = fused.apply(pp, 8)
        return dense.apply(pd, x, norm=norm), dense.apply(pd, plain.apply(pp, x))

    a, b = fast(both, x)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
