"""Real-ESRGAN's U-Net discriminator with spectral normalisation (SwinCoder stage 3).

SwinCoder (Li et al., CLIC 2025, §II-B) adopts "the architecture and non-saturating GAN loss
from RealESRGAN". Real-ESRGAN (Wang et al., ICCVW 2021, §3.2 and Fig. 6) replaces ESRGAN's VGG
discriminator by a U-Net that outputs a realness value *per pixel*, which gives the generator
local feedback, and stabilises it with spectral normalisation (Miyato et al., ICLR 2018).
The layer list is that of ``UNetDiscriminatorSN`` in the authors' code (BasicSR
``basicsr/archs/discriminator_arch.py``), with ``F = num_feat`` (64):

==========  =======================================  =====  =====================
layer       conv                                      SN     then
==========  =======================================  =====  =====================
conv0       3x3, 3 -> F, stride 1, bias               no     LeakyReLU(0.2) = x0
conv1       4x4, F -> 2F, stride 2, pad 1, no bias    yes    LeakyReLU = x1 (/2)
conv2       4x4, 2F -> 4F, stride 2, no bias          yes    LeakyReLU = x2 (/4)
conv3       4x4, 4F -> 8F, stride 2, no bias          yes    LeakyReLU = x3 (/8)
up, conv4   bilinear x2, 3x3 8F -> 4F, no bias        yes    LeakyReLU, + x2
up, conv5   bilinear x2, 3x3 4F -> 2F, no bias        yes    LeakyReLU, + x1
up, conv6   bilinear x2, 3x3 2F -> F, no bias         yes    LeakyReLU, + x0
conv7/8     3x3, F -> F, no bias                      yes    LeakyReLU
conv9       3x3, F -> 1, bias                         no     (logits)
==========  =======================================  =====  =====================

Spectral norm is on every conv but the first and the last, as in the authors' code. The skip
additions need the /8 map upsampled three times to land on the full-size map, so **H and W must be
multiples of 8** (checked; SwinCoder trains on 256x256 crops). Bilinear upsampling is
``jax.image.resize(..., "bilinear")``, which for a 2x upscale equals PyTorch's
``F.interpolate(scale_factor=2, mode="bilinear", align_corners=False)`` (half-pixel centres, edge
samples clamped).

Spectral norm state: Flax's ``nn.SpectralNorm`` keeps, per normalised kernel, the power-iteration
vector ``u`` ``(1, C_out)`` and the estimate ``sigma`` in the ``batch_stats`` collection
(``batch_stats["sn_conv<k>"]["conv<k>/kernel/u"]`` and ``.../sigma``; the kernels themselves stay
in ``params["conv<k>"]``). The kernel is reshaped
to ``(kh*kw*C_in, C_out)``, which has the singular values of PyTorch's ``(C_out, C_in*kh*kw)``
view. Every call runs ``power_iterations`` steps from the stored ``u`` and divides the kernel by
the resulting sigma; ``update_stats=True`` (with ``mutable=["batch_stats"]``) stores the new
``u``/``sigma`` (PyTorch's ``train()`` mode, one step per forward as ``spectral_norm``'s default),
``update_stats=False`` leaves them as they are (deterministic evaluation). Train the discriminator
with ``update_stats=True`` on its own step and keep the returned ``batch_stats``; the generator
step should call it with ``update_stats=False``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

#: Negative slope of every LeakyReLU in the discriminator.
LEAKY_SLOPE = 0.2


def _upsample2x(x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, 2 * h, 2 * w, c), method="bilinear")


class UNetDiscriminatorSN(nn.Module):
    """Per-pixel real/fake logits ``[B, H, W, 1]`` for images ``[B, H, W, 3]`` in [0, 1].

    Attributes:
        num_feat: base channels F (Real-ESRGAN: 64).
        skip_connection: add the encoder maps to the decoder maps (Real-ESRGAN: True).
        power_iterations: power-iteration steps per call for each spectral norm (PyTorch's
            ``n_power_iterations`` default, 1; the stored ``u`` makes one step per training step
            converge over time).
        dtype: computation dtype (``None``: the input's); spectral-norm state stays float32.
    """

    num_feat: int = 64
    skip_connection: bool = True
    power_iterations: int = 1
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, update_stats: bool) -> jax.Array:
        """Logits ``[B, H, W, 1]``; ``update_stats`` stores the power-iteration state."""
        if x.ndim != 4:
            raise ValueError(f"discriminator input must be [B, H, W, C], got shape {x.shape}")
        h, w = x.shape[1], x.shape[2]
        if h % 8 or w % 8:
            raise ValueError(
                f"UNetDiscriminatorSN needs H and W that are multiples of 8 (three stride-2 "
                f"levels with skip connections), got {h}x{w}; crop or pad the images"
            )
        f = self.num_feat
        act = lambda v: nn.leaky_relu(v, LEAKY_SLOPE)  # noqa: E731

        def conv(features: int, kernel: int, stride: int, name: str, sn: bool, bias: bool):
            layer = nn.Conv(
                features,
                (kernel, kernel),
                strides=(stride, stride),
                padding=((1, 1), (1, 1)),
                use_bias=bias,
                dtype=self.dtype,
                name=name,
            )
            if not sn:
                return layer
            norm = nn.SpectralNorm(layer, n_steps=self.power_iterations, name=f"sn_{name}")
            return lambda v: norm(v, update_stats=update_stats)

        x0 = act(conv(f, 3, 1, "conv0", sn=False, bias=True)(x))
        x1 = act(conv(2 * f, 4, 2, "conv1", sn=True, bias=False)(x0))
        x2 = act(conv(4 * f, 4, 2, "conv2", sn=True, bias=False)(x1))
        x3 = act(conv(8 * f, 4, 2, "conv3", sn=True, bias=False)(x2))

        x4 = act(conv(4 * f, 3, 1, "conv4", sn=True, bias=False)(_upsample2x(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(conv(2 * f, 3, 1, "conv5", sn=True, bias=False)(_upsample2x(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(conv(f, 3, 1, "conv6", sn=True, bias=False)(_upsample2x(x5)))
        if self.skip_connection:
            x6 = x6 + x0

        out = act(conv(f, 3, 1, "conv7", sn=True, bias=False)(x6))
        out = act(conv(f, 3, 1, "conv8", sn=True, bias=False)(out))
        return conv(1, 3, 1, "conv9", sn=False, bias=True)(out)


#: The discriminator SwinCoder's stage 3 uses.
Discriminator = UNetDiscriminatorSN
