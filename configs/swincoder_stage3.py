"""SwinCoder stage 3 (paper §II-B, eq. 2): stage 2 plus 0.01 L_adv (Real-ESRGAN discriminator).

    python train.py --config configs/swincoder_stage3.py:ref --workdir workdir/stage3-ref \
        --config.init_from=workdir/stage2-ref
    python train.py --config configs/swincoder_stage3.py --workdir runs/stage3 \
        --config.init_from=runs/stage2

The U-Net discriminator with spectral normalisation has its own Adam optimizer; generator and
discriminator steps alternate inside one jitted step, sharded like stage 1, and resume exactly.
Arguments as in ``configs/swincoder_stage2.py`` (``tiny``, ``ref``).
"""

import ml_collections

from swinjax.config_utils import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Stage-3 config derived from ``swincoder_stage2.py``."""
    c = load_sibling(__file__, "swincoder_stage2").get_config(arg)
    c.stage = 3
    return c
