"""ZeRO-1 (`--zero 1`): every rank keeps the AdamW state of only one N-th of the parameters.

Plain data parallelism repeats the whole optimizer on every rank: AdamW's two moment buffers
are twice the model, on each of N ranks. ZeRO stage 1 (Rajbhandari et al., 2020) cuts that to
1/N per rank, with the same network traffic as an all-reduce:

    1. reduce-scatter   the flat gradient buffer is summed over the ranks, and rank r receives
                        only its shard [r*S, (r+1)*S) of the sum (S = padded size / N);
    2. clip             the global gradient norm from the shards: sqrt(sum_r |shard_r|^2);
    3. update           rank r runs AdamW on its shard of the parameters, with the moments of
                        that shard only;
    4. all-gather       every rank's updated shard is sent to every rank, so all hold the whole,
                        identical, model again.

An all-reduce is a reduce-scatter followed by an all-gather, so 1 + 4 move the bytes one
all-reduce would. The result is the model plain data parallelism trains (AdamW is element-wise:
updating a shard is updating those elements).

The parameters become views of one flat buffer laid out as the gradient buffer, so a shard of
the parameters is a slice of that buffer and the all-gather writes straight into the model. The
shard cuts through parameters; each piece of a parameter that falls in this rank's shard becomes
a small tensor (a view), and an ordinary AdamW steps those pieces, each in its parameter's group
(weight decay or not). Checkpoints gather the moments into the usual per-parameter AdamW state,
so a ZeRO run resumes at any world size, with or without `--zero`.
"""

from __future__ import annotations

import math
from contextlib import ExitStack

import numpy as np

from autograd import optim
from autograd.backend import get_array_module
from autograd.function import modifying
from autograd.tensor import Tensor
from tinyllm.distributed.gradients import GradientReducer


class ShardedGradients(GradientReducer):
    """Reduce-scatter instead of all-reduce: after `reduce`, this rank holds `shard`, its part
    of the summed gradient, and no parameter has a `.grad` (the whole sum exists nowhere)."""

    def __init__(self, params, comm, weight, dropout_rng=None, seed=0):
        # One bucket, reduced after backward: the shards cut across buckets anyway.
        super().__init__(params, comm, weight, bucket_bytes=1 << 62, overlap=False,
                         dropout_rng=dropout_rng, seed=seed, pad_to=comm.size)
        n = self.buffer.size // comm.size
        self.lo, self.hi = comm.rank * n, (comm.rank + 1) * n
        self.shard = get_array_module(self.buffer).zeros(n, dtype=self.buffer.dtype)

    def reduce(self, loss, stop=False):
        import time

        t0 = time.perf_counter()
        for p in self.params:
            a, b = self.slices[id(p)]
            self.buffer[a:b] = 0 if p.grad is None else p.grad.reshape(-1)
            p.grad = None
        self.buffer *= self.weight
        self.comm.reduce_scatter_(self.buffer, self.shard)
        scalars = np.array([loss * self.weight, float(stop)], dtype=np.float64)
        self.comm.allreduce_(scalars)
        self.comm_seconds = time.perf_counter() - t0
        self._stop = bool(scalars[1])
        return float(scalars[0]), self._stop

    def clip_(self, params, max_norm):
        """Clip the global gradient norm, as optim.clip_grad_norm does over whole gradients:
        the squares are summed on each shard, then over the ranks."""
        xp = get_array_module(self.shard)
        square = np.array([float(xp.dot(self.shard, self.shard))], dtype=np.float64)
        self.comm.allreduce_(square)
        norm = math.sqrt(float(square[0]))
        coef = float(max_norm) / (norm + 1e-6)
        if coef < 1.0:
            self.shard *= coef
        return norm


class ShardedAdamW:
    """AdamW over this rank's shard of the parameters (see the module's docstring).

    `groups` are the optimizer groups of the whole model (as tinyllm.train.param_groups makes
    them); `state_dict` / `load_state_dict` speak the format of an AdamW over those groups, so
    checkpoints do not depend on the world size. Both are collectives: every rank calls them."""

    collective = True  # saving needs every rank (tinyllm.train saves only at agreed stops)

    def __init__(self, groups, grads: ShardedGradients, comm, **hyper):
        self.comm, self.grads = comm, grads
        self.whole = optim.AdamW(groups, **hyper)  # the format of the state; holds no moments
        self.params = [p for g in self.whole.param_groups for p in g["params"]]
        self.flat = get_array_module(grads.buffer).zeros_like(grads.buffer)
        for p in self.params:  # each parameter becomes a view of the flat buffer
            a, b = grads.slices[id(p)]
            self.flat[a:b] = p.data.reshape(-1)
            p.data = self.flat[a:b].reshape(p.shape)
        lo, hi = grads.lo, grads.hi
        self.pieces = []  # (parameter, its first element in the piece, flat offset, piece)
        shard_groups = []  # one per group of the whole model, in order (some may be empty)
        for group in self.whole.param_groups:
            mine = []
            for p in group["params"]:
                a, b = grads.slices[id(p)]
                start, end = max(a, lo), min(b, hi)
                if start < end:
                    piece = Tensor(self.flat[start:end], requires_grad=True)
                    piece.grad = grads.shard[start - lo:end - lo]  # a view: always current
                    self.pieces.append((p, start - a, start, piece))
                    mine.append(piece)
            shard_groups.append({**group, "params": mine})
        self.shard = optim.AdamW(shard_groups, **hyper)

    @property
    def param_groups(self):
        return self.shard.param_groups

    def set_lr(self, lr):
        self.shard.set_lr(lr)
        self.whole.set_lr(lr)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        """Update this rank's shard, then gather every rank's shard into every model."""
        self.shard.step()
        with ExitStack() as stack:  # the model's weights change: their versions go up
            for p in self.params:
                stack.enter_context(modifying(p))
            self.comm.allgather_(self.flat)

    # ---- checkpoints: the whole AdamW state, gathered ---------------------------------------
    def state_dict(self):
        """The state an AdamW over the whole model would have (a collective)."""
        xp = get_array_module(self.flat)
        mine = [self.shard.state[piece] for *_, piece in self.pieces if piece in self.shard.state]
        names = self.comm.bcast(sorted(k for k, v in (mine[0] if mine else {}).items()
                                       if hasattr(v, "shape")))
        step = int(max(self.comm.allgather(mine[0]["step"] if mine else 0)))
        gathered = {}
        for name in names:  # exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad)
            flat = xp.zeros_like(self.flat)
            for *_, start, piece in self.pieces:
                flat[start:start + piece.size] = self.shard.state[piece][name]
            self.comm.allgather_(flat)
            gathered[name] = flat
        self.whole.state = {}
        if step:
            for p in self.params:
                a, b = self.grads.slices[id(p)]
                self.whole.state[p] = {"step": step, **{name: flat[a:b].reshape(p.shape)
                                                        for name, flat in gathered.items()}}
        for whole, shard in zip(self.whole.param_groups, self.shard.param_groups):
            whole.update({k: v for k, v in shard.items() if k != "params"})
        state, self.whole.state = self.whole.state_dict(), {}  # the caller saves, then drops it
        return state

    def load_state_dict(self, state_dict):
        """Take this rank's shard of a whole-model AdamW state (from any world size)."""
        self.whole.load_state_dict(state_dict)  # checks groups and shapes
        self.shard.state = {}
        for p, first, _, piece in self.pieces:
            saved = self.whole.state.get(p)
            if saved:
                self.shard.state[piece] = {
                    k: (v.reshape(-1)[first:first + piece.size].copy() if hasattr(v, "shape")
                        else v) for k, v in saved.items()}
        for whole, shard in zip(self.whole.param_groups, self.shard.param_groups):
            shard.update({k: v for k, v in whole.items() if k != "params"})
        self.whole.state = {}  # the whole moments are not kept: that is the point
