"""autograd: a small reverse-mode automatic differentiation engine over NumPy (or CuPy) arrays,
with every backward pass written by hand.

    import autograd as ag
    x = ag.tensor(np.ones((2, 3)), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    x.grad  # 2 * x
"""

from autograd._clash import check_package_folder as _check_package_folder
from autograd.backend import get_default_device, set_default_device
from autograd.function import Context, Function
from autograd.grad_mode import enable_grad, is_grad_enabled, no_grad
from autograd.memory import keep_freed_memory as _keep_freed_memory
from autograd.ops.elementwise import where
from autograd.ops.shape import concatenate, split, stack
from autograd.tensor import Tensor, get_default_dtype, set_default_dtype, tensor

# tinyllm looks for this exact line before it trusts `import autograd` (HIPS autograd has the
# same package name; see tinyllm/_engine_check.py), and we stop if HIPS's files share our folder.
__tinyllm_engine__ = True
_check_package_folder(__path__[0])
# Freed arrays stay with the process for the next step's arrays (autograd/memory.py).
_keep_freed_memory()

__all__ = [
    "Tensor", "tensor", "Function", "Context", "no_grad", "enable_grad", "is_grad_enabled",
    "set_default_device", "get_default_device", "set_default_dtype", "get_default_dtype",
    "concatenate", "stack", "split", "where", "gradcheck", "GradcheckError",
    "functional", "nn", "optim",
]

_LAZY = {
    "gradcheck": ("autograd.testing.gradcheck", "gradcheck"),
    "GradcheckError": ("autograd.testing.gradcheck", "GradcheckError"),
    "functional": ("autograd.functional", None),
    "nn": ("autograd.nn", None),
    "optim": ("autograd.optim", None),
    "debug": ("autograd.debug", None),
    "testing": ("autograd.testing", None),
}


def __getattr__(name):
    # Submodules load on first use, so `import autograd` stays fast.
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'autograd' has no attribute {name!r}")
