"""swinjax: learned image compression in JAX/Flax.

Two published systems are reimplemented here:

* SwinCoder (Li et al., CLIC 2025): Swin-transformer transforms at ~100 kMACs/pixel, a masked
  grouped entropy model and one variable-rate model conditioned on lambda through AdaLN.
* SwinNPE (Arezki et al.): Swin blocks whose Q/K/V come from depthwise(-separable) convolutions,
  without positional encoding, with a ChARM entropy model; SwinT-ChARM (Zhu et al., ICLR 2022)
  is kept as its reference variant.

Importing this package downloads nothing, edits no global JAX configuration and does not import
TensorFlow.
"""

__version__ = "0.1.0"
