"""How much each term of the stage-2 loss pulls on the synthesis transform, measured.

    python scripts/perceptual_loss_balance.py [--base swincoder-ref] [--batches 2]

SwinCoder's stage 2 (Li et al., CLIC 2025, §II-B, eq. 1) weighs ``150 MSE + 1.0 L_per +
0.1 L_style``; those weights were set for the paper's VGG19 features and normalisation, and with
another network or normalisation a term can end up with no say in the update. This prints, on
the validation crops and for each lambda of the validation points, each term's value and the
norm of its gradient with respect to g_s's parameters (the only ones stages 2-3 train by
default), at weight 1 and at the configured weight, so the balance of the losses can be set by
measurement (docs/perceptual.md).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from swinjax import checkpoint, losses, train_lib  # noqa: E402
from swinjax.config_utils import load_config  # noqa: E402
from swinjax.lmbda import lmbda_range  # noqa: E402
from swinjax.perceptual_losses import vgg_feature_losses  # noqa: E402


def global_norm(tree: object) -> float:
    """The l2 norm over all leaves of a gradient tree."""
    return float(jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(tree))))


def main(argv: list[str] | None = None) -> int:
    """Prints the table: lambda, term, value, gradient norm (weight 1 and configured)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="swincoder-ref", help="shipped model name or export")
    p.add_argument("--batches", type=int, default=2, help="validation batches to average")
    args = p.parse_args(argv)
    c = load_config(str(ROOT / "configs" / "swincoder_stage2.py") + ":ref")
    c.init_from = args.base
    trainer = train_lib.Trainer(c)
    params = checkpoint.load_model(args.base).params
    vgg, vgg_params, w = trainer.vgg, trainer.extra["vgg"], trainer.layer_weights
    pc = c.perceptual
    codec = trainer.codec
    weights = {
        "mse": float(pc.mse_weight),
        "per": float(pc.perceptual_weight),
        "style": float(pc.style_weight),
    }

    def terms(gs: object, y_hat: jax.Array, x: jax.Array, lm: jax.Array) -> dict[str, jax.Array]:
        full = {**params, "params": {**params["params"], "g_s": gs}}
        x_hat = codec.apply(full, y_hat, lm, method=codec.synthesis)
        per, style = vgg_feature_losses(vgg, vgg_params, x, x_hat, w, w, pc.criterion)
        return {
            "mse": jnp.mean(losses.mse(x, x_hat)),
            "per": jnp.mean(per),
            "style": jnp.mean(style),
        }

    grads = {
        k: jax.jit(jax.value_and_grad(lambda gs, y, x, lm, k=k: terms(gs, y, x, lm)[k]))
        for k in weights
    }
    encode = jax.jit(lambda x, lm: codec.apply(params, x, lm, deterministic=True)["y_hat"])
    batches = train_lib.validation_batches(c)[: args.batches]
    print("| lambda | term | value | grad norm (weight 1) | weight | grad norm (weighted) |")
    print("|---|---|---:|---:|---:|---:|")
    for lm_value in lmbda_range(c).validation_points():
        rows: dict[str, list[tuple[float, float]]] = {k: [] for k in weights}
        for b in batches:
            x = jnp.asarray(b["x"])
            lm = jnp.full((x.shape[0],), lm_value, jnp.float32)
            y_hat = encode(x, lm)
            for k, fn in grads.items():
                v, g = fn(params["params"]["g_s"], y_hat, x, lm)
                rows[k].append((float(v), global_norm(g)))
        for k, r in rows.items():
            v, g = np.mean(r, axis=0)
            cells = f"{v:.4g} | {g:.4g} | {weights[k]:g} | {g * weights[k]:.4g}"
            print(f"| {lm_value:g} | {k} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
