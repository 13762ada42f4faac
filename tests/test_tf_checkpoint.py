"""The pure-Python TensorFlow checkpoint reader: CRC32C, the sorted table, bundle entries, damage.

Checked against the real MusiCNN checkpoints in the musicnn 0.1.0 wheel (whose layout and CRCs
TensorFlow itself listed in ``variables.tsv``), and against small checkpoints this file writes in
the same format to reach what those do not use: several data blocks, other dtypes, big-endian
data, compressed blocks.
"""

from __future__ import annotations

import csv
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backends.tf_checkpoint import CheckpointError, TFCheckpoint, crc32c, mask_crc, unmask_crc
from tests.musicnn_support import fetch_wheel, require_reference

MODELS = ("MSD_musicnn", "MTT_musicnn")


def _slow_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


# -- CRC32C -------------------------------------------------------------------------------------


def test_crc32c_matches_the_published_check_values():
    # RFC 3720 (iSCSI) appendix B.4 and the usual "123456789" check value.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


@pytest.mark.parametrize("size", [1, 1000, 65535, 65536, 65536 + 1023, 200_003])
def test_vectorised_crc32c_equals_the_bitwise_definition(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    reference = _slow_crc32c(data) if size < 70_000 else None
    value = crc32c(data)
    if reference is not None:
        assert value == reference
    # Continuing over pieces gives the CRC of the whole, whichever path each piece takes.
    cut = size // 3
    assert crc32c(data[cut:], crc32c(data[:cut])) == value
    assert crc32c(np.frombuffer(data, np.uint8)) == value


def test_mask_round_trips_and_differs_from_the_raw_crc():
    for crc in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask_crc(mask_crc(crc)) == crc
    assert mask_crc(0xE3069283) != 0xE3069283


# -- the real MusiCNN checkpoints ------------------------------------------------------------------


@pytest.fixture(scope="session")
def wheel(request, tmp_path_factory) -> Path:
    return fetch_wheel(request, tmp_path_factory)


@pytest.fixture(scope="session")
def unpacked(wheel, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("musicnn-unpacked")
    with zipfile.ZipFile(wheel) as archive:
        for model in MODELS:
            for name in (".index", ".data-00000-of-00001"):
                archive.extract(f"musicnn/{model}/{name}", folder)
    return folder / "musicnn"


def _variables_tsv() -> list[dict]:
    with (require_reference() / "variables.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.mark.parametrize("model", MODELS)
def test_reader_lists_exactly_what_tensorflow_listed(unpacked, model):
    checkpoint = TFCheckpoint.open(unpacked / model)
    rows = _variables_tsv()
    assert checkpoint.num_shards == 1 and not checkpoint.big_endian
    assert checkpoint.names() == sorted(row["name"] for row in rows)
    column = "crc32c_masked_MSD" if model.startswith("MSD") else "crc32c_masked_MTT"
    for row in rows:
        entry = checkpoint.entries[row["name"]]
        shape = () if row["shape"] == "scalar" else tuple(int(d) for d in row["shape"].split("x"))
        assert (entry.dtype, entry.shape, entry.shard_id) == (np.dtype("<f4"), shape, int(row["shard_id"]))
        assert (entry.offset, entry.size) == (int(row["offset_bytes"]), int(row["size_bytes"]))
        assert entry.crc32c_masked == int(row[column], 16)
    data_size = (unpacked / model / ".data-00000-of-00001").stat().st_size
    assert sum(e.size for e in checkpoint.entries.values()) == data_size


@pytest.mark.parametrize("model", MODELS)
def test_every_tensor_reads_with_a_valid_crc(unpacked, model):
    checkpoint = TFCheckpoint.open(unpacked / model)
    tensors = checkpoint.read_all()
    assert len(tensors) == 150
    kernel = tensors["conv2d/kernel"]
    assert kernel.shape == (7, 38, 1, 204) and kernel.dtype == np.float32 and np.isfinite(kernel).all()
    raw = (unpacked / model / ".data-00000-of-00001").read_bytes()
    entry = checkpoint.entries["dense/kernel"]
    expected = np.frombuffer(raw[entry.offset : entry.offset + entry.size], "<f4").reshape(1506, 200)
    np.testing.assert_array_equal(tensors["dense/kernel"], expected)


def test_a_flipped_byte_in_the_data_file_is_caught(unpacked, tmp_path):
    folder = tmp_path / "MSD_musicnn"
    folder.mkdir()
    source = unpacked / "MSD_musicnn"
    (folder / ".index").write_bytes((source / ".index").read_bytes())
    data = bytearray((source / ".data-00000-of-00001").read_bytes())
    entry = TFCheckpoint.open(source).entries["dense/kernel"]
    data[entry.offset + 1000] ^= 0x10
    (folder / ".data-00000-of-00001").write_bytes(bytes(data))
    checkpoint = TFCheckpoint.open(folder)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.read("dense/kernel")
    message = str(caught.value)
    assert "'dense/kernel'" in message and "CRC32C" in message and "\n" not in message
    assert checkpoint.read("dense/bias").shape == (200,)  # the rest of the file is still readable


def test_a_flipped_byte_in_the_index_is_caught(unpacked, tmp_path):
    index = bytearray((unpacked / "MSD_musicnn" / ".index").read_bytes())
    index[200] ^= 0x01
    with pytest.raises(CheckpointError, match="CRC32C"):
        TFCheckpoint.from_bytes(bytes(index), {})


def test_truncated_and_foreign_files_are_refused(unpacked):
    index = (unpacked / "MSD_musicnn" / ".index").read_bytes()
    data = (unpacked / "MSD_musicnn" / ".data-00000-of-00001").read_bytes()
    checkpoint = TFCheckpoint.from_bytes(index, {0: data[:-100]})
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.read(checkpoint.names()[-1], verify=False)
    with pytest.raises(CheckpointError, match="bad table magic"):
        TFCheckpoint.from_bytes(b"\0" * 100, {})
    with pytest.raises(CheckpointError, match="too short"):
        TFCheckpoint.from_bytes(b"abc", {})
    with pytest.raises(CheckpointError, match="no variable"):
        TFCheckpoint.from_bytes(index, {0: data}).read("conv2d/weights")


def test_open_names_the_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist"):
        TFCheckpoint.open(tmp_path / "model.ckpt")


# -- checkpoints written here, in the same format -------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    if wire == 5:
        return key + struct.pack("<I", payload)
    return key + _varint(len(payload)) + payload


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int, compression: int = 0) -> bytes:
    body, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        else:
            restarts.append(len(body))
        body += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        previous = key
    body += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    trailer = bytes([compression])
    return bytes(body) + trailer + struct.pack("<I", mask_crc(crc32c(bytes(body) + trailer)))


def write_checkpoint(
    tensors: dict[str, np.ndarray], *, big_endian: bool = False, per_block: int = 2, compression: int = 0
) -> tuple[bytes, bytes]:
    """(index, data) of a TensorFlow V2 checkpoint holding `tensors`, with small data blocks."""
    codes = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9}
    order = ">" if big_endian else "<"
    header = _field(1, 0, 1) + _field(2, 0, 1 if big_endian else 0) + _field(3, 2, _field(1, 0, 1))
    entries, data = [(b"", header)], bytearray()
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        raw = array.astype(array.dtype.newbyteorder(order)).tobytes()
        shape = b"".join(_field(2, 2, _field(1, 0, d)) for d in array.shape)
        entry = (
            _field(1, 0, codes[array.dtype])
            + _field(2, 2, shape)
            + _field(4, 0, len(data))
            + _field(5, 0, len(raw))
            + _field(6, 5, mask_crc(crc32c(raw)))
        )
        entries.append((name.encode(), entry))
        data += raw
    index, handles = bytearray(), []
    for first in range(0, len(entries), per_block):
        chunk = entries[first : first + per_block]
        block = _block(chunk, restart_interval=2, compression=compression)
        handles.append((chunk[-1][0], _varint(len(index)) + _varint(len(block) - 5)))
        index += block
    metaindex = _block([], 1)
    meta_handle = _varint(len(index)) + _varint(len(metaindex) - 5)
    index += metaindex
    top = _block(handles, 1)
    top_handle = _varint(len(index)) + _varint(len(top) - 5)
    index += top
    footer = meta_handle + top_handle
    index += footer + b"\0" * (40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57)
    return bytes(index), bytes(data)


def _sample_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "layer/kernel": rng.standard_normal((3, 4, 2)).astype(np.float32),
        "layer/kernel/Adam": rng.standard_normal((3, 4, 2)).astype(np.float32),
        "layer/bias": rng.standard_normal(4).astype(np.float64),
        "layer_10/steps": np.array([1, -2, 3], dtype=np.int64),
        "layer_2/count": np.array(42, dtype=np.int32),
        "global_step": np.array(7, dtype=np.int64),
    }


@pytest.mark.parametrize("big_endian", [False, True])
def test_written_checkpoints_read_back_exactly(big_endian):
    tensors = _sample_tensors()
    index, data = write_checkpoint(tensors, big_endian=big_endian)
    checkpoint = TFCheckpoint.from_bytes(index, {0: data})
    assert checkpoint.big_endian is big_endian
    assert checkpoint.names() == sorted(tensors)
    for name, expected in tensors.items():
        value = checkpoint.read(name)
        assert value.dtype == expected.dtype and value.shape == expected.shape
        np.testing.assert_array_equal(value, expected)


def test_compressed_tables_get_a_clear_refusal():
    index, _ = write_checkpoint(_sample_tensors(), compression=1)
    with pytest.raises(CheckpointError, match="Snappy-compressed"):
        TFCheckpoint.from_bytes(index, {})
