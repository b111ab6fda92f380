"""The reference SwinCoder shipped with swinjax: the paper's structure at a width 2 CPU cores train.

    python train.py --config configs/swincoder_ref.py --workdir workdir/swincoder-ref

Same structure as ``configs/swincoder.py`` (Li et al., CLIC 2025): Swin g_a / g_s, STF-style
convolutional hyper transforms, the masked grouped entropy model over checkerboard x channel-half
groups, and one variable-rate model over lambda in [16, 1024] (QARV-style AdaLN residual blocks
after g_a's last and g_s's first layer). Widths are about half of the paper's: latent 192, hyper
128, g_a (64, 64, 128, 192), g_s (192, 96, 48, 24), entropy block width 192. Training uses
128-pixel crops, batch 8, AdamW at 3e-4 with cosine decay (the recipe the pilots on a 2-core CPU
picked; README "The reference model" has the measurements and the training curve).

Arguments: ``fixed16`` / ``fixed1024`` (any ``fixedL``) give a fixed-rate model at lambda L with
the same widths and recipe: the control experiment of ``scripts/lmbda_control.py``. ``pilot``
shortens the schedule to 3000 steps for recipe pilots.
"""

import ml_collections

from swinjax.config_utils import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The reference config; see the module docstring for ``arg``."""
    base = load_sibling(__file__, "swincoder")
    c = base.get_config()
    m = c.model
    m.id = "swincoder-ref"
    m.latent_channels = 192
    m.hyper_channels = 128
    m.lmbda.embedding = 192
    m.g_a.update(channels=(64, 64, 128, 192), heads=(2, 2, 4, 6), out_channels=192)
    m.g_s.update(channels=(192, 96, 48, 24), heads=(6, 3, 3, 1))
    m.hyper.update(h_a_widths=(192, 176, 160, 144, 128), h_s_widths=(128, 160, 192, 224, 384))
    m.entropy.update(dim=192, num_heads=6)
    c.crop = 128
    c.batch_size = 8
    c.lr = 3e-4
    c.warmup_steps = 500
    c.total_steps = 60000
    c.log_every = 50
    c.eval_every = 1000
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    c.data.val_images = 32
    for part in (arg or "").split(","):
        if not part:
            continue
        if part.startswith("fixed"):
            base.fixed_rate(c, float(part[len("fixed") :]))
        elif part == "pilot":
            c.total_steps = 3000
            c.warmup_steps = 200
            c.eval_every = 1000
            c.checkpoint_every = 1000
        else:
            raise ValueError(
                f"unknown config argument {part!r} (expected 'fixedL', e.g. 'fixed16', or 'pilot')"
            )
    return c
