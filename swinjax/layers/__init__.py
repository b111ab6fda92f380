"""Building blocks shared by every transform: windows, attention, Swin blocks, resampling, AdaLN."""

from swinjax.layers.adaln import AdaLN, LambdaBlock, LambdaEmbedding
from swinjax.layers.attention import ConvWindowAttention, WindowAttention
from swinjax.layers.blocks import SwinBlock, SwinStage
from swinjax.layers.resample import PatchMerge, PatchSplit, depth_to_space, space_to_depth
from swinjax.layers.windows import (
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

__all__ = [
    "AdaLN",
    "ConvWindowAttention",
    "LambdaBlock",
    "LambdaEmbedding",
    "PatchMerge",
    "PatchSplit",
    "SwinBlock",
    "SwinStage",
    "WindowAttention",
    "depth_to_space",
    "relative_position_index",
    "shifted_window_mask",
    "space_to_depth",
    "window_partition",
    "window_reverse",
]
