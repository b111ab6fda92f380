"""Range coding: round trips, escapes, agreement with the reference coder, code length, garbage."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from swinjax.coding import backend
from swinjax.coding.backend import ConstrictionCoder
from swinjax.coding.container import FormatError
from swinjax.coding.reference import ReferenceCoder
from swinjax.entropy import tables as T

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# A hand-written integer table (no floats anywhere): golden bytes stay stable across platforms.
_GOLDEN_TABLES = T.CodingTables(
    np.array(
        [[0, 100, 60000, 65000, 65536, 65536], [0, 30000, 50000, 65536, 65536, 65536]], np.int32
    ),
    np.array([5, 4], np.int32),
    np.array([-1, 7], np.int32),
    16,
).validate()
_GOLDEN_SYMBOLS = np.array([0, 1, -1, 7, 8, 9, INT32_MAX, INT32_MIN, 5, 0, 0, -3], np.int32)
_GOLDEN_INDEXES = np.array([0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0], np.int32)


@pytest.fixture(scope="module")
def gaussian():
    return T.build_gaussian_tables(T.default_scale_table())


@pytest.fixture(scope="module")
def coders(gaussian):
    return ConstrictionCoder(gaussian), ReferenceCoder(gaussian)


def _laplace_data(rng, n, tables, outlier_rate=0.0):
    idx = rng.integers(0, tables.num_rows, n).astype(np.int32)
    scales = T.default_scale_table()[idx % 64]
    sym = np.round(rng.laplace(size=n) * scales).astype(np.int64)
    out = rng.random(n) < outlier_rate
    sym[out] = rng.integers(INT32_MIN, INT32_MAX, out.sum(), endpoint=True)
    return sym.astype(np.int32), idx


def _ideal_bits(tables, sym, idx):
    """-sum(log2 p) under the integer tables, escape payloads included, plus the end marker."""
    masses = tables.masses()
    n = tables.cdf_length[idx].astype(np.int64) - 2
    s = sym.astype(np.int64) - tables.cdf_offset[idx]
    inside = (s >= 0) & (s < n)
    col = np.where(inside, s, n)
    bits = -np.log2(masses[idx, col] / 2.0**tables.precision).sum()
    raw = np.where(s < 0, -2 * s - 1, 2 * (s - n))[~inside]
    nb = np.array([int(v).bit_length() for v in raw], dtype=np.int64)
    bits += raw.size * np.log2(backend.MAX_RAW_BITS) + np.maximum(nb - 1, 0).sum()
    return bits + 16


def test_golden_bytes():
    """Changing these bytes breaks every existing file: only on purpose, with a version bump."""
    a = ConstrictionCoder(_GOLDEN_TABLES).encode(_GOLDEN_SYMBOLS, _GOLDEN_INDEXES)
    b = ReferenceCoder(_GOLDEN_TABLES).encode(_GOLDEN_SYMBOLS, _GOLDEN_INDEXES)
    assert a.hex() == "9309a3d6670ea25bb2d7ffe8027a321e00e7cb92"
    assert b.hex() == "d69d60f1304e1f17ff4d34c53b45f96bf0dc"
    for coder, data in ((ConstrictionCoder, a), (ReferenceCoder, b)):
        out = coder(_GOLDEN_TABLES).decode(data, _GOLDEN_INDEXES)
        np.testing.assert_array_equal(out, _GOLDEN_SYMBOLS)


@pytest.mark.parametrize("outlier_rate", [0.0, 0.02, 0.5])
def test_round_trip_matches_reference(coders, gaussian, outlier_rate):
    fast, ref = coders
    rng = np.random.default_rng(int(outlier_rate * 100))
    for n in (1, 2, 17, 1000, 5000):
        sym, idx = _laplace_data(rng, n, gaussian, outlier_rate)
        a, b = fast.encode(sym, idx), ref.encode(sym, idx)
        np.testing.assert_array_equal(fast.decode(a, idx), sym)
        np.testing.assert_array_equal(ref.decode(b, idx), sym)
        assert abs(len(a) - len(b)) <= 0.01 * len(b) + 8


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.int32, st.integers(0, 40), elements=st.integers(INT32_MIN, INT32_MAX)),
    st.data(),
)
def test_any_int32_values_round_trip(values, data):
    tables = _GOLDEN_TABLES
    idx = data.draw(hnp.arrays(np.int32, values.shape, elements=st.integers(0, 1)))
    near = data.draw(st.booleans())
    if near:  # mostly in-table values, with the table edges and their neighbours
        values = (values % 12 - 4).astype(np.int32)
    a = ConstrictionCoder(tables).encode(values, idx)
    b = ReferenceCoder(tables).encode(values, idx)
    np.testing.assert_array_equal(ConstrictionCoder(tables).decode(a, idx), values)
    np.testing.assert_array_equal(ReferenceCoder(tables).decode(b, idx), values)


def test_extreme_values_with_extreme_offsets():
    cdf = np.array([[0, 30000, 65535, 65536]] * 2, np.int32)
    tables = T.CodingTables(cdf, np.array([4, 4], np.int32), np.array([2**30, -(2**30)], np.int32))
    sym = np.array(
        [INT32_MIN, INT32_MAX, 2**30, 2**30 + 1, 2**30 + 2, -(2**30), -(2**30) - 1, 0, -1, 1],
        np.int32,
    )
    for rows in (np.zeros(10, np.int32), np.ones(10, np.int32), np.arange(10, dtype=np.int32) % 2):
        for coder in (ConstrictionCoder(tables), ReferenceCoder(tables)):
            np.testing.assert_array_equal(coder.decode(coder.encode(sym, rows), rows), sym)


@pytest.mark.parametrize("shape", [(0,), (3, 0, 2), (4, 5, 6), (1,)])
def test_shapes_and_empty_arrays(coders, shape):
    fast, ref = coders
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 64, shape).astype(np.int32)
    sym = rng.integers(-3, 4, shape).astype(np.int32)
    for coder in (fast, ref):
        data = coder.encode(sym, idx)
        if not sym.size:
            assert data == b""
        out = coder.decode(data, idx)
        assert out.shape == shape and out.dtype == np.int32
        np.testing.assert_array_equal(out, sym)


def test_code_length_close_to_ideal(coders, gaussian):
    fast, ref = coders
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 64, 200_000).astype(np.int32)
    sym = np.round(rng.normal(size=idx.size) * T.default_scale_table()[idx]).astype(np.int32)
    ideal_bytes = _ideal_bits(gaussian, sym, idx) / 8
    n_fast = len(fast.encode(sym, idx))
    assert ideal_bytes * 0.999 <= n_fast <= ideal_bytes * 1.01 + 8
    small = slice(0, 20_000)
    ideal_small = _ideal_bits(gaussian, sym[small], idx[small]) / 8
    n_ref = len(ref.encode(sym[small], idx[small]))
    assert ideal_small <= n_ref + 1 and n_ref <= ideal_small * 1.002 + 4


def test_escape_cost_matches_its_definition(gaussian):
    ref = ReferenceCoder(gaussian)
    idx = np.zeros(2000, np.int32)
    sym = np.full(2000, 100_000, np.int32)  # far outside row 0's table ([-1, 1])
    n = len(ref.encode(sym, idx))
    assert abs(n - _ideal_bits(gaussian, sym, idx) / 8) <= 0.002 * n + 4


def test_models_come_from_the_stored_integers_only(gaussian):
    buf = io.BytesIO()
    np.savez(buf, **gaussian.to_arrays())
    buf.seek(0)
    with np.load(buf) as f:
        loaded = T.CodingTables.from_arrays(dict(f))
    rng = np.random.default_rng(3)
    sym, idx = _laplace_data(rng, 3000, gaussian, 0.01)
    a = ConstrictionCoder(gaussian).encode(sym, idx)
    assert ConstrictionCoder(loaded).encode(sym, idx) == a
    assert backend.encode(sym, idx, loaded) == a
    np.testing.assert_array_equal(backend.decode(a, idx, loaded), sym)


@pytest.mark.parametrize(
    "symbols, indexes, match",
    [
        (np.zeros(3, np.int32), np.zeros(4, np.int32), "shape"),
        (np.zeros(3, np.int32), np.array([0, 64, 1]), r"indexes must be in \[0, 64\)"),
        (np.zeros(3, np.int32), np.array([0, -1, 1]), r"indexes must be in \[0, 64\)"),
        (np.zeros(3, np.float32), np.zeros(3, np.int32), "integer"),
        (np.zeros(3, np.int32), np.zeros(3, np.float32), "integer"),
        (np.array([0, 2**31, 0]), np.zeros(3, np.int32), "int32"),
    ],
)
def test_invalid_inputs_raise_value_error(coders, symbols, indexes, match):
    for coder in coders:
        with pytest.raises(ValueError, match=match):
            coder.encode(symbols, indexes)


def test_garbage_and_truncated_streams_raise_value_error(coders, gaussian):
    fast, _ = coders
    rng = np.random.default_rng(11)
    sym, idx = _laplace_data(rng, 4000, gaussian, 0.01)
    data = fast.encode(sym, idx)
    for cut in range(0, len(data), 4):  # every whole-word truncation
        with pytest.raises(backend.CorruptStreamError, match="corrupt stream"):
            fast.decode(data[:cut], idx)
    for cut in (1, 2, 3, len(data) - 1):
        with pytest.raises(ValueError, match="whole number of 32-bit words"):
            fast.decode(data[:cut], idx)
    with pytest.raises(ValueError, match="data left over"):
        fast.decode(data + bytes(rng.integers(1, 256, 64, dtype=np.uint8)), idx)
    with pytest.raises(ValueError, match="no symbols expected"):
        fast.decode(data, np.zeros(0, np.int32))
    for _ in range(50):
        junk = rng.integers(0, 256, 4 * int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
        with pytest.raises(backend.CorruptStreamError) as e:
            fast.decode(junk, idx[: int(rng.integers(1, 4000))])
        assert "\n" not in str(e.value)
        assert isinstance(e.value, ValueError) and isinstance(e.value, FormatError)


def test_huge_symbol_count_with_tiny_data_terminates(coders):
    fast, _ = coders
    idx = np.zeros(2_000_000, np.int32)
    with pytest.raises(backend.CorruptStreamError, match="^corrupt stream") as e:
        fast.decode(b"\x01\x02\x03\x04", idx)
    assert "\n" not in str(e.value)


def test_mismatched_indexes_are_detected_or_decode_differently(coders, gaussian):
    """Decoder-side index drift must never pass silently as the right symbols."""
    fast, _ = coders
    rng = np.random.default_rng(5)
    sym, idx = _laplace_data(rng, 3000, gaussian, 0.0)
    data = fast.encode(sym, idx)
    for shift in (1, -1, 5):
        other = np.clip(idx + shift, 0, 63).astype(np.int32)
        try:
            out = fast.decode(data, other)
        except ValueError:
            continue
        assert not np.array_equal(out, sym)
