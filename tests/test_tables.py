"""Integer coding tables: invariants, determinism, quality of the quantization, storage."""

import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swinjax.entropy import tables as T


def _assert_cdf_invariants(cdf, pmf_length, precision):
    total = 1 << precision
    assert cdf.dtype == np.int32
    for r in range(cdf.shape[0]):
        used = int(pmf_length[r]) + 2
        row = cdf[r].astype(np.int64)
        assert row[0] == 0
        masses = np.diff(row[:used])
        assert masses.min() >= 1, f"row {r}: a symbol (incl. escape) has zero mass"
        assert row[used - 1] == total
        assert np.all(row[used:] == total)


def test_gaussian_tables_rebuild_byte_identical():
    a = T.build_gaussian_tables(T.default_scale_table())
    b = T.build_gaussian_tables(T.default_scale_table())
    for key, value in a.to_arrays().items():
        assert value.tobytes() == b.to_arrays()[key].tobytes(), key
    assert a.digest() == b.digest()
    assert a == b


def test_default_scale_table_matches_the_jax_side_and_compressai_bounds():
    from swinjax.entropy.gaussian import scale_table

    t = T.default_scale_table()
    assert t.dtype == np.float32 and t.shape == (64,)
    assert t[0] == pytest.approx(0.11) and t[-1] == pytest.approx(256.0)
    assert np.all(np.diff(np.log(t)) > 0)
    np.testing.assert_array_equal(t, scale_table())


def test_gaussian_tables_support_offsets_and_probabilities():
    scales = T.default_scale_table()
    tables = T.build_gaussian_tables(scales, tail_mass=1e-9)
    q = T.standard_normal_upper_quantile(0.5e-9)
    assert 0.5 * math.erfc(q / math.sqrt(2)) == pytest.approx(0.5e-9, rel=1e-9)
    n = np.ceil(scales.astype(np.float64) * q).astype(np.int64)
    np.testing.assert_array_equal(tables.cdf_offset, -n)
    np.testing.assert_array_equal(tables.cdf_length, 2 * n + 3)
    _assert_cdf_invariants(tables.cdf, tables.cdf_length - 2, 16)
    masses = tables.masses()
    for r in (0, 20, 40, 63):
        s = float(scales[r])
        v = np.arange(-n[r], n[r] + 1)
        upper = np.array([0.5 * math.erfc((abs(k) + 0.5) / s / math.sqrt(2)) for k in v])
        lower = np.array([0.5 * math.erfc((abs(k) - 0.5) / s / math.sqrt(2)) for k in v])
        p = np.where(v == 0, math.erf(0.5 / s / math.sqrt(2)), lower - upper)
        qm = masses[r, : v.size] / 2.0**16
        kl_bits = float(np.sum(p * np.log2(p / qm)))
        # 16-bit tables cost a little for wide rows (every tail symbol needs mass >= 1), never
        # more than ~0.03 bit/symbol for the widest row, and nearly nothing for narrow ones.
        assert kl_bits < (1e-3 if s < 10 else 0.03), (r, s, kl_bits)
        assert masses[r, v.size] >= 1  # escape


def test_gaussian_tables_cap_rows_to_the_precision():
    tables = T.build_gaussian_tables(T.default_scale_table(), precision=8)
    assert np.all(tables.cdf_length - 2 + 1 <= 256)
    assert tables.cdf_length[-1] == 2 * 127 + 3  # 2n + 1 in-table symbols + escape <= 2**8
    _assert_cdf_invariants(tables.cdf, tables.cdf_length - 2, 8)


def test_one_hot_and_tail_only_rows():
    pmf = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    cdf = T.pmf_to_quantized_cdf(pmf, np.array([0.0, 1.0]), precision=16)
    masses = np.diff(cdf.astype(np.int64), axis=1)
    np.testing.assert_array_equal(masses[0], [1, 1, 65536 - 4, 1, 1])
    np.testing.assert_array_equal(masses[1], [1, 1, 1, 1, 65536 - 4])


def test_row_at_the_precision_limit_and_one_past_it():
    k = 255  # 255 symbols + escape = 2**8: each gets exactly 1
    cdf = T.pmf_to_quantized_cdf(np.ones((1, k)), np.array([0.0]), precision=8)
    np.testing.assert_array_equal(cdf[0], np.arange(k + 2))
    with pytest.raises(ValueError, match="row 0"):
        T.pmf_to_quantized_cdf(np.ones((1, k + 1)), np.array([0.0]), precision=8)


@pytest.mark.parametrize(
    "pmf, tail, match",
    [
        (np.array([[0.5, -0.1]]), [0.0], "finite and >= 0"),
        (np.array([[0.5, np.nan]]), [0.0], "finite and >= 0"),
        (np.array([[0.0, 0.0]]), [0.0], "all probabilities"),
        (np.array([[0.5, 0.5]]), [np.inf], "finite and >= 0"),
        (np.ones((2, 3)), [0.0], "tail_mass must have shape"),
    ],
)
def test_bad_pmfs_raise_one_line_errors(pmf, tail, match):
    with pytest.raises(ValueError, match=match) as e:
        T.pmf_to_quantized_cdf(pmf, np.asarray(tail))
    assert "\n" not in str(e.value)


_probs = st.one_of(
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, 1e-300, 5e-324, 1e-12, 1e-6, 1.0, 1e6]),
)


@st.composite
def _pmf_rows(draw):
    precision = draw(st.integers(4, 16))
    k = draw(st.integers(1, 3))
    width = draw(st.integers(1, min(300, (1 << precision) - 1)))
    kind = draw(st.sampled_from(["random", "one_hot", "tiny", "geometric"]))
    if kind == "random":
        pmf = np.array(draw(st.lists(_probs, min_size=k * width, max_size=k * width)))
    elif kind == "one_hot":
        pmf = np.zeros(k * width)
        pmf[draw(st.integers(0, k * width - 1))] = 1.0
    elif kind == "tiny":
        pmf = np.full(k * width, draw(st.sampled_from([1e-300, 1e-20, 1e-9])))
    else:
        ratio = draw(st.floats(0.01, 0.99))
        pmf = ratio ** np.arange(k * width, dtype=np.float64)
    pmf = pmf.reshape(k, width)
    lengths = np.array(draw(st.lists(st.integers(1, width), min_size=k, max_size=k)))
    tail = np.array(draw(st.lists(_probs, min_size=k, max_size=k)))
    col = np.arange(width)
    live = np.where(col[None, :] < lengths[:, None], pmf, 0.0).sum(axis=1) + tail
    tail = np.where(live > 0, tail, 1.0)  # all-zero rows are an error, tested separately
    return pmf, tail, lengths, precision


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pmf_rows())
def test_quantized_cdf_properties(case):
    pmf, tail, lengths, precision = case
    total = 1 << precision
    cdf = T.pmf_to_quantized_cdf(pmf, tail, lengths, precision)
    again = T.pmf_to_quantized_cdf(pmf.copy(), tail.copy(), lengths.copy(), precision)
    assert cdf.tobytes() == again.tobytes()
    assert cdf.shape == (pmf.shape[0], pmf.shape[1] + 2)
    _assert_cdf_invariants(cdf, lengths, precision)
    T.CodingTables(
        cdf, (lengths + 2).astype(np.int32), np.zeros(len(lengths), np.int32), precision
    ).validate()
    masses = np.diff(cdf.astype(np.int64), axis=1)
    for r, n in enumerate(lengths):
        p = np.append(pmf[r, :n], tail[r])
        p = p / p.sum()
        q = masses[r, : n + 1]
        # Never far below its fair share (bounds the code length of every symbol) ...
        assert np.all(q >= p * (total - (n + 1)) - 2.0)
        # ... never above it by more than one unit (+ float slack) ...
        assert np.all(q <= p * total + 1.0 + 1e-6 * total)
        # ... and more probable symbols never get less mass, up to the one rounding unit.
        more = p[:, None] > p[None, :]
        assert np.all(q[:, None] >= q[None, :] - 1 - (~more) * total)


def test_tables_round_trip_through_npz_and_validate():
    tables = T.build_gaussian_tables(T.default_scale_table()[:8])
    buf = io.BytesIO()
    np.savez(buf, **tables.to_arrays(prefix="y_"))
    buf.seek(0)
    with np.load(buf) as f:
        loaded = T.CodingTables.from_arrays(dict(f), prefix="y_")
    assert loaded == tables and loaded.digest() == tables.digest()
    with pytest.raises(ValueError, match="missing array 'y_cdf_offset'"):
        T.CodingTables.from_arrays(
            {k: v for k, v in tables.to_arrays("y_").items() if "off" not in k}, "y_"
        )
    assert not loaded.cdf.flags.writeable


def _broken(tables, **changes):
    arrays = {k: np.array(v) for k, v in tables.to_arrays().items()}
    for key, fn in changes.items():
        arrays[key] = fn(arrays[key])
    return arrays


def _set(index, value):
    def f(a):
        a[index] = value
        return a

    return f


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"cdf": _set((2, 3), 0)}, r"row 2: a symbol has mass < 1"),
        ({"cdf": _set((1, 0), 5)}, r"row 1: cdf does not start at 0"),
        ({"cdf_length": _set(3, 2)}, r"row 3: cdf_length outside"),
        ({"cdf_length": _set(0, 10_000)}, r"row 0: cdf_length outside"),
        ({"cdf_offset": _set(4, 2**30 + 1)}, r"row 4: \|cdf_offset\| > 2\*\*30"),
        ({"precision": lambda a: np.array(17)}, r"precision must be in \[1, 16\]"),
    ],
)
def test_validate_names_the_broken_row(changes, match):
    tables = T.build_gaussian_tables(T.default_scale_table()[:6])
    with pytest.raises(ValueError, match=match) as e:
        T.CodingTables.from_arrays(_broken(tables, **changes))
    assert "\n" not in str(e.value)


def test_validate_catches_escape_without_mass_and_wrong_end():
    tables = T.build_gaussian_tables(T.default_scale_table()[:4])
    n = int(tables.cdf_length[1])
    cdf = np.array(tables.cdf)
    cdf[1, n - 2] = cdf[1, n - 1]  # escape symbol loses its mass
    with pytest.raises(ValueError, match="row 1: a symbol has mass < 1"):
        T.CodingTables(cdf, tables.cdf_length, tables.cdf_offset, 16).validate()
    cdf = np.array(tables.cdf)
    cdf[2, int(tables.cdf_length[2]) - 1 :] = 65537
    with pytest.raises(ValueError, match="row 2: cdf does not end at 2\\*\\*16"):
        T.CodingTables(cdf, tables.cdf_length, tables.cdf_offset, 16).validate()
    with pytest.raises(ValueError, match="int32"):
        T.CodingTables(tables.cdf.astype(np.int64), tables.cdf_length, tables.cdf_offset).validate()


def test_factorized_tables_from_the_jax_prior():
    import jax

    from swinjax.entropy.factorized import FactorizedPrior, trim_table_inputs

    prior = FactorizedPrior(channels=3)
    params = prior.init(jax.random.key(0), np.zeros((1, 3), np.float32), method=prior.likelihood)
    raw = trim_table_inputs(prior.apply(params, 512, method=prior.table_inputs))
    tables = T.build_factorized_tables(raw["pmf"], raw["length"], raw["offset"], raw["tail_mass"])
    np.testing.assert_array_equal(tables.cdf_length, raw["length"] + 2)
    np.testing.assert_array_equal(tables.cdf_offset, raw["offset"])
    _assert_cdf_invariants(tables.cdf, raw["length"], 16)
    again = T.build_factorized_tables(raw["pmf"], raw["length"], raw["offset"], raw["tail_mass"])
    assert again.digest() == tables.digest()
