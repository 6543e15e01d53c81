"""Modules: layers that own their parameters, composed into models.

    from autograd import nn
    model = nn.Sequential(nn.Linear(2, 64), nn.Linear(64, 2))
    dict(model.named_parameters())   # {"0.weight": ..., "0.bias": ..., "1.weight": ..., ...}

See module.py for how a module finds its parameters and layers.py for the initialisation.
"""

from autograd.nn.attention import CausalSelfAttention
from autograd.nn.layers import (
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    RMSNorm,
    default_rng,
    manual_seed,
)
from autograd.nn.lora import LoRALinear, disable_adapters, lora_layers
from autograd.nn.module import (
    LoadResult,
    Module,
    ModuleList,
    Parameter,
    Sequential,
    StateDictError,
)
from autograd.nn.shards import ThreadShards, replicate

__all__ = [
    "Module", "Parameter", "Sequential", "ModuleList", "LoadResult", "StateDictError",
    "Linear", "Embedding", "LayerNorm", "RMSNorm", "Dropout", "CausalSelfAttention",
    "manual_seed", "default_rng",
    "LoRALinear", "disable_adapters", "lora_layers",
    "ThreadShards", "replicate",
]
