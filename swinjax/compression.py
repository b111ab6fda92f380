"""Compress images to swinjax files and back: the library API behind the CLI and evaluation.

The group loop
--------------
Compress, decompress and :meth:`ImageCodec.forward_eval` run one loop (:meth:`ImageCodec._groups`)
over the groups / slices of y, with the same jitted programs:

* ``front``: ``y = g_a(x)``, ``z = h_a(y)`` (encoder only, float32);
* ``hyper``: ``z_hat`` from the z symbols, ``h_s(z_hat)`` and the context model's initial state;
* ``params[k]``: group k's means, scales, scale *indexes* and "pin" flags (below);
* ``fill[k]``: the state once group k's values are known (the masked model adds group k's keys
  and values, so decoding does one pass of entropy-model work; ChARM adds its LRP);
* ``synthesis``: ``x_hat = g_s(y_hat)`` (float32).

Why every machine decodes the same symbols
------------------------------------------
The only decisions the decoder takes are the scale indexes: each picks the integer CDF a symbol
is coded with (z's table rows are fixed per channel; the means only shift values the decoder
adds back, so a tiny difference in a mean changes a pixel by a tiny amount, not a symbol). An
index rounds a float scale against the scale table, and a scale computed in float32 by XLA
differs in its last bits between CPU instruction-set levels (SSE4.2 / AVX / AVX2 / AVX-512),
thread counts and backends. Measured with the shipped model on Kodak 768x512 crops (kodim05,
kodim13, lambda 512), decoder-side scales in float32 differ by up to 1.5e-5 (relative) between
``--xla_cpu_max_isa=SSE4_2`` / ``AVX`` and AVX2, and about one scale per image falls on the
other side of a table boundary: a file that does not decode.

Two measures together make the decisions agree:

1. The entropy-parameter path (``h_s``, the context model, the latent gain: everything from the
   z symbols to the scales, including the values fed back as context) runs in **float64**
   (``jax.enable_x64`` scoped to these programs; the transforms stay float32). The same
   measurement gives a largest relative difference of 1.4e-14 across those ISA levels.
2. The encoder **pins** every decision whose scale lies within a relative :data:`PIN_MARGIN`
   (1e-9) of a table boundary: it stores ``(position, index)`` for it in the file (format
   version 2), and the decoder uses the stored index there. Everywhere else the encoder's
   scale is at least 1e-9 away from a boundary, so a decoder whose scale is within that
   relative distance of the encoder's picks the same index (a scale index is monotone in the
   scale). At a margin of 1e-9, about 1.6e-8 of the in-range scales are pinned: almost every
   file pins none and pays one byte (the empty list).

Guarantee: a file decodes to the encoder's symbols on any platform whose float64 entropy
parameters are within a relative 1e-9 of the encoder's, i.e. 70,000 times the difference
measured between ISA levels. Float64 alone would leave a flip with probability ~1e-8 per file
(1e-14 relative at 3e5 scales per image); pinning alone, in float32, would have to pin every
scale within ~1e-4 of a boundary, ~250 per image. Integer networks (Balle, Johnston & Minnen,
ICLR 2019) make the decisions exact but need retraining with integer activations. The price
of float64 is time (see the benchmark table of docs/benchmarks.md). The reconstruction ``g_s``
is float32 and may differ by a few 8-bit levels between machines; the symbols, hence the rate,
do not.

A CRC32 of all quantized symbols, stored in the file and checked after decoding, turns any
remaining mismatch (other weights under the same model id, an altered file) into a clear error
instead of a garbage image.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from swinjax.coding import backend, container
from swinjax.entropy.gaussian import SCALE_MIN, gaussian_likelihood, scale_table
from swinjax.entropy.quantization import dequantize, quantize
from swinjax.entropy.tables import CodingTables
from swinjax.export import ExportedModel
from swinjax.lmbda import LmbdaError, lmbda_range
from swinjax.models import build_codec
from swinjax.transforms import downsampling_factor

DEFAULT_MAX_PIXELS = container.DEFAULT_MAX_PIXELS  # the one limit, owned by the file format

#: Relative distance to a scale-table boundary below which the encoder pins a scale index.
PIN_MARGIN = 1e-9

#: Default bound on a decode's peak memory (bytes), checked before anything is allocated.
DEFAULT_DECODE_MEMORY = 4 * 2**30

#: XLA's CPU runtime needs more than the temporaries of its buffer assignment
#: (``memory_analysis``): SwinCoder's synthesis at 3072x2048 peaked 2.3x above them
#: (``benchmarks/decode_memory.py``), so the decode estimate counts them this many times.
RUNTIME_TEMP_FACTOR = 2.5
#: The group loop's host arrays and allocator slack beyond :meth:`ImageCodec._entropy_bytes`
#: (measured: its peak was 1.23x that count).
ENTROPY_SLACK = 1.3

#: Parameter subtrees that the float64 entropy-parameter programs read.
_ENTROPY_PARAMS = ("h_s", "context", "entropy_bottleneck", "latent_gain")


@dataclass
class EvalResult:
    """What :meth:`ImageCodec.forward_eval` computes without writing a file."""

    y_hat: np.ndarray
    x_hat: np.ndarray  # uint8 [H, W, 3], cropped
    bits_y: float  # estimated: -log2 likelihood
    bits_z: float

    @property
    def bits(self) -> float:
        """Estimated bits of y and z (no header)."""
        return self.bits_y + self.bits_z


@dataclass
class GroupParams:
    """Group k's entropy parameters, compact ``[1, n_k]`` in coding order (see the module doc).

    Attributes:
        mu: means (float64, the gained domain).
        scale: scales (float64).
        index: scale-table rows the decoder computes (int32).
        pin: True where the scale lies within :data:`PIN_MARGIN` of a table boundary.
    """

    mu: jax.Array
    scale: jax.Array
    index: jax.Array
    pin: jax.Array


def scale_index_and_pin(
    scale: jax.Array, table: np.ndarray, margin: float = PIN_MARGIN
) -> tuple[jax.Array, jax.Array]:
    """Scale-table row of each scale, and whether a relative error of ``margin`` could change it.

    The row is the smallest table scale ``>= scale`` (clipped to the table), as
    :func:`swinjax.entropy.gaussian.scale_index`, computed in the dtype of ``scale`` (float64
    here) against the float32 table values. A scale is pinned when ``scale * (1 - margin)`` and
    ``scale * (1 + margin)`` fall in different rows.
    """
    t = jnp.asarray(np.asarray(table, np.float32).astype(np.float64), scale.dtype)
    last = t.shape[0] - 1

    def row(s: jax.Array) -> jax.Array:
        return jnp.clip(jnp.searchsorted(t, s, side="left"), 0, last).astype(jnp.int32)

    lo = row(scale * (1.0 - margin))
    hi = row(scale * (1.0 + margin))
    return row(scale), lo != hi


def _split_tables(tables: dict[str, np.ndarray], prefix: str) -> CodingTables:
    n = len(prefix)
    return CodingTables.from_arrays({k[n:]: v for k, v in tables.items() if k.startswith(prefix)})


class ImageCodec:
    """An exported model ready to compress and decompress single images.

    Args:
        exported: the inference checkpoint (:func:`swinjax.checkpoint.load_model`).
        max_pixels: largest image (height x width) accepted when compressing or decoding.
        pin_margin: relative distance to a scale-table boundary below which the encoder pins a
            scale index (module docstring). The decoder does not need it: any margin gives files
            that every swinjax decodes; a larger one pins more (bytes) and tolerates more.
        max_decode_bytes: a file whose decode would need more memory than this
            (:meth:`decode_memory_bytes`) is refused before anything is allocated: a small
            forged file may declare a huge image.

    Attributes:
        exported: the inference checkpoint given.
        model_config: the model's configuration (``exported.model``, a ConfigDict).
        module: the Flax module built from ``model_config``, whose methods the programs apply.
        params: the parameters (float32); ``params64``: the entropy-parameter subtrees in
            float64.
        factor: the image padding factor (the downsampling of z).
        latent_stride: the downsampling from the image to y (pixels per latent position, a
            side).
    """

    def __init__(
        self,
        exported: ExportedModel,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        pin_margin: float = PIN_MARGIN,
        max_decode_bytes: int = DEFAULT_DECODE_MEMORY,
    ) -> None:
        """Loads parameters and the stored coding tables (never rebuilt here)."""
        self.exported = exported
        self.model_config = exported.model
        self.module = build_codec(exported.model)
        self.params = jax.device_put(exported.params)
        inner = exported.params["params"]
        with jax.enable_x64(True):
            self.params64 = jax.device_put(
                {
                    "params": {
                        k: jax.tree.map(lambda a: np.asarray(a, np.float64), inner[k])
                        for k in _ENTROPY_PARAMS
                        if k in inner
                    }
                }
            )
        self.max_pixels = int(max_pixels)
        self.max_decode_bytes = int(max_decode_bytes)
        self._compiled_synthesis: dict[tuple[int, ...], Any] = {}
        self.lmbda_range = lmbda_range(exported.model)
        self.z_tables = _split_tables(exported.tables, "z_")
        self.y_tables = _split_tables(exported.tables, "y_")
        # One coder per table set: models are built once per row and cached.
        self.z_coder = backend.ConstrictionCoder(self.z_tables)
        self.y_coder = backend.ConstrictionCoder(self.y_tables)
        self.scale_table = scale_table()
        if self.y_tables.cdf.shape[0] != self.scale_table.shape[0]:
            raise ValueError("the y coding tables do not match the scale table")
        self.factor = downsampling_factor(self.model_config)
        self.latent_stride = 2 ** len(self.model_config.g_a.channels)
        c = self.module
        self.num_groups = int(c.apply(self.params, method=lambda m: m.context.num_groups))
        self._front = jax.jit(lambda p, x, lm: _front(c, p, x, lm))
        self._z_symbols = jax.jit(
            lambda p, z: quantize(z, "symbols", c.apply(p, method=c.z_medians))
        )
        # float64 programs: called only inside jax.enable_x64(True) (see the module docstring)
        self._hyper = jax.jit(lambda p, s: _hyper(c, p, s))
        table = self.scale_table
        self._params = [
            jax.jit(functools.partial(_group_params, c, table, float(pin_margin), k))
            for k in range(self.num_groups)
        ]
        self._fill = [jax.jit(functools.partial(_fill, c, k)) for k in range(self.num_groups)]
        self._y_symbols = [
            jax.jit(functools.partial(_y_symbols, c, k)) for k in range(self.num_groups)
        ]
        self._synthesis = jax.jit(lambda p, y_hat, lm: _synthesis_pixels(c, p, y_hat, lm))

    # -- shared pieces -------------------------------------------------------------------------
    def _lmbda(self, lmbda: float | None) -> float:
        """The lambda to code with (the model's default for None); see :mod:`swinjax.lmbda`."""
        return self.lmbda_range.check(lmbda)

    def _prepare(self, image: np.ndarray) -> tuple[jax.Array, tuple[int, int]]:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise ValueError(
                f"expected an 8-bit RGB image [H, W, 3] uint8, got {img.dtype} {img.shape}"
            )
        h, w, _ = img.shape
        if h == 0 or w == 0:
            raise ValueError(f"empty image: {h}x{w}")
        f = self.factor
        ph, pw = (-h) % f, (-w) % f
        if (h + ph) * (w + pw) > self.max_pixels:
            raise ValueError(
                f"image of {h}x{w} (padded to {h + ph}x{w + pw}) exceeds the limit of "
                f"{self.max_pixels} pixels"
            )
        x = img.astype(np.float32) / 255.0
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="edge")
        return jnp.asarray(x[None]), (ph, pw)

    def _finish(self, pixels: jax.Array, size: tuple[int, int]) -> np.ndarray:
        """The synthesis' 8-bit pixels without the padding."""
        return np.ascontiguousarray(np.asarray(pixels[0])[: size[0], : size[1]])

    def _lm_array(self, lmbda: float) -> jax.Array:
        return jnp.full((1,), 1.0 if np.isnan(lmbda) else lmbda, jnp.float32)

    def _groups(
        self,
        z_sym: jax.Array,
        lm_arr: jax.Array,
        code: Callable[[int, GroupParams], jax.Array | np.ndarray],
    ) -> tuple[jax.Array, jax.Array]:
        """The group loop shared by compress, decompress and forward_eval.

        ``code(k, params)`` returns group k's symbols ``[1, n_k]``: the encoder quantizes y, the
        decoder range-decodes them. Returns ``(y_hat, estimated bits of z)``; y_hat is float64.
        """
        with jax.enable_x64(True):
            lm_arr = jnp.asarray(np.asarray(lm_arr, np.float64))  # as exact as the file's lambda
            state, bits_z = self._hyper(self.params64, z_sym)
            for k in range(self.num_groups):
                gp = GroupParams(*self._params[k](self.params64, state, lm_arr))
                sym = jnp.asarray(code(k, gp), jnp.int32)
                state = self._fill[k](self.params64, state, sym, gp.mu, lm_arr)
            return state["y_hat"], bits_z

    # -- public API ----------------------------------------------------------------------------
    def forward_eval(self, image: np.ndarray, lmbda: float | None = None) -> EvalResult:
        """The evaluation forward pass: exactly what compress + decompress produce, no file."""
        lm = self._lmbda(lmbda)
        x, _ = self._prepare(image)
        lm_arr = self._lm_array(lm)
        y, z = self._front(self.params, x, lm_arr)
        bits_y = 0.0

        def code(k: int, gp: GroupParams) -> jax.Array:
            nonlocal bits_y
            sym = self._y_symbols[k](self.params64, y, gp.mu)
            lik = gaussian_likelihood(dequantize(sym, gp.mu), gp.mu, gp.scale, SCALE_MIN)
            bits_y += float(-np.log2(np.asarray(lik)).sum())
            return sym

        y_hat, bits_z = self._groups(self._z_symbols(self.params, z), lm_arr, code)
        x_hat = self._synthesis_for(tuple(y_hat.shape))(self.params, y_hat, lm_arr)
        return EvalResult(
            np.asarray(y_hat), self._finish(x_hat, image.shape[:2]), bits_y, float(bits_z)
        )

    def compress(self, image: np.ndarray, lmbda: float | None = None) -> bytes:
        """Compresses an 8-bit RGB image ``[H, W, 3]`` to the bytes of a swinjax file."""
        lm = self._lmbda(lmbda)
        h, w = image.shape[:2] if np.ndim(image) == 3 else (0, 0)
        x, (ph, pw) = self._prepare(image)
        lm_arr = self._lm_array(lm)
        y, z = self._front(self.params, x, lm_arr)
        z_sym = self._z_symbols(self.params, z)
        z_np = np.asarray(z_sym)[0]
        streams = [self.z_coder.encode(z_np, self._z_indexes(z_np.shape))]
        symbols = [z_np]
        pinned: list[tuple[int, int]] = []
        offset = 0

        def code(k: int, gp: GroupParams) -> jax.Array:
            nonlocal offset
            sym = self._y_symbols[k](self.params64, y, gp.mu)
            sym_np, idx = np.asarray(sym)[0], np.asarray(gp.index)[0]
            streams.append(self.y_coder.encode(sym_np, idx))
            symbols.append(sym_np)
            pinned.extend(
                (offset + int(i), int(idx[i])) for i in np.flatnonzero(np.asarray(gp.pin)[0])
            )
            offset += sym_np.size
            return sym

        self._groups(z_sym, lm_arr, code)
        header = container.Header(
            model_id=self.exported.model_id,
            config_hash=bytes.fromhex(self.exported.config_hash),
            lmbda=lm,
            height=h,
            width=w,
            pad_h=ph,
            pad_w=pw,
            y_shape=tuple(int(v) for v in y.shape[1:]),
            z_shape=tuple(int(v) for v in z.shape[1:]),
            downsampling=self.factor,
            symbols_crc32=container.symbols_crc32(symbols),
            pinned=tuple(pinned),
        )
        return container.pack(header, streams)

    def decompress(self, data: bytes) -> np.ndarray:
        """Decodes the bytes of a swinjax file to an 8-bit RGB image ``[H, W, 3]``."""
        header, y_hat, lm_arr = self.decode_latents(data)
        x_hat = self._synthesis_for(tuple(y_hat.shape))(self.params, y_hat, lm_arr)
        return self._finish(x_hat, (header.height, header.width))

    def _synthesis_for(self, y_shape: tuple[int, ...]) -> Any:
        """The synthesis program compiled for ``y_shape`` (float64 y_hat), cached."""
        if y_shape not in self._compiled_synthesis:
            with jax.enable_x64(True):
                y = jax.ShapeDtypeStruct(y_shape, jnp.float64)
                lm = jax.ShapeDtypeStruct((1,), jnp.float32)
                lowered = self._synthesis.lower(self.params, y, lm)
            self._compiled_synthesis[y_shape] = lowered.compile()
        return self._compiled_synthesis[y_shape]

    def _entropy_bytes(self, y_shape: tuple[int, ...]) -> int:
        """Upper estimate of the group loop's memory: float64 state and temporaries per position.

        Per latent position: the hyperprior features, y_hat and four full-size temporaries
        (means, scales, indexes, pins), and the context model's state and per-group work (the
        masked model: its tokens, three groups of keys and values, a group's queries, MLP and
        attention; ChARM: its 3x3 im2col inputs), plus the symbols and rows on the host.
        """
        e = self.model_config.entropy
        c, f = int(self.model_config.latent_channels), int(self.model_config.hyper_channels)
        hyper = 2 * c + f  # h_s ends at 2C (ChARM: mean | scale features) or a similar width
        if e.kind == "masked_grouped":
            d = int(e.dim)
            work = d + 3 * d + (3 * d + int(round(d * float(e.mlp_ratio))) + c) // 2
        else:
            work = 9 * 3 * c  # im2col of the widest slice transform input, all slices at once
        per_position = 8 * (hyper + 6 * c + work) + 16 * c
        return int(np.prod(y_shape[:-1])) * per_position

    def decode_memory_bytes(self, header: Any, compile_synthesis: bool = True) -> int:
        """Peak memory of decoding the file described by ``header``, known before decoding.

        The synthesis' share is XLA's own buffer assignment for the image size (arguments,
        temporaries and output of the compiled program, which :meth:`decompress` then runs);
        the group loop's is :meth:`_entropy_bytes`, and the cropped 8-bit image handed back adds
        its bytes. XLA's temporaries and the loop's count are scaled by measured factors
        (:data:`RUNTIME_TEMP_FACTOR`, :data:`ENTROPY_SLACK`) so that the estimate bounds the peak
        that ``benchmarks/decode_memory.py`` measures. Without ``compile_synthesis`` the
        synthesis counts only its float32 image (a lower bound, free to compute).
        """
        y_shape = (1, *header.y_shape)
        hp, wp = header.height + header.pad_h, header.width + header.pad_w
        entropy = self._entropy_bytes(y_shape)
        params64 = sum(a.nbytes for a in jax.tree.leaves(self.params64))
        if not compile_synthesis:
            return entropy + params64 + 4 * 3 * hp * wp
        m = self._synthesis_for(y_shape).memory_analysis()
        temp = RUNTIME_TEMP_FACTOR * m.temp_size_in_bytes
        synthesis = m.argument_size_in_bytes + temp + m.output_size_in_bytes + 3 * hp * wp
        loop = max(ENTROPY_SLACK * entropy, 8 * int(np.prod(y_shape)))
        return int(loop + params64 + synthesis)

    def _check_decode_memory(self, header: Any) -> None:
        for exact in (False, True):  # the free lower bound first: hostile sizes cost no compile
            need = self.decode_memory_bytes(header, compile_synthesis=exact)
            if need > self.max_decode_bytes:
                raise container.ImageTooLargeError(
                    f"decoding this {header.height}x{header.width} image needs about "
                    f"{_format_bytes(need)}, more than the decoder's budget of "
                    f"{_format_bytes(self.max_decode_bytes)} (max_decode_bytes)"
                )

    def decode_latents(self, data: bytes) -> tuple[Any, jax.Array, jax.Array]:
        """Decodes a file up to ``y_hat``: ``(header, y_hat [1, h, w, C] float64, lmbda [1])``.

        Raises:
            swinjax.coding.container.FormatError: the file is invalid, from another model, or its
                decoded latents fail the checksum.
        """
        header, streams = container.unpack(
            data, max_pixels=self.max_pixels, expected_model_id=self.exported.model_id
        )
        if header.config_hash != bytes.fromhex(self.exported.config_hash):
            raise container.FormatError(
                f"file was made by a {header.model_id} model with another configuration "
                "(config hash differs from the checkpoint's)"
            )
        self._check_shapes(header)
        self._check_decode_memory(header)
        lm = header.lmbda
        if self.model_config.variable_rate:
            try:
                self._lmbda(lm)
            except LmbdaError as e:
                raise container.FormatError(f"the file's lambda is unusable: {e}") from e
        lm_arr = self._lm_array(lm)
        groups = streams[1:]
        if len(groups) != self.num_groups:
            raise container.FormatError(
                f"file has {len(groups)} y streams, the model codes {self.num_groups} groups"
            )
        z_np = _decode_stream(self.z_coder, streams[0], self._z_indexes(tuple(header.z_shape)), "z")
        symbols = [z_np]
        pin_pos = np.array([p for p, _ in header.pinned], np.int64)
        pin_idx = np.array([i for _, i in header.pinned], np.int32)
        offset = 0

        def code(k: int, gp: GroupParams) -> np.ndarray:
            nonlocal offset
            idx = np.asarray(gp.index)[0].copy()
            sel = (pin_pos >= offset) & (pin_pos < offset + idx.size)
            if sel.any():
                at, rows = pin_pos[sel] - offset, pin_idx[sel]
                if np.any(np.abs(rows - idx[at]) > 1) or np.any(rows >= self.scale_table.size):
                    raise container.CorruptFileError(
                        f"corrupt file: a pinned scale index of y group {k} is not next to the "
                        "decoder's"
                    )
                idx[at] = rows
            sym = _decode_stream(self.y_coder, groups[k], idx, f"y group {k}")
            symbols.append(sym)
            offset += idx.size
            return sym[None]

        y_hat, _ = self._groups(jnp.asarray(z_np[None]), lm_arr, code)
        container.check_symbols_crc32(header, symbols)
        return header, y_hat, lm_arr

    def _z_indexes(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape)

    def _check_shapes(self, header: Any) -> None:
        f, g = self.factor, self.latent_stride
        hp, wp = header.height + header.pad_h, header.width + header.pad_w
        want_y = (hp // g, wp // g, int(self.model_config.latent_channels))
        want_z = (hp // f, wp // f, int(self.model_config.hyper_channels))
        if hp % f or wp % f or tuple(header.y_shape) != want_y or tuple(header.z_shape) != want_z:
            raise container.CorruptFileError(
                f"corrupt file: latent shapes y={tuple(header.y_shape)} "
                f"z={tuple(header.z_shape)} do not match a {header.height}x{header.width} image "
                "for this model"
            )


def _format_bytes(n: int) -> str:
    """``n`` bytes for a message: GiB with one decimal from 1 GiB up, whole MiB below."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _decode_stream(
    coder: backend.ConstrictionCoder, data: bytes, indexes: np.ndarray, what: str
) -> np.ndarray:
    """Range-decodes one stream; a stream that cannot be decoded is a file error, one line."""
    try:
        return coder.decode(data, indexes)
    except ValueError as e:
        raise container.CorruptFileError(
            f"corrupt file: the {what} stream does not decode ({e}); the file was altered or "
            "made with other weights under this model id"
        ) from e


def _front(c: Any, p: Any, x: jax.Array, lm: jax.Array) -> tuple[jax.Array, jax.Array]:
    y = c.apply(p, x, lm, method=c.analysis).astype(jnp.float32)
    return y, c.apply(p, y, lm, method=c.hyper_analysis).astype(jnp.float32)


def _hyper(c: Any, p: Any, z_sym: jax.Array) -> tuple[dict[str, Any], jax.Array]:
    z_hat = dequantize(z_sym, c.apply(p, method=c.z_medians))
    bits = -jnp.sum(jnp.log2(c.apply(p, z_hat, method=c.z_likelihood)))
    return c.apply(p, z_hat, method=c.coding_state), bits


def _group_params(
    c: Any,
    table: np.ndarray,
    margin: float,
    k: int,
    p: Any,
    state: dict[str, Any],
    lm: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    mu, scale = c.apply(p, state, k, lm, method=c.coding_params)
    index, pin = scale_index_and_pin(scale, table, margin)
    return mu, scale, index, pin


def _y_symbols(c: Any, k: int, p: Any, y: jax.Array, mu: jax.Array) -> jax.Array:
    """Group k's symbols ``round(y - mu)``, with y promoted to the means' float64."""
    y_k = c.apply(p, y, k, method=c.group_gather).astype(mu.dtype)
    return quantize(y_k, "symbols", mu)


def _synthesis_pixels(c: Any, p: Any, y_hat: jax.Array, lm: jax.Array) -> jax.Array:
    """g_s and the rounding to 8 bits in one program.

    The only full-size buffer that reaches the host is then the uint8 image: decoding's peak
    memory is the program's, which :meth:`ImageCodec.decode_memory_bytes` reads from XLA.
    """
    x_hat = c.apply(p, y_hat.astype(jnp.float32), lm, method=c.synthesis)
    return jnp.clip(jnp.round(x_hat * 255.0), 0, 255).astype(jnp.uint8)


def _fill(
    c: Any, k: int, p: Any, state: dict[str, Any], sym: jax.Array, mu: jax.Array, lm: jax.Array
) -> dict[str, Any]:
    return c.apply(p, state, k, dequantize(sym, mu), lm, method=c.coding_fill)
