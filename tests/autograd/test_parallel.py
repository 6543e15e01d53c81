"""The element-wise thread pool (autograd/parallel.py): every block is done exactly once, errors
reach the caller, and blocks that make matrix products run with the BLAS held to one thread."""

import threading

import pytest

from autograd import parallel


@pytest.fixture
def two_threads():
    before = parallel.num_threads()
    parallel.set_num_threads(2)
    yield
    parallel.set_num_threads(before)


def test_every_block_runs_once_on_two_threads(two_threads):
    seen, threads = [], set()

    def work(i):
        seen.append(i)
        threads.add(threading.get_ident())

    parallel.run_blocks(work, list(range(10)))
    assert sorted(seen) == list(range(10))
    assert len(threads) == 2


def test_an_error_in_a_pool_thread_reaches_the_caller(two_threads):
    def work(i):
        if i == 9:  # the last run goes to the pool thread
            raise KeyError("block 9")

    with pytest.raises(KeyError, match="block 9"):
        parallel.run_blocks(work, list(range(10)))


def test_blas_is_held_to_one_thread_inside_and_restored_after(two_threads):
    blas = parallel.openblas_threads()
    if blas is None:
        pytest.skip("the BLAS's thread count cannot be set here (not OpenBLAS on Linux)")
    get_threads, _ = blas
    before = get_threads()
    inside = []
    parallel.run_blocks(lambda i: inside.append(get_threads()), list(range(4)), uses_blas=True)
    assert inside == [1, 1, 1, 1]
    assert get_threads() == before


def test_set_num_threads_refuses_nonsense():
    with pytest.raises(ValueError, match="positive int"):
        parallel.set_num_threads(0)


def test_adamw_in_blocks_on_two_threads_matches_one_thread(monkeypatch):
    """AdamW's blocks on two threads (each with scratch of its own) give the same weights."""
    import numpy as np

    import autograd as ag
    from autograd import backend

    monkeypatch.setattr(backend, "BLOCK_ELEMENTS", 7)  # many ragged blocks per parameter
    before = parallel.num_threads()
    rng = np.random.default_rng(0)
    start, grads = rng.standard_normal((5, 9)), rng.standard_normal((3, 5, 9))
    results = []
    try:
        for threads in (1, 2):
            parallel.set_num_threads(threads)
            p = ag.tensor(start.copy(), requires_grad=True)
            opt = ag.optim.AdamW([p], lr=0.1, weight_decay=0.1)
            for g in grads:
                p.grad = g.copy()
                opt.step()
            results.append(p.data)
    finally:
        parallel.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.allclose(results[0], start)


def test_the_pool_shortens_the_default_switch_interval_but_keeps_a_chosen_one(two_threads):
    """A pool thread waiting for the GIL asks for it after the switch interval: the pool sets
    0.1 ms when it starts, where the program left the default 5 ms, and keeps any other value."""
    import sys

    before = sys.getswitchinterval()
    try:
        for chosen, expected in ((parallel.DEFAULT_SWITCH_INTERVAL, parallel.POOL_SWITCH_INTERVAL),
                                 (0.002, 0.002)):
            sys.setswitchinterval(chosen)
            parallel.set_num_threads(2)  # a fresh pool: it starts with the next blocks
            parallel.run_blocks(lambda blk: None, [0, 1])
            assert sys.getswitchinterval() == pytest.approx(expected)
    finally:
        sys.setswitchinterval(before)
