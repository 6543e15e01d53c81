"""Communicators: one interface over a single process, MPI (mpi4py) and NCCL (CuPy).

Data-parallel training needs only a handful of collective operations, so that is all this
interface has:

    broadcast_(array)        every rank gets rank 0's values, in place
    allreduce_(array)        every rank gets the element-wise sum over the ranks, in place
    iallreduce_(array)       the same, started now and finished by `request.wait()`
    reduce_scatter_(a, s)    rank r gets block r of the element-wise sum of `a` in `s` (ZeRO-1)
    allgather_(array)        every rank gets every rank's block r of `array`, in place (ZeRO-1)
    bcast(obj)               a small Python value (a path, a decision) from rank 0
    allgather(obj)           a small Python value from every rank, as a list
    abort(code)              end every rank of the job now

`SingleProcess` does nothing (a world of one); `MPIComm` uses MPI.COMM_WORLD; `NCCLComm` keeps
MPI for the small control messages and does the array collectives with NCCL on the GPU, on the
current CUDA stream, so a gradient never makes a round trip through host memory.

mpi4py is imported only when an MPI world is asked for (plain `tinyllm train` never loads it),
and CuPy only through the arrays themselves (autograd.backend is the one module that imports it).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

from autograd.backend import asnumpy, get_array_module, is_cupy_array

INSTALL_HINT = ('data-parallel training needs mpi4py and an MPI library: pip install "tinyllm[mpi]" '
                '(or pip install ".[mpi]" in a checkout), which brings mpi4py and the mpich wheel')

# Set by the launchers: MPICH/hydra (PMI_*), Open MPI (OMPI_*), PMIx, Slurm's srun with PMI.
_WORLD_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
_LOCAL_RANK_VARS = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


def launched_by_mpi() -> bool:
    """True when this process was started by mpiexec (also as `mpiexec ... python -m mpi4py -m
    tinyllm`), so that it should join an MPI world. Looks only at the environment the launcher
    sets: it imports nothing, and a program that merely imported mpi4py is not taken for one."""
    return any(os.environ.get(v) for v in _WORLD_SIZE_VARS) or bool(os.environ.get("PMIX_RANK"))


class _Done:
    """A finished request (what a world of one returns for a non-blocking call)."""

    def wait(self):
        return None

    def test(self):
        return True


class SingleProcess:
    """A world of one process: every collective is the identity."""

    rank, size, local_rank, name = 0, 1, 0, "single process"

    @property
    def is_root(self):
        return self.rank == 0

    def broadcast_(self, array):
        return array

    def allreduce_(self, array):
        return array

    def iallreduce_(self, array):
        return _Done()

    def reduce_scatter_(self, array, shard):
        shard[...] = array
        return shard

    def allgather_(self, array):
        return array

    def bcast(self, obj):
        return obj

    def allgather(self, obj):
        return [obj]

    def barrier(self):
        pass

    def abort(self, code=1):
        os._exit(code)


class MPIComm(SingleProcess):
    """MPI.COMM_WORLD through mpi4py. MPI reads and writes NumPy arrays in place through the
    buffer protocol, with no pickling; CuPy arrays are staged through host memory (so ranks can
    share one GPU, or use GPUs without NCCL, at the price of two copies per collective)."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError:
            raise RuntimeError(INSTALL_HINT) from None
        self.MPI = MPI
        self.world = MPI.COMM_WORLD
        self.rank, self.size = self.world.Get_rank(), self.world.Get_size()
        self.local_rank = _local_rank(self.world)
        self.name = "MPI (" + " ".join(MPI.Get_library_version().split()[:3]) + ")"

    def broadcast_(self, array):
        with _on_host(array) as (host,):
            self.world.Bcast(host, root=0)
        return array

    def allreduce_(self, array):
        with _on_host(array) as (host,):
            self.world.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return array

    def iallreduce_(self, array):
        if is_cupy_array(array):  # staged through host memory: done at once, nothing overlaps
            self.allreduce_(array)
            return _Done()
        return self.world.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)

    def reduce_scatter_(self, array, shard):
        with _on_host(array, shard) as (host, host_shard):
            self.world.Reduce_scatter_block(host, host_shard, op=self.MPI.SUM)
        return shard

    def allgather_(self, array):
        with _on_host(array) as (host,):
            self.world.Allgather(self.MPI.IN_PLACE, host)  # rank r's block in place
        return array

    def bcast(self, obj):
        return self.world.bcast(obj, root=0)

    def allgather(self, obj):
        return self.world.allgather(obj)

    def barrier(self):
        self.world.Barrier()

    def abort(self, code=1):
        sys.stdout.flush()
        sys.stderr.flush()
        # mpiexec forwards each rank's output through a pipe it reads in its own time; Abort
        # makes it kill every rank at once, and what it had not yet read (this rank's error
        # message, typically) is lost. A moment's pause lets it drain the pipe first.
        time.sleep(0.5)
        self.world.Abort(code)


class _StreamRequest:
    """An NCCL collective queued on a CUDA stream: later work on that stream is ordered after it,
    so `wait` has nothing to do for the training loop; `test` asks the stream."""

    def __init__(self, stream):
        self.stream = stream

    def wait(self):
        return None

    def test(self):
        return self.stream.done


class NCCLComm(MPIComm):
    """MPI for control, NCCL for the arrays (CuPy arrays on this rank's GPU).

    Rank 0 makes NCCL's unique id and MPI broadcasts it; every rank then joins the NCCL
    communicator. Each rank takes the GPU numbered by its rank on its machine (local rank), so
    one process drives one GPU. The collectives are queued on the current CUDA stream, the
    stream the engine's kernels run on, so they start when the gradients are ready and the
    optimizer's kernels wait for them, with no host synchronisation in between."""

    def __init__(self, cupy):
        super().__init__()
        self.cupy = cupy
        self.nccl = cupy.cuda.nccl
        n_gpus = cupy.cuda.runtime.getDeviceCount()
        if n_gpus == 0:
            raise RuntimeError("--distributed nccl needs a CUDA GPU on every rank; none found")
        self.device = self.local_rank % n_gpus
        cupy.cuda.Device(self.device).use()
        uid = self.nccl.get_unique_id() if self.rank == 0 else None
        uid = self.world.bcast(uid, root=0)
        self.nccl_comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)
        self.name = f"NCCL {self.nccl.get_version()} on GPU {self.device} (control over MPI)"

    def _args(self, array):
        types = {"float16": self.nccl.NCCL_FLOAT16, "float32": self.nccl.NCCL_FLOAT32,
                 "float64": self.nccl.NCCL_FLOAT64}
        if str(array.dtype) not in types or not array.flags.c_contiguous:
            raise TypeError(f"NCCL collectives take contiguous float arrays, got {array.dtype}")
        stream = self.cupy.cuda.get_current_stream()
        return array.data.ptr, array.size, types[str(array.dtype)], stream

    def broadcast_(self, array):
        if not hasattr(array, "data") or not hasattr(array.data, "ptr"):
            return super().broadcast_(array)  # host arrays go over MPI
        ptr, n, dtype, stream = self._args(array)
        self.nccl_comm.bcast(ptr, n, dtype, 0, stream.ptr)
        return array

    def iallreduce_(self, array):
        ptr, n, dtype, stream = self._args(array)
        self.nccl_comm.allReduce(ptr, ptr, n, dtype, self.nccl.NCCL_SUM, stream.ptr)  # in place
        return _StreamRequest(stream)

    def allreduce_(self, array):
        self.iallreduce_(array)
        return array

    def reduce_scatter_(self, array, shard):
        ptr, _, dtype, stream = self._args(array)
        self.nccl_comm.reduceScatter(ptr, self._args(shard)[0], shard.size, dtype,
                                     self.nccl.NCCL_SUM, stream.ptr)
        return shard

    def allgather_(self, array):
        ptr, n, dtype, stream = self._args(array)
        block = n // self.size  # in place: rank r sends the block it already holds
        mine = ptr + self.rank * block * array.dtype.itemsize
        self.nccl_comm.allGather(mine, ptr, block, dtype, stream.ptr)
        return array


@contextmanager
def _on_host(*arrays):
    """Arrays MPI can read and write in place: NumPy arrays themselves; for CuPy arrays (GPU
    ranks under `--distributed mpi`, e.g. two ranks sharing one GPU) host copies, copied back
    to the device afterwards. That round trip through host memory is what NCCL avoids."""
    hosts = [asnumpy(a) if is_cupy_array(a) else a for a in arrays]
    yield hosts
    for array, host in zip(arrays, hosts):
        if host is not array:
            array[...] = get_array_module(array).asarray(host)


def _local_rank(world):
    """This process's rank among the processes on its machine (to pick a GPU)."""
    for var in _LOCAL_RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    from mpi4py import MPI

    local = world.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks sharing this machine's memory
    rank = local.Get_rank()
    local.Free()
    return rank


def connect(mode: str = "auto", device: str = "cpu"):
    """The communicator for `--distributed MODE`: "off" (one process), "mpi", "nccl", or "auto"
    (MPI when launched by mpiexec, with NCCL for the arrays when training on CUDA; otherwise
    one process, without importing MPI at all)."""
    if mode == "off" or (mode == "auto" and not launched_by_mpi()):
        return SingleProcess()
    if mode == "nccl" or (mode == "auto" and device.startswith("cuda")):
        import numpy as np

        from autograd.backend import get_array_module, to_device

        # CuPy comes from the backend (the one module that imports it), via a device array.
        return NCCLComm(get_array_module(to_device(np.zeros(1), "cuda")))
    return MPIComm()
