"""Data parallelism on threads: one batch cut into shards, each shard's forward and backward on
a thread of its own, in one process.

Why. At small sizes a training step is many short NumPy calls. Spread over the BLAS's threads,
each matrix product is too small to keep two cores busy, and the element-wise work between the
products mostly runs on one core. Two processes of one thread each (tinyllm's MPI training) ran
a GPT with 0.8M weights 1.33x faster than one process of two threads. Threads recover most of
that within one process: a NumPy call (and a BLAS call) releases the GIL while it computes, so
two shards' calls overlap, and only Python's bookkeeping between the calls takes turns.

How.
- `replicate(module)` makes a twin of the module tree whose parameters are new `Parameter`s
  over the *same* arrays: no memory for weights, but its own `.grad`s and its own graph.
- `ThreadShards.run(loss_fn, parts)`: shard 0 runs `loss_fn(model, parts[0])` and its backward
  on the calling thread, shard k on the k-th twin on a thread of its own; then each twin's
  gradients are added into the model's `.grad`, in shard order, so the result is the same on
  every run. When each shard's loss is weighted by its share of the batch, the losses add up to
  the whole batch's loss and the gradients to the whole batch's gradient.
- While the shards run, each thread's BLAS is held to threads // n threads (OpenBLAS's count is
  process-wide, MKL's is set per thread), and autograd.parallel's pool is not used.
- Random numbers: a twin's modules hold a generator of their own where the model's modules hold
  the model's (dropout masks); `seed` sets them, so a caller can make every step reproducible.
- Hooks registered on the model's parameters see shard 0's gradient only (the twins' arrive
  afterwards, added in): gradient hooks that must see the whole batch's gradient (tinyllm's
  MPI all-reduce) need one shard.
"""

from __future__ import annotations

import contextvars
import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from autograd import blas, parallel
from autograd.nn.module import Module, Parameter


def replicate(module: Module, swap: dict | None = None) -> Module:
    """A copy of `module`'s tree of modules sharing its parameters' arrays. Each module is a
    shallow copy (its settings shared); each Parameter becomes a new Parameter over the same
    array (a parameter tied to two places stays tied); any other attribute `is` a key of `swap`
    ({id(old): new}) is replaced by the value."""
    swap = swap or {}
    made = {}

    def twin(obj):
        if id(obj) in made:
            return made[id(obj)]
        if isinstance(obj, Parameter):
            new = Parameter(obj.data, requires_grad=obj.requires_grad, name=obj.name)
        else:
            new = copy.copy(obj)
            for name, value in vars(obj).items():
                if isinstance(value, (Module, Parameter)):
                    setattr(new, name, twin(value))
                elif id(value) in swap:
                    setattr(new, name, swap[id(value)])
        made[id(obj)] = new
        return new

    return twin(module)


class ThreadShards:
    """Forward and backward of a batch as `n` shards on `n` threads (see the module docstring).
    `rng`: the model's generator, which each twin's modules use one of their own in place of
    (None: nothing is swapped). `threads`: the cores to share out (default: all this process
    may use)."""

    def __init__(self, model: Module, n: int, rng=None, threads: int | None = None):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"ThreadShards: n must be a positive int, got {n!r}")
        self.model, self.n = model, n
        self.rngs = [np.random.default_rng(k) for k in range(1, n)]
        self.twins = [replicate(model, {} if rng is None else {id(rng): r}) for r in self.rngs]
        twin_params = [dict(t.named_parameters()) for t in self.twins]
        self._params = [(p, [tp[name] for tp in twin_params])
                        for name, p in model.named_parameters()]
        twin_modules = [t.modules() for t in self.twins]
        self._modules = [(m, [tm[i] for tm in twin_modules])
                         for i, m in enumerate(model.modules())]
        self.blas_threads = max(1, (threads or parallel.cpu_threads()) // n)
        self._pool = None

    def seed(self, seeds) -> None:
        """Reset the twins' generators: twin k's to np.random.default_rng(seeds[k - 1])."""
        for rng, s in zip(self.rngs, seeds):
            rng.bit_generator.state = np.random.default_rng(s).bit_generator.state

    def run(self, loss_fn, parts, backward=True) -> list:
        """For each shard k: loss_k = loss_fn(module_k, parts[k]) (the model for k = 0, twin k
        after), then loss_k.backward() unless backward=False. Returns the losses as floats.
        The twins' gradients end up added into the model's parameters' `.grad`. If a shard
        raises, the error is raised once all have finished; the twins' gradients are dropped,
        and the model's hold whatever shard 0 got to (a caller that retries zeroes them)."""
        if len(parts) != self.n:
            raise ValueError(f"ThreadShards.run: {len(parts)} parts for {self.n} shards")
        self._align()
        modules = [self.model, *self.twins]
        futures = [self._executor().submit(contextvars.copy_context().run, self._one,
                                           loss_fn, modules[k], parts[k], backward)
                   for k in range(1, self.n)]
        openblas = parallel.openblas_threads()
        before = openblas[0]() if openblas else None
        mkl_before = blas.set_threads_here(self.blas_threads)
        errors, losses = [], [None] * self.n
        try:
            if openblas:
                openblas[1](self.blas_threads)
            losses[0] = self._one(loss_fn, self.model, parts[0], backward)
        except BaseException as e:  # the other shards must still finish before anything else
            errors.append(e)
        finally:
            for k, f in enumerate(futures, start=1):
                try:
                    losses[k] = f.result()
                except BaseException as e:
                    errors.append(e)
            if openblas:
                openblas[1](before)
            blas.set_threads_here(mkl_before)
        if errors:
            self._clear_twins()
            raise errors[0]
        if backward:
            self._gather()
        return losses

    def close(self) -> None:
        """Stop the worker threads (a later `run` starts them again)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # ---- inside -------------------------------------------------------------------------------
    @staticmethod
    def _one(loss_fn, module, part, backward):
        with parallel.inline():  # this thread is one of the n working: no pool under it
            loss = loss_fn(module, part)
            if backward:
                loss.backward()
        return float(loss.item())

    def _executor(self):
        if self._pool is None:
            parallel.shorten_switch_interval()  # as the pool does, and for the same reason
            self._pool = ThreadPoolExecutor(self.n - 1, thread_name_prefix="autograd-shard",
                                            initializer=blas.set_threads_here,
                                            initargs=(self.blas_threads,))
        return self._pool

    def _align(self):
        """The twins as the model is now: same arrays (an update may have replaced one), same
        trainable flags, same training mode, and no gradients yet."""
        for p, qs in self._params:
            for q in qs:
                q.data, q.requires_grad, q.grad = p.data, p.requires_grad, None
        for m, twins in self._modules:
            for t in twins:
                t.training = m.training

    def _gather(self):
        for p, qs in self._params:
            for q in qs:
                if q.grad is None:
                    continue
                if p.grad is None:
                    p.grad = q.grad
                else:
                    p.grad += q.grad
                q.grad = None

    def _clear_twins(self):
        for _, qs in self._params:
            for q in qs:
                q.grad = None
