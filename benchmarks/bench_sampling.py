"""Sampling speed past the block size: tokens per second of a RoPE model with the rolling KV
cache against recomputing the last block every token (what learned positions need). Prints one
JSON line.

    python benchmarks/bench_sampling.py [--block-size 128] [--tokens 256]
"""

import argparse
import json
import time

import numpy as np

from tinyllm import GPT, GPTConfig


def tokens_per_second(model, window, tokens):
    """Speed over `tokens` new tokens generated after the context is already full."""
    prompt = np.ones((1, model.config.block_size), dtype=np.int64)
    start = time.perf_counter()
    model.generate(prompt, tokens, window=window, seed=0)
    return tokens / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    config = GPTConfig(vocab_size=2048, block_size=args.block_size, n_layer=4, n_head=4,
                       n_embd=128, pos="rope")  # the small preset's shape, with RoPE
    model = GPT(config)
    rolling = tokens_per_second(model, "rolling", args.tokens)
    recompute = tokens_per_second(model, "recompute", max(args.tokens // 8, 8))
    print(json.dumps({"block_size": args.block_size, "rolling_tokens_per_s": round(rolling, 1),
                      "recompute_tokens_per_s": round(recompute, 1),
                      "speedup": round(rolling / recompute, 1)}))


if __name__ == "__main__":
    main()
