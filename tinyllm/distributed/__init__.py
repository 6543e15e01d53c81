"""Data-parallel training over MPI processes (CPUs) or NCCL (GPUs).

    mpiexec -n 4 tinyllm train ...            # 4 processes on this machine
    mpiexec -f hosts -n 16 tinyllm train ...  # across machines (MPICH host file)

Every rank holds the whole model (and, unless `--zero 1` shards it, the whole optimizer). Each
step all ranks draw the same global batch of `--batch-size` rows and each keeps its own slice
(`ShardedLoader`); after backward the gradients are summed with weights, in a few buckets,
while backward is still running (`GradientReducer`); then every rank applies the same update
to the same weights, so they stay identical without ever being sent again. Evaluation is
shared (each rank scores every N-th window, the sums are reduced); rank 0 alone writes: logs,
samples, checkpoints, metrics. The result is the model one process would train on the same
global batch (exactly in arithmetic; in floating point up to the order of the sums).

How the pieces are wired into tinyllm.train: `connect()` picks the communicator, `setup()`
builds the trainer on every rank (rank 0 first; the others then open the run it made), and
`guard()` turns an error on any one rank into the end of the whole job instead of a hang.
"""

from __future__ import annotations

import hashlib
import sys
import traceback
from contextlib import contextmanager

import numpy as np

from autograd.backend import asnumpy
from tinyllm.distributed.comm import (  # noqa: F401  (the public names of the package)
    INSTALL_HINT,
    MPIComm,
    NCCLComm,
    SingleProcess,
    connect,
    launched_by_mpi,
)
from tinyllm.distributed.gradients import GradientReducer, LocalGradients, ShardedLoader  # noqa: F401

STOPPED_AT_BOUNDARY = "stopped at a step boundary"  # as tinyllm.train raises it

MODES = ("auto", "off", "mpi", "nccl")


def add_flags(parser):
    """The `--distributed` and `--bucket-mb` flags of `tinyllm train`."""
    group = parser.add_argument_group("data-parallel (under mpiexec)")
    group.add_argument("--distributed", choices=MODES, default="auto",
                       help="auto: join the MPI world when started by mpiexec (NCCL for the "
                            "arrays on cuda), else one process; off: always one process")
    group.add_argument("--bucket-mb", type=float, default=1.0, metavar="MB",
                       help="gradient all-reduce bucket size in MiB (default: 1)")
    group.add_argument("--no-overlap", dest="overlap", action="store_false",
                       help="reduce gradients after backward instead of during it")
    group.add_argument("--zero", type=int, choices=(0, 1), default=0,
                       help="1: shard the AdamW state over the ranks (ZeRO stage 1: each rank "
                            "keeps 1/N of the moments; checkpoints still hold the whole state). "
                            "The gradients are then reduce-scattered after backward in one "
                            "piece: --bucket-mb and overlap do not apply")


def weights_digest(model) -> str:
    """SHA-256 of every parameter's bytes, in order: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(np.ascontiguousarray(asnumpy(p.data)).tobytes())
    return h.hexdigest()


def check_identical(comm, model, when):
    """Raise RuntimeError unless every rank holds bit-identical weights."""
    digests = comm.allgather(weights_digest(model))
    if len(set(digests)) > 1:
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        raise RuntimeError(f"{when}: the weights of rank(s) {differ} differ from rank 0's")
    return digests[0]


def setup(comm, trainer_class, cfg, resume=False, bucket_mb=1.0, overlap=True, zero=0):
    """This rank's trainer (`trainer_class` is tinyllm.train's Trainer). Rank 0 builds it as
    the user asked, making or resuming the run folder; the other ranks then resume that folder
    with rank 0's configuration, quietly and without writing (the folder must be on a file
    system every rank sees). Rank 0's weights are broadcast and checked by hash, each rank's
    loader takes its slice of the global batch, and a GradientReducer averages the gradients
    (with `zero=1`, ShardedGradients and ShardedAdamW: see tinyllm.distributed.zero)."""
    if comm.size == 1:
        trainer = trainer_class(cfg, resume=resume)
        if zero:
            trainer.log("note: --zero 1 shards the optimizer over MPI ranks; in one process "
                        "there is nothing to shard (start it with mpiexec -n N)")
        return trainer
    from dataclasses import asdict, replace

    if comm.is_root:
        trainer = trainer_class(cfg, resume=resume, dist=comm)
        comm.bcast(asdict(trainer.cfg))
    else:
        saved = comm.bcast(None)
        mine = replace(type(cfg).from_dict(saved), progress=False)
        trainer = trainer_class(mine, resume=True, log=lambda message: None, dist=comm)
    for p in trainer.model.parameters():
        comm.broadcast_(p.data)
    check_identical(comm, trainer.model, "after the broadcast of rank 0's weights")
    sharded = ShardedLoader(trainer.train_loader, comm.rank, comm.size)
    trainer.train_loader = sharded
    dropout_rng = trainer.model.rng if trainer.model_cfg.dropout > 0 else None
    if zero:
        from tinyllm.distributed.zero import ShardedAdamW, ShardedGradients
        from tinyllm.train import param_groups

        trainer.grads = ShardedGradients(trainer.model.parameters(), comm, sharded.weight,
                                         dropout_rng=dropout_rng, seed=trainer.cfg.seed)
        c = trainer.cfg
        sharded_adamw = ShardedAdamW(param_groups(trainer.model, c.weight_decay), trainer.grads,
                                     comm, lr=c.lr, betas=(c.beta1, c.beta2))
        sharded_adamw.load_state_dict(trainer.optimizer.state_dict())  # this rank's shard
        trainer.optimizer = sharded_adamw
        how = f"ZeRO-1: AdamW state sharded, {trainer.grads.shard.size:,} values a rank"
    else:
        trainer.grads = GradientReducer(
            trainer.model.parameters(), comm, sharded.weight,
            bucket_bytes=int(bucket_mb * (1 << 20)), overlap=overlap, dropout_rng=dropout_rng,
            seed=trainer.cfg.seed)
        how = (f"{len(trainer.grads.buckets)} gradient buckets"
               + (", reduced during backward" if overlap else ""))
    if comm.is_root:
        trainer.log(f"data-parallel: {comm.size} ranks over {comm.name}; global batch "
                    f"{trainer.cfg.batch_size} ({len(sharded.rows)} rows on rank 0), {how}")
    return trainer


@contextmanager
def guard(comm):
    """Run a command so that no rank can leave the others waiting forever.

    MPI's default is to hang: a rank that dies leaves the rest blocked in their next collective.
    Here an exception on any rank is printed (named by its rank) and the whole job is aborted,
    which mpiexec turns into the end of every rank within a second or so. A Ctrl-C is left to
    the training loop, which stops every rank at the same step boundary (see GradientReducer's
    `stop_agreed`); a second Ctrl-C aborts at once."""
    if comm.size == 1:
        yield comm
        return
    try:
        yield comm
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            print(f"tinyllm (rank {comm.rank} of {comm.size}): exiting with {exit_.code}; "
                  "ending the job", file=sys.stderr)
            comm.abort(exit_.code if isinstance(exit_.code, int) else 1)
        raise
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            if str(err) == STOPPED_AT_BOUNDARY:
                raise  # every rank stopped at the same step, and rank 0 saved: a clean end
            print(f"tinyllm (rank {comm.rank}): interrupted; ending the job", file=sys.stderr)
            comm.abort(130)
        print(f"tinyllm (rank {comm.rank} of {comm.size}): error: {type(err).__name__}: {err}",
              file=sys.stderr)
        if _debug():
            traceback.print_exc()
        print("ending the job on every rank", file=sys.stderr)
        comm.abort(1)


def _debug():
    import os

    return bool(os.environ.get("TINYLLM_DEBUG"))
