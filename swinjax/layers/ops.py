"""Dense, LayerNorm and GELU in two formulations: hand-written CPU kernels and plain JAX.

Both formulations compute the same functions as ``flax.linen.Dense``,
``flax.linen.LayerNorm`` and ``flax.linen.gelu(approximate=False)`` (up to float rounding; tested
for values and gradients in ``tests/test_layers.py``), with the same parameters.

**Which one runs.** :func:`use_cpu_kernels` decides when a function is traced: the hand-written
kernels on XLA's CPU backend (the platform of ``jax.default_device`` if one is set, else
``jax.default_backend()``), the plain formulation on GPUs and TPUs. :func:`kernels` overrides the
choice (``"cpu"`` or ``"generic"``) for what is traced inside it; training sets it from the
config key ``kernels``.

**Why two.** On XLA's CPU backend the transforms are memory-bound outside their matmuls
(``benchmarks/transforms.py``), and the kernels below trade arithmetic for memory traffic:

* :func:`gelu` evaluates the exact GELU ``x Phi(x)`` through ``erf`` instead of ``erfc`` (JAX's
  ``erfc`` lowers to a piecewise approximation with an ``exp`` and selects, ``erf`` to one rational
  polynomial) and gives it an analytic derivative ``Phi(x) + x phi(x)``, so the backward pass is one
  multiply instead of the differentiated polynomial. The ``erf`` form loses relative (not absolute)
  accuracy where ``Phi(x)`` underflows, i.e. for ``x < -5`` where GELU is below ``1e-6``.
* :func:`layer_norm` computes mean and variance in one pass and has the textbook backward pass
  ``dx = rstd (g - mean(g) - xhat mean(g xhat))`` with ``g = dy * scale``: two reductions per token
  instead of the five or six that differentiating the forward pass produces. The per-token
  reductions are matrix-vector products at ``Precision.HIGHEST`` (see :func:`_row_mean`); XLA's
  cost analysis counts them as two flops per element instead of one.
* :func:`fused_dense` recomputes a LayerNorm or GELU prologue in the backward pass instead of
  keeping its output alive (XLA CPU page-faults every byte of its temporary buffer each step).

On a GPU or TPU none of this pays: a custom derivative is opaque to XLA's fusion of the backward
pass with its neighbours, reductions are cheap, and a ``HIGHEST``-precision matmul runs as several
bfloat16 passes on a TPU (or in full float32 instead of TF32 on a GPU), so there the plain
composition of ``jnp`` operations, differentiated by JAX, is used.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

#: Values of the config key ``kernels`` and of :func:`kernels`.
KERNELS: tuple[str, ...] = ("auto", "cpu", "generic")

# Read at trace time only. A context variable, not a module global, so that two threads tracing
# with different choices do not see each other's.
_KERNELS: contextvars.ContextVar[str] = contextvars.ContextVar("swinjax_kernels", default="auto")


@contextlib.contextmanager
def kernels(kind: str) -> Iterator[None]:
    """Selects the layer formulation for everything traced inside the block.

    Args:
        kind: ``"auto"`` (hand-written kernels on the CPU backend only), ``"cpu"`` (always the
            hand-written kernels) or ``"generic"`` (always plain JAX).

    A function that ``jax.jit`` already compiled keeps the formulation it was traced with (the
    choice is not part of jit's cache key); both give the same values up to rounding.
    """
    if kind not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kind!r}")
    token = _KERNELS.set(kind)
    try:
        yield
    finally:
        _KERNELS.reset(token)


def target_platform() -> str:
    """Platform computations traced now will run on: ``jax.default_device``'s, else the default.

    ``jax.default_device`` is part of jit's cache key, so a program traced for another device
    (a CPU decode in a GPU process) is traced again, with that platform's choice.
    """
    device = jax.config.jax_default_device
    if device is None:
        return jax.default_backend()
    return device.platform if hasattr(device, "platform") else str(device)


def use_cpu_kernels() -> bool:
    """Whether the layers traced now use the hand-written CPU kernels (see :func:`kernels`)."""
    kind = _KERNELS.get()
    if kind == "auto":
        return target_platform() == "cpu"
    return kind == "cpu"


_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU ``x * Phi(x)`` (Hendrycks & Gimpel 2016): ``nn.gelu(approximate=False)``.

    The hand-written CPU kernel (analytic derivative) or ``jax.nn.gelu``, see :func:`kernels`.
    """
    if use_cpu_kernels():
        return _gelu_cpu(x)
    return jax.nn.gelu(x, approximate=False)


@jax.custom_jvp
def _gelu_cpu(x: jax.Array) -> jax.Array:
    return 0.5 * x * (1.0 + jax.lax.erf(x * _SQRT_HALF))


@_gelu_cpu.defjvp
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


def stats_dtype(dtype: Any) -> Any:
    """The dtype of normalisation statistics and softmax for activations of ``dtype``.

    At least float32 (bfloat16's 8-bit mantissa would make the variance of a wide token noisy),
    float64 for float64 activations: the decoder's entropy-parameter programs run in float64 so
    that every machine picks the same scale index (see :mod:`swinjax.compression`).
    """
    return jnp.promote_types(dtype, jnp.float32)


def _ln_stats(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    x32 = x.astype(stats_dtype(x.dtype))
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
    dy32 = dy.astype(mean.dtype)
    xhat = (x.astype(mean.dtype) - mean) * rstd
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
    """LayerNorm over the last axis (Ba et al. 2016) with optional affine ``scale`` / ``bias [C]``.

    Statistics are float32 for float32 and bfloat16 ``x`` (bfloat16's 8-bit mantissa would make
    the variance of a wide token noisy), float64 for float64 ``x`` (:func:`stats_dtype`); the
    result has the dtype of ``x``. The hand-written CPU
    kernel or plain ``jnp`` (two-pass variance), see :func:`kernels`.
    """
    c = x.shape[-1]
    sd = stats_dtype(x.dtype)
    scale = jnp.ones((c,), sd) if scale is None else scale.astype(sd)
    bias = jnp.zeros((c,), sd) if bias is None else bias.astype(sd)
    if use_cpu_kernels():
        return _layer_norm(x, scale, bias, eps)
    return _layer_norm_generic(x, scale, bias, eps)


def _layer_norm_generic(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    x32 = x.astype(stats_dtype(x.dtype))
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps) * scale + bias).astype(x.dtype)


class NormParams(NamedTuple):
    """A LayerNorm's parameters, to be applied as the prologue of a :class:`Dense` (``norm=``)."""

    scale: jax.Array | None
    bias: jax.Array | None
    epsilon: float


class LayerNorm(nn.Module):
    """Drop-in for ``nn.LayerNorm`` over the last axis (same parameters ``scale`` and ``bias``).

    Attributes:
        epsilon: added to the variance.
        use_scale: learn a per-channel scale (initialised to 1).
        use_bias: learn a per-channel bias (initialised to 0).
        dtype: output dtype (statistics: :func:`stats_dtype`); None keeps the input dtype.
    """

    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalises ``x [..., C]`` over C."""
        scale, bias, eps = _norm_params(self, x.shape[-1], self.use_scale, self.use_bias)
        # nn.LayerNorm's output dtype: the given dtype, else the input promoted with the params.
        x = x.astype(self.dtype or jnp.promote_types(x.dtype, jnp.float32))
        return layer_norm(x, scale, bias, eps)


class LayerNormParams(nn.Module):
    """A LayerNorm that only creates its parameters, for a following ``Dense(norm=...)``.

    The parameters (``scale``, ``bias``) and their names are those of :class:`LayerNorm`, so a
    module written either way loads the other's checkpoints; the normalisation itself runs inside
    :func:`fused_dense`.
    """

    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True

    @nn.compact
    def __call__(self, features: int) -> NormParams:
        """The :class:`NormParams` of a LayerNorm over ``features`` channels."""
        return NormParams(*_norm_params(self, features, self.use_scale, self.use_bias))


def _norm_params(
    module: LayerNorm | LayerNormParams, c: int, use_scale: bool, use_bias: bool
) -> tuple[jax.Array | None, jax.Array | None, float]:
    scale = module.param("scale", nn.initializers.ones, (c,), jnp.float32) if use_scale else None
    bias = module.param("bias", nn.initializers.zeros, (c,), jnp.float32) if use_bias else None
    return scale, bias, module.epsilon


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
    norm: NormParams | None = None,
    activation: str | None = None,
) -> jax.Array:
    """``prologue(x) @ kernel + bias`` whose prologue output is recomputed in the backward pass.

    The prologue is a LayerNorm (``norm``; either affine part may be None) or the exact GELU
    (``activation="gelu"``). A plain composition keeps the prologue output alive from the forward
    to the backward pass for the weight gradient, next to the prologue input that its own
    derivative needs; recomputing it (a cheap elementwise pass) instead keeps one activation less
    in memory. On XLA's CPU backend every byte of that memory is page-faulted in again on each
    step, which costs more than the recomputation. Elsewhere (see :func:`kernels`) it is the plain
    composition, and XLA's own rematerialisation decides.

    Args:
        x: ``[..., C]``.
        kernel: ``[C, F]``.
        bias: ``[F]`` or None.
        norm: LayerNorm parameters (:class:`LayerNormParams`), or None.
        activation: ``"gelu"`` or None (exactly one of ``norm`` and ``activation`` is given).

    Returns:
        ``[..., F]`` in the dtype of ``x``.
    """
    if (norm is None) == (activation is None):
        raise ValueError("fused_dense needs exactly one of norm= and activation=")
    if activation not in (None, "gelu"):
        raise ValueError(f"unsupported activation {activation!r}")
    if not use_cpu_kernels():
        u = gelu(x) if norm is None else layer_norm(x, norm.scale, norm.bias, norm.epsilon)
        y = jax.lax.dot_general(
            u.reshape(-1, x.shape[-1]), kernel.astype(x.dtype), (((1,), (0,)), ((), ()))
        )
        if bias is not None:
            y = y + bias.astype(x.dtype)
        return y.reshape(*x.shape[:-1], kernel.shape[-1])
    lead, c, f = x.shape[:-1], x.shape[-1], kernel.shape[-1]
    dtype = x.dtype
    x2 = x.reshape(-1, c)
    eps = norm[2] if norm is not None else 0.0
    ln_scale = None if norm is None else norm[0]
    ln_bias = None if norm is None else norm[1]
    sd = stats_dtype(dtype)
    ln_scale = jnp.ones((c,), sd) if ln_scale is None else ln_scale.astype(sd)
    ln_bias = jnp.zeros((c,), sd) if ln_bias is None else ln_bias.astype(sd)
    bias = jnp.zeros((f,), dtype) if bias is None else bias.astype(dtype)
    kernel = kernel.astype(dtype)

    def prologue(x2: jax.Array, s: jax.Array, b: jax.Array, stats: tuple | None) -> jax.Array:
        if norm is None:
            return _gelu_cpu(x2)
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
        du32 = du.astype(mean.dtype)
        xhat = (x2.astype(mean.dtype) - mean) * rstd
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

    ``norm=`` (the output of a :class:`LayerNormParams`) or ``activation="gelu"`` applies that
    function to the input first, fused as in :func:`fused_dense`.
    """

    features: int
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(
        self, x: jax.Array, norm: NormParams | None = None, activation: str | None = None
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
