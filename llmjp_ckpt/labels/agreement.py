"""Agreement between two labelings: Cohen's κ, confusion matrix, recall per class, class shares."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


def confusion(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """``m[i][j]`` = number of items with gold ``labels[i]`` predicted ``labels[j]``."""
    if len(gold) != len(pred):
        raise ValueError(f"gold and predicted labels differ in length: {len(gold)} vs {len(pred)}")
    idx = {lab: i for i, lab in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, pred):
        if g not in idx or p not in idx:
            raise ValueError(f"label outside {list(labels)}: gold {g!r}, predicted {p!r}")
        m[idx[g]][idx[p]] += 1
    return m


def cohen_kappa(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] | None = None) -> float:
    """Cohen's κ = (p_o − p_e) / (1 − p_e); 1.0 when both raters use one and the same label."""
    labels = list(labels) if labels is not None else sorted(set(gold) | set(pred))
    m = confusion(gold, pred, labels)
    n = sum(map(sum, m))
    if n == 0:
        return float("nan")
    po = sum(m[i][i] for i in range(len(labels))) / n
    rows = [sum(r) / n for r in m]
    cols = [sum(m[i][j] for i in range(len(labels))) / n for j in range(len(labels))]
    pe = sum(r * c for r, c in zip(rows, cols))
    if pe == 1.0:
        return 1.0 if po == 1.0 else 0.0
    return (po - pe) / (1 - pe)


def recall_per_class(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Recall of each class (NaN where the class never occurs in ``gold``)."""
    m = confusion(gold, pred, labels)
    return {lab: (m[i][i] / sum(m[i]) if sum(m[i]) else float("nan")) for i, lab in enumerate(labels)}


def shares_by_group(
    groups: Sequence[Hashable], labels: Sequence[str], classes: Sequence[str]
) -> dict[Hashable, dict[str, float]]:
    """Per group (e.g. checkpoint), the share of each class among its items."""
    out: dict[Hashable, dict[str, float]] = {}
    for g in sorted(set(groups), key=lambda x: (str(type(x)), x)):
        c = Counter(lab for gg, lab in zip(groups, labels) if gg == g)
        n = sum(c.values())
        out[g] = {k: c[k] / n for k in classes}
    return out


@dataclass
class Agreement:
    """Everything reported for one comparison of predicted against gold labels."""

    labels: list[str]
    n: int
    kappa: float
    accuracy: float
    matrix: list[list[int]]
    recall: dict[str, float]
    shares_gold: dict
    shares_pred: dict

    def max_share_gap(self) -> float:
        """Largest |predicted − gold| class share over groups and classes (share units)."""
        return max(
            (abs(self.shares_pred[g][k] - self.shares_gold[g][k])
             for g in self.shares_gold for k in self.labels),
            default=0.0,
        )

    def format(self, title: str = "") -> str:
        """A plain-text report (for the terminal and the docs)."""
        w = max(len(lab) for lab in self.labels) + 2
        lines = [title] if title else []
        lines.append(f"n={self.n}  kappa={self.kappa:.3f}  accuracy={self.accuracy:.3f}")
        lines.append("confusion (rows gold, columns predicted):")
        lines.append(" " * w + "".join(f"{lab[:w-1]:>{w}}" for lab in self.labels))
        for lab, row in zip(self.labels, self.matrix):
            lines.append(f"{lab:<{w}}" + "".join(f"{v:>{w}}" for v in row))
        lines.append("recall: " + ", ".join(f"{k} {v:.2f}" for k, v in self.recall.items()))
        lines.append("shares per group, predicted / gold:")
        for g in self.shares_gold:
            cells = ", ".join(
                f"{k} {100*self.shares_pred[g][k]:.0f}/{100*self.shares_gold[g][k]:.0f}"
                for k in self.labels
            )
            lines.append(f"  {g}: {cells}")
        lines.append(f"largest share gap: {100*self.max_share_gap():.1f} points")
        return "\n".join(lines)


def agreement(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str], groups: Sequence[Hashable] | None = None
) -> Agreement:
    """Compare ``pred`` with ``gold`` (optionally per group, e.g. checkpoint)."""
    groups = list(groups) if groups is not None else ["all"] * len(gold)
    m = confusion(gold, pred, labels)
    n = len(gold)
    return Agreement(
        labels=list(labels),
        n=n,
        kappa=cohen_kappa(gold, pred, labels),
        accuracy=(sum(m[i][i] for i in range(len(labels))) / n) if n else float("nan"),
        matrix=m,
        recall=recall_per_class(gold, pred, labels),
        shares_gold=shares_by_group(groups, gold, labels),
        shares_pred=shares_by_group(groups, pred, labels),
    )
