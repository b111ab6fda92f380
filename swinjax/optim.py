"""Optimizers of training: AdamW with warm-up and cosine decay, the aux optimizer, frozen parts.

Which parameters decay, which train and which stay frozen is decided here from parameter names,
so the training step itself knows nothing about parameter kinds.
"""

from __future__ import annotations

from typing import Any

import jax
import optax


def _is_aux(path: tuple[Any, ...]) -> bool:
    return any(getattr(k, "key", None) == "quantiles" for k in path)


# The only parameter names AdamW decays: the weights of Dense layers (``layers.ops.Dense``,
# ``nn.Dense``) and of convolutions (``Conv3x3`` is a Dense named "kernel" over im2col columns, so
# its weight is ``.../kernel/kernel`` and its bias ``.../kernel/bias``; ``DepthwiseConv3x3`` holds a
# ``kernel [3, 3, C]``). An allow-list, so a new kind of parameter is not decayed by default.
DECAYED_PARAM_NAMES = frozenset({"kernel"})


def _decays(path: tuple[Any, ...], leaf: Any) -> bool:
    """AdamW weight-decay mask: True for Dense / convolution kernels, False for everything else.

    Decided by the parameter's own name (the last key of its path), which must be in
    :data:`DECAYED_PARAM_NAMES`. Not decayed, as in Swin (Liu et al. 2021): relative-position-bias
    tables, learned embeddings and tokens (the grouped entropy model's ``null_kv``,
    ``half_query``, ``half_content``), biases, LayerNorm scales, AdaLN layer scales; nor the
    factorized density (``matrix*``, ``bias*``, ``factor*``) or its ``quantiles`` (aux optimizer).
    """
    names = [str(getattr(k, "key", "")) for k in path]
    if not names or names[-1] not in DECAYED_PARAM_NAMES:
        return False
    if _is_aux(path) or "entropy_bottleneck" in names:
        return False
    return getattr(leaf, "ndim", 0) >= 2


def learning_rate(config: Any) -> optax.Schedule:
    """Linear warm-up to ``lr`` then cosine decay to ``lr * lr_final_fraction``."""
    warm = max(int(config.warmup_steps), 1)
    total = max(int(config.total_steps), warm + 1)
    return optax.warmup_cosine_decay_schedule(
        0.0, config.lr, warm, total, end_value=config.lr * config.lr_final_fraction
    )


def freezes_encoder(config: Any) -> bool:
    """Perceptual stages in their default reading: only g_s trains (fixed rate)."""
    return int(config.get("stage", 1)) >= 2 and bool(config.perceptual.freeze_encoder)


def _label(config: Any) -> Any:
    frozen = freezes_encoder(config)

    def label(path: tuple[Any, ...], _: Any) -> str:
        if frozen:
            return "main" if any(getattr(k, "key", None) == "g_s" for k in path) else "frozen"
        return "aux" if _is_aux(path) else "main"

    return label


def make_optimizer(config: Any, params: Any) -> optax.GradientTransformation:
    """AdamW (beta = 0.9, 0.999) with clipping for the model; Adam for the quantiles.

    The quantiles of the factorized prior get their own optimizer (tfc / CompressAI "aux"
    parameters, as in CompressAI) through ``optax.multi_transform``. In the perceptual stages'
    default reading everything but g_s is frozen (``optax.set_to_zero``: no update, no decay), so
    the encoder, the entropy models and their coding tables stay bit-identical.
    """
    labels = jax.tree_util.tree_map_with_path(_label(config), params)
    decay_mask = jax.tree_util.tree_map_with_path(_decays, params)
    main = optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(
            learning_rate(config), 0.9, 0.999, weight_decay=config.weight_decay, mask=decay_mask
        ),
    )
    return optax.multi_transform(
        {"main": main, "aux": optax.adam(config.aux_lr), "frozen": optax.set_to_zero()}, labels
    )


def make_disc_optimizer(config: Any) -> optax.GradientTransformation:
    """Adam for the discriminator (Real-ESRGAN: beta = 0.9, 0.99)."""
    return optax.adam(float(config.perceptual.d_lr), 0.9, 0.99)
