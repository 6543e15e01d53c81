"""Averaging gradients across ranks: a flat buffer in buckets, reduced while backward runs.

Rank r computes the gradient of the mean loss over its own rows of the global batch, g_r. One
process with the whole batch of B rows would compute

    g = sum_r (n_r / B) g_r            (n_r: rows of rank r; n_r = B/N when N divides B)

so each rank scales its gradient by w_r = n_r / B and the ranks SUM: after the all-reduce every
rank holds g, the same numbers a single process gets (up to the order of floating-point sums).

All gradients live in one contiguous buffer, cut into a few buckets of about `bucket_bytes`
each, so the network sees a few large messages instead of one small one per tensor. The buckets
follow the parameters in reverse order of definition, the order in which backward completes
them (the output layer's gradients first, the embedding's last). With `overlap=True` a hook on
each parameter copies its gradient into the buffer as soon as backward has finished it, and
when the last gradient of a bucket arrives the bucket's all-reduce starts (non-blocking), while
backward goes on with the earlier layers. Buckets always start in the same order on every
rank (a bucket waits for those before it), as MPI requires of collectives.
"""

from __future__ import annotations

import numpy as np

from autograd.backend import get_array_module


class LocalGradients:
    """One process: nothing to reduce (the interface the training loop calls)."""

    size = 1

    def before_backward(self, step, micro, n_micro):
        pass

    def reduce(self, loss, stop=False):
        return loss, stop

    def stop_agreed(self, requested):
        return requested

    def clip_(self, params, max_norm):
        """Clip the gradients' global norm to `max_norm`; returns the norm before."""
        from autograd.optim import clip_grad_norm

        return clip_grad_norm(params, max_norm)


class GradientReducer(LocalGradients):
    """Sum-reduce the weighted gradients of `params` over `comm`, bucket by bucket.

    The training loop calls `before_backward(step, micro, n_micro)` before each micro-batch's
    backward and `reduce(loss, stop)` after the last one; afterwards each parameter's `.grad`
    is a view of the reduced buffer, identical on every rank."""

    def __init__(self, params, comm, weight, bucket_bytes=1 << 20, overlap=True,
                 dropout_rng=None, seed=0, pad_to=1):
        self.params, self.comm, self.weight = list(params), comm, float(weight)
        self.size = comm.size
        self.overlap = overlap
        self.dropout_rng, self.seed = dropout_rng, seed
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ValueError(f"one gradient buffer needs one dtype, the parameters have {dtypes}")
        xp = get_array_module(self.params[0].data)
        total = sum(p.size for p in self.params)
        total += -total % pad_to  # zeros at the end, so that the buffer splits into equal shards
        self.buffer = xp.zeros(total, dtype=self.params[0].dtype)
        # Offsets in reverse definition order: the first bucket holds the last parameters.
        self.slices, self.buckets, offset = {}, [], 0
        current, current_start = [], 0
        for p in reversed(self.params):
            self.slices[id(p)] = (offset, offset + p.size)
            current.append(p)
            offset += p.size
            if (offset - current_start) * self.buffer.itemsize >= bucket_bytes:
                self.buckets.append((current_start, offset, current))
                current, current_start = [], offset
        if current:
            self.buckets.append((current_start, offset, current))
        self.bucket_of = {id(p): i for i, (_, _, ps) in enumerate(self.buckets) for p in ps}
        self.comm_seconds = 0.0  # time spent inside MPI calls this step (waits included)
        self._last_micro = False
        self._stop = False
        if overlap:
            for p in self.params:
                p.register_hook(self._hook_for(p))

    # ---- the step -----------------------------------------------------------------------------
    def before_backward(self, step, micro, n_micro):
        if micro == 0:
            self.buffer[...] = 0
            self._missing = [len(ps) for _, _, ps in self.buckets]
            self._requests = [None] * len(self.buckets)
            self._next = 0  # the next bucket to start (buckets start in order)
            self.comm_seconds = 0.0
            if self.dropout_rng is not None:
                # Each rank drops out its own units: a stream of its own per (seed, step, rank),
                # recomputed every step, so a resume at the same world size is exact.
                fresh = np.random.default_rng([self.seed, step, self.comm.rank, 0xD0])
                self.dropout_rng.bit_generator.state = fresh.bit_generator.state
        self._last_micro = micro == n_micro - 1

    def _hook_for(self, p):
        start, end = self.slices[id(p)]

        def hook(grad):
            part = self.buffer[start:end]
            part += grad.reshape(-1)  # micro-batches add up in the buffer
            if self._last_micro:
                bucket = self.bucket_of[id(p)]
                self._missing[bucket] -= 1
                self._start_ready()
            return None
        return hook

    def _start_ready(self):
        """Start every complete bucket whose predecessors have started; poke MPI so that the
        started ones progress (MPICH advances a non-blocking reduction inside MPI calls)."""
        import time

        t0 = time.perf_counter()
        while self._next < len(self.buckets) and self._missing[self._next] == 0:
            self._launch(self._next)
            self._next += 1
        for request in self._requests:
            if request is not None:
                request.test()
        self.comm_seconds += time.perf_counter() - t0

    def _launch(self, i):
        start, end, _ = self.buckets[i]
        part = self.buffer[start:end]
        part *= self.weight
        self._requests[i] = self.comm.iallreduce_(part)

    def reduce(self, loss, stop=False):
        """Finish the gradient reduction; returns (the global batch's loss, whether any rank
        asked to stop). Every parameter's .grad is then the averaged gradient."""
        import time

        t0 = time.perf_counter()
        if not self.overlap:  # gradients gathered after backward, then reduced
            for p in self.params:
                if p.grad is not None:
                    a, b = self.slices[id(p)]
                    self.buffer[a:b] = p.grad.reshape(-1)
        # Buckets not yet started: all of them without overlap, or ones holding a parameter
        # that this step's graph did not reach (its gradient stays zero).
        for i in range(self._next, len(self.buckets)):
            self._launch(i)
        self._next = len(self.buckets)
        scalars = np.array([loss * self.weight, float(stop)], dtype=np.float64)
        self.comm.allreduce_(scalars)  # also a point where every bucket is sure to progress
        for request in self._requests:
            request.wait()
        self.comm_seconds += time.perf_counter() - t0
        for p in self.params:
            a, b = self.slices[id(p)]
            p.grad = self.buffer[a:b].reshape(p.shape)
        self._stop = bool(scalars[1])
        return float(scalars[0]), self._stop

    def stop_agreed(self, requested):
        """Whether to stop before the next step: the decision every rank took together at the
        last reduction (a Ctrl-C that arrived since is counted at the next one)."""
        return self._stop


class ShardedLoader:
    """This rank's rows of each global batch of `loader` (a BatchLoader).

    Every rank draws the same global batch (the window starts depend only on the seed and the
    step) and keeps rows `rows` of it; the ranks' rows are disjoint and cover the batch, so N
    ranks see exactly the batch one process sees. The state is the global loader's, so a run
    resumes at any world size."""

    def __init__(self, loader, rank, size):
        if loader.batch_size < size:
            raise ValueError(f"--batch-size {loader.batch_size} is smaller than the number of "
                             f"ranks ({size}): every rank needs at least one row")
        self.loader = loader
        self.rows = np.array_split(np.arange(loader.batch_size), size)[rank]
        self.weight = len(self.rows) / loader.batch_size  # this rank's share of the batch

    def next_batch(self):
        x, y = self.loader.next_batch()
        return x[self.rows], y[self.rows]

    @property
    def step(self):
        return self.loader.step

    @step.setter
    def step(self, value):
        self.loader.step = value

    def state_dict(self):
        return self.loader.state_dict()

    def load_state_dict(self, state):
        self.loader.load_state_dict(state)
