"""Learning-rate schedules: plain functions from the step number (0, 1, 2, ...) to a learning
rate (a Python float). Set it on the optimizer once per step:

    for step in range(total_steps):
        opt.set_lr(warmup_cosine(step, max_lr=6e-4, warmup_steps=100, total_steps=total_steps,
                                 min_lr=6e-5))
        ...; opt.step()

Why warm up: at step 0 Adam's second-moment estimate rests on a single gradient, and a full-size
step taken on it can throw the weights somewhere bad; a few hundred small steps let the
estimates settle. Why decay: a smaller lr at the end averages out gradient noise and settles
into a minimum instead of bouncing around it.

Only `math` is used, never NumPy: a NumPy float64 learning rate would promote float32 updates.
"""

from __future__ import annotations

import math


def constant(step, lr):
    """The same lr at every step."""
    return float(lr)


def _warmup(step, max_lr, warmup_steps):
    # Step 0 already gets a small nonzero lr (a zero-lr step would be wasted); the last warmup
    # step, warmup_steps - 1, reaches max_lr.
    return max_lr * (step + 1) / warmup_steps


def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    """Linear warmup from max_lr / warmup_steps to max_lr over steps 0 .. warmup_steps - 1, then
    half a cosine from max_lr (at step warmup_steps) down to min_lr (at step total_steps), then
    min_lr for ever after (the floor)."""
    if step < warmup_steps:
        return float(_warmup(step, max_lr, warmup_steps))
    if step >= total_steps:
        return float(min_lr)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)  # 0 -> 1
    return float(min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress)))


def linear_decay(step, max_lr, total_steps, min_lr=0.0, warmup_steps=0):
    """Linear warmup (as in `warmup_cosine`) over `warmup_steps`, then a straight line from
    max_lr (at step warmup_steps) to min_lr (at step total_steps), then min_lr."""
    if step < warmup_steps:
        return float(_warmup(step, max_lr, warmup_steps))
    if step >= total_steps:
        return float(min_lr)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return float(max_lr + (min_lr - max_lr) * progress)
