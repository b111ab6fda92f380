"""SwinT-ChARM (Zhu, Yang & Cohen, ICLR 2022): the reference SwinNPE is compared against.

    python -m swinjax macs --config configs/swint_charm.py --height 512 --width 768

Hyperparameters as listed by SwinNPE (Arezki et al., §III-A): depths (d1..d6) = (2, 2, 6, 2, 5, 1)
with g_a/g_s stages using d1..d4 and h_a/h_s d5, d6; channels (C1..C6) =
(128, 192, 256, 320, 192, 192); windows 8 in g_a/g_s and 4 in h_a/h_s; Swin blocks with relative
position bias and linear Q/K/V; heads = channels / 32. h_s ends with a patch split to 2 x C4
channels: one hyper feature map, split into a mean half and a scale half.

ChARM (Minnen & Singh 2020) with 10 slices as in Zhu et al. (Fig. 12): each slice's mean and scale
networks are three 3x3 convolutions (widths interpolated, ReLU) over the slice's 32 channels of the
hyper mean (scale) features and all previous slices; latent residual prediction on.
"""

import ml_collections

from swinjax.config_utils import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the SwinT-ChARM config; ``arg="tiny"`` gives the CPU-test variant."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    load_sibling(__file__, "common").add_training(c, total_steps=3300000)
    swin = dict(window=8, projection="linear", relative_position_bias=True)
    hyper_swin = dict(window=4, projection="linear", relative_position_bias=True)
    c.model = ml_collections.ConfigDict(
        dict(
            id="swint-charm",
            latent_channels=320,
            hyper_channels=192,
            mlp_ratio=4.0,
            variable_rate=False,
            # Fixed-rate: trained at this lambda, recorded in the export and in every file.
            # SwinNPE's beta = 0.001 (L = D + beta R) is lambda = 1 / beta = 1000 here.
            lmbda=dict(value=1000.0),
            # Minnen & Singh's ChARM (which SwinT-ChARM reuses) trains with noise for the rate and
            # straight-through rounding for the distortion; SwinNPE overrides this with "noise".
            quantization="mixed",
            g_a=dict(
                channels=(128, 192, 256, 320),
                depths=(2, 2, 6, 2),
                heads=(4, 6, 8, 10),
                out_channels=None,
                **swin,
            ),
            g_s=dict(
                channels=(320, 256, 192, 128),
                depths=(2, 6, 2, 2),
                heads=(10, 8, 6, 4),
                in_proj=False,
                **swin,
            ),
            hyper=dict(
                kind="swin",
                h_a=dict(
                    channels=(192, 192),
                    depths=(5, 1),
                    heads=(6, 6),
                    out_channels=None,
                    **hyper_swin,
                ),
                h_s=dict(channels=(192, 192), depths=(1, 5), heads=(6, 6), **hyper_swin),
                out_channels=640,
            ),
            entropy=dict(kind="charm", num_slices=10, max_support_slices=-1, lrp=True),
        )
    )
    if arg == "tiny":
        apply_tiny(c)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r} (expected nothing or 'tiny')")
    return c


def apply_tiny(c: ml_collections.ConfigDict) -> None:
    """Shrinks the model in place, keeping its structure; ids get a ``-tiny`` suffix."""
    load_sibling(__file__, "common").tiny_training(c)
    m = c.model
    m.id = f"{m.id}-tiny"
    m.latent_channels = 40  # 10 slices of 4 channels
    m.hyper_channels = 16
    m.mlp_ratio = 2.0
    m.g_a.update(channels=(16, 16, 24, 40), depths=(1, 1, 2, 1), heads=(1, 1, 2, 2), window=4)
    m.g_s.update(channels=(40, 24, 16, 16), depths=(1, 2, 1, 1), heads=(2, 2, 1, 1), window=4)
    m.hyper.h_a.update(channels=(16, 16), depths=(1, 1), heads=(1, 1), window=2)
    m.hyper.h_s.update(channels=(16, 16), depths=(1, 1), heads=(1, 1), window=2)
    m.hyper.out_channels = 80
