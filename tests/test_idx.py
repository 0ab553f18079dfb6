import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genrobust.data.idx import encode_idx, parse_idx, peek_shape, read_idx, write_idx
from genrobust.errors import IdxFormatError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=60, deadline=None)
@given(
    arr=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=1, max_dims=4, max_side=5),
            elements={"allow_nan": False} if np.dtype(dt).kind == "f" else None,
        )
    )
)
def test_roundtrip_every_dtype(arr):
    back = parse_idx(encode_idx(arr))
    assert back.dtype == arr.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, arr)


def test_gzip_and_plain_files_read_the_same(tmp_path):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    a = read_idx(write_idx(tmp_path / "a.gz", arr))
    b = read_idx(write_idx(tmp_path / "b", arr))
    np.testing.assert_array_equal(a, arr)
    np.testing.assert_array_equal(b, arr)
    assert peek_shape(tmp_path / "a.gz") == (2, 28, 28)
    assert peek_shape(tmp_path / "b") == (2, 28, 28)


def _good() -> bytes:
    return encode_idx(np.zeros((3, 28, 28), dtype=np.uint8))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_good()[:-5], "truncated"),
        (_good() + b"xx", "trailing bytes"),
        (b"\x01\x00" + _good()[2:], "bad magic"),
        (b"\x00\x00\x07\x03" + _good()[4:], "unknown IDX dtype"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (_good()[:10], "header truncated"),
        (b"\x00\x00", "too short"),
    ],
)
def test_malformed_files_are_refused_with_the_file_named(tmp_path, data, message):
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(IdxFormatError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_and_corrupt_gzip(tmp_path):
    packed = gzip.compress(_good())
    trunc = tmp_path / "t.gz"
    trunc.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(IdxFormatError, match=r"t\.gz: gzip stream is truncated"):
        read_idx(trunc)
    corrupt = tmp_path / "c.gz"
    corrupt.write_bytes(packed[:12] + bytes(b ^ 0xFF for b in packed[12:20]) + packed[20:])
    with pytest.raises(IdxFormatError, match=r"c\.gz: corrupt gzip"):
        read_idx(corrupt)
    fake = tmp_path / "f.gz"
    fake.write_bytes(_good())
    with pytest.raises(IdxFormatError, match="not gzip-compressed"):
        read_idx(fake)
    with pytest.raises(IdxFormatError, match="file not found"):
        read_idx(tmp_path / "nope")


def test_role_checks_name_the_mismatch(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((4, 27, 28), dtype=np.uint8))
    with pytest.raises(IdxFormatError, match=r"items have shape \(27, 28\), expected \(28, 28\)"):
        read_idx(path, trailing_shape=(28, 28))
    with pytest.raises(IdxFormatError, match="has 3 dimensions"):
        read_idx(path, ndim=1)
    path16 = write_idx(tmp_path / "y", np.zeros(4, dtype=np.int16))
    with pytest.raises(IdxFormatError, match="dtype is int16, expected uint8"):
        read_idx(path16, dtype=np.uint8)
