"""Integer coding tables: quantized CDFs with an escape symbol, built once in numpy.

Why integer tables, and why built once
--------------------------------------
A range coder needs the *same* cumulative frequencies on the encoder and the decoder, bit for
bit. Float CDFs recomputed on each side (a different BLAS, XLA fusion, GPU vs CPU) can differ in
the last ulp, which shifts a frequency by one and silently corrupts everything decoded after it.
So, as in tensorflow-compression (``_build_tables``) and CompressAI (``update()``), the trained
distributions are turned into integer tables by one explicit step, stored with the exported
model, and never rebuilt when decoding (docs/file-format.md). This module is numpy-only
(no JAX) so the step is plain, deterministic arithmetic: float64 probabilities, then integer
rounding with explicit tie-breaking, so the same inputs give byte-identical tables. (A rebuild
on another platform could differ in the last ulp of ``math.erfc`` and so, rarely, by one unit
of mass; that is harmless precisely because decoders load the stored tables instead.)

Layout (CompressAI's ``_quantized_cdf`` / ``_cdf_length`` / ``_offset`` convention)
-----------------------------------------------------------------------------------
* ``cdf [K, W] int32``: row ``k`` describes one distribution over ``n_k = cdf_length[k] - 2``
  in-table symbols plus one *escape* (overflow) symbol with index ``n_k`` that carries the tail
  mass. ``cdf[k, 0] = 0``; the integer mass of symbol ``i`` is ``cdf[k, i + 1] - cdf[k, i]``
  (>= 1 for every symbol, escape included); ``cdf[k, n_k + 1] = 2**precision``. Columns
  ``>= cdf_length[k]`` are padding and hold ``2**precision``, so every row is non-decreasing and
  the padding carries zero mass.
* ``cdf_length [K] int32``: CDF entries used by row ``k`` (in-table symbols + 2).
* ``cdf_offset [K] int32``: the integer value coded as symbol 0 of row ``k``. A value ``v`` is
  in-table when ``0 <= v - cdf_offset[k] < cdf_length[k] - 2``; any other value is coded as the
  escape symbol followed by the value itself (see :mod:`swinjax.coding.backend`), so *every*
  int32 value can be coded, just expensively outside the table.
* ``precision``: the total mass is ``2**precision``, 1..16 (tfc and CompressAI use 16). The cap
  keeps a 32-bit range coder exact (range >= 2**24 after renormalisation leaves >= 2**8 per unit
  of frequency) and leaves headroom below constriction's 24-bit model precision.

Quantizing a pmf
----------------
:func:`pmf_to_quantized_cdf` gives every symbol at least mass 1 (so nothing is uncodable) and
shares the rest of ``2**precision`` in proportion to the probabilities. Symbols whose fair share
is below 1 are pinned to 1 first, and the proportional share of the others is recomputed until
that set stops growing (a water-filling fixed point), so a long row of near-zero tail symbols
does not steal a uniform slice of mass from the symbols that matter (the simpler "1 + floor"
rule wastes ``n / 2**precision`` of the mass: ~5 % for the widest Gaussian rows at 16 bits).
What floors leave over is handed out by largest fractional part, ties to the lower symbol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import statistics
from collections.abc import Mapping

import numpy as np

#: tfc / CompressAI default: total frequency 2**16.
DEFAULT_PRECISION = 16
#: Largest supported precision (see module docstring).
MAX_PRECISION = 16
#: Bound on ``|cdf_offset|``. Keeps ``value - cdf_offset`` far from int32 wrap-around for the
#: in-table test of the coding backend; real tables have offsets of a few thousand at most.
MAX_ABS_OFFSET = 2**30

# CompressAI's GaussianConditional defaults (``get_scale_table``): 64 log-spaced levels.
SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64
#: tfc / CompressAI default tail mass of the Gaussian conditional tables.
DEFAULT_TAIL_MASS = 1e-9


def _check_precision(precision: int) -> int:
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)):
        raise ValueError(f"precision must be an int, got {type(precision).__name__}")
    if not 1 <= int(precision) <= MAX_PRECISION:
        raise ValueError(f"precision must be in [1, {MAX_PRECISION}], got {precision}")
    return int(precision)


def _quantize_masses(p: np.ndarray, valid: np.ndarray, total: int) -> np.ndarray:
    """Integer masses ``[K, M]`` summing to ``total`` per row, >= 1 on ``valid``, 0 elsewhere.

    ``p`` is normalised over ``valid`` (zeros elsewhere). See the module docstring for the rule.
    """
    k_rows, m_cols = p.shape
    rows = np.arange(k_rows)
    # The most probable symbol always stays in the proportional set: its share is then at least
    # ``total - (n - 1) >= 1``, so the budget below never divides by zero.
    top = np.argmax(np.where(valid, p, -1.0), axis=1)
    forced = np.zeros_like(valid)
    forced[rows, top] = True

    small = valid & ~forced & (p * total < 1.0)
    for _ in range(m_cols + 1):  # the pinned set only grows, so this converges in <= M rounds
        big = valid & ~small
        budget = total - small.sum(axis=1)
        scale = budget / np.where(big, p, 0.0).sum(axis=1)
        ideal = p * scale[:, None]
        grown = small | (valid & ~forced & (ideal < 1.0))
        if np.array_equal(grown, small):
            break
        small = grown

    big = valid & ~small
    ideal = np.where(big, ideal, 0.0)
    base = np.floor(ideal).astype(np.int64)
    q = np.where(small, 1, np.where(big, np.maximum(base, 1), 0)).astype(np.int64)

    # Hand out what the floors left over by largest fractional part (stable: lower index wins).
    deficit = total - q.sum(axis=1)
    frac = np.where(big, ideal - base, -1.0)
    order = np.argsort(-frac, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[rows[:, None], order] = np.arange(m_cols)[None, :]
    n_big = big.sum(axis=1)
    give = np.maximum(deficit, 0)
    per_symbol = give // n_big
    extra = give - per_symbol * n_big
    q += big * (per_symbol[:, None] + (rank < extra[:, None]))

    # Floating-point slack (or the forced symbol's max(., 1)) can overshoot by a unit or two:
    # take it back from the largest masses, which are far above 1 whenever this happens.
    excess = np.maximum(-deficit, 0)
    for _ in range(m_cols):
        if not excess.any():
            break
        hit = np.flatnonzero(excess)
        q[hit, np.argmax(q[hit], axis=1)] -= 1
        excess[hit] -= 1
    return q


def pmf_to_quantized_cdf(
    pmf: np.ndarray,
    tail_mass: np.ndarray,
    pmf_length: np.ndarray | None = None,
    precision: int = DEFAULT_PRECISION,
) -> np.ndarray:
    """Quantizes probability rows plus their tail mass to integer CDFs (escape symbol last).

    Same role as CompressAI's ``pmf_to_quantized_cdf`` / tfc's ``pmf_to_quantized_cdf``, with a
    deterministic integer rule (module docstring) instead of float rounding plus repairs.

    Args:
        pmf: ``[K, L]`` float64 probabilities of the in-table symbols of each row. Columns at or
            beyond a row's ``pmf_length`` are ignored. Rows need not be normalised: each row is
            normalised together with its tail mass.
        tail_mass: ``[K]`` probability outside the table (given to the escape symbol).
        pmf_length: ``[K]`` number of in-table symbols per row, in ``[1, L]``; default ``L``.
        precision: total mass ``2**precision``.

    Returns:
        ``cdf [K, L + 2]`` int32. Row ``k`` uses entries ``[0, pmf_length[k] + 2)``: 0, then the
        running masses of the in-table symbols and the escape, ending at ``2**precision``; the
        unused tail of the row is padded with ``2**precision``. The row's ``cdf_length`` is
        ``pmf_length[k] + 2``.

    Raises:
        ValueError: bad shapes, negative or non-finite probabilities, an all-zero row, or a row
            with more symbols than ``2**precision`` can give mass 1 each.
    """
    precision = _check_precision(precision)
    total = 1 << precision
    pmf = np.asarray(pmf, dtype=np.float64)
    if pmf.ndim != 2 or pmf.shape[0] < 1 or pmf.shape[1] < 1:
        raise ValueError(f"pmf must have shape [K >= 1, L >= 1], got {pmf.shape}")
    k_rows, width = pmf.shape
    tail = np.asarray(tail_mass, dtype=np.float64)
    if tail.shape != (k_rows,):
        raise ValueError(f"tail_mass must have shape ({k_rows},), got {tail.shape}")
    if pmf_length is None:
        lengths = np.full(k_rows, width, dtype=np.int64)
    else:
        raw = np.asarray(pmf_length)
        if raw.shape != (k_rows,) or not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(f"pmf_length must be an integer array of shape ({k_rows},)")
        lengths = raw.astype(np.int64)
    bad = np.flatnonzero((lengths < 1) | (lengths > width))
    if bad.size:
        r = int(bad[0])
        raise ValueError(f"pmf row {r}: pmf_length {int(lengths[r])} is outside [1, {width}]")
    bad = np.flatnonzero(lengths + 1 > total)
    if bad.size:
        r = int(bad[0])
        raise ValueError(
            f"pmf row {r}: {int(lengths[r]) + 1} symbols (with the escape) cannot each get "
            f"mass >= 1 out of 2**{precision}"
        )

    col = np.arange(width + 1)
    in_table = col[None, :] < lengths[:, None]
    escape = col[None, :] == lengths[:, None]
    p = np.zeros((k_rows, width + 1), dtype=np.float64)
    p[:, :width] = np.where(in_table[:, :width], pmf, 0.0)
    p[escape] = tail  # exactly one escape column per row, in row order
    valid = in_table | escape
    bad = np.flatnonzero(~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1))
    if bad.size:
        raise ValueError(f"pmf row {int(bad[0])}: probabilities must be finite and >= 0")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(~(sums > 0))
    if bad.size:
        raise ValueError(f"pmf row {int(bad[0])}: all probabilities (and the tail) are zero")
    p = p / sums[:, None]

    masses = _quantize_masses(p, valid, total)
    cdf = np.zeros((k_rows, width + 2), dtype=np.int64)
    cdf[:, 1:] = np.cumsum(masses, axis=1)
    return cdf.astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class CodingTables:
    """Integer CDF tables of one entropy model (layout in the module docstring).

    Treat as data: build with :func:`build_gaussian_tables` / :func:`build_factorized_tables`,
    store with :meth:`to_arrays`, load with :meth:`from_arrays` (which validates). The arrays are
    stored read-only so a table cannot be edited in place after it has been validated.

    Attributes:
        cdf: ``[K, W]`` int32 cumulative frequencies, padded with ``2**precision``.
        cdf_length: ``[K]`` int32 entries used per row (in-table symbols + 2).
        cdf_offset: ``[K]`` int32 value of symbol 0 of each row.
        precision: total mass is ``2**precision``.
    """

    cdf: np.ndarray
    cdf_length: np.ndarray
    cdf_offset: np.ndarray
    precision: int = DEFAULT_PRECISION

    def __post_init__(self) -> None:
        for name in ("cdf", "cdf_length", "cdf_offset"):
            value = np.array(getattr(self, name), copy=True)
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CodingTables):
            return NotImplemented
        return self.precision == other.precision and all(
            a.dtype == b.dtype and np.array_equal(a, b)
            for a, b in (
                (self.cdf, other.cdf),
                (self.cdf_length, other.cdf_length),
                (self.cdf_offset, other.cdf_offset),
            )
        )

    __hash__ = None  # mutable-looking array fields: not hashable

    @property
    def num_rows(self) -> int:
        """Number of distributions ``K`` (scale levels, or channels of the factorized prior)."""
        return int(self.cdf.shape[0])

    def masses(self) -> np.ndarray:
        """``[K, W - 1]`` int64 integer mass of each symbol (0 in the padding).

        The coders derive their models from these integers only, never from floats.
        """
        return np.diff(self.cdf.astype(np.int64), axis=1)

    def validate(self) -> CodingTables:
        """Checks every invariant; raises a one-line ``ValueError`` naming the first bad row.

        Invariants: int32 arrays of consistent shapes; ``precision`` in ``[1, 16]``;
        ``cdf_length`` in ``[3, W]``; ``|cdf_offset| <= 2**30``; each row starts at 0, gives
        every used symbol (escape included) mass >= 1, ends at ``2**precision`` and is padded
        with ``2**precision``.

        Returns:
            ``self``, so ``CodingTables(...).validate()`` chains.
        """
        _check_precision(self.precision)
        total = 1 << int(self.precision)
        cdf, length, offset = self.cdf, self.cdf_length, self.cdf_offset
        for name, arr, ndim in (
            ("cdf", cdf, 2),
            ("cdf_length", length, 1),
            ("cdf_offset", offset, 1),
        ):
            if arr.dtype != np.int32 or arr.ndim != ndim:
                raise ValueError(
                    f"coding tables: {name} must be a {ndim}-d int32 array, got {arr.ndim}-d "
                    f"{arr.dtype}"
                )
        k_rows, width = cdf.shape
        if k_rows < 1 or width < 3:
            raise ValueError(f"coding tables: cdf must be [K >= 1, W >= 3], got {cdf.shape}")
        if length.shape != (k_rows,) or offset.shape != (k_rows,):
            raise ValueError(
                f"coding tables: cdf_length {length.shape} and cdf_offset {offset.shape} must "
                f"both have shape ({k_rows},)"
            )

        def fail(mask: np.ndarray, what: str) -> None:
            bad = np.flatnonzero(mask)
            if bad.size:
                raise ValueError(f"coding table row {int(bad[0])}: {what}")

        lengths = length.astype(np.int64)
        fail((lengths < 3) | (lengths > width), f"cdf_length outside [3, {width}]")
        fail(np.abs(offset.astype(np.int64)) > MAX_ABS_OFFSET, "|cdf_offset| > 2**30")
        fail(cdf[:, 0] != 0, "cdf does not start at 0")
        col = np.arange(width)
        d = np.diff(cdf.astype(np.int64), axis=1)
        used = col[None, 1:] < lengths[:, None]
        fail((used & (d < 1)).any(axis=1), "a symbol has mass < 1 (cdf not strictly increasing)")
        last = cdf[np.arange(k_rows), lengths - 1]
        fail(last != total, f"cdf does not end at 2**{self.precision}")
        fail(
            ((col[None, :] >= lengths[:, None]) & (cdf != total)).any(axis=1),
            f"padding after cdf_length is not 2**{self.precision}",
        )
        return self

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Plain arrays for a checkpoint / ``np.savez``; keys ``{prefix}cdf`` etc."""
        return {
            f"{prefix}cdf": np.array(self.cdf),
            f"{prefix}cdf_length": np.array(self.cdf_length),
            f"{prefix}cdf_offset": np.array(self.cdf_offset),
            f"{prefix}precision": np.array(self.precision, dtype=np.int32),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "") -> CodingTables:
        """Inverse of :meth:`to_arrays`; validates, so a damaged checkpoint fails here.

        Raises:
            ValueError: a key is missing, an array is not integer, or an invariant fails.
        """
        out = {}
        for name in ("cdf", "cdf_length", "cdf_offset", "precision"):
            key = prefix + name
            if key not in arrays:
                raise ValueError(f"coding tables: missing array {key!r}")
            arr = np.asarray(arrays[key])
            if not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"coding tables: {key!r} must be integer, got {arr.dtype}")
            if name != "precision" and arr.dtype != np.int32:
                if arr.size and (arr.min() < -(2**31) or arr.max() > 2**31 - 1):
                    raise ValueError(f"coding tables: {key!r} does not fit in int32")
                arr = arr.astype(np.int32)
            out[name] = arr
        if out["precision"].shape != ():
            raise ValueError("coding tables: precision must be a scalar")
        precision = _check_precision(int(out["precision"]))
        return cls(out["cdf"], out["cdf_length"], out["cdf_offset"], precision).validate()

    def digest(self) -> str:
        """SHA-256 (hex) of the tables' canonical little-endian bytes: a cheap identity check."""
        h = hashlib.sha256()
        h.update(np.int64(self.precision).astype("<i8").tobytes())
        for arr in (self.cdf, self.cdf_length, self.cdf_offset):
            h.update(np.asarray(arr.shape, dtype="<i8").tobytes())
            h.update(np.ascontiguousarray(arr, dtype="<i4").tobytes())
        return h.hexdigest()


def _tables_from_pmf(
    pmf: np.ndarray,
    pmf_length: np.ndarray,
    offset: np.ndarray,
    tail_mass: np.ndarray,
    precision: int,
) -> CodingTables:
    offset = np.asarray(offset)
    if not np.issubdtype(offset.dtype, np.integer) or offset.shape != np.shape(pmf_length):
        raise ValueError(f"offset must be an integer array of shape {np.shape(pmf_length)}")
    if offset.size and np.abs(offset.astype(np.int64)).max() > MAX_ABS_OFFSET:
        raise ValueError("offset must satisfy |offset| <= 2**30")
    cdf = pmf_to_quantized_cdf(pmf, tail_mass, pmf_length, precision)
    lengths = np.asarray(pmf_length).astype(np.int32) + 2
    return CodingTables(cdf, lengths, offset.astype(np.int32), precision).validate()


def default_scale_table(
    minimum: float = SCALE_MIN, maximum: float = SCALE_MAX, levels: int = SCALE_LEVELS
) -> np.ndarray:
    """Log-spaced float32 scales from ``minimum`` to ``maximum`` (CompressAI: 0.11..256, 64).

    0.11 is where a zero-mean Gaussian puts ~99.99 % of its mass in the zero bin (a smaller scale
    would not code cheaper at 16-bit precision); 256 covers the widest latents of trained models;
    64 levels keep the relative step (~12.9 %) small enough that rounding a scale up to the next
    level costs < 0.01 bit per symbol. The formula is the one of
    ``swinjax.entropy.gaussian.scale_table`` (which the JAX side indexes into), so both give the
    same array.
    """
    if not (0 < minimum < maximum) or levels < 2:
        raise ValueError("need 0 < minimum < maximum and levels >= 2")
    return np.exp(np.linspace(math.log(minimum), math.log(maximum), levels)).astype(np.float32)


def standard_normal_upper_quantile(tail: float) -> float:
    """``x`` with ``P(N(0, 1) > x) = tail``, for ``0 < tail < 1``.

    Computed from the lower tail (``-inv_cdf(tail)``, stdlib :class:`statistics.NormalDist`,
    Wichura's AS241, ~1e-16 relative) because ``inv_cdf(1 - tail)`` loses the digits of a tiny
    ``tail`` to the rounding of ``1 - tail``.
    """
    if not 0.0 < tail < 1.0:
        raise ValueError(f"tail must be in (0, 1), got {tail}")
    return -statistics.NormalDist().inv_cdf(tail)


def _upper_tail(x: np.ndarray) -> np.ndarray:
    """``P(N(0, 1) > x)`` elementwise via ``math.erfc`` (accurate far into the tail)."""
    erfc = np.frompyfunc(math.erfc, 1, 1)
    return 0.5 * erfc(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)).astype(np.float64)


def build_gaussian_tables(
    scale_table: np.ndarray,
    precision: int = DEFAULT_PRECISION,
    tail_mass: float = DEFAULT_TAIL_MASS,
) -> CodingTables:
    """Tables of zero-mean quantized Gaussians, one row per scale (tfc ``GaussianConditional``).

    As CompressAI's ``GaussianConditional.update()``: for scale ``s`` the support is
    ``[-n, n]`` with ``n = ceil(s * Phi^-1(1 - tail_mass / 2))``; symbol ``v`` gets the Gaussian
    mass of ``[v - 0.5, v + 0.5)`` and the escape gets the mass outside ``[-n - 0.5, n + 0.5)``.
    Means are handled by the caller, which codes ``round(y - mu)`` (one quantize function),
    so a zero-mean table per scale suffices. ``n`` is capped so a row fits ``2**precision``
    symbols; the capped mass goes to the escape.

    Args:
        scale_table: ``[K]`` positive scales, e.g. :func:`default_scale_table`.
        precision: total mass ``2**precision``.
        tail_mass: two-sided probability left outside the table.

    Returns:
        Validated :class:`CodingTables` with ``cdf_offset = -n`` per row.
    """
    precision = _check_precision(precision)
    scales = np.asarray(scale_table, dtype=np.float64).reshape(-1)
    if scales.size < 1 or not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        raise ValueError("scale_table must be a non-empty array of finite positive scales")
    if not 0.0 < tail_mass < 1.0:
        raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
    q = standard_normal_upper_quantile(tail_mass / 2.0)
    n_cap = ((1 << precision) - 2) // 2  # 2n + 1 in-table symbols + escape <= 2**precision
    n = np.minimum(np.ceil(scales * q), n_cap).astype(np.int64)

    width = int(2 * n.max() + 1)
    k = np.arange(width, dtype=np.int64)
    # upper[r, j] = P(N(0, s_r) > j + 0.5): tails only (no cancellation), evaluated where used.
    used = k[None, :] <= n[:, None]
    upper = np.zeros((scales.size, width), dtype=np.float64)
    upper[used] = _upper_tail(((k[None, :] + 0.5) / scales[:, None])[used])
    centre = np.array([math.erf(0.5 / (s * math.sqrt(2.0))) for s in scales], dtype=np.float64)
    # One-sided masses: m[r, 0] for v = 0, m[r, j] = upper(j - 1) - upper(j) for |v| = j >= 1.
    side = np.zeros_like(upper)
    side[:, 0] = centre
    side[:, 1:] = np.where(used[:, 1:], upper[:, :-1] - upper[:, 1:], 0.0)
    tail = 2.0 * upper[np.arange(scales.size), n]

    col = np.arange(width, dtype=np.int64)
    dist = np.abs(col[None, :] - n[:, None])  # |v| of column j in row r (value v = j - n)
    length = 2 * n + 1
    in_row = col[None, :] < length[:, None]
    pmf = np.where(in_row, np.take_along_axis(side, np.minimum(dist, width - 1), axis=1), 0.0)
    return _tables_from_pmf(pmf, length, -n, tail, precision)


def build_factorized_tables(
    pmf: np.ndarray,
    pmf_length: np.ndarray,
    offset: np.ndarray,
    tail_mass: np.ndarray,
    precision: int = DEFAULT_PRECISION,
) -> CodingTables:
    """Tables of the factorized prior, one row per channel (CompressAI ``EntropyBottleneck``).

    A thin wrapper: the JAX side (``FactorizedPrior.table_inputs`` then ``trim_table_inputs``)
    evaluates each channel's density on its integer grid around the median; this only
    quantizes. The caller codes ``round(z - median)``-style integers whose in-table range for
    channel ``c`` is ``[offset[c], offset[c] + pmf_length[c])``.

    Args:
        pmf: ``[C, L]`` probabilities on each channel's grid (zero beyond its length).
        pmf_length: ``[C]`` int in-table symbols per channel.
        offset: ``[C]`` int value of grid column 0.
        tail_mass: ``[C]`` mass outside the grid (escape symbol).
        precision: total mass ``2**precision``.
    """
    return _tables_from_pmf(pmf, pmf_length, offset, tail_mass, precision)
