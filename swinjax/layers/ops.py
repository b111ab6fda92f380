"""Elementwise building blocks with hand-written derivatives: exact GELU and LayerNorm.

Both compute the same functions as ``flax.linen.gelu(approximate=False)`` and
``flax.linen.LayerNorm`` (up to float rounding). They exist for speed on XLA's CPU backend, where
the transforms are memory-bound outside their matmuls (``benchmarks/transforms.py``):

* :func:`gelu` evaluates the exact GELU ``x Phi(x)`` through ``erf`` instead of ``erfc`` (JAX's
  ``erfc`` lowers to a piecewise approximation with an ``exp`` and selects, ``erf`` to one rational
  polynomial) and gives it an analytic derivative ``Phi(x) + x phi(x)``, so the backward pass is one
  multiply instead of the differentiated polynomial. The ``erf`` form loses relative (not absolute)
  accuracy where ``Phi(x)`` underflows, i.e. for ``x < -5`` where GELU is below ``1e-6``.
* :func:`layer_norm` computes mean and variance in one pass and has the textbook backward pass
  ``dx = rstd (g - mean(g) - xhat mean(g xhat))`` with ``g = dy * scale``: two reductions per token
  instead of the five or six that differentiating the forward pass produces. The per-token
  reductions are matrix-vector products (see :func:`_row_mean`); XLA's cost analysis counts them
  as two flops per element instead of one, a negligible change of the reported flops.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jax.custom_jvp
def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, ``x * Phi(x)``; same function as ``nn.gelu(x, approximate=False)``."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * _SQRT_HALF))


@gelu.defjvp
def _gelu_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    (x,), (t,) = primals, tangents
    cdf = 0.5 * (1.0 + jax.lax.erf(x * _SQRT_HALF))
    pdf = jnp.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return x * cdf, t * (cdf + x * pdf)


def _row_mean(x: jax.Array, weight: jax.Array | None = None) -> jax.Array:
    """``mean(x * weight, axis=-1, keepdims=True)`` as a matrix-vector product.

    XLA's CPU backend hands row reductions to YNNPACK fusions that materialise broadcast operands
    (e.g. the LayerNorm scale broadcast to the full activation); a dot with a vector reads ``x``
    once and fuses its elementwise producer.
    """
    c = x.shape[-1]
    w = jnp.full((c,), 1.0 / c, x.dtype) if weight is None else weight / c
    return jnp.matmul(x, w, precision=jax.lax.Precision.HIGHEST)[..., None]


def _ln_stats(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    x32 = x.astype(jnp.float32)
    mean = _row_mean(x32)
    mean2 = _row_mean(x32 * x32)
    var = jnp.maximum(mean2 - mean * mean, 0.0)
    return mean, jax.lax.rsqrt(var + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    mean, rstd = _ln_stats(x, eps)
    return ((x - mean) * rstd * scale + bias).astype(x.dtype)


def _layer_norm_fwd(
    x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float
) -> tuple[jax.Array, tuple]:
    mean, rstd = _ln_stats(x, eps)
    return ((x - mean) * rstd * scale + bias).astype(x.dtype), (x, mean, rstd, scale)


def _layer_norm_bwd(eps: float, res: tuple, dy: jax.Array) -> tuple:
    del eps
    x, mean, rstd, scale = res
    dy32 = dy.astype(jnp.float32)
    xhat = (x.astype(jnp.float32) - mean) * rstd
    mean_g = _row_mean(dy32, scale)
    mean_gx = _row_mean(dy32 * xhat, scale)
    dx = rstd * (dy32 * scale - mean_g - xhat * mean_gx)
    axes = tuple(range(dy.ndim - 1))
    dscale = jnp.sum(dy32 * xhat, axis=axes)
    dbias = jnp.sum(dy32, axis=axes)
    return dx.astype(x.dtype), dscale, dbias


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def layer_norm(
    x: jax.Array, scale: jax.Array | None, bias: jax.Array | None, eps: float = 1e-5
) -> jax.Array:
    """LayerNorm over the last axis with optional affine ``scale`` / ``bias`` of shape ``[C]``.

    Statistics are float32; the result has the dtype of ``x``.
    """
    c = x.shape[-1]
    scale = jnp.ones((c,), jnp.float32) if scale is None else scale.astype(jnp.float32)
    bias = jnp.zeros((c,), jnp.float32) if bias is None else bias.astype(jnp.float32)
    return _layer_norm(x, scale, bias, eps)


class LayerNorm(nn.Module):
    """Drop-in for ``nn.LayerNorm`` over the last axis (same parameters ``scale`` and ``bias``).

    Attributes:
        epsilon: added to the variance.
        use_scale: learn a per-channel scale (initialised to 1).
        use_bias: learn a per-channel bias (initialised to 0).
        dtype: output dtype (statistics are always float32); None keeps the input dtype.
    """

    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalises ``x [..., C]`` over C."""
        c = x.shape[-1]
        scale = (
            self.param("scale", nn.initializers.ones, (c,), jnp.float32) if self.use_scale else None
        )
        bias = (
            self.param("bias", nn.initializers.zeros, (c,), jnp.float32) if self.use_bias else None
        )
        # nn.LayerNorm's output dtype: the given dtype, else the input promoted with the params.
        x = x.astype(self.dtype or jnp.promote_types(x.dtype, jnp.float32))
        return layer_norm(x, scale, bias, self.epsilon)


class Dense(nn.Module):
    """Drop-in for ``nn.Dense`` (same parameters ``kernel [in, out]`` and ``bias``, same init).

    The leading axes are flattened into one token axis before the matmul. With a single contracting
    axis in the weight gradient ``x^T dy``, XLA's CPU backend calls its GEMM with a transposed
    operand directly; with ``[B, H, W]`` leading axes its dot canonicalisation first materialises
    a transposed copy of ``dy`` (one extra read and write of the largest activations).
    """

    features: int
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[..., C_in]`` -> ``[..., features]``."""
        c = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (c, self.features), jnp.float32)
        bias = (
            self.param("bias", self.bias_init, (self.features,), jnp.float32)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jax.lax.dot_general(x.reshape(-1, c), kernel, (((1,), (0,)), ((), ())))
        if bias is not None:
            y = y + bias
        return y.reshape(*x.shape[:-1], self.features)
