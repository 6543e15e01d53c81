"""Direct Preference Optimization (Rafailov et al., 2023): the loss, written with engine ops.

For a prompt x with a preferred reply y_c and a dispreferred one y_r, let

    logp_c = log pi(y_c | x)       summed over the reply's tokens, under the model being trained
    ref_c  = log pi_ref(y_c | x)   the same under the frozen reference (the starting model)

and likewise logp_r, ref_r. The implicit reward of a reply is r = beta * (logp - ref): how much
more likely training has made it. DPO maximises the log-probability that the chosen reply
wins a Bradley-Terry comparison of these rewards:

    loss = -log sigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r)))  =  softplus(-z)

With z = beta * (...). At the start the model is the reference, z = 0 and the loss is
exactly ln 2. Its gradient, d loss / d logp_c = -beta * sigmoid(-z), weighs each pair by how
wrong the model still ranks it: pairs already ranked well (z large) stop pulling.

Sequence log-probabilities are sums over the reply's tokens, as in the paper (an average per
token changes the objective and is known to collapse: the model can lengthen replies freely).
`-log sigmoid(z)` is computed as logsumexp([0, -z]), which never overflows.
"""

from __future__ import annotations

import numpy as np

import autograd as ag
from autograd import functional as F

IGNORE = -100


def dpo_loss(logp_c, logp_r, ref_c, ref_r, beta=0.1):
    """Mean DPO loss over a batch of pairs, and the per-pair rewards (as arrays).

    `logp_*` are Tensors of shape (B,) (the policy's sequence log-probs); `ref_*` are arrays or
    Tensors of shape (B,) held constant. Returns (loss Tensor, chosen rewards, rejected rewards).
    """
    ref_c = ref_c.data if isinstance(ref_c, ag.Tensor) else ref_c
    ref_r = ref_r.data if isinstance(ref_r, ag.Tensor) else ref_r
    chosen = (logp_c - ref_c) * beta  # the implicit rewards
    rejected = (logp_r - ref_r) * beta
    z = chosen - rejected
    zero = z * 0.0  # a zero of z's shape, dtype and device
    per_pair = ag.stack([zero, -z], axis=0).logsumexp(axis=0)  # -log sigmoid(z)
    return per_pair.mean(), chosen.data, rejected.data


def chosen_nll(logp_c, items):
    """Mean over pairs of the chosen reply's negative log-likelihood per token: the optional
    SFT term (`sft_weight`, "RPO", Pang et al. 2024) that keeps the chosen replies likely while
    DPO widens the gap. Plain DPO can widen it by making both replies unlikely, which on a tiny
    model shows as replies that never reach <|end|>."""
    lengths = np.asarray([mask[1:].sum() for _, mask, _, _ in items], dtype=logp_c.dtype)
    return -(logp_c / lengths).mean()


def reward_metrics(chosen, rejected):
    """Reward accuracy (share of pairs whose chosen reward is higher), mean margin, and the
    mean chosen and rejected rewards, from per-pair reward arrays."""
    chosen, rejected = np.asarray(chosen, np.float64), np.asarray(rejected, np.float64)
    return {"reward_accuracy": float(np.mean(chosen > rejected)),
            "reward_margin": float(np.mean(chosen - rejected)),
            "chosen_reward": float(np.mean(chosen)), "rejected_reward": float(np.mean(rejected))}


def sequence_logprobs(model, x, y):
    """log p(y | x) per row: the sum over positions t with y[t] != IGNORE of
    log softmax(logits[t])[y[t]]. x, y: integer arrays (B, L). Returns a Tensor (B,)."""
    logits = model(x)[0]
    logp = F.log_softmax(logits, axis=-1)
    scored = y != IGNORE
    B, L = y.shape
    rows, cols = np.arange(B)[:, None], np.arange(L)[None, :]
    picked = logp[rows, cols, np.where(scored, y, 0)]  # (B, L): log-prob of each next token
    return (picked * scored.astype(picked.dtype)).sum(axis=1)  # padding and prompt count 0


def pad_pairs(items, pad_id):
    """A batch of tokenized pairs -> (x, y) of shape (2B, L): the B chosen sides, then the B
    rejected ones, padded on the right to the longest; y is IGNORE except on reply tokens.
    One forward then scores both sides of every pair."""
    sides = [(c, cm) for c, cm, _, _ in items] + [(r, rm) for _, _, r, rm in items]
    L = max(len(ids) for ids, _ in sides) - 1
    x = np.full((len(sides), L), pad_id, dtype=np.int64)
    y = np.full((len(sides), L), IGNORE, dtype=np.int64)
    for row, (ids, mask) in enumerate(sides):
        x[row, :len(ids) - 1] = ids[:-1]
        y[row, :len(ids) - 1] = np.where(mask[1:], ids[1:], IGNORE)
    return x, y


def pair_logprobs(model, items, pad_id):
    """(logp chosen, logp rejected), Tensors of shape (B,), for a batch of tokenized pairs."""
    x, y = pad_pairs(items, pad_id)
    logp = sequence_logprobs(model, x, y)
    B = len(items)
    return logp[:B], logp[B:]


@ag.no_grad()
def reference_logprobs(model, tokenized, pad_id, batch_size):
    """(ref chosen, ref rejected) arrays (N,) for every pair, in fixed batches of `batch_size`
    in order: computed once before training and cached. Evaluation scores the held-out pairs
    in the same batches, so at step 0 policy and reference agree to the last bit."""
    from autograd.backend import asnumpy

    chosen, rejected = [], []
    for start in range(0, len(tokenized), batch_size):
        c, r = pair_logprobs(model, tokenized[start:start + batch_size], pad_id)
        chosen.append(asnumpy(c.data))
        rejected.append(asnumpy(r.data))
    return np.concatenate(chosen), np.concatenate(rejected)
