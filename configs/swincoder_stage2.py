"""SwinCoder stage 2 (paper §II-B, eq. 1): 150 MSE + 1.0 L_per + 0.1 L_style from stage 1.

    python train.py --config configs/swincoder_stage2.py --workdir runs/stage2 \
        --config.init_from=runs/stage1 --config.perceptual.vgg_weights=weights/vgg19.npz

Starts from the stage-1 workdir or export given by ``init_from``. Default reading: the encoder
and the entropy model are frozen (the loss has no rate term) and only g_s is fine-tuned, so files
written before and after this stage are identical; ``--config.perceptual.freeze_encoder=False``
trains everything with the rate term. VGG19 weights come from a local file (docs/weights.md);
without it the run stops at start-up saying which file is missing and how to make it.
"""

import ml_collections

from swinjax.config_utils import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Stage-2 config derived from ``swincoder.py`` (``arg="tiny"``: the tiny variant)."""
    c = load_sibling(__file__, "swincoder").get_config(arg)
    c.stage = 2
    c.lr = 1e-5 if arg != "tiny" else 1e-4
    c.warmup_steps = 100 if arg != "tiny" else 2
    if arg == "tiny":
        c.perceptual.d_features = 8
    return c
