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
    def __call__(self, x: jax.Array, params_only: bool = False) -> jax.Array | tuple:
        """Normalises ``x [..., C]`` over C.

        With ``params_only=True`` it returns ``(scale, bias, epsilon)`` instead (``None`` for an
        unused affine part), to be fused into a following :class:`Dense` (its ``norm=``).
        """
        c = x.shape[-1]
        scale = (
            self.param("scale", nn.initializers.ones, (c,), jnp.float32) if self.use_scale else None
        )
        bias = (
            self.param("bias", nn.initializers.zeros, (c,), jnp.float32) if self.use_bias else None
        )
        if params_only:
            return scale, bias, self.epsilon
        # nn.LayerNorm's output dtype: the given dtype, else the input promoted with the params.
        x = x.astype(self.dtype or jnp.promote_types(x.dtype, jnp.float32))
        return layer_norm(x, scale, bias, self.epsilon)


def _gelu_grad(x: jax.Array) -> jax.Array:
    """``d gelu / dx = Phi(x) + x phi(x)``."""
    # ``-erf(-(x c))``: a different HLO expression than the ones in ``gelu`` and
    # ``_gelu_recompute`` (equal bitwise, see there), so that XLA neither merges them (CSE) nor
    # materialises one shared ``erf`` buffer; each fusion evaluates its own polynomial, which is
    # cheaper than writing and reading the buffer.
    cdf = 0.5 * (1.0 - jax.lax.erf(-(x * _SQRT_HALF)))
    return cdf + x * jnp.exp(-0.5 * x * x) * _INV_SQRT_2PI


def _gelu_recompute(x: jax.Array) -> jax.Array:
    """:func:`gelu` again, written so that XLA cannot merge it with the forward evaluation.

    ``erf`` is odd, and XLA's rational approximation of it exactly so: ``1 - erf(-t)`` is bitwise
    ``1 + erf(t)``. Without the different expression XLA's CSE (which also runs through
    ``optimization_barrier`` on CPU, where barriers are removed first) would keep the forward
    output alive instead of recomputing it.
    """
    return 0.5 * x * (1.0 - jax.lax.erf(x * -_SQRT_HALF))


def _matmul_tn(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a^T b`` for ``a [T, C]``, ``b [T, F]`` (weight gradients: one contracting axis)."""
    return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())))


def fused_dense(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None,
    norm: tuple | None = None,
    activation: str | None = None,
) -> jax.Array:
    """``prologue(x) @ kernel + bias`` whose prologue output is recomputed in the backward pass.

    The prologue is a LayerNorm (``norm=(scale, bias, eps)``, either affine part may be None) or
    the exact GELU (``activation="gelu"``). A plain composition keeps the prologue output alive
    from the forward to the backward pass for the weight gradient, next to the prologue input that
    its own derivative needs; recomputing it (a cheap elementwise pass) instead keeps one
    activation less in memory. On XLA's CPU backend every byte of that memory is page-faulted in
    again on each step, which costs more than the recomputation.

    Args:
        x: ``[..., C]``.
        kernel: ``[C, F]``.
        bias: ``[F]`` or None.
        norm: LayerNorm parameters, or None.
        activation: ``"gelu"`` or None (exactly one of ``norm`` and ``activation`` is given).

    Returns:
        ``[..., F]`` in the dtype of ``x``.
    """
    if (norm is None) == (activation is None):
        raise ValueError("fused_dense needs exactly one of norm= and activation=")
    if activation not in (None, "gelu"):
        raise ValueError(f"unsupported activation {activation!r}")
    lead, c, f = x.shape[:-1], x.shape[-1], kernel.shape[-1]
    dtype = x.dtype
    x2 = x.reshape(-1, c)
    eps = norm[2] if norm is not None else 0.0
    ln_scale = None if norm is None else norm[0]
    ln_bias = None if norm is None else norm[1]
    ln_scale = jnp.ones((c,), jnp.float32) if ln_scale is None else ln_scale.astype(jnp.float32)
    ln_bias = jnp.zeros((c,), jnp.float32) if ln_bias is None else ln_bias.astype(jnp.float32)
    bias = jnp.zeros((f,), dtype) if bias is None else bias.astype(dtype)
    kernel = kernel.astype(dtype)

    def prologue(x2: jax.Array, s: jax.Array, b: jax.Array, stats: tuple | None) -> jax.Array:
        if norm is None:
            return gelu(x2)
        mean, rstd = stats if stats is not None else _ln_stats(x2, eps)
        return ((x2 - mean) * rstd * s + b).astype(dtype)

    def recompute(x2: jax.Array, s: jax.Array, b: jax.Array, stats: tuple | None) -> jax.Array:
        # Equal to prologue() up to rounding but a different expression: see _gelu_recompute.
        if norm is None:
            return _gelu_recompute(x2)
        mean, rstd = stats
        return ((x2 - mean) * (rstd * s) + b).astype(dtype)

    def matmul(u: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
        return jax.lax.dot_general(u, kernel, (((1,), (0,)), ((), ()))) + bias

    @jax.custom_vjp
    def op(x2: jax.Array, kernel: jax.Array, bias: jax.Array, s: jax.Array, b: jax.Array):
        return matmul(prologue(x2, s, b, None), kernel, bias)

    def fwd(x2: jax.Array, kernel: jax.Array, bias: jax.Array, s: jax.Array, b: jax.Array):
        stats = None if norm is None else _ln_stats(x2, eps)
        y = matmul(prologue(x2, s, b, stats), kernel, bias)
        return y, (x2, kernel, s, b, stats)

    def bwd(res: tuple, dy: jax.Array) -> tuple:
        x2, kernel, s, b, stats = res
        du = jax.lax.dot_general(dy, kernel, (((1,), (1,)), ((), ())))
        # XLA's CPU scheduler runs a computation as soon as its operands exist: recomputing from
        # forward values alone would happen at the start of the backward pass, with all the
        # recomputed activations alive together. A numerically void dependency on ``du`` (a
        # matmul output, so XLA cannot inline its producer into the loop) schedules the
        # recomputation where it is used. It only changes results when ``du`` is already
        # non-finite, and then this step's gradients are NaN anyway.
        late = x2 + jnp.zeros((), x2.dtype) * du[0, 0].astype(x2.dtype)
        u = recompute(late, s, b, stats)
        dkernel = _matmul_tn(u, dy)
        dbias = jnp.sum(dy, axis=0)
        if norm is None:
            return du * _gelu_grad(x2), dkernel, dbias, jnp.zeros_like(s), jnp.zeros_like(b)
        mean, rstd = stats
        du32 = du.astype(jnp.float32)
        xhat = (x2.astype(jnp.float32) - mean) * rstd
        dx = rstd * (du32 * s - _row_mean(du32, s) - xhat * _row_mean(du32 * xhat, s))
        ds = jnp.sum(du32 * xhat, axis=0)
        db = jnp.sum(du32, axis=0)
        return dx.astype(dtype), dkernel, dbias, ds, db

    op.defvjp(fwd, bwd)
    return op(x2, kernel, bias, ln_scale, ln_bias).reshape(*lead, f)


class Dense(nn.Module):
    """Drop-in for ``nn.Dense`` (same parameters ``kernel [in, out]`` and ``bias``, same init).

    The leading axes are flattened into one token axis before the matmul. With a single contracting
    axis in the weight gradient ``x^T dy``, XLA's CPU backend calls its GEMM with a transposed
    operand directly; with ``[B, H, W]`` leading axes its dot canonicalisation first materialises
    a transposed copy of ``dy`` (one extra read and write of the largest activations).

    ``norm=`` (a LayerNorm's ``params_only`` output) or ``activation="gelu"`` applies that
    function to the input first, fused as in :func:`fused_dense`.
    """

    features: int
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(
        self, x: jax.Array, norm: tuple | None = None, activation: str | None = None
    ) -> jax.Array:
        """``[..., C_in]`` -> ``[..., features]``."""
        c = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (c, self.features), jnp.float32)
        bias = (
            self.param("bias", self.bias_init, (self.features,), jnp.float32)
            if self.use_bias
            else None
        )
        if norm is not None or activation is not None:
            dtype = self.dtype or jnp.promote_types(x.dtype, jnp.float32)
            return fused_dense(x.astype(dtype), kernel, bias, norm, activation)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jax.lax.dot_general(x.reshape(-1, c), kernel, (((1,), (0,)), ((), ())))
        if bias is not None:
            y = y + bias
        return y.reshape(*x.shape[:-1], self.features)
