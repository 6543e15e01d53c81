"""Per-op overhead of the engine: microseconds for `a + b` on 1-element arrays, forward plus
backward, against plain NumPy's `a + b`. Prints one JSON line.

    python benchmarks/bench_overhead.py [--repeat 20000]
"""

import argparse
import json
import time

import numpy as np

import autograd as ag


def best_of(fn, repeat, rounds=5):
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20000)
    args = parser.parse_args()
    a = ag.tensor(np.ones(1, dtype=np.float32), requires_grad=True)
    b = ag.tensor(np.ones(1, dtype=np.float32), requires_grad=True)
    an, bn = a.data, b.data
    grad = np.ones(1, dtype=np.float32)

    def forward_backward():
        (a + b).backward(grad)

    def forward_only():
        return a + b

    def forward_no_grad():
        with ag.no_grad():
            return a + b

    print(json.dumps({
        "benchmark": "op_overhead",
        "op": "a + b, 1 element, float32",
        "forward_backward_us": round(best_of(forward_backward, args.repeat), 3),
        "forward_us": round(best_of(forward_only, args.repeat), 3),
        "forward_no_grad_us": round(best_of(forward_no_grad, args.repeat), 3),
        "numpy_add_us": round(best_of(lambda: an + bn, args.repeat), 3),
    }))


if __name__ == "__main__":
    main()
