"""Data-parallel training (tinyllm.distributed).

The `mpi` tests start their ranks with mpiexec in a subprocess with a timeout, so a hang fails
the test instead of stalling the suite; they are skipped when mpi4py or mpiexec is missing.
Models are tiny (one layer, width 32) and world sizes 1-3 on purpose: the machine has 2 cores.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinyllm.data.dataset import BatchLoader
from tinyllm.distributed import ShardedLoader
from tinyllm.safetensors import load_file

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("distributed_driver.py")
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
needs_mpiexec = pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec (pip install mpich)")

MODEL = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, dropout=0.0)
TRAIN = dict(batch_size=6, grad_accum=2, max_steps=6, eval_interval=6, eval_tokens=256,
             sample_tokens=4, warmup_steps=2, progress=False, lr=3e-3)


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1"}


def launch(n, args, timeout=60, check=True):
    """Run `python args...` on n ranks (n = 1: a plain process, no mpiexec)."""
    cmd = [sys.executable, *map(str, args)]
    if n > 1:
        cmd = [MPIEXEC, "-n", str(n), *cmd]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def drive(n, plan, **kw):
    """Run the driver on n ranks; its JSON lines, one per rank."""
    proc = launch(n, [DRIVER, json.dumps(plan)], **kw)
    # mpiexec forwards the ranks' lines as they come: two may share a line, so find each one.
    return [json.loads(m) for m in re.findall(r'\{"rank"[^{}]*\}', proc.stdout)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tinyllm.data.prepare import prepare

    rng = np.random.default_rng(0)
    words = "the quick brown fox jumps over a lazy dog while ranks reduce gradients".split()
    folder = tmp_path_factory.mktemp("dist")
    text = "\n".join(" ".join(rng.choice(words, 12)) for _ in range(2000))
    (folder / "corpus.txt").write_text(text)
    prepare(folder / "corpus.txt", folder / "prepared", vocab_size=300, progress=False)
    return folder / "prepared"


def cfg(data, out, dtype="float64", **over):
    return {**TRAIN, "data": str(data), "out_dir": str(out),
            "model": {**MODEL, "dtype": dtype}, **over}


def weights(run):
    return load_file(Path(run) / "checkpoint" / "model.safetensors")[0]


def max_diff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# ---- without MPI ------------------------------------------------------------------------------
@pytest.mark.parametrize("batch,size", [(6, 2), (6, 3), (7, 3), (5, 5)])
def test_rank_slices_are_disjoint_and_cover_the_global_batch(batch, size):
    tokens = np.arange(500) % 97
    whole = BatchLoader(tokens, batch, 8, seed=3)
    shards = [ShardedLoader(BatchLoader(tokens, batch, 8, seed=3), r, size) for r in range(size)]
    rows = np.concatenate([s.rows for s in shards])
    assert sorted(rows.tolist()) == list(range(batch))  # disjoint and covering
    assert sum(s.weight for s in shards) == pytest.approx(1.0)
    for _ in range(3):
        x, y = whole.next_batch()
        parts = [s.next_batch() for s in shards]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    assert all(s.state_dict() == whole.state_dict() for s in shards)


def test_more_ranks_than_rows_is_refused():
    with pytest.raises(ValueError, match="batch-size 2 is smaller than the number of ranks"):
        ShardedLoader(BatchLoader(np.arange(100), 2, 8), 0, 3)


def test_plain_train_never_imports_mpi(data, tmp_path):
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--quiet",
            "--preset", "tiny", "--n-layer", "1", "--n-embd", "32", "--block-size", "16",
            "--max-steps", "1", "--eval-tokens", "64", "--sample-tokens", "2"]
    code = (f"import sys; from tinyllm.cli import main; rc = main({argv!r}); "
            "assert rc == 0, rc; assert 'mpi4py' not in sys.modules, 'mpi4py was imported'")
    launch(1, ["-c", code])


def test_missing_mpi4py_gives_one_line_with_the_install_command(tmp_path):
    blocker = tmp_path / "mpi4py"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('no mpi4py here')\n")
    env = {**_env(), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = subprocess.run([sys.executable, "-m", "tinyllm", "train", "--distributed", "mpi"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "tinyllm[mpi]"' in lines[0], proc.stderr


# ---- under mpiexec ----------------------------------------------------------------------------
def train_alone(config):
    """One process, in this one (no subprocess start-up): the reference the ranks must match."""
    from tinyllm.train import TrainConfig, Trainer

    Trainer(TrainConfig.from_dict(config)).run()
    return weights(config["out_dir"])


@pytest.fixture(scope="module")
def two_ranks(data, tmp_path_factory):
    """A 2-rank run of 6 steps (batch 6: 3 + 3 rows), with its one-process reference."""
    folder = tmp_path_factory.mktemp("two")
    ranks = drive(2, {"cfg": cfg(data, folder / "two")})
    return ranks, folder / "two", train_alone(cfg(data, folder / "one"))


@pytest.mark.mpi
@needs_mpiexec
def test_two_ranks_train_the_model_one_process_trains(data, two_ranks):
    """Same global batch, float64, 6 steps of 2 micro-batches: equal to 1e-12; both ranks'
    weights bit-identical (hashes compared by the driver and at the end of run())."""
    ranks, run, alone = two_ranks
    assert [r["size"] for r in ranks] == [2, 2] and len({r["digest"] for r in ranks}) == 1
    assert ranks[0]["buckets"] > 2  # a few buckets, not one call per tensor
    assert ranks[0]["step"] == 6
    assert max_diff(alone, weights(run)) < 1e-12
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    steps = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert {s["world_size"] for s in steps if "loss" in s} == {2}
    reference = [json.loads(line) for line in (run.parent / "one" / "metrics.jsonl").open()]
    assert steps[0]["loss"] == pytest.approx(reference[0]["loss"], abs=1e-12)
    # The evaluations, shared by the ranks (every 2nd window each), are one process's.
    for split in ("val", "test"):
        ours, alone_ = ([s for s in rows if f"{split}_loss" in s][-1] for rows in (steps, reference))
        assert ours[f"{split}_tokens"] == alone_[f"{split}_tokens"] > 32
        assert ours[f"{split}_bpb"] == pytest.approx(alone_[f"{split}_bpb"], abs=1e-12)
        assert ours[f"{split}_loss"] == pytest.approx(alone_[f"{split}_loss"], abs=1e-12)


@pytest.mark.mpi
@needs_mpiexec
def test_three_ranks_with_unequal_shares(data, two_ranks, tmp_path):
    """Batch 7 over 3 ranks (3 + 2 + 2 rows): the shares are weighted, still one process's model."""
    ranks = drive(3, {"cfg": cfg(data, tmp_path / "three", batch_size=7)})
    assert len(ranks) == 3 and len({r["digest"] for r in ranks}) == 1
    alone = train_alone(cfg(data, tmp_path / "one", batch_size=7))
    assert max_diff(alone, weights(tmp_path / "three")) < 1e-12
    assert max_diff(alone, two_ranks[2]) > 1e-6  # the comparison can tell batches apart


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("how", [{"overlap": False}, {"zero": 1}])
def test_float32_matches_to_1e6(data, tmp_path, how):
    """float32 to 1e-6, except the key bias: its exact gradient is zero (adding one constant
    to all of a query's scores leaves the softmax unchanged), so in either run AdamW steps it
    by normalised rounding noise. It stays tiny, but not within 1e-6 of the other run's."""
    drive(2, {"cfg": cfg(data, tmp_path / "two", "float32"), **how})
    alone = train_alone(cfg(data, tmp_path / "one", "float32"))
    ranks = weights(tmp_path / "two")
    width = MODEL["n_embd"]
    key_bias = "transformer.h.0.attn.c_attn.bias"
    for w in (alone, ranks):
        w["key_bias"] = w[key_bias][width:2 * width]
        w[key_bias] = np.delete(w[key_bias], np.s_[width:2 * width])
    assert np.abs(alone.pop("key_bias") - ranks.pop("key_bias")).max() < 1e-5
    assert max_diff(alone, ranks) < 1e-6


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("n", [2, 3])
def test_zero1_trains_the_model_one_process_trains(data, two_ranks, tmp_path, n):
    """--zero 1 (AdamW state sharded, reduce-scatter + all-gather): float64 to 1e-12 against
    one process, every rank's weights bit-identical, and the checkpoint holds the whole AdamW
    state, equal to the one process's."""
    ranks = drive(n, {"cfg": cfg(data, tmp_path / "zero"), "zero": 1})
    assert len(ranks) == n and len({r["digest"] for r in ranks}) == 1 and ranks[0]["step"] == 6
    alone = two_ranks[2]
    assert max_diff(alone, weights(tmp_path / "zero")) < 1e-12
    moments = load_file(tmp_path / "zero" / "checkpoint" / "optimizer.safetensors")[0]
    reference = load_file(two_ranks[1].parent / "one" / "checkpoint" / "optimizer.safetensors")[0]
    assert moments.keys() == reference.keys() and len(moments) > 4
    assert max_diff(reference, moments) < 1e-12


@pytest.mark.mpi
@needs_mpiexec
def test_zero1_resumes_at_any_world_size(data, two_ranks, tmp_path):
    """A ZeRO-1 run on 2 ranks stopped at step 2, continued by one process without ZeRO to
    step 4, and by 3 ranks with ZeRO to the end: the uninterrupted one-process model."""
    run = tmp_path / "run"
    drive(2, {"cfg": cfg(data, run), "stop_at": 2, "zero": 1})
    from tinyllm.train import TrainConfig, Trainer

    Trainer(TrainConfig.from_dict(cfg(data, run)), resume=True).run(stop_at=4)
    end = drive(3, {"cfg": cfg(data, run), "resume": True, "zero": 1})
    assert end[0]["step"] == 6
    assert max_diff(two_ranks[2], weights(run)) < 1e-12


@pytest.mark.mpi
@needs_mpiexec
def test_resume_across_world_sizes(data, two_ranks, tmp_path):
    """2 ranks to step 2, one process to step 4, 3 ranks to the end (6): the model of one
    uninterrupted process. Stopped at step 2 and resumed at 2 ranks: bit-identical to the
    uninterrupted 2-rank run."""
    ranks, straight, alone = two_ranks
    run, same = tmp_path / "run", tmp_path / "same"
    drive(2, {"cfg": cfg(data, run), "stop_at": 2})
    shutil.copytree(run, same)
    end = drive(2, {"cfg": cfg(data, same), "resume": True})
    assert end[0]["digest"] == ranks[0]["digest"]

    from tinyllm.train import TrainConfig, Trainer

    Trainer(TrainConfig.from_dict(cfg(data, run)), resume=True).run(stop_at=4)
    end = drive(3, {"cfg": cfg(data, run), "resume": True})
    assert end[0]["step"] == 6
    assert max_diff(alone, weights(run)) < 1e-12


@pytest.mark.mpi
@needs_mpiexec
def test_a_raising_rank_ends_the_job_quickly(data, tmp_path):
    start = time.monotonic()
    proc = launch(2, [DRIVER, json.dumps({"cfg": cfg(data, tmp_path / "r", max_steps=500),
                                          "raise_on_rank": 1, "raise_at": 2})],
                  timeout=30, check=False)
    took = time.monotonic() - start
    assert proc.returncode != 0
    assert "rank 1 of 2" in proc.stderr and "injected failure on rank 1" in proc.stderr
    assert took < 10, took


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("zero", ["0", "1"])
def test_ctrl_c_stops_every_rank_at_one_step_and_saves(data, tmp_path, zero):
    """With --zero 1 the save gathers the optimizer state from both ranks: it must not hang."""
    run = tmp_path / "run"
    args = ["-m", "tinyllm", "train", "--data", data, "--out", run, "--quiet", "--dropout", "0",
            "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
            "--batch-size", "4", "--max-steps", "100000", "--eval-interval", "100000",
            "--zero", zero]
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, *map(str, args)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (metrics.exists() and metrics.stat().st_size > 300):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the job did not stop after Ctrl-C") from None
    assert proc.returncode != 0
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["step"] > 0 and "interrupted at step" in err, err[-2000:]
    saved = load_file(run / "checkpoint" / "optimizer.safetensors")[0]
    assert len(saved) == 2 * len(weights(run))  # the whole AdamW state: two moments each


STAGED = """
import json
import numpy as np
from tests import fake_cupy
from tinyllm.distributed import MPIComm

with fake_cupy.installed() as cp:
    comm = MPIComm()
    r = comm.rank
    a = cp.asarray(np.arange(6.0) + 10 * r)
    comm.allreduce_(a)
    comm.iallreduce_(b := cp.asarray(np.full(4, r + 1.0))).wait()
    shard = cp.zeros(3)
    comm.reduce_scatter_(cp.asarray(np.arange(6.0) * (r + 1)), shard)
    gathered = cp.asarray(np.where(np.arange(6) // 3 == r, r + 5.0, -1.0))
    comm.allgather_(gathered)
    c = cp.asarray(np.full(2, 7.0 + r))
    comm.broadcast_(c)
    out = [x.get().tolist() for x in (a, b, shard, gathered, c)]
    on_device = all(type(x).__module__.startswith("cupy") for x in (a, b, shard, gathered, c))
    print(json.dumps({"rank": r, "out": out, "on_device": on_device}), flush=True)
"""


@pytest.mark.mpi
@needs_mpiexec
def test_mpi_collectives_stage_device_arrays_through_the_host():
    """Two ranks sharing one GPU over plain MPI: CuPy arrays (here the strict fake) go through
    host copies and come back on the device with the reduced values."""
    proc = launch(2, ["-c", STAGED])
    results = [json.loads(m) for m in re.findall(r'\{"rank".*?\}', proc.stdout)]
    assert sorted(r["rank"] for r in results) == [0, 1], proc.stdout
    for result in results:
        a, b, shard, gathered, c = result["out"]
        assert a == [10.0, 12.0, 14.0, 16.0, 18.0, 20.0] and b == [3.0] * 4
        rank = result["rank"]
        assert shard == [3.0 * i for i in range(3 * rank, 3 * rank + 3)]
        assert gathered == [5.0] * 3 + [6.0] * 3 and c == [7.0, 7.0]
        assert result["on_device"]


NCCL_ONE_RANK = """
import cupy, numpy as np
from tinyllm.distributed import NCCLComm

comm = NCCLComm(cupy)
a = cupy.arange(8, dtype=cupy.float32)
comm.allreduce_(a)
comm.broadcast_(a)
shard = cupy.zeros(8, dtype=cupy.float32)
comm.reduce_scatter_(a, shard)
comm.allgather_(a)
cupy.cuda.get_current_stream().synchronize()
assert (a.get() == np.arange(8)).all() and (shard.get() == np.arange(8)).all()
print("nccl ok", comm.name)
"""


@pytest.mark.gpu
@pytest.mark.mpi
def test_nccl_one_rank_on_a_real_gpu():
    """Where a GPU is lent: every NCCL collective on a one-rank communicator (all one GPU
    allows) leaves device arrays as they are."""
    assert "nccl ok" in launch(1, ["-c", NCCL_ONE_RANK]).stdout


@pytest.mark.gpu
@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("zero", [0, 1])
def test_two_ranks_sharing_a_gpu_train_one_process_model(data, tmp_path, zero):
    """Where a GPU is lent: two MPI ranks on one GPU, reducing through host memory, train the
    model of one process on that GPU (float32; the key bias is noise, see above: 1e-5)."""
    drive(2, {"cfg": cfg(data, tmp_path / "two", "float32", device="cuda"),
              "distributed": "mpi", "zero": zero})
    drive(1, {"cfg": cfg(data, tmp_path / "one", "float32", device="cuda")})
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-5


class RecordingComm:
    """A stand-in rank for GradientReducer without MPI: it records what would be summed, and
    the test sums the ranks' buffers itself (so the ranks can run one after the other)."""

    def __init__(self, rank, size):
        self.rank, self.size, self.started = rank, size, []

    def iallreduce_(self, array):
        from tinyllm.distributed.comm import _Done

        self.started.append(array)
        return _Done()

    def allreduce_(self, array):
        return array


@pytest.mark.parametrize("overlap", [True, False])
def test_bucketed_reduction_gives_the_whole_batch_gradient(overlap):
    """Two ranks' weighted buckets, summed, are the gradient of one process on the whole batch
    (float64, 2 micro-batches, 7 rows split 4 + 3); with overlap every bucket has started
    before backward returns."""
    from tinyllm.distributed import GradientReducer
    from tinyllm.model import GPT, GPTConfig

    config = GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=16,
                       dropout=0.0, dtype="float64")
    tokens = np.random.default_rng(1).integers(0, 50, 400)

    def grads_of(model, loader, reducer=None, comm=None):
        for micro in range(2):
            if reducer:
                reducer.before_backward(0, micro, 2)
            x, y = loader.next_batch()
            (model(x, y)[1] * 0.5).backward()
        if reducer and overlap:
            assert len(comm.started) == len(reducer.buckets)  # all started during backward
        if reducer:
            reducer.reduce(1.0)
        return model

    alone = grads_of(GPT(config, seed=0), BatchLoader(tokens, 7, 8, seed=2))
    ranks = []
    for rank in range(2):
        model = GPT(config, seed=0)
        loader = ShardedLoader(BatchLoader(tokens, 7, 8, seed=2), rank, 2)
        comm = RecordingComm(rank, 2)
        reducer = GradientReducer(model.parameters(), comm, loader.weight, bucket_bytes=4096,
                                  overlap=overlap)
        ranks.append((grads_of(model, loader, reducer, comm), reducer, comm))
    assert len(ranks[0][1].buckets) > 2
    for parts in zip(*(comm.started for _, _, comm in ranks)):  # the all-reduce, by hand
        total = sum(part.copy() for part in parts)
        for part in parts:
            part[...] = total
    for (name, p), q in zip(alone.named_parameters(), ranks[0][0].parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=0, atol=1e-12, err_msg=name)


class _FakeNccl:
    """Records the calls NCCLComm makes to CuPy's NCCL binding (no GPU here)."""

    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 6, 7, 8, 0
    calls = []

    @staticmethod
    def get_unique_id():
        return (1, 2, 3)

    @staticmethod
    def get_version():
        return 21805

    class NcclCommunicator:
        def __init__(self, size, uid, rank):
            _FakeNccl.calls.append(("init", size, uid, rank))

        def allReduce(self, send, recv, count, dtype, op, stream):  # noqa: N802 (CuPy's name)
            _FakeNccl.calls.append(("allReduce", send, recv, count, dtype, op, stream))

        def bcast(self, ptr, count, dtype, root, stream):
            _FakeNccl.calls.append(("bcast", ptr, count, dtype, root, stream))

        def reduceScatter(self, send, recv, count, dtype, op, stream):  # noqa: N802
            _FakeNccl.calls.append(("reduceScatter", send, recv, count, dtype, op, stream))

        def allGather(self, send, recv, count, dtype, stream):  # noqa: N802
            _FakeNccl.calls.append(("allGather", send, recv, count, dtype, stream))


class _FakeCupy:
    class cuda:  # noqa: N801
        nccl = _FakeNccl
        used = []

        class runtime:  # noqa: N801
            @staticmethod
            def getDeviceCount():  # noqa: N802
                return 2

        class Device:
            def __init__(self, n):
                self.n = n

            def use(self):
                _FakeCupy.cuda.used.append(self.n)

        class _Stream:
            ptr, done = 77, True

        @staticmethod
        def get_current_stream():
            return _FakeCupy.cuda._Stream()


class _DeviceArray:
    """Looks like a CuPy array to NCCLComm: a pointer, a size, a dtype, contiguity."""

    def __init__(self, n, dtype, ptr=4242):
        self.size, self.dtype = n, np.dtype(dtype)
        self.data = type("Pointer", (), {"ptr": ptr})()
        self.flags = type("Flags", (), {"c_contiguous": True})()


@pytest.mark.mpi
def test_nccl_communicator_one_rank_calls(monkeypatch):
    """The NCCL path on a one-rank MPI world with CuPy's binding faked: the unique id goes over
    MPI, the GPU is chosen by local rank, the all-reduce is in place (send = receive pointer)
    on the current stream. (The real thing needs GPUs; none was available to this project.)"""
    from tinyllm.distributed import NCCLComm

    monkeypatch.setenv("MPI_LOCALRANKID", "3")
    _FakeNccl.calls.clear()
    comm = NCCLComm(_FakeCupy)
    assert comm.device == 1 and _FakeCupy.cuda.used[-1] == 1  # local rank 3 of 2 GPUs
    assert _FakeNccl.calls == [("init", 1, (1, 2, 3), 0)]
    comm.iallreduce_(_DeviceArray(10, "float32")).wait()
    assert _FakeNccl.calls[-1] == ("allReduce", 4242, 4242, 10, 7, 0, 77)
    comm.broadcast_(_DeviceArray(5, "float64"))
    assert _FakeNccl.calls[-1] == ("bcast", 4242, 5, 8, 0, 77)
    with pytest.raises(TypeError, match="float"):
        comm.allreduce_(_DeviceArray(3, "int64"))
    # ZeRO-1's pair: the summed block of this rank into the shard; the all-gather in place.
    comm.reduce_scatter_(_DeviceArray(12, "float32"), _DeviceArray(12, "float32", ptr=900))
    assert _FakeNccl.calls[-1] == ("reduceScatter", 4242, 900, 12, 7, 0, 77)
    comm.allgather_(_DeviceArray(12, "float32"))
    assert _FakeNccl.calls[-1] == ("allGather", 4242, 4242, 12, 7, 77)
