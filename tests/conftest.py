"""Shared test configuration: hypothesis profiles and the gpu / mpi marks."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(  # for hunting rare failures by hand: HYPOTHESIS_PROFILE=thorough
    "thorough",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _has_gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _has_mpi() -> bool:
    try:
        import mpi4py.MPI  # noqa: F401

        return True
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    gpu = mpi = None
    for item in items:
        if "gpu" in item.keywords:
            gpu = _has_gpu() if gpu is None else gpu
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="needs CuPy and a CUDA GPU"))
        if "mpi" in item.keywords:
            mpi = _has_mpi() if mpi is None else mpi
            if not mpi:
                item.add_marker(pytest.mark.skip(reason="needs mpi4py and an MPI library"))
