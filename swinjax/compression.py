"""Compress images to swinjax files and back: the library API behind the CLI and evaluation.

Every step that decides what is coded is one jitted function shared by the encoder, the decoder
and :meth:`ImageCodec.forward_eval` (README: file format):

* ``front``: ``y = g_a(x)``, ``z = h_a(y)`` (encoder only);
* ``z_symbols`` / ``hyper``: z quantized around the factorized prior's medians, ``h_s(z_hat)``;
* ``group_params``: for group k, the mean, the scale and the scale *index* of every element,
  from the hyperprior and the groups already decoded;
* ``fill``: writes group k's dequantized values (plus ChARM's LRP) into ``y_hat``;
* ``synthesis``: ``x_hat = g_s(y_hat)``.

So the decoder reproduces the encoder's scale indexes as long as the same program computes the
same floats; a CRC32 of all quantized symbols, stored in the file and checked after decoding,
turns any mismatch (platform non-determinism, corruption) into a clear error instead of a garbage
image.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from swinjax.checkpoint import ExportedModel
from swinjax.coding import backend, container
from swinjax.entropy.gaussian import SCALE_MIN, gaussian_likelihood, scale_index, scale_table
from swinjax.entropy.quantization import dequantize, quantize
from swinjax.entropy.tables import CodingTables
from swinjax.lmbda import LmbdaError, lmbda_range
from swinjax.models import build_codec
from swinjax.transforms import downsampling_factor

DEFAULT_MAX_PIXELS = container.DEFAULT_MAX_PIXELS  # the one limit, owned by the file format


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


def _split_tables(tables: dict[str, np.ndarray], prefix: str) -> CodingTables:
    n = len(prefix)
    return CodingTables.from_arrays({k[n:]: v for k, v in tables.items() if k.startswith(prefix)})


class ImageCodec:
    """An exported model ready to compress and decompress single images.

    Args:
        exported: the inference checkpoint (:func:`swinjax.checkpoint.load_model`).
        max_pixels: largest image (height x width) accepted when compressing or decoding.
    """

    def __init__(self, exported: ExportedModel, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        """Loads parameters and the stored coding tables (never rebuilt here)."""
        self.exported = exported
        self.model = exported.model
        self.codec = build_codec(exported.model)
        self.params = jax.device_put(exported.params)
        self.max_pixels = int(max_pixels)
        self.lmbda_range = lmbda_range(exported.model)
        self.z_tables = _split_tables(exported.tables, "z_")
        self.y_tables = _split_tables(exported.tables, "y_")
        # One coder per table set: models are built once per row and cached.
        self.z_coder = backend.ConstrictionCoder(self.z_tables)
        self.y_coder = backend.ConstrictionCoder(self.y_tables)
        self.scale_table = scale_table()
        if self.y_tables.cdf.shape[0] != self.scale_table.shape[0]:
            raise ValueError("the y coding tables do not match the scale table")
        self.factor = downsampling_factor(self.model)
        self.g = 2 ** len(self.model.g_a.channels)
        c = self.codec
        self._front = jax.jit(lambda p, x, lm: _front(c, p, x, lm))
        self._z_symbols = jax.jit(
            lambda p, z: quantize(z, "symbols", c.apply(p, method=c.z_medians))
        )
        self._hyper = jax.jit(lambda p, s: _hyper(c, p, s))
        self._group_params = jax.jit(
            functools.partial(_group_params, c, self.scale_table), static_argnums=(3,)
        )
        self._y_symbols = jax.jit(lambda y, mu: quantize(y, "symbols", mu))
        self._fill = jax.jit(functools.partial(_fill, c), static_argnums=(3,))
        self._synthesis = jax.jit(lambda p, y_hat, lm: c.apply(p, y_hat, lm, method=c.synthesis))

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

    def _masks(self, h: int, w: int) -> np.ndarray:
        return self.codec.apply(
            self.params, h, w, method=lambda m, h, w: m.context.group_masks(h, w)
        )

    def _finish(self, x_hat: jax.Array, size: tuple[int, int]) -> np.ndarray:
        x = np.asarray(x_hat[0])[: size[0], : size[1]]
        return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)

    def _lm_array(self, lmbda: float) -> jax.Array:
        return jnp.full((1,), 1.0 if np.isnan(lmbda) else lmbda, jnp.float32)

    # -- public API ----------------------------------------------------------------------------
    def forward_eval(self, image: np.ndarray, lmbda: float | None = None) -> EvalResult:
        """The evaluation forward pass: exactly what compress + decompress produce, no file."""
        lm = self._lmbda(lmbda)
        x, _ = self._prepare(image)
        lm_arr = self._lm_array(lm)
        y, z = self._front(self.params, x, lm_arr)
        z_sym = self._z_symbols(self.params, z)
        hyper, bits_z = self._hyper(self.params, z_sym)
        y_hat = jnp.zeros_like(y)
        bits_y = 0.0
        masks = self._masks(y.shape[1], y.shape[2])
        for k in range(masks.shape[0]):
            mu, scale, _ = self._group_params(self.params, hyper, y_hat, k, lm_arr)
            sym = self._y_symbols(y, mu)
            lik = gaussian_likelihood(dequantize(sym, mu), mu, scale, SCALE_MIN)
            bits_y += float(-np.log2(np.asarray(lik)[0][masks[k]]).sum())
            y_hat = self._fill(self.params, hyper, y_hat, k, sym, mu, lm_arr)
        x_hat = self._synthesis(self.params, y_hat, lm_arr)
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
        hyper, _ = self._hyper(self.params, z_sym)
        z_np = np.asarray(z_sym)[0]
        streams = [self.z_coder.encode(z_np, self._z_indexes(z_np.shape))]
        symbols = [z_np]
        y_hat = jnp.zeros_like(y)
        masks = self._masks(y.shape[1], y.shape[2])
        for k in range(masks.shape[0]):
            mu, _, idx = self._group_params(self.params, hyper, y_hat, k, lm_arr)
            sym = self._y_symbols(y, mu)
            sym_np = np.asarray(sym)[0][masks[k]]
            streams.append(self.y_coder.encode(sym_np, np.asarray(idx)[0][masks[k]]))
            symbols.append(sym_np)
            y_hat = self._fill(self.params, hyper, y_hat, k, sym, mu, lm_arr)
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
        )
        return container.pack(header, streams)

    def decompress(self, data: bytes) -> np.ndarray:
        """Decodes the bytes of a swinjax file to an 8-bit RGB image ``[H, W, 3]``."""
        header, y_hat, lm_arr = self.decode_latents(data)
        x_hat = self._synthesis(self.params, y_hat, lm_arr)
        return self._finish(x_hat, (header.height, header.width))

    def decode_latents(self, data: bytes) -> tuple[Any, jax.Array, jax.Array]:
        """Decodes a file up to ``y_hat``: ``(header, y_hat [1, h, w, C], lmbda [1])``.

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
        lm = header.lmbda
        if self.model.variable_rate:
            try:
                self._lmbda(lm)
            except LmbdaError as e:
                raise container.FormatError(f"the file's lambda is unusable: {e}") from e
        lm_arr = self._lm_array(lm)
        groups = streams[1:]
        z_shape = tuple(header.z_shape)
        z_np = _decode_stream(self.z_coder, streams[0], self._z_indexes(z_shape), "z")
        hyper, _ = self._hyper(self.params, jnp.asarray(z_np[None]))
        y_shape = tuple(header.y_shape)
        masks = self._masks(y_shape[0], y_shape[1])
        if len(groups) != masks.shape[0]:
            raise container.FormatError(
                f"file has {len(groups)} y streams, the model codes {masks.shape[0]} groups"
            )
        y_hat = jnp.zeros((1, *y_shape), jnp.float32)
        symbols = [z_np]
        for k in range(masks.shape[0]):
            mu, _, idx = self._group_params(self.params, hyper, y_hat, k, lm_arr)
            sym_k = _decode_stream(
                self.y_coder, groups[k], np.asarray(idx)[0][masks[k]], f"y group {k}"
            )
            full = np.zeros(y_shape, np.int32)
            full[masks[k]] = sym_k
            symbols.append(sym_k)
            y_hat = self._fill(self.params, hyper, y_hat, k, jnp.asarray(full[None]), mu, lm_arr)
        container.check_symbols_crc32(header, symbols)
        return header, y_hat, lm_arr

    def _z_indexes(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape)

    def _check_shapes(self, header: Any) -> None:
        f, g = self.factor, self.g
        hp, wp = header.height + header.pad_h, header.width + header.pad_w
        want_y = (hp // g, wp // g, int(self.model.latent_channels))
        want_z = (hp // f, wp // f, int(self.model.hyper_channels))
        if hp % f or wp % f or tuple(header.y_shape) != want_y or tuple(header.z_shape) != want_z:
            raise container.FormatError(
                f"latent shapes y={tuple(header.y_shape)} z={tuple(header.z_shape)} do not match "
                f"a {header.height}x{header.width} image for this model"
            )


def _decode_stream(
    coder: backend.ConstrictionCoder, data: bytes, indexes: np.ndarray, what: str
) -> np.ndarray:
    """Range-decodes one stream; a stream that cannot be decoded is a file error, one line."""
    try:
        return coder.decode(data, indexes)
    except ValueError as e:
        raise container.CorruptFileError(
            f"the {what} stream does not decode ({e}): the decoder's entropy parameters differ "
            "from the encoder's (platform non-determinism or corruption)"
        ) from e


def _front(c: Any, p: Any, x: jax.Array, lm: jax.Array) -> tuple[jax.Array, jax.Array]:
    y = c.apply(p, x, lm, method=c.analysis).astype(jnp.float32)
    return y, c.apply(p, y, lm, method=c.hyper_analysis).astype(jnp.float32)


def _hyper(c: Any, p: Any, z_sym: jax.Array) -> tuple[jax.Array, jax.Array]:
    z_hat = dequantize(z_sym, c.apply(p, method=c.z_medians))
    bits = -jnp.sum(jnp.log2(c.apply(p, z_hat, method=c.z_likelihood)))
    return c.apply(p, z_hat, method=c.hyper_synthesis), bits


def _group_params(
    c: Any, table: np.ndarray, p: Any, hyper: jax.Array, y_hat: jax.Array, k: int, lm: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    mu, scale = c.apply(p, hyper, y_hat, k, lm, method=c.group_params)
    return mu, scale, scale_index(scale, table)


def _fill(
    c: Any,
    p: Any,
    hyper: jax.Array,
    y_hat: jax.Array,
    k: int,
    sym: jax.Array,
    mu: jax.Array,
    lm: jax.Array,
) -> jax.Array:
    return c.apply(p, hyper, y_hat, k, dequantize(sym, mu), lm, method=c.fill_group)
