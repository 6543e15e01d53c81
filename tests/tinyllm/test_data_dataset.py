"""Token files on disk and the resumable batch loader."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyllm.data.dataset import (
    HEADER_SIZE,
    BatchLoader,
    TokenWriter,
    read_header,
    read_tokens,
    write_tokens,
)

# --------------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab_size, dtype", [(256, np.uint16), (65536, np.uint16),
                                               (65537, np.uint32), (200_000, np.uint32)])
def test_shard_round_trip_and_dtype(tmp_path, vocab_size, dtype):
    tokens = np.random.default_rng(0).integers(0, vocab_size, 1000)
    path = write_tokens(tmp_path / "t.bin", tokens, vocab_size)
    back = read_tokens(path)
    assert back.dtype == dtype
    assert isinstance(back, np.memmap)
    np.testing.assert_array_equal(back, tokens)
    assert path.stat().st_size == HEADER_SIZE + 1000 * np.dtype(dtype).itemsize
    header = read_header(path)
    assert header["count"] == 1000 and header["vocab_size"] == vocab_size


@given(st.lists(st.integers(0, 999), max_size=50), st.integers(1, 4))
def test_streamed_writes_equal_one_write(tmp_path_factory, ids, pieces):
    path = tmp_path_factory.mktemp("shard") / "s.bin"
    with TokenWriter(path, vocab_size=1000) as writer:
        for chunk in np.array_split(np.array(ids, dtype=np.int64), pieces):
            writer.write(chunk)
    np.testing.assert_array_equal(read_tokens(path), ids)


def test_out_of_range_ids_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        write_tokens(tmp_path / "x.bin", [0, 5, 10], vocab_size=10)
    with pytest.raises(ValueError, match="out of range"):
        write_tokens(tmp_path / "y.bin", [-1], vocab_size=10)


def test_truncated_shard_names_the_file(tmp_path):
    path = write_tokens(tmp_path / "train.bin", np.arange(100), vocab_size=100)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"train\.bin.*truncated"):
        read_tokens(path)
    path.write_bytes(data + b"xx")
    with pytest.raises(ValueError, match=r"train\.bin.*trailing"):
        read_tokens(path)
    path.write_bytes(data[:10])
    with pytest.raises(ValueError, match=r"train\.bin.*no header"):
        read_tokens(path)


def test_foreign_file_names_the_file(tmp_path):
    path = tmp_path / "val.bin"
    np.arange(100, dtype=np.uint16).tofile(path)  # a raw nanoGPT-style file, no header
    with pytest.raises(ValueError, match=r"val\.bin.*not a tinyllm token file"):
        read_tokens(path)


def test_corrupt_header_fields(tmp_path):
    path = write_tokens(tmp_path / "c.bin", np.arange(10), vocab_size=10)
    raw = bytearray(path.read_bytes())
    raw[8] = 99  # version
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="version 99"):
        read_tokens(path)
    raw[8], raw[12] = 1, 3  # 3 bytes per token
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="bytes per token 3"):
        read_tokens(path)


def test_empty_shard(tmp_path):
    path = write_tokens(tmp_path / "e.bin", [], vocab_size=10)
    assert read_tokens(path).shape == (0,)


# --------------------------------------------------------------------------------------------
# BatchLoader
# --------------------------------------------------------------------------------------------


def test_batches_are_shifted_windows():
    tokens = np.arange(1000)
    x, y = BatchLoader(tokens, batch_size=4, block_size=16, seed=0).next_batch()
    assert x.shape == y.shape == (4, 16)
    assert x.dtype == np.int64
    np.testing.assert_array_equal(y, x + 1)  # tokens are consecutive integers
    assert (x[:, 1:] == x[:, :-1] + 1).all()  # each row is one contiguous window
    assert x.min() >= 0 and y.max() <= 999


def test_loader_is_deterministic_per_seed():
    tokens = np.arange(5000)
    a = [BatchLoader(tokens, 8, 32, seed=1).next_batch()[0] for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    la, lb = BatchLoader(tokens, 8, 32, seed=1), BatchLoader(tokens, 8, 32, seed=2)
    assert not np.array_equal(la.next_batch()[0], lb.next_batch()[0])
    assert not np.array_equal(la.next_batch()[0], la.next_batch()[0])  # batches differ


def test_loader_resume_gives_exactly_the_next_batch(tmp_path):
    tokens = read_tokens(write_tokens(tmp_path / "t.bin", np.arange(3000) % 500, 500))
    loader = BatchLoader(tokens, batch_size=4, block_size=8, seed=123)
    for _ in range(5):
        loader.next_batch()
    state = json.loads(json.dumps(loader.state_dict()))  # must survive JSON
    expected = [loader.next_batch() for _ in range(3)]
    resumed = BatchLoader(tokens, batch_size=4, block_size=8, seed=0)
    resumed.load_state_dict(state)
    for (x, y), (ex, ey) in zip((resumed.next_batch() for _ in range(3)), expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


def test_resume_refuses_a_different_setup():
    loader = BatchLoader(np.arange(100), 2, 8)
    other = BatchLoader(np.arange(100), 2, 16)
    with pytest.raises(ValueError, match="block_size"):
        other.load_state_dict(loader.state_dict())


def test_sequential_mode_tiles_the_data():
    loader = BatchLoader(np.arange(41), batch_size=2, block_size=10, shuffle=False)
    x, y = loader.next_batch()
    np.testing.assert_array_equal(x[:, 0], [0, 10])
    x, y = loader.next_batch()
    np.testing.assert_array_equal(x[:, 0], [20, 30])
    assert y.max() == 40
    x, _ = loader.next_batch()  # wraps around
    np.testing.assert_array_equal(x[:, 0], [0, 10])


def test_too_few_tokens():
    with pytest.raises(ValueError, match="block_size"):
        BatchLoader(np.arange(8), batch_size=1, block_size=8)
