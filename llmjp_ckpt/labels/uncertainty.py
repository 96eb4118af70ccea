"""Bootstrap intervals of class shares per checkpoint, over features and the classifier's errors.

A checkpoint's share of, say, semantic features is read off a finite set of latents, and — for
automatic labels — through a classifier that confuses classes. :func:`share_intervals` draws
both: features are resampled with replacement (a multinomial draw of the predicted-class counts),
and, given the LOCO confusion matrix (``evaluate.loco_confusion``: rows the authors' labels,
columns ours), each resampled feature predicted ``j`` is given a true class drawn from
P(true | predicted ``j``), itself drawn from a Dirichlet over that column's counts (+ 0.5), so
the confusion's own sampling error counts too. Without a confusion matrix only the features are
resampled. The reported ``corrected`` share is the mean over draws: with a confusion matrix it
is the share the classifier's known errors imply, not the raw predicted share.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llmjp_ckpt.labels.granularity import LABELS


@dataclass(frozen=True)
class ShareInterval:
    """One class at one checkpoint: predicted share, bootstrap mean and interval (0–1)."""

    share: float
    corrected: float
    lo: float
    hi: float


def share_intervals(
    labels: Mapping[Hashable, Sequence[str]],
    confusion: Sequence[Sequence[int]] | None = None,
    *,
    classes: Sequence[str] = LABELS,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    prior: float = 0.5,
) -> dict[Hashable, dict[str, ShareInterval]]:
    """``{checkpoint: {class: ShareInterval}}`` from each checkpoint's predicted labels."""
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a value in (0, 1)")
    k = len(classes)
    idx = {c: i for i, c in enumerate(classes)}
    post = None
    if confusion is not None:
        m = np.asarray(confusion, dtype=float)
        if m.shape != (k, k):
            raise ValueError(f"confusion: expected a {k}x{k} matrix, got shape {m.shape}")
        post = m.T + prior  # row j: counts of each true class among features predicted j
    rng = np.random.default_rng(seed)
    q = (1 - level) / 2
    out: dict[Hashable, dict[str, ShareInterval]] = {}
    for ckpt, labs in labels.items():
        counts = np.bincount([idx[x] for x in labs], minlength=k).astype(float)
        n = int(counts.sum())
        if n == 0:
            out[ckpt] = {c: ShareInterval(float("nan"), float("nan"), float("nan"), float("nan"))
                         for c in classes}
            continue
        draws = rng.multinomial(n, counts / n, size=n_boot)  # features resampled: [B, k] pred
        if post is not None:
            true = np.zeros((n_boot, k))
            for j in range(k):
                pj = rng.dirichlet(post[j], size=n_boot)  # P(true | predicted j), per draw
                for b in range(n_boot):
                    if draws[b, j]:
                        true[b] += rng.multinomial(draws[b, j], pj[b])
            draws = true
        shares = draws / n
        lo, hi = np.quantile(shares, [q, 1 - q], axis=0)
        mean = shares.mean(axis=0)
        out[ckpt] = {c: ShareInterval(float(counts[i] / n), float(mean[i]), float(lo[i]),
                                      float(hi[i])) for i, c in enumerate(classes)}
    return out


def format_intervals(intervals: Mapping[Hashable, Mapping[str, ShareInterval]]) -> str:
    """A plain table: per checkpoint and class, predicted share and the interval, in percent."""
    lines = []
    for ckpt, row in intervals.items():
        cells = ", ".join(f"{c} {100 * v.share:.0f} [{100 * v.lo:.0f}–{100 * v.hi:.0f}]"
                          for c, v in row.items())
        lines.append(f"  {ckpt}: {cells}")
    return "\n".join(lines)
