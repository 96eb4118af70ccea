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

import json
import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmjp_ckpt.labels.granularity import LABELS, PARAMS_FILE

log = logging.getLogger(__name__)


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
    confusion_classes: Sequence[str] = LABELS,
) -> dict[Hashable, dict[str, ShareInterval]]:
    """``{checkpoint: {class: ShareInterval}}`` from each checkpoint's predicted labels.

    ``confusion`` is over ``confusion_classes`` (rows true, columns predicted); those classes
    are added to ``classes`` when missing (a true class can be one nobody predicted). Labels of
    other classes (``unlabelled``, say) are resampled but not confused. Unknown labels: error.
    """
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a value in (0, 1)")
    classes = list(classes)
    post = None
    if confusion is not None:
        m = np.asarray(confusion, dtype=float)
        kc = len(confusion_classes)
        if m.shape != (kc, kc):
            raise ValueError(f"confusion: expected a {kc}x{kc} matrix, got shape {m.shape}")
        post = m.T + prior  # row j: counts of each true class among features predicted j
        classes += [c for c in confusion_classes if c not in classes]
    k = len(classes)
    idx = {c: i for i, c in enumerate(classes)}
    conf_cols = [idx[c] for c in confusion_classes] if post is not None else []
    rng = np.random.default_rng(seed)
    q = (1 - level) / 2
    out: dict[Hashable, dict[str, ShareInterval]] = {}
    for ckpt, labs in labels.items():
        unknown = sorted({x for x in labs if x not in idx})
        if unknown:
            raise ValueError(f"checkpoint {ckpt}: label(s) {unknown} not in classes {classes}")
        counts = np.bincount([idx[x] for x in labs], minlength=k).astype(float)
        n = int(counts.sum())
        if n == 0:
            out[ckpt] = {c: ShareInterval(float("nan"), float("nan"), float("nan"), float("nan"))
                         for c in classes}
            continue
        draws = rng.multinomial(n, counts / n, size=n_boot)  # features resampled: [B, k] pred
        if post is not None:
            true = draws.astype(float)
            true[:, conf_cols] = 0.0
            for jj, j in enumerate(conf_cols):
                pj = rng.dirichlet(post[jj], size=n_boot)  # P(true | predicted j), per draw
                true[:, conf_cols] += rng.multinomial(draws[:, j], pj)  # [B, kc] true classes
            draws = true
        shares = draws / n
        lo, hi = np.quantile(shares, [q, 1 - q], axis=0)
        mean = shares.mean(axis=0)
        out[ckpt] = {c: ShareInterval(float(counts[i] / n), float(mean[i]), float(lo[i]),
                                      float(hi[i])) for i, c in enumerate(classes)}
    return out


def load_confusion(path: str | Path | None = None) -> list[list[int]] | None:
    """The pooled LOCO confusion recorded with a thresholds file (``fit.loco_confusion``, written
    by ``evaluate --write-params`` and ``label --fit``; None: the shipped file). A file without
    one (fitted on one checkpoint, or older) gives ``None`` and one log line."""
    path = Path(path) if path is not None else PARAMS_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    rec = (data.get("fit") or {}).get("loco_confusion")
    if not rec:
        log.warning("%s: no LOCO confusion recorded; granularity intervals cover latents only", path)
        return None
    if list(rec.get("labels", [])) != list(LABELS) or len(rec.get("matrix", [])) != len(LABELS):
        raise ValueError(f"{path}: fit.loco_confusion: expected labels {list(LABELS)} and a "
                         f"{len(LABELS)}x{len(LABELS)} matrix")
    return [[int(v) for v in row] for row in rec["matrix"]]


def format_intervals(intervals: Mapping[Hashable, Mapping[str, ShareInterval]]) -> str:
    """A plain table: per checkpoint and class, predicted share and the interval, in percent."""
    lines = []
    for ckpt, row in intervals.items():
        cells = ", ".join(f"{c} {100 * v.share:.0f} [{100 * v.lo:.0f}–{100 * v.hi:.0f}]"
                          for c, v in row.items())
        lines.append(f"  {ckpt}: {cells}")
    return "\n".join(lines)
