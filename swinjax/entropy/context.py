"""The interface shared by the two conditional entropy models of y (ChARM, masked grouped).

Both models code y in ``num_groups`` groups, in order. A group is a static boolean mask over one
latent ``[h, w, C]``. Everything that decides entropy parameters goes through two functions, shared
by training, the evaluation forward pass, compress and decompress (docs/file-format.md):

* ``group_params(hyper, y_hat, k) -> (mu, scale)``: full-size ``[B, h, w, C]`` arrays whose entries
  in group k are the Gaussian parameters of group k, computed from the hyperprior features and
  the entries of ``y_hat`` in groups ``< k`` only (entries of later groups are ignored).
* ``fill_group(hyper, y_hat, k, values) -> y_hat'``: writes the quantized values of group k into
  ``y_hat`` (ChARM adds its latent residual prediction here).
"""

from __future__ import annotations

import numpy as np


def channel_slices(channels: int, num_slices: int) -> list[slice]:
    """Equal channel slices (ChARM); ``channels`` must divide evenly."""
    if channels % num_slices:
        raise ValueError(f"{num_slices} slices do not divide {channels} latent channels")
    s = channels // num_slices
    return [slice(i * s, (i + 1) * s) for i in range(num_slices)]


def checkerboard(h: int, w: int) -> np.ndarray:
    """``[h, w]`` bool, True on anchors ((i + j) even), coded first (He et al. 2021)."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return (i + j) % 2 == 0
