"""Parameter and MAC counts from XLA's cost analysis of the jitted forward pass.

MACs are ``flops / 2`` of the compiled XLA program for each part (XLA counts a multiply-add as two
flops; elementwise work such as GELU, softmax and LayerNorm is included, which makes these counts
slightly higher than layer-by-layer hand counts of matmuls and convolutions). Nothing is run:
the programs are lowered and compiled on abstract shapes.

Parts: ``g_a``, ``h_a``, ``h_s``, ``entropy`` (the entropy-parameter networks of y: every ChARM
slice once; one pass of SwinCoder's masked block, which is what training computes) and ``g_s``.
``entropy_decode`` is the cost of the decoding loop as implemented (without ``h_s``; SwinCoder
computes each group's queries once and each known group's keys and values once, so about one
pass); it is reported separately and not added to the total.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from swinjax.models import build_codec
from swinjax.transforms import downsampling_factor

PARTS = ("g_a", "h_a", "h_s", "entropy", "g_s")


def compiled_flops(fn: Any, *args: Any) -> float:
    """Flops XLA's cost analysis reports for ``jax.jit(fn)(*args)`` (args may be abstract)."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list | tuple):  # older jax returned one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


def _count(tree: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def cost_report(config: Any, height: int = 512, width: int = 768) -> dict[str, Any]:
    """Parameters and MACs of the whole codec and of each part at ``height x width``.

    Args:
        config: a config with ``model`` (see ``configs/``).
        height: image height; padded to the model's downsampling factor like real inputs.
        width: image width.

    Returns:
        A dict with ``model``, ``height``, ``width``, ``params``, ``params_per_part``,
        ``macs_per_part`` (and ``entropy_decode``), ``gmacs``, ``kmacs_per_pixel``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    codec = build_codec(config)
    m = codec.model
    f = downsampling_factor(m)
    hp, wp = -(-height // f) * f, -(-width // f) * f
    g = 2 ** len(m.g_a.channels)
    x = jax.ShapeDtypeStruct((1, hp, wp, 3), jnp.float32)
    lmbda = jax.ShapeDtypeStruct((1,), jnp.float32)
    y = jax.ShapeDtypeStruct((1, hp // g, wp // g, int(m.latent_channels)), jnp.float32)
    z = jax.ShapeDtypeStruct((1, hp // f, wp // f, int(m.hyper_channels)), jnp.float32)
    params = jax.eval_shape(codec.init, jax.random.key(0), x, lmbda, jax.random.key(1))
    hyper = jax.eval_shape(lambda p, z: codec.apply(p, z, method=codec.hyper_synthesis), params, z)

    def entropy_decode(p: Any, z_hat: jax.Array, lm: jax.Array) -> jax.Array:
        # The decoder's own loop (swinjax.compression: Codec.coding_params / coding_fill),
        # without h_s, whose cost is counted apart.
        def run(mdl: Any) -> jax.Array:
            state = mdl.coding_state(z_hat)
            for k in range(mdl.context.num_groups):
                mu, _ = mdl.coding_params(state, k, lm)
                state = mdl.coding_fill(state, k, mu, lm)
            return state["y_hat"]

        return nn_apply(codec, p, run)

    def decode_loop_for(mdl: Any, hyper: jax.Array, lm: jax.Array) -> jax.Array:
        # The decoder's own loop (Codec.group_params / fill_group, with the latent gain if any).
        out = jnp.zeros(y.shape, y.dtype)
        for k in range(mdl.context.num_groups):
            mu, _ = mdl.group_params(hyper, out, k, lm)
            out = mdl.fill_group(hyper, out, k, mu, lm)
        return out

    def entropy_once(p: Any, hyper: jax.Array, y_hat: jax.Array, lm: jax.Array) -> jax.Array:
        def run(mdl: Any) -> jax.Array:
            if hasattr(mdl.context, "one_pass_params"):  # SwinCoder: one masked pass
                return mdl.context.one_pass_params(hyper, y_hat)[0]
            return decode_loop_for(mdl, hyper, lm)  # ChARM: every slice once

        return nn_apply(codec, p, run)

    macs = {
        "g_a": compiled_flops(
            lambda p, x, lm: codec.apply(p, x, lm, method=codec.analysis), params, x, lmbda
        )
        / 2,
        "h_a": compiled_flops(
            lambda p, y, lm: codec.apply(p, y, lm, method=codec.hyper_analysis), params, y, lmbda
        )
        / 2,
        "h_s": compiled_flops(
            lambda p, z: codec.apply(p, z, method=codec.hyper_synthesis), params, z
        )
        / 2,
        "entropy": compiled_flops(entropy_once, params, hyper, y, lmbda) / 2,
        "g_s": compiled_flops(
            lambda p, y, lm: codec.apply(p, y, lm, method=codec.synthesis), params, y, lmbda
        )
        / 2,
    }
    decode = compiled_flops(entropy_decode, params, z, lmbda) / 2 - macs["h_s"]
    total = sum(macs.values())
    p = params["params"]
    per_part = {k: _count(v) for k, v in p.items()}
    return {
        "model": str(m.id),
        "height": height,
        "width": width,
        "padded": [hp, wp],
        "params": _count(p),
        "params_per_part": per_part,
        "macs_per_part": macs,
        "entropy_decode_macs": decode,
        "gmacs": total / 1e9,
        "kmacs_per_pixel": total / (height * width) / 1e3,
    }


def nn_apply(codec: Any, params: Any, fn: Any) -> Any:
    """Runs ``fn(bound_module)`` inside ``codec.apply`` (for loops over module methods)."""
    return codec.apply(params, method=lambda mdl: fn(mdl))


def format_report(r: dict[str, Any]) -> str:
    """A human-readable table of :func:`cost_report`."""
    px = r["height"] * r["width"]
    lines = [
        f"{r['model']} at {r['height']}x{r['width']} (padded {r['padded'][0]}x{r['padded'][1]})",
        f"{'part':<16}{'params':>12}{'GMACs':>10}{'kMACs/px':>11}",
    ]
    names = {"entropy": "context"}
    for part in PARTS:
        macs = r["macs_per_part"][part]
        n = r["params_per_part"].get(names.get(part, part), 0)
        if part == "entropy":
            n += r["params_per_part"].get("entropy_bottleneck", 0)
        lines.append(f"{part:<16}{n:>12,}{macs / 1e9:>10.2f}{macs / px / 1e3:>11.1f}")
    if "lmbda_embedding" in r["params_per_part"]:
        lines.append(f"{'lmbda_embedding':<16}{r['params_per_part']['lmbda_embedding']:>12,}")
    lines.append(f"{'total':<16}{r['params']:>12,}{r['gmacs']:>10.2f}{r['kmacs_per_pixel']:>11.1f}")
    d = r["entropy_decode_macs"]
    lines.append(
        f"(entropy decoding loop as implemented: {d / 1e9:.2f} GMACs, {d / px / 1e3:.1f} kMACs/px)"
    )
    return "\n".join(lines)
