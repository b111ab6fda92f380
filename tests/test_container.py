"""The .swj container: round trip, hostile files, bounded parsing, latent checksums."""

import dataclasses
import io
import math
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from swinjax.coding import container as C
from swinjax.coding.backend import ConstrictionCoder
from swinjax.entropy import tables as T


def _header(**changes):
    h = C.Header(
        model_id="swincoder-tiny",
        config_hash=bytes.fromhex("0123456789abcdef"),
        lmbda=128.0,
        height=37,
        width=50,
        pad_h=27,
        pad_w=14,
        y_shape=(4, 4, 32),
        z_shape=(1, 1, 24),
        downsampling=64,
        symbols_crc32=0xDEADBEEF,
    )
    return dataclasses.replace(h, **changes)


_STREAMS = [b"z-stream", b"", b"y0" * 7, b"y1"]
_VALID = C.pack(_header(), _STREAMS)


def _one_line_format_error(data, **kwargs):
    with pytest.raises(C.FormatError) as e:
        C.unpack(data, **kwargs)
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return e.value


def _refresh_crc(data: bytes) -> bytes:
    """What a hostile (or buggy) writer would do: fix the file CRC after editing fields."""
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def _lengths_offset(h: C.Header) -> int:
    return (
        4 + 2 + 4 + 1 + len(h.model_id) + 1 + len(h.config_hash) + struct.calcsize("<dIIHHH3I3IIH")
    )


def test_round_trip_keeps_every_field():
    header, streams = C.unpack(_VALID, expected_model_id="swincoder-tiny")
    assert header == _header()
    assert streams == _STREAMS
    assert header.padded_size == (64, 64)
    d = header.as_dict()
    assert d["config_hash"] == "0123456789abcdef" and d["symbols_crc32"] == "deadbeef"


def test_nan_lambda_means_fixed_rate():
    header, _ = C.unpack(C.pack(_header(lmbda=float("nan")), [b"z"]))
    assert math.isnan(header.lmbda) and header.as_dict()["lmbda"] is None


def test_read_file(tmp_path):
    path = tmp_path / "x.swj"
    path.write_bytes(_VALID)
    header, streams = C.read_file(path)
    assert header == _header() and streams == _STREAMS


def test_every_single_bit_flip_is_rejected():
    for i in range(len(_VALID) * 8):
        bad = bytearray(_VALID)
        bad[i // 8] ^= 1 << (i % 8)
        _one_line_format_error(bytes(bad))


def test_every_truncation_and_any_trailing_data_is_rejected():
    for cut in range(len(_VALID)):
        err = _one_line_format_error(_VALID[:cut])
        if cut >= 10:
            assert isinstance(err, C.TruncatedFileError)
            assert str(err).startswith("truncated file")
    err = _one_line_format_error(_VALID + b"\x00")
    assert isinstance(err, C.CorruptFileError)


def test_foreign_files():
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, format="PNG")
    for data in (b"", png.getvalue(), b"\x00" * 100, b"SWJ", b"%PDF-1.7\n", b"swjx" + _VALID[4:]):
        err = _one_line_format_error(data)
        assert isinstance(err, (C.NotASwinjaxFileError, C.TruncatedFileError))
        assert str(err).startswith(("not a swinjax file", "truncated file"))
    rng = np.random.default_rng(0)
    for n in (1, 5, 64, 4096):
        _one_line_format_error(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    _one_line_format_error(b"SWJX" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes())


def test_unsupported_version_and_model_mismatch_messages():
    assert C.FORMAT_VERSION == 2
    v1 = _VALID[:4] + struct.pack("<H", 1) + _VALID[6:]
    err = _one_line_format_error(v1)
    assert isinstance(err, C.UnsupportedVersionError)
    assert str(err) == (
        "unsupported format version 1, written by an older swinjax (this swinjax reads version 2 "
        "only)"
    )
    v3 = _VALID[:4] + struct.pack("<H", 3) + _VALID[6:]
    assert "version 3, written by a newer swinjax" in str(_one_line_format_error(v3))
    err = _one_line_format_error(_VALID, expected_model_id="swinnpe")
    assert isinstance(err, C.ModelMismatchError)
    assert str(err) == "file was made by model 'swincoder-tiny' but the checkpoint is 'swinnpe'"


def test_file_crc_catches_a_corrupted_stream_byte():
    bad = bytearray(_VALID)
    bad[-6] ^= 0xFF  # inside the last stream
    err = _one_line_format_error(bytes(bad))
    assert isinstance(err, C.CorruptFileError) and "checksum mismatch" in str(err)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(height=2**31, width=2**31), "exceeds the limit"),
        (dict(height=2**32 - 1, width=1, pad_h=0, pad_w=0), "exceeds the limit"),
        (dict(height=0), "empty"),
        (dict(pad_h=64), "not below the downsampling"),
        (dict(pad_h=26), "not a multiple of the downsampling"),
        (dict(downsampling=48), "not a power of two"),
        (dict(downsampling=2048, pad_h=0, pad_w=0), "not a power of two"),
        (dict(z_shape=(2, 1, 24)), "z shape"),
        (dict(y_shape=(4, 8, 32)), "y shape"),
        (dict(y_shape=(3, 3, 32)), "y shape"),
        (dict(y_shape=(4, 4, 5000)), "channels"),
        (dict(y_shape=(64, 64, 16)), "more values than"),
        (dict(lmbda=-1.0), "lambda"),
        (dict(lmbda=float("inf")), "lambda"),
        (dict(model_id="bad\nid"), "invalid model id"),
        (dict(model_id=""), "invalid model id"),
    ],
)
def test_header_fields_at_extremes_are_rejected_even_with_a_valid_crc(changes, match):
    header = _header(**changes)
    with pytest.raises(C.FormatError, match=match):
        C.pack(header, [b"z"])  # the writer refuses it ...
    forged = C._serialize(header, [b"z"])  # ... and the reader refuses a forged one
    err = _one_line_format_error(forged)
    assert match in str(err)


def test_max_pixels_is_configurable():
    big = _header(
        height=10_000,
        width=10_000,
        pad_h=0,
        pad_w=0,
        y_shape=(625, 625, 32),
        z_shape=(157, 157, 24),
        downsampling=16,
    )
    with pytest.raises(C.FormatError):
        big.validate()  # z shape inconsistent with the image
    big = dataclasses.replace(big, z_shape=(625, 625, 24))
    data = C._serialize(big, [b"z"])
    assert C.unpack(data)[0] == big
    err = _one_line_format_error(data, max_pixels=10_000 * 9_999)
    assert isinstance(err, C.ImageTooLargeError) and "raise max_pixels" in str(err)


def test_stream_table_extremes():
    h = _header()
    off = _lengths_offset(h)
    # a stream length past the end of the file
    data = bytearray(_VALID)
    data[off : off + 4] = struct.pack("<I", 2**32 - 1)
    err = _one_line_format_error(_refresh_crc(bytes(data)))
    assert "stream lengths add up" in str(err)
    # huge and zero stream counts
    for count, match in (
        (65535, "65535 streams"),
        (257, "257 streams"),
        (0, "0 streams"),
        (200, "runs past the end"),
    ):
        data = bytearray(_VALID)
        data[off - 2 : off] = struct.pack("<H", count)
        err = _one_line_format_error(_refresh_crc(bytes(data)))
        assert match in str(err), str(err)
    # a model id length pointing past the end
    data = bytearray(_VALID)
    data[10] = 255
    assert "runs past the end" in str(_one_line_format_error(_refresh_crc(bytes(data))))
    # an announced size larger than the file
    data = bytearray(_VALID)
    data[6:10] = struct.pack("<I", 2**32 - 1)
    assert isinstance(_one_line_format_error(bytes(data)), C.TruncatedFileError)


def test_hostile_header_allocates_nothing_big():
    forged = C._serialize(_header(height=2**31, width=2**31, y_shape=(2**31, 2**31, 4096)), [b"z"])
    count_forged = bytearray(_VALID)
    off = _lengths_offset(_header())
    count_forged[off - 2 : off] = struct.pack("<H", 65535)
    tracemalloc.start()
    try:
        for data in (forged, _refresh_crc(bytes(count_forged))):
            with pytest.raises(C.FormatError):
                C.unpack(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024


def test_pack_rejects_bad_stream_lists():
    with pytest.raises(ValueError, match="streams"):
        C.pack(_header(), [])
    with pytest.raises(ValueError, match="streams"):
        C.pack(_header(), [b""] * 257)
    with pytest.raises(ValueError, match="bytes"):
        C.pack(_header(), ["text"])


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 16)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
)


@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_files_never_pass_silently(mutations):
    data = bytearray(_VALID)
    for kind, pos, arg in mutations:
        pos = pos % (len(data) + 1)
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << arg
        elif kind == "set" and pos < len(data):
            data[pos] = arg
        elif kind == "insert":
            data[pos:pos] = arg
        elif kind == "delete":
            del data[pos : pos + arg]
        elif kind == "truncate":
            del data[pos:]
    data = bytes(data)
    if data == _VALID:
        assert C.unpack(data)[1] == _STREAMS
    else:
        _one_line_format_error(data)


_u16 = st.one_of(st.integers(0, 80), st.sampled_from([128, 1024, 2**15, 2**16 - 1]))
_u32 = st.one_of(st.integers(0, 80), st.sampled_from([2**16, 2**31, 2**32 - 1]))


@st.composite
def _forged_header(draw):
    """Mostly-consistent headers with some fields pushed to extremes (all fit the layout)."""

    def valid() -> bool:  # keep a field consistent with probability ~0.8
        return draw(st.integers(0, 9)) < 8

    f = draw(st.sampled_from([1, 2, 4, 16, 64])) if valid() else draw(_u16)
    h = draw(st.integers(1, 120)) if valid() else draw(_u32)
    w = draw(st.integers(1, 120)) if valid() else draw(_u32)
    pad_h = (-h) % f if f and valid() else draw(_u16)
    pad_w = (-w) % f if f and valid() else draw(_u16)
    ph, pw = h + pad_h, w + pad_w
    g = draw(st.sampled_from([1, 2, 4, 8, 16, 64]))
    c_y = draw(st.integers(1, 3)) if valid() else draw(st.integers(1, 5000))
    c_z = draw(st.integers(1, 3)) if valid() else draw(st.integers(1, 5000))
    y = (ph // g, pw // g, c_y) if valid() else draw(st.tuples(_u32, _u32, _u32))
    z = (ph // max(f, 1), pw // max(f, 1), c_z) if valid() else draw(st.tuples(_u32, _u32, _u32))
    y, z = (tuple(min(max(v, 1), 2**32 - 1) for v in t) for t in (y, z))
    lmbda = 64.0 if valid() else draw(st.floats(allow_nan=True, allow_infinity=True))
    pads = min(pad_h, 2**16 - 1), min(pad_w, 2**16 - 1)
    return C.Header("swinnpe", b"", lmbda, h, w, *pads, y, z, f, 0)


@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(_forged_header())
def test_forged_headers_with_valid_crc_are_rejected_or_consistent(header):
    data = C._serialize(header, [b"zz", b"y"])
    max_pixels = 20_000
    try:
        parsed, streams = C.unpack(data, max_pixels=max_pixels)
    except C.FormatError as e:
        assert "\n" not in str(e)
        return
    event("accepted")
    ph, pw = parsed.padded_size
    assert 1 <= parsed.height * parsed.width <= ph * pw <= max_pixels
    assert ph % parsed.downsampling == 0 and pw % parsed.downsampling == 0
    assert parsed.z_shape[:2] == (ph // parsed.downsampling, pw // parsed.downsampling)
    assert max(parsed.y_shape[2], parsed.z_shape[2]) <= C.MAX_CHANNELS
    assert math.prod(parsed.y_shape) + math.prod(parsed.z_shape) <= 3 * ph * pw
    assert streams == [b"zz", b"y"]


def test_symbols_crc32_is_order_and_value_sensitive_and_dtype_independent():
    a, b = np.arange(12).reshape(3, 4), np.array([-5, 7])
    crc = C.symbols_crc32([a.astype(np.int32), b.astype(np.int32)])
    assert C.symbols_crc32([a.astype(np.int64), b.astype(np.int16)]) == crc
    assert C.symbols_crc32([b, a]) != crc
    assert C.symbols_crc32([a, b + 1]) != crc
    C.check_symbols_crc32(crc, [a, b])
    with pytest.raises(C.ChecksumMismatchError) as e:
        C.check_symbols_crc32(_header(symbols_crc32=crc), [a, b * 2])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("checksum mismatch")
    assert "other weights under this model id, or altered" in msg
    assert "platform" not in msg  # decisions are pinned: a mismatch is not the platform's doing
    with pytest.raises(ValueError, match="int32"):
        C.symbols_crc32([np.array([2**40])])


def test_corrupted_or_mismatched_y_stream_is_reported():
    """Decoding a damaged y stream either raises ValueError or fails the latent checksum."""
    tables = T.build_gaussian_tables(T.default_scale_table())
    coder = ConstrictionCoder(tables)
    rng = np.random.default_rng(0)
    z_idx = np.arange(24, dtype=np.int32) % 64
    y_idx = [rng.integers(0, 64, 256).astype(np.int32) for _ in range(2)]
    z = rng.integers(-3, 4, 24).astype(np.int32)
    ys = [np.round(rng.laplace(size=256) * 3).astype(np.int32) for _ in range(2)]
    streams = [coder.encode(z, z_idx)] + [
        coder.encode(s, i) for s, i in zip(ys, y_idx, strict=True)
    ]
    header = _header(symbols_crc32=C.symbols_crc32([z, *ys]))
    data = C.pack(header, streams)
    parsed, got = C.unpack(data)
    decoded = [coder.decode(got[0], z_idx)] + [
        coder.decode(s, i) for s, i in zip(got[1:], y_idx, strict=True)
    ]
    C.check_symbols_crc32(parsed, decoded)  # the honest path passes

    def outcome(y1_stream, y1_idx):
        try:
            y1 = coder.decode(y1_stream, y1_idx)
        except ValueError as e:
            assert "\n" not in str(e)
            return "value_error"
        with pytest.raises(C.ChecksumMismatchError):
            C.check_symbols_crc32(parsed, [decoded[0], decoded[1], y1])
        return "checksum"

    seen = set()
    y1 = got[2]
    for pos in range(len(y1)):  # a byte damaged in transit or by a buggy writer
        bad = bytearray(y1)
        bad[pos] ^= 0x5A
        seen.add(outcome(bytes(bad), y_idx[1]))
    for shift in (1, 2, 7):  # platform drift: the decoder computes slightly different indexes
        seen.add(outcome(y1, np.clip(y_idx[1] + shift, 0, 63).astype(np.int32)))
    assert seen <= {"value_error", "checksum"}


def test_pinned_scale_indexes_round_trip_and_cost_one_byte_when_empty():
    pinned = ((0, 5), (1, 6), (300, 63), (511, 0))  # y has 4 * 4 * 32 = 512 elements
    data = C.pack(_header(pinned=pinned), _STREAMS)
    header, streams = C.unpack(data)
    assert header.pinned == pinned and streams == _STREAMS
    assert header.as_dict()["pinned"] == 4
    # 4 x (gap varint, index byte) on top of the empty list's count; gaps 298 and 210 take two
    assert len(data) - len(_VALID) == 2 + 2 + 3 + 3
    assert C.unpack(_VALID)[0].pinned == ()


@pytest.mark.parametrize(
    "pinned, match",
    [
        (((3, 1), (3, 2)), "positions must increase"),
        (((5, 1), (2, 2)), "positions must increase"),
        (((512, 1),), "stay below 512"),
        (((0, 256),), "indexes in"),
        (((-1, 0),), "positions must increase"),
    ],
)
def test_bad_pinned_lists_are_refused_when_writing(pinned, match):
    with pytest.raises(C.FormatError, match=match):
        C.pack(_header(pinned=pinned), _STREAMS)


def test_forged_pinned_lists_are_one_line_errors():
    off = _lengths_offset(_header()) + 4 * len(_STREAMS)  # the pinned count
    assert _VALID[off] == 0
    for forged, match in (
        (b"\x64\x00\x01", "cannot fit"),  # 100 entries, 26 bytes left
        (b"\xff\xff\xff\xff\xff\x01", "longer than 5 bytes"),
        (b"\x01\x80\x04\x01", "past y"),  # position 512 in a y of 512 elements
    ):
        data = _VALID[:off] + forged + _VALID[off + 1 :]
        data = data[:6] + struct.pack("<I", len(data)) + data[10:]
        err = _one_line_format_error(_refresh_crc(data))
        assert match in str(err), str(err)
