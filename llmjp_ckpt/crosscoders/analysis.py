"""What a crosscoder says about training: per-latent decoder norms per checkpoint.

- ``relative``: each latent's decoder norm at each checkpoint over its largest one (0..1);
- classes: ``shared`` (present at every checkpoint), ``emerging`` (absent at the first, present
  at the last), ``fading`` (present at the first, absent at the last), ``other``;
- ``born``: the first checkpoint where a latent is present;
- per checkpoint pair (a, b): the distribution of ``n_b / (n_a + n_b)`` (Anthropic's relative
  decoder norm: 0 = only a, 1 = only b, 0.5 = both);
- against the independent-SAE lineages: where matching says a feature is born at step t, is
  the nearest crosscoder latent's norm rising at t?
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

CLASSES = ("shared", "emerging", "fading", "other")


def load_crosscoder(folder: str | Path) -> Any:
    """The saved crosscoder (SAELens ``SAE.load_from_disk``; the architecture is registered)."""
    from sae_lens import SAE

    import llmjp_ckpt.crosscoders.architecture  # noqa: F401  registers crosscoder_topk

    return SAE.load_from_disk(str(folder))


def relative_norms(norms: np.ndarray) -> np.ndarray:
    """``[n, N]`` norms over each latent's maximum (a zero latent stays zero)."""
    top = norms.max(axis=1, keepdims=True)
    return np.divide(norms, top, out=np.zeros_like(norms), where=top > 0)


def classify(norms: np.ndarray, present: float, absent: float) -> tuple[list[str], list[int | None]]:
    """Class and birth index (first checkpoint where present) of every latent."""
    rel = relative_norms(norms)
    classes, born = [], []
    for row in rel:
        if row.max() == 0:
            classes.append("other")
            born.append(None)
            continue
        if (row >= present).all():
            classes.append("shared")
        elif row[0] < absent and row[-1] >= present:
            classes.append("emerging")
        elif row[0] >= present and row[-1] < absent:
            classes.append("fading")
        else:
            classes.append("other")
        born.append(int(np.argmax(row >= present)))
    return classes, born


def pair_relative(norms: np.ndarray, a: int, b: int, bins: int = 20) -> dict[str, list[float]]:
    """Histogram of ``n_b / (n_a + n_b)`` over latents alive at a or b."""
    tot = norms[:, a] + norms[:, b]
    r = norms[tot > 0, b] / tot[tot > 0]
    counts, edges = np.histogram(r, bins=bins, range=(0.0, 1.0))
    return {"edges": edges.round(4).tolist(), "counts": counts.tolist()}


def summarise(norms: np.ndarray, steps: list[int], present: float, absent: float) -> dict[str, Any]:
    """Class counts, births per checkpoint and pair histograms, JSON-ready."""
    classes, born = classify(norms, present, absent)
    births = {str(s): 0 for s in steps}
    for c, b in zip(classes, born):
        if c != "other" and b is not None:
            births[str(steps[b])] += 1
    pairs = {f"{steps[i]}->{steps[i + 1]}": pair_relative(norms, i, i + 1)
             for i in range(len(steps) - 1)}
    return {"steps": steps, "n_latents": int(norms.shape[0]),
            "classes": {c: classes.count(c) for c in CLASSES}, "births": births,
            "pairs": pairs, "present": present, "absent": absent}


def lineage_agreement(norms: np.ndarray, W_dec: torch.Tensor, steps: list[int],
                      lineages: Any, sae_decoders: dict[int, torch.Tensor],
                      present: float) -> dict[str, Any]:
    """For chains born after the first checkpoint: does the nearest crosscoder latent rise there?

    ``lineages`` has columns chain, checkpoint, feature; ``sae_decoders[step]`` is that step's SAE
    ``W_dec`` [d_sae, d]. A chain born at step t (index i > 0) agrees when its best-cosine
    crosscoder latent (on block i) is present at i and below ``present`` at i - 1.
    """
    n_blocks = len(steps)
    blocks = W_dec.view(W_dec.shape[0], n_blocks, -1)
    rel = relative_norms(norms)
    first = lineages.sort_values("checkpoint").groupby("chain").first()
    agree = total = 0
    for _, row in first.iterrows():
        step = int(row["checkpoint"])
        if step not in steps or steps.index(step) == 0 or step not in sae_decoders:
            continue
        i = steps.index(step)
        feat = sae_decoders[step][int(row["feature"])]
        cos = torch.nn.functional.cosine_similarity(blocks[:, i], feat[None], dim=-1)
        best = int(cos.argmax())
        total += 1
        agree += int(rel[best, i] >= present and rel[best, i - 1] < present)
    return {"chains_born_later": total, "nearest_latent_rises": agree,
            "fraction": agree / total if total else None}


def figures(summary: dict[str, Any], norms: np.ndarray) -> dict[str, Any]:
    """Class counts, births per checkpoint, and relative-norm histograms per checkpoint pair."""
    import plotly.graph_objects as go

    steps = [str(s) for s in summary["steps"]]
    out: dict[str, Any] = {}
    fig = go.Figure(go.Bar(x=list(summary["births"]), y=list(summary["births"].values())))
    fig.update_layout(title="Crosscoder: latents first present at each checkpoint",
                      xaxis_title="checkpoint", yaxis_title="latents", xaxis_type="category")
    out["crosscoder_births"] = fig
    rel = relative_norms(norms)
    fig = go.Figure(go.Heatmap(z=rel[np.argsort(np.argmax(rel >= summary["present"], axis=1))],
                               x=steps, colorscale="Viridis", zmin=0, zmax=1))
    fig.update_layout(title="Crosscoder: each latent's decoder norm per checkpoint (of its max)",
                      xaxis_title="checkpoint", yaxis_title="latent (sorted by birth)",
                      xaxis_type="category")
    out["crosscoder_norms"] = fig
    fig = go.Figure()
    for pair, h in summary["pairs"].items():
        centres = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:])]
        fig.add_trace(go.Scatter(x=centres, y=h["counts"], mode="lines+markers", name=pair))
    fig.update_layout(title="Relative decoder norm n_b / (n_a + n_b) per checkpoint pair",
                      xaxis_title="relative norm (0: only the earlier, 1: only the later)",
                      yaxis_title="latents")
    out["crosscoder_pairs"] = fig
    return out
