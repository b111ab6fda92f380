"""Range-coder backend: integer symbols + table rows -> bytes, with an escape for outliers.

Interface
---------
An :class:`EntropyCoder` is bound to one :class:`~swinjax.entropy.tables.CodingTables` and
maps ``(symbols, indexes)`` to bytes and back. ``indexes`` (the table row of every symbol: a
scale index for the Gaussian conditional, a channel for the factorized prior) are known to the
decoder, which recomputes them from already-decoded data, so
they are never stored. :class:`ConstrictionCoder` is the production implementation;
:class:`swinjax.coding.reference.ReferenceCoder` is a slow pure-Python oracle with the same
stream *content* (not the same bytes). :func:`encode` / :func:`decode` are one-shot helpers.

What a stream contains
----------------------
Symbols are int32 values. For an element with row ``r`` and value ``v`` let
``s = v - cdf_offset[r]`` and ``n = cdf_length[r] - 2`` (in-table symbols of the row):

1. If ``0 <= s < n`` the symbol ``s`` is coded with row ``r``'s integer pmf.
2. Otherwise the escape symbol ``n`` is coded (it has the row's tail mass), then the value
   itself, losslessly, Elias-gamma style: ``raw = -2 s - 1`` if ``s < 0`` else ``2 (s - n)``
   (a zig-zag of the distance past the table, ``raw >= 0``), ``nb = raw.bit_length()`` in
   ``[0, 34]`` coded uniformly over 35 values, then the ``nb - 1`` bits of ``raw`` below its
   leading one, least significant first, in chunks of at most 16 bits, each uniform over
   ``2**width``. Every int32 value round-trips (``|s| < 2**32``).
3. A 16-bit end marker (:data:`END_MARKER`, uniform) closes the stream, so a truncated or
   garbled stream is reported as a :class:`CorruptStreamError` (a ``ValueError`` and a
   container ``FormatError``) with probability ``1 - 2**-16`` instead of silently decoding
   garbage (the container's CRC32 of the symbols is the final guard). Decoding never loops on
   the data: every call decodes a count known from ``indexes``.

Layout for speed (constriction backend)
---------------------------------------
Per-symbol models in a Python loop would be ~100x slower than the coder itself. Instead the
elements are stable-sorted by table row (one SIMD sort of packed ``row << bits | position``
keys); each row's run is coded with *one* constriction call and one categorical model, so the
stream holds: row 0's symbols, row 1's, ..., then all escape bit-lengths, then all escape chunks
(in sorted order), then the marker. The decoder knows ``indexes``, recomputes the same
permutation and counts, and decodes the same calls in the same order (constriction's range coder
is a queue: first in, first out).

Cost (``benchmarks/coding.py``, 1 M symbols, 64 rows): constriction's categorical encode runs at
~200 M symbols/s, so the permutation, the gather and the validation (a few numpy passes) make
the layer's encode ~3-4x the bare constriction calls; decode, where constriction itself is
slower, is ~1.5-1.8x. Both stay far faster than constriction's per-symbol parametric models
(``QuantizedGaussian``: ~7-12x). constriction holds the GIL while coding, so threads would not
overlap the numpy work with it.

Why the model is derived deterministically from the integer table
-----------------------------------------------------------------
constriction builds a categorical model from float probabilities and requantizes them to its
own 24-bit fixed point (``Categorical(p, perfect=False)``: a running float sum times a scale,
floored, plus one per symbol). We hand it ``p = diff(cdf)`` as float64, i.e. exact integers, so
the model is a pure function of the stored integer table: the same float64 inputs and the same
IEEE operations in Rust (no fast-math) on both sides, hence the same fixed-point model on any
platform. The requantization is near-exact (a relative change of ``n / 2**24`` at most) so the
code length matches the integer table's ideal length, which the tests check against the
reference coder.
"""

from __future__ import annotations

from typing import Protocol

import constriction
import numpy as np

from swinjax.coding.container import FormatError
from swinjax.entropy.tables import CodingTables

#: Value coded (uniform over 2**16) after the last symbol of every stream.
END_MARKER = 0x5357  # "SW"
#: Escape payload chunk width in bits.
CHUNK_BITS = 16
#: ``raw.bit_length()`` of an escaped value is < this (``raw < 2**34`` for int32 values).
MAX_RAW_BITS = 35
_MAX_CHUNKS = (MAX_RAW_BITS - 2) // CHUNK_BITS + 1  # chunks of the <= 33 bits below the top one

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


class CorruptStreamError(FormatError):
    """A stream that does not decode: truncated, damaged, or decoded with other parameters.

    A :class:`~swinjax.coding.container.FormatError` (hence a ``ValueError``): inside a file it
    is one more way the file is bad, and callers that report bad files catch one class.
    """


class EntropyCoder(Protocol):
    """Codes int32 symbols, each with a known table row, to bytes and back."""

    tables: CodingTables

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """Codes ``symbols`` (any shape, C order) with table rows ``indexes`` (same shape)."""
        ...

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`encode`: int32 symbols shaped like ``indexes``."""
        ...


def check_indexes(indexes: np.ndarray, num_rows: int) -> np.ndarray:
    """Validates table rows and returns them as a flat C-order int32 array.

    Raises:
        ValueError: not an integer array, or a row outside ``[0, num_rows)``.
    """
    idx = np.asarray(indexes)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indexes must be an integer array, got dtype {idx.dtype}")
    flat = idx.reshape(-1)
    if flat.size:
        lo, hi = int(flat.min()), int(flat.max())
        if lo < 0 or hi >= num_rows:
            raise ValueError(f"indexes must be in [0, {num_rows}), got values in [{lo}, {hi}]")
    return flat.astype(np.int32, copy=False)


def check_symbols(symbols: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Validates symbols (integer, int32 range, shape ``shape``); returns flat int32.

    Raises:
        ValueError: wrong shape or dtype, or a value outside int32.
    """
    sym = np.asarray(symbols)
    if sym.shape != tuple(shape):
        raise ValueError(f"symbols shape {sym.shape} does not match indexes shape {tuple(shape)}")
    if not np.issubdtype(sym.dtype, np.integer):
        raise ValueError(f"symbols must be an integer array, got dtype {sym.dtype}")
    flat = sym.reshape(-1)
    if sym.dtype != np.int32:
        if flat.size and (int(flat.min()) < _INT32_MIN or int(flat.max()) > _INT32_MAX):
            raise ValueError("symbols must fit in int32")
        flat = flat.astype(np.int32)
    return flat


def _row_order(idx: np.ndarray, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable permutation grouping elements by row, and each row's start in it (``[K + 1]``).

    Sorts packed ``row << bits | position`` keys: they are unique, so any sort of them is the
    stable sort by row, and numpy's SIMD sort of 32-bit keys (the common case: up to 2**26
    elements with 64 rows) is several times faster than a stable argsort. Row boundaries come
    from binary searches on the sorted keys. ``idx`` must already be validated.
    """
    n = idx.size
    pos_bits = max(1, (n - 1).bit_length())
    row_bits = max(1, (num_rows - 1).bit_length())
    dt = np.uint32 if pos_bits + row_bits <= 32 else np.uint64
    key = idx.astype(dt)
    key <<= dt(pos_bits)
    key |= np.arange(n, dtype=dt)
    key.sort()
    starts = np.empty(num_rows + 1, dtype=np.int64)
    starts[:-1] = np.searchsorted(key, np.arange(num_rows, dtype=dt) << dt(pos_bits))
    starts[-1] = n
    key &= dt((1 << pos_bits) - 1)  # in place: large temporaries cost page faults
    return key, starts


def _escape_chunks(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bit lengths ``nb`` and the flattened (chunk value, chunk width) lists of ``raw >= 0``."""
    # frexp is exact for integers < 2**53: raw = m * 2**e with m in [0.5, 1) -> e = bit_length.
    nb = np.frexp(raw.astype(np.float64))[1].astype(np.int64)
    payload = raw - np.where(nb > 0, np.left_shift(np.int64(1), np.maximum(nb - 1, 0)), 0)
    widths = _chunk_widths(nb)
    shifts = CHUNK_BITS * np.arange(_MAX_CHUNKS, dtype=np.int64)
    values = (payload[:, None] >> shifts[None, :]) & ((1 << CHUNK_BITS) - 1)
    keep = widths > 0
    return nb, values[keep].astype(np.int32), widths[keep]


def _chunk_widths(nb: np.ndarray) -> np.ndarray:
    """``[E, _MAX_CHUNKS]`` widths of the chunks of the ``nb - 1`` bits below the leading one."""
    below = np.maximum(nb.astype(np.int64) - 1, 0)
    starts = CHUNK_BITS * np.arange(_MAX_CHUNKS, dtype=np.int64)
    return np.clip(below[:, None] - starts[None, :], 0, CHUNK_BITS)


def _to_words(data: bytes) -> np.ndarray:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data must be bytes, got {type(data).__name__}")
    if len(data) % 4:
        raise CorruptStreamError(
            f"corrupt stream: {len(data)} bytes is not a whole number of 32-bit words"
        )
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


class ConstrictionCoder:
    """:class:`EntropyCoder` on constriction's range coder (``stream.queue.RangeEncoder``).

    Construct once per set of tables and reuse: the per-row categorical models are built
    lazily on first use and cached on the instance (never in module state).

    Args:
        tables: the coding tables; validated here.
    """

    def __init__(self, tables: CodingTables) -> None:
        self.tables = tables.validate()
        self._masses = tables.masses().astype(np.float64)
        self._n = tables.cdf_length.astype(np.int64) - 2
        self._offset = tables.cdf_offset.astype(np.int64)
        self._models: list[object | None] = [None] * tables.num_rows
        self._model_mod = constriction.stream.model
        self._nb_model = self._model_mod.Uniform(MAX_RAW_BITS)
        self._chunk_family = self._model_mod.Uniform()
        self._marker_model = self._model_mod.Uniform(1 << 16)

    def model(self, row: int) -> object:
        """The constriction categorical model of ``row`` (in-table symbols + escape)."""
        m = self._models[row]
        if m is None:
            p = self._masses[row, : self._n[row] + 1]
            m = self._model_mod.Categorical(p, perfect=False)
            self._models[row] = m
        return m

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """Codes ``symbols`` with rows ``indexes`` (same shape, flattened in C order).

        Raises:
            ValueError: shapes differ, non-integer input, an index outside the table or a
                symbol outside int32.
        """
        idx = check_indexes(indexes, self.tables.num_rows)
        sym = check_symbols(symbols, np.shape(indexes))
        if idx.size == 0:
            return b""
        order, starts = _row_order(idx, self.tables.num_rows)
        grouped = np.take(sym, order)
        encoder = constriction.stream.queue.RangeEncoder()
        esc_raw = []
        for r in np.flatnonzero(starts[1:] > starts[:-1]):
            run = grouped[starts[r] : starts[r + 1]]
            n, off = int(self._n[r]), int(self._offset[r])
            # int32 arithmetic may wrap for far outliers, but with |offset| <= 2**30 (validated)
            # a wrapped difference read as uint32 is never below n, so the test stays exact.
            s = run - np.int32(off)
            if not (off <= int(run.min()) and int(run.max()) < off + n):  # escapes (rare)
                pos = np.flatnonzero(s.view(np.uint32) >= n)
                esc = run[pos].astype(np.int64) - off
                esc_raw.append(np.where(esc < 0, -2 * esc - 1, 2 * (esc - n)))
                s[pos] = n
            encoder.encode(s, self.model(r))
        if esc_raw:
            nb, chunk_values, chunk_widths = _escape_chunks(np.concatenate(esc_raw))
            encoder.encode(nb.astype(np.int32), self._nb_model)
            if chunk_values.size:
                sizes = np.left_shift(1, chunk_widths).astype(np.int32)
                encoder.encode(chunk_values, self._chunk_family, sizes)
        encoder.encode(END_MARKER, self._marker_model)
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`encode`; the work is bounded by ``indexes.size`` (no loops on data).

        Raises:
            ValueError: bad indexes (a caller bug).
            CorruptStreamError: data that is not whole 32-bit words, or a stream that is
                truncated / corrupt / not made with these tables and indexes (end marker
                mismatch, impossible escape value, data left over).
        """
        idx = check_indexes(indexes, self.tables.num_rows)
        shape = np.shape(indexes)
        words = _to_words(data)
        if idx.size == 0:
            if words.size:
                raise CorruptStreamError("corrupt stream: data present but no symbols expected")
            return np.zeros(shape, dtype=np.int32)
        if words.size == 0:
            raise CorruptStreamError(f"corrupt stream: empty, but {idx.size} symbols expected")
        order, starts = _row_order(idx, self.tables.num_rows)
        try:
            grouped = self._decode_grouped(words, starts)
        except CorruptStreamError:
            raise
        except Exception as e:  # constriction reports invalid data as AssertionError & co.
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CorruptStreamError(f"corrupt stream: {first}") from e
        out = np.empty(idx.size, dtype=np.int32)
        out[order] = grouped
        return out.reshape(shape)

    def _decode_grouped(self, words: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Decodes the row-grouped symbols (layout in the module docstring)."""
        decoder = constriction.stream.queue.RangeDecoder(words)
        grouped = np.empty(int(starts[-1]), dtype=np.int32)
        esc_pos, esc_row = [], []
        for r in np.flatnonzero(starts[1:] > starts[:-1]):
            a, b = int(starts[r]), int(starts[r + 1])
            s = decoder.decode(self.model(r), b - a)
            if int(s.max()) == self._n[r]:  # escapes present (rare): find them
                hit = np.flatnonzero(s == self._n[r])
                esc_pos.append(hit + a)
                esc_row.append(np.full(hit.size, r, dtype=np.int64))
            np.add(s, np.int32(self._offset[r]), out=grouped[a:b])
        if esc_pos:
            pos = np.concatenate(esc_pos)
            rows = np.concatenate(esc_row)
            nb = decoder.decode(self._nb_model, pos.size).astype(np.int64)
            widths = _chunk_widths(nb)
            keep = widths > 0
            chunks = np.zeros(widths.shape, dtype=np.int64)
            if keep.any():
                sizes = np.left_shift(1, widths[keep]).astype(np.int32)
                chunks[keep] = decoder.decode(self._chunk_family, sizes)
            shifts = CHUNK_BITS * np.arange(_MAX_CHUNKS, dtype=np.int64)
            payload = (chunks << shifts[None, :]).sum(axis=1)
            lead = np.where(nb > 0, np.left_shift(np.int64(1), np.maximum(nb - 1, 0)), 0)
            raw = payload + lead
            n = self._n[rows]
            true_s = np.where(raw % 2 == 1, -(raw + 1) // 2, n + raw // 2)
            values = true_s + self._offset[rows]
            if values.min() < _INT32_MIN or values.max() > _INT32_MAX:
                raise CorruptStreamError("corrupt stream: an escaped value is outside int32")
            grouped[pos] = values.astype(np.int32)
        if int(decoder.decode(self._marker_model)) != END_MARKER:
            raise CorruptStreamError(
                "corrupt stream: end marker mismatch (the stream is truncated or damaged, or the "
                "decoder computed other entropy parameters than the encoder: platform "
                "non-determinism or another model/tables)"
            )
        if not decoder.maybe_exhausted():
            raise CorruptStreamError("corrupt stream: data left over after the last symbol")
        return grouped


def encode(symbols: np.ndarray, indexes: np.ndarray, tables: CodingTables) -> bytes:
    """One-shot :meth:`ConstrictionCoder.encode` (builds the models; reuse a coder in loops)."""
    return ConstrictionCoder(tables).encode(symbols, indexes)


def decode(data: bytes, indexes: np.ndarray, tables: CodingTables) -> np.ndarray:
    """One-shot :meth:`ConstrictionCoder.decode`."""
    return ConstrictionCoder(tables).decode(data, indexes)
