"""A strict reader for the IDX format of MNIST-like datasets.

IDX (LeCun's format) is a 4-byte magic number ``0x00 0x00 <dtype> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the data in big-endian order. The reader checks every part of that contract and refuses a
file that breaks it, naming the file and the problem: a silently truncated array would train a model on
garbage, which is far worse than an error.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import IdxFormatError

#: IDX dtype codes and the big-endian numpy dtype each stands for.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {dt: code for code, dt in IDX_DTYPES.items()}


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return a file's bytes, transparently decompressing ``.gz`` files, with errors that name the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IdxFormatError(f"{path}: file not found") from None
    except OSError as exc:
        raise IdxFormatError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except EOFError:
            raise IdxFormatError(f"{path}: gzip stream is truncated (incomplete download?)") from None
        except (gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise IdxFormatError(f"{path}: corrupt gzip data ({exc})") from None
    if path.suffix == ".gz":
        raise IdxFormatError(f"{path}: named .gz but is not gzip-compressed")
    return raw


def parse_header(data: bytes, source: str = "<bytes>") -> tuple[np.dtype, tuple[int, ...], int]:
    """Parse an IDX header: return (dtype, shape, offset of the data). Raises on any inconsistency."""
    if len(data) < 4:
        raise IdxFormatError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise IdxFormatError(f"{source}: bad magic number 0x{data[:4].hex()} (IDX files start with two zero bytes)")
    if code not in IDX_DTYPES:
        raise IdxFormatError(f"{source}: unknown IDX dtype code 0x{code:02x} in magic 0x{data[:4].hex()}")
    if ndim == 0:
        raise IdxFormatError(f"{source}: IDX header declares zero dimensions")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise IdxFormatError(f"{source}: header truncated: {ndim} dimensions need {offset} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    return IDX_DTYPES[code], tuple(int(s) for s in shape), offset


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a native-endian numpy array; the length must match the header exactly."""
    dtype, shape, offset = parse_header(data, source)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - offset
    if actual < expected:
        raise IdxFormatError(f"{source}: truncated: header {shape} needs {expected} data bytes, file has {actual}")
    if actual > expected:
        raise IdxFormatError(f"{source}: {actual - expected} unexpected trailing bytes after the {shape} array")
    arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(
    path: str | os.PathLike[str],
    *,
    dtype: np.dtype | str | None = None,
    ndim: int | None = None,
    trailing_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Read an IDX file (plain or gzip) and check that it has the dtype and shape its role requires.

    ``trailing_shape`` pins every dimension but the first, e.g. ``(28, 28)`` for an image file.
    """
    source = str(path)
    arr = parse_idx(read_bytes(path), source)
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise IdxFormatError(f"{source}: dtype is {arr.dtype}, expected {np.dtype(dtype)}")
    if ndim is not None and arr.ndim != ndim:
        raise IdxFormatError(f"{source}: has {arr.ndim} dimensions {arr.shape}, expected {ndim}")
    if trailing_shape is not None and tuple(arr.shape[1:]) != tuple(trailing_shape):
        raise IdxFormatError(f"{source}: items have shape {tuple(arr.shape[1:])}, expected {tuple(trailing_shape)}")
    return arr


def peek_shape(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """Return the shape an IDX file declares, decompressing only its first bytes."""
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        stream = gzip.GzipFile(fileobj=fh) if head == b"\x1f\x8b" else fh
        try:
            data = stream.read(4 + 4 * 255)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise IdxFormatError(f"{path}: corrupt or truncated ({exc})") from None
    _, shape, _ = parse_header(data, str(path))
    return shape


def encode_idx(arr: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (used to write test fixtures and exports)."""
    arr = np.asarray(arr)
    be = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    code = _CODE_OF.get(np.dtype(be))
    if code is None:
        raise IdxFormatError(f"dtype {arr.dtype} has no IDX code")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(be, copy=False).tobytes()


def write_idx(path: str | os.PathLike[str], arr: np.ndarray) -> Path:
    """Write an array as an IDX file, gzip-compressed when the name ends in ``.gz``."""
    path = Path(path)
    data = encode_idx(arr)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path
