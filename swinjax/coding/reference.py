"""An independent, slow, pure-Python range coder over the same integer tables: a test oracle.

Why a second coder
------------------
The production backend (:mod:`swinjax.coding.backend`) reorders symbols by table row and hands
float copies of the integer masses to constriction, which requantizes them. Bugs in that path
(a wrong permutation, an off-by-one offset, an escape decoded into the wrong slot, a model that
is not what the table says) would round-trip happily on their own data. This coder shares
nothing with it but the :class:`~swinjax.entropy.tables.CodingTables`: it codes elements one by
one in C order, with the escape inline right after its escape symbol, using a classic
carry-propagating 32-bit range coder (Subbotin / Martin 1979 style, as in LZMA: a 33-bit
``low`` whose carry is pushed into a cached byte and a run of pending ``0xFF`` bytes). The tests
check that both decode to the same symbols and produce nearly the same number of bytes, and that
this coder's length is within a few bytes of the ideal ``-sum(log2 p)`` under the integer
tables.

Stream content (same information as the backend, different order and bytes): per element, the
symbol under its row (escape ``n`` for values outside the table, followed by the escape's bit
length uniform over 35 and its payload chunks uniform over ``2**width``, as documented in
:mod:`swinjax.coding.backend`), then the 16-bit end marker.

The flush writes the value in the final interval with the most trailing zero bytes and drops
them (the decoder reads zeros past the end), and drops the always-zero first byte, so the
overhead over the ideal length is about two bytes.
"""

from __future__ import annotations

import bisect

import numpy as np

from swinjax.coding.backend import (
    CHUNK_BITS,
    END_MARKER,
    MAX_RAW_BITS,
    CorruptStreamError,
    check_indexes,
    check_symbols,
)
from swinjax.entropy.tables import CodingTables

_TOP = 1 << 24  # renormalise when the range drops below this
_MASK32 = (1 << 32) - 1


class _Encoder:
    """Carry-propagating range encoder with a 32-bit range and a 33-bit ``low``."""

    def __init__(self) -> None:
        self.low = 0
        self.range = _MASK32
        self.cache = 0
        self.pending = 1  # cached byte + pending 0xFF bytes
        self.out = bytearray()

    def encode(self, start: int, size: int, total: int) -> None:
        r = self.range // total
        self.low += r * start
        self.range = r * size
        while self.range < _TOP:
            self.range <<= 8
            self._shift_low()

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low > _MASK32:
            carry = self.low >> 32
            byte = self.cache
            while self.pending:
                self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
                self.pending -= 1
            self.cache = (self.low >> 24) & 0xFF
        self.pending += 1
        self.low = (self.low << 8) & _MASK32

    def finish(self) -> bytes:
        # Any value in [low, low + range) identifies the stream; take the one with the most
        # trailing zero bytes (range >= 2**24, so at least three), then drop those zeros.
        hi = self.low + self.range - 1
        for zero_bits in (32, 24):
            value = hi & ~((1 << zero_bits) - 1)
            if value >= self.low:
                break
        self.low = value
        for _ in range(5):
            self._shift_low()
        if self.out[0] != 0:
            raise RuntimeError("reference coder invariant broken: first byte is not zero")
        return bytes(self.out[1:]).rstrip(b"\x00")


class _Decoder:
    """Mirror of :class:`_Encoder`; reads zeros past the end of the data."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.range = _MASK32
        self.code = 0
        self.r = 1
        for _ in range(4):
            self.code = (self.code << 8) | self._byte()

    def _byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def target(self, total: int) -> int:
        self.r = self.range // total
        return min(self.code // self.r, total - 1)

    def consume(self, start: int, size: int) -> None:
        self.code -= self.r * start
        self.range = self.r * size
        while self.range < _TOP:
            self.code = ((self.code << 8) | self._byte()) & _MASK32
            self.range <<= 8

    def uniform(self, total: int) -> int:
        v = self.target(total)
        self.consume(v, 1)
        return v


class ReferenceCoder:
    """Slow pure-Python :class:`~swinjax.coding.backend.EntropyCoder` (a test oracle).

    Args:
        tables: the coding tables; validated here.
    """

    def __init__(self, tables: CodingTables) -> None:
        self.tables = tables.validate()
        self._total = 1 << tables.precision
        self._rows = [
            tables.cdf[r, : int(tables.cdf_length[r])].tolist() for r in range(tables.num_rows)
        ]
        self._offset = tables.cdf_offset.tolist()

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """Codes elements one by one in C order (escape payload inline)."""
        idx = check_indexes(indexes, self.tables.num_rows).tolist()
        sym = check_symbols(symbols, np.shape(indexes)).tolist()
        if not idx:
            return b""
        enc = _Encoder()
        total = self._total
        for v, r in zip(sym, idx, strict=True):
            cdf = self._rows[r]
            n = len(cdf) - 2
            s = v - self._offset[r]
            if 0 <= s < n:
                enc.encode(cdf[s], cdf[s + 1] - cdf[s], total)
                continue
            enc.encode(cdf[n], cdf[n + 1] - cdf[n], total)
            raw = -2 * s - 1 if s < 0 else 2 * (s - n)
            nb = raw.bit_length()
            enc.encode(nb, 1, MAX_RAW_BITS)
            below = max(nb - 1, 0)
            payload = raw - (1 << below) if nb else 0
            while below > 0:
                w = min(CHUNK_BITS, below)
                enc.encode(payload & ((1 << w) - 1), 1, 1 << w)
                payload >>= w
                below -= w
        enc.encode(END_MARKER, 1, 1 << 16)
        return enc.finish()

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`encode`.

        Raises:
            ValueError: bad indexes.
            CorruptStreamError: data for no symbols, an end-marker mismatch or an escaped
                value outside int32.
        """
        idx_arr = check_indexes(indexes, self.tables.num_rows)
        if idx_arr.size == 0:
            if data:
                raise CorruptStreamError("corrupt stream: data present but no symbols expected")
            return np.zeros(np.shape(indexes), dtype=np.int32)
        dec = _Decoder(bytes(data))
        total = self._total
        out = []
        for r in idx_arr.tolist():
            cdf = self._rows[r]
            n = len(cdf) - 2
            s = bisect.bisect_right(cdf, dec.target(total), 0, n + 1) - 1
            dec.consume(cdf[s], cdf[s + 1] - cdf[s])
            if s == n:
                nb = dec.uniform(MAX_RAW_BITS)
                below = max(nb - 1, 0)
                payload, shift = 0, 0
                while below > 0:
                    w = min(CHUNK_BITS, below)
                    payload |= dec.uniform(1 << w) << shift
                    shift += w
                    below -= w
                raw = payload + (1 << (nb - 1)) if nb else 0
                s = -(raw + 1) // 2 if raw % 2 else n + raw // 2
            out.append(s + self._offset[r])
        if dec.uniform(1 << 16) != END_MARKER:
            raise CorruptStreamError("corrupt stream: end marker mismatch")
        values = np.array(out, dtype=np.int64)
        if values.min() < -(2**31) or values.max() > 2**31 - 1:
            raise CorruptStreamError("corrupt stream: an escaped value is outside int32")
        return values.astype(np.int32).reshape(np.shape(indexes))
