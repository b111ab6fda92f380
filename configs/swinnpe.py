"""SwinNPE (Arezki, Feng & Mokraoui): SwinT-ChARM with convolutional Q/K/V, no positional encoding.

    python -m swinjax macs --config configs/swinnpe.py --height 512 --width 768

Derives from ``swint_charm.py`` and changes only the attention: Q/K/V from depthwise 3x3
convolutions on the 2-D token map (``projection="dw"``), no relative position bias, shifted windows
kept. ``projection="dw"`` (no pointwise layer after the depthwise convolution) is the form that
reproduces the published 178 GMACs at 768x512; ``--config.model.g_a.projection=dw_pw`` (and the
same for g_s / hyper) selects the literal depthwise-separable form. The measured costs of every
form are in docs/papers.md.
"""

import ml_collections

from swinjax.config_utils import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the SwinNPE config; ``arg="tiny"`` gives the CPU-test variant."""
    base = load_sibling(__file__, "swint_charm")
    c = base.get_config()
    c.model.id = "swinnpe"
    # The SwinNPE paper trains with additive uniform noise as the quantization proxy.
    c.model.quantization = "noise"
    for spec in (c.model.g_a, c.model.g_s, c.model.hyper.h_a, c.model.hyper.h_s):
        spec.projection = "dw"
        spec.relative_position_bias = False
    if arg == "tiny":
        base.apply_tiny(c)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r} (expected nothing or 'tiny')")
    return c
