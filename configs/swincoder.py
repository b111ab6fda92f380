"""SwinCoder (Li et al., CLIC 2025): variable-rate Swin codec at ~100 kMACs/pixel.

Cost report (CPU, any machine):
    python -m swinjax macs --config configs/swincoder.py --height 512 --width 768

Readings of the paper (§II-A), where it leaves things open:

* g_a: "four consecutive downsampling stages" with blocks {1, 2, 2} and channels {128, 256, 384}.
  Four 2x stages but three block counts: the first stage is a patch embedding (space-to-depth +
  Linear + LayerNorm) to 128 channels with no Swin blocks, then three merge + Swin stages at
  128 / 256 / 384 channels, then a Linear to the 256 latent channels.
* g_s mirrors it: a first Linear on y (where AdaLN sits, "after the first layer of the decoder"),
  Swin stages {2, 1, 1} at {256, 112, 64} (the paper lists {1, 1, 2} from the image side), each
  ending in a patch split, and a last split 32 -> 3 with no blocks.
* Windows 8 (Zou et al.'s STF, which SwinCoder builds on); heads = channels / 32 where that
  divides, otherwise 16-wide heads (112 channels: 7 heads).
* Hyper transforms follow STF's convolutional h_a / h_s (3x3 convs, GELU, two 2x resamplings),
  with widths interpolated linearly between the latent (256) and hyper-latent (192) widths. h_s
  produces one feature map (2 x 256 channels) that the entropy model consumes.
* Entropy model of y: checkerboard x channel halves = four groups; one Swin block (token width
  256, 8 heads, window 8) with masked self-attention over (position, half) tokens predicts the
  mean and scale of each group from the hyperprior and earlier groups
  (:mod:`swinjax.entropy.grouped` explains the two-stream masking).
* AdaLN after the last layer of g_a and the first layer of g_s "the same as in QARV": a
  residual block ``x + gamma * MLP(AdaLN(x, e))`` at each place (nothing normalises the latent
  itself), with ``e`` an MLP of a smooth sinusoidal code of log lambda
  (:mod:`swinjax.layers.adaln`). lambda is drawn log-uniformly in [16, 1024] per example.
"""

import ml_collections

from swinjax.config_utils import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the SwinCoder config.

    ``arg``: comma-separated parts; ``tiny`` gives the CPU-test variant, ``fixedL`` (e.g.
    ``fixed16``) a fixed-rate model at lambda L.
    """
    c = ml_collections.ConfigDict()
    c.seed = 0
    load_sibling(__file__, "common").add_training(c, total_steps=2000000)
    c.model = ml_collections.ConfigDict(
        dict(
            id="swincoder",
            latent_channels=256,
            hyper_channels=192,
            mlp_ratio=4.0,
            variable_rate=True,
            # The trained lambda range (the paper's [16, 1024]); a fixed-rate variant replaces
            # this by dict(value=L) and sets variable_rate=False (see fixed_rate()). gain: a
            # lambda-dependent quantization step on y (swinjax.layers.adaln.LatentGain, Cui et
            # al. 2021) beside the paper's AdaLN; docs/training.md's reference-model section
            # measures what it does to the rate range.
            lmbda=ml_collections.ConfigDict(dict(min=16.0, max=1024.0, embedding=256, gain=True)),
            quantization="mixed",
            g_a=dict(
                channels=(128, 128, 256, 384),
                depths=(0, 1, 2, 2),
                heads=(4, 4, 8, 12),
                window=8,
                projection="linear",
                relative_position_bias=True,
                out_channels=256,
            ),
            g_s=dict(
                channels=(256, 112, 64, 32),
                depths=(2, 1, 1, 0),
                heads=(8, 7, 2, 1),
                window=8,
                projection="linear",
                relative_position_bias=True,
                in_proj=True,
            ),
            hyper=dict(
                kind="conv",
                h_a_widths=(256, 240, 224, 208, 192),
                h_a_strides=(1, 1, 2, 1, 2),
                h_s_widths=(192, 208, 224, 240, 512),
                h_s_upsample=(1, 2, 1, 2, 1),
            ),
            # context="rounded": training feeds earlier groups as the decoder has them.
            entropy=dict(
                kind="masked_grouped",
                dim=256,
                num_heads=8,
                window=8,
                mlp_ratio=4.0,
                context="rounded",
            ),
        )
    )
    for part in (arg or "").split(","):
        if part == "tiny":
            apply_tiny(c)
        elif part.startswith("fixed"):
            fixed_rate(c, float(part[len("fixed") :]))
        elif part:
            raise ValueError(
                f"unknown config argument {part!r} (expected 'tiny' and/or 'fixedL', e.g. "
                "'tiny,fixed16')"
            )
    return c


def apply_tiny(c: ml_collections.ConfigDict) -> None:
    """Shrinks the model in place to a seconds-per-step CPU variant with the same structure."""
    load_sibling(__file__, "common").tiny_training(c)
    m = c.model
    m.id = "swincoder-tiny"
    m.latent_channels = 32
    m.hyper_channels = 24
    m.mlp_ratio = 2.0
    m.lmbda.embedding = 32
    m.g_a.update(
        channels=(16, 16, 32, 32),
        depths=(0, 1, 1, 2),
        heads=(1, 1, 2, 2),
        window=4,
        out_channels=32,
    )
    m.g_s.update(channels=(32, 16, 16, 8), depths=(2, 1, 1, 0), heads=(2, 1, 1, 1), window=4)
    m.hyper.update(h_a_widths=(32, 32, 28, 28, 24), h_s_widths=(24, 28, 28, 32, 64))
    m.entropy.update(dim=32, num_heads=2, window=4, mlp_ratio=2.0)


def fixed_rate(c: ml_collections.ConfigDict, lmbda: float) -> None:
    """Turns the variable-rate model into a fixed-rate one trained at ``lmbda`` (in place).

    The lambda-conditioned blocks go away (there is nothing to condition on); everything else,
    the model id included, is the same (files tell the two apart by the config hash). Used by the
    control experiment (``scripts/lmbda_control.py``).
    """
    m = c.model
    m.variable_rate = False
    m.lmbda = ml_collections.ConfigDict(dict(value=float(lmbda)))
