"""Read TensorFlow (V2 "bundle") checkpoints without TensorFlow, checking every CRC.

A checkpoint with prefix ``P`` is two kinds of file:

- ``P.index``: a LevelDB-style sorted table (SSTable). Its 48-byte footer points at an index
  block, whose entries point at data blocks; every block carries a one-byte compression type
  and a masked CRC32C of its bytes. Keys are prefix-compressed with restart points. The entry
  with the empty key is a ``BundleHeaderProto`` (shard count, byte order); every other key is a
  variable name whose value is a ``BundleEntryProto`` (dtype, shape, shard, offset, size and a
  masked CRC32C of the tensor's raw bytes).
- ``P.data-SSSSS-of-NNNNN``: the tensors' raw bytes in C order, concatenated.

The protobuf messages are decoded by hand (a dozen fields), so no protobuf or TensorFlow is
needed and no pickle is ever involved. Tables written with Snappy compression and partitioned
(sliced) variables are refused with a clear message: TensorFlow writes neither by default,
and the MusiCNN checkpoints use neither.

CRC32C (Castagnoli) comes from the ``crc32c`` package (hardware instructions where the CPU
has them: about 10 ms for the 9.5 MB MusiCNN data file). The checks are kept although the
MusiCNN files are also pinned by sha256: the pin covers the wheel and the checkpoint files we
know, while this reader opens any TensorFlow checkpoint, and a CRC failure names the damaged
block or variable where a sha256 mismatch can only say "this is not the file".
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import crc32c as castagnoli
import numpy as np

from backends.base import BackendError

__all__ = [
    "CheckpointError",
    "TFCheckpoint",
    "TensorEntry",
    "crc32c",
    "mask_crc",
    "unmask_crc",
]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked CRC32C (4 bytes)
_MASK_DELTA = 0xA282EAD8

# TensorFlow DataType enum -> numpy dtype (the plain numeric types; strings and resources are
# stored differently and never occur in weight checkpoints).
_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    17: np.uint16,
    19: np.float16,
    22: np.uint32,
    23: np.uint64,
}


class CheckpointError(BackendError):
    """The checkpoint is damaged or in a form this reader does not handle."""


# -- CRC32C ------------------------------------------------------------------------------------


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """CRC32C of `data`; pass a previous result as `crc` to continue over several pieces."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return castagnoli.crc32c(data, crc)


def mask_crc(crc: int) -> int:
    """LevelDB's masking, which TensorFlow stores: rotate right by 15, add a constant."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


# -- varints and protobuf fields -----------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("checkpoint index is truncated (a varint runs past the end)", "fetch it again")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError("checkpoint index holds a malformed varint", "fetch it again")


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a serialised protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos : pos + length]), pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise CheckpointError(f"checkpoint index holds an unsupported protobuf wire type {wire}", "fetch it again")
        if pos > len(buf):
            raise CheckpointError("checkpoint index is truncated (a record runs past its end)", "fetch it again")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class TensorEntry:
    """Where one variable lives in the data shards, as the index describes it."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c_masked: int


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, _, value in _proto_fields(buf):
        if number == 2:  # TensorShapeProto.dim
            size = 0
            for dim_number, _, dim_value in _proto_fields(value):
                if dim_number == 1:
                    size = _signed64(dim_value)
            dims.append(size)
        elif number == 3 and value:  # unknown_rank
            raise CheckpointError("a checkpoint tensor has an unknown rank", "this is not a weights checkpoint")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes, big_endian: bool) -> TensorEntry:
    dtype_code = shard_id = offset = size = crc = 0
    shape: tuple[int, ...] = ()
    for number, _, value in _proto_fields(buf):
        if number == 1:
            dtype_code = value
        elif number == 2:
            shape = _parse_shape(value)
        elif number == 3:
            shard_id = value
        elif number == 4:
            offset = value
        elif number == 5:
            size = value
        elif number == 6:
            crc = value
        elif number == 7:
            raise CheckpointError(
                f"checkpoint variable {name!r} is partitioned into slices, which this reader does not handle",
                "re-save the checkpoint without partitioned variables",
            )
    if dtype_code not in _DTYPES:
        raise CheckpointError(f"checkpoint variable {name!r} has TensorFlow dtype {dtype_code}, not a numeric type")
    dtype = np.dtype(_DTYPES[dtype_code]).newbyteorder(">" if big_endian else "<")
    return TensorEntry(name, dtype, shape, shard_id, offset, size, crc)


# -- the sorted table --------------------------------------------------------------------------


def _block(index: bytes, offset: int, size: int, what: str) -> bytes:
    end = offset + size + _BLOCK_TRAILER_SIZE
    if end > len(index):
        raise CheckpointError(f"checkpoint index is truncated ({what} runs past the end)", "fetch it again")
    contents = index[offset : offset + size]
    compression = index[offset + size]
    (stored,) = struct.unpack_from("<I", index, offset + size + 1)
    if crc32c(index[offset : offset + size + 1]) != unmask_crc(stored):
        raise CheckpointError(f"checkpoint index {what} fails its CRC32C check (file corrupt)", "fetch it again")
    if compression != 0:
        kind = "Snappy" if compression == 1 else f"type {compression}"
        raise CheckpointError(
            f"checkpoint index {what} is {kind}-compressed, which this reader does not handle",
            "re-save the checkpoint without table compression",
        )
    return contents


def _block_entries(block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise CheckpointError(f"checkpoint index {what} is too short", "fetch it again")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise CheckpointError(f"checkpoint index {what} has a malformed restart array", "fetch it again")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_length > limit:
            raise CheckpointError(f"checkpoint index {what} holds a malformed entry", "fetch it again")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_length]
        pos += value_length


def _block_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _table_items(index: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(index) < _FOOTER_SIZE:
        raise CheckpointError("checkpoint index is too short to be a TensorFlow checkpoint", "fetch it again")
    footer = index[-_FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, 40)[0] != _TABLE_MAGIC:
        raise CheckpointError("not a TensorFlow checkpoint index (bad table magic)", "give the .index file")
    _, _, pos = _block_handle(footer)  # the metaindex block: empty in TensorFlow checkpoints
    index_offset, index_size, _ = _block_handle(footer, pos)
    top = _block(index, index_offset, index_size, "top-level block")
    for _, handle in _block_entries(top, "top-level block"):
        offset, size, _ = _block_handle(handle)
        yield from _block_entries(_block(index, offset, size, f"data block at byte {offset}"), "data block")


# -- the checkpoint ------------------------------------------------------------------------------

ShardReader = Callable[[int, int], bytes]


def _file_reader(path: Path) -> ShardReader:
    def read(offset: int, size: int) -> bytes:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(size)

    return read


def _bytes_reader(data: bytes) -> ShardReader:
    view = memoryview(data)
    return lambda offset, size: view[offset : offset + size]


class TFCheckpoint:
    """The variables of one checkpoint; `read(name)` returns a numpy array after the CRC check."""

    def __init__(self, index: bytes, shards: Mapping[int, ShardReader], *, source: str = "checkpoint") -> None:
        self.source = source
        self.big_endian = False
        self.num_shards = 1
        items = list(_table_items(bytes(index)))
        header = [value for key, value in items if key == b""]
        if not header:
            raise CheckpointError(f"{source}: the index has no bundle header", "is this a TensorFlow V2 checkpoint?")
        for number, _, value in _proto_fields(header[0]):
            if number == 1:
                self.num_shards = value
            elif number == 2:
                self.big_endian = value == 1
        self.entries: dict[str, TensorEntry] = {}
        for key, value in items:
            if key:
                name = key.decode("utf-8")
                self.entries[name] = _parse_entry(name, value, self.big_endian)
        self._shards = dict(shards)

    @classmethod
    def open(cls, prefix: str | Path) -> TFCheckpoint:
        """The checkpoint whose files are ``prefix.index`` and ``prefix.data-*``.

        A folder holding ``.index`` is taken as the prefix "folder/" (musicnn saves its
        checkpoints that way, so the files are named ``.index`` and ``.data-...``).
        """
        if Path(prefix).is_dir() and (Path(prefix) / ".index").is_file():
            prefix = str(Path(prefix)) + os.sep
        prefix = str(prefix)
        index_path = Path(prefix + ".index")
        if not index_path.is_file():
            raise CheckpointError(f"{index_path} does not exist", "give the checkpoint prefix (the path before .index)")
        probe = cls(index_path.read_bytes(), {}, source=prefix)
        shards = {}
        for shard in range(probe.num_shards):
            path = Path(f"{prefix}.data-{shard:05d}-of-{probe.num_shards:05d}")
            if not path.is_file():
                raise CheckpointError(
                    f"checkpoint shard {path} is missing", "copy every .data-* file of the checkpoint"
                )
            shards[shard] = _file_reader(path)
        probe._shards = shards
        return probe

    @classmethod
    def from_bytes(cls, index: bytes, shards: Mapping[int, bytes], *, source: str = "checkpoint") -> TFCheckpoint:
        return cls(index, {shard: _bytes_reader(data) for shard, data in shards.items()}, source=source)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def read(self, name: str, *, verify: bool = True) -> np.ndarray:
        """The variable's values as a native-byte-order numpy array of its shape."""
        try:
            entry = self.entries[name]
        except KeyError:
            raise CheckpointError(f"{self.source} has no variable {name!r}", "check the checkpoint") from None
        if entry.shard_id not in self._shards:
            raise CheckpointError(f"{self.source}: shard {entry.shard_id} of {name!r} is not available")
        expected = int(np.prod(entry.shape, dtype=np.int64)) * entry.dtype.itemsize
        if entry.size != expected:
            raise CheckpointError(
                f"{self.source}: {name!r} claims {entry.size} bytes but its shape {entry.shape} needs {expected}",
                "fetch the weights again",
            )
        raw = self._shards[entry.shard_id](entry.offset, entry.size)
        if len(raw) != entry.size:
            raise CheckpointError(f"{self.source}: the data file ends inside {name!r} (truncated)", "fetch it again")
        if verify and crc32c(raw) != unmask_crc(entry.crc32c_masked):
            raise CheckpointError(
                f"{self.source}: variable {name!r} fails its CRC32C check (data file corrupt)",
                "fetch the weights again",
            )
        array = np.frombuffer(raw, dtype=entry.dtype).reshape(entry.shape)
        return array.astype(entry.dtype.newbyteorder("="), copy=True)

    def read_all(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        return {name: self.read(name) for name in (names if names is not None else self.names())}
