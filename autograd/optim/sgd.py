"""Stochastic gradient descent, with momentum, Nesterov momentum and (L2) weight decay."""

from __future__ import annotations

from autograd.backend import get_array_module
from autograd.optim.optimizer import Optimizer


class SGD(Optimizer):
    """p <- p - lr * d, with d built from the gradient g as in PyTorch's SGD:

        g' = g + weight_decay * p            (L2 decay: added to the gradient, "coupled")
        without momentum:  d = g'
        with momentum mu:  buf = mu * buf + g'   (buf = g' on the first step)
                           d = buf                (classical / heavy ball)
                           d = g' + mu * buf      (nesterov=True: look one step ahead)

    Momentum averages the recent gradients, so steps grow along directions the gradients agree
    on and cancel along directions where they flip sign.
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        if momentum < 0.0:
            raise ValueError(f"invalid momentum {momentum}")
        if nesterov and momentum <= 0.0:
            raise ValueError("nesterov=True needs a momentum > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay))

    def update(self, p, grad, group, state):
        xp = get_array_module(p.data)
        # Python floats, never NumPy float64 scalars: those would promote float32 arithmetic.
        lr, mu, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        s = self.scratch(p)
        d = grad
        if wd != 0.0:
            d = xp.multiply(p.data, wd, out=s)  # s = wd * p
            d += grad  # s = g + wd * p  (p.grad itself is left alone)
        if mu == 0.0:
            _descend(p.data, d, lr, s)
            return
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = d.copy()
        else:
            buf *= mu
            buf += d
        if group["nesterov"]:
            # p - lr * (g' + mu * buf), as two in-place steps so that one scratch suffices
            _descend(p.data, d, lr, s)
            _descend(p.data, buf, lr * mu, s)
        else:
            _descend(p.data, buf, lr, s)


def _descend(data, direction, scale, scratch):
    """data -= scale * direction, in place, through `scratch` (which may be `direction`)."""
    xp = get_array_module(data)
    xp.multiply(direction, scale, out=scratch)
    data -= scratch
