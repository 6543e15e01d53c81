"""Optimizers, learning-rate schedules and gradient clipping.

    from autograd import optim
    opt = optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    for step in range(steps):
        loss = ...; opt.zero_grad(); loss.backward()
        optim.clip_grad_norm(model.parameters(), 1.0)
        opt.set_lr(optim.warmup_cosine(step, 3e-4, 100, steps, 3e-5))
        opt.step()
"""

from autograd.optim.adamw import AdamW
from autograd.optim.clip import clip_grad_norm
from autograd.optim.optimizer import Optimizer
from autograd.optim.schedules import constant, linear_decay, warmup_cosine
from autograd.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "AdamW", "clip_grad_norm", "constant", "warmup_cosine",
           "linear_decay"]
