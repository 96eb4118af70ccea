"""Lineages of features over an ordered series of checkpoints of one SAE family.

A *chain* follows shared matches (``MatchResult.shared``) from checkpoint to checkpoint; a
feature with no shared partner at the previous checkpoint is a *birth*, one with none at the
next a *death*. Candidate edges at or above ``related_threshold`` give *splits* (one earlier
feature close to several later ones) and *merges* (several earlier features close to one
later one). *Drift* is a chain member's cosine to the chain's member at the final checkpoint;
the index-aligned drift (feature ``i`` against feature ``i`` of the final checkpoint) is what
SAE-Track reports for warm-started series, and is near 0 for independently trained SAEs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from llmjp_ckpt.compare.decoders import Decoder
from llmjp_ckpt.compare.matching import MatchResult

MIX_ORIGINS = ("merge_ja_en", "from_mix", "from_monolingual", "from_unlabelled", "new")


def related_edges(match: MatchResult, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (a, b) pairs with cosine ≥ ``threshold``, plus every shared pair."""
    a, b, s = match.edges
    keep = s >= threshold
    sa = np.flatnonzero(match.shared)
    pairs = np.unique(np.stack([np.concatenate([a[keep], sa]),
                                np.concatenate([b[keep], match.partner[sa]])], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def chains(steps: Sequence[int], decoders: Sequence[Decoder],
           matches: Sequence[MatchResult]) -> pd.DataFrame:
    """Long table: one row per (chain, checkpoint) with the feature and its drift to final form."""
    T = len(steps)
    ids: list[np.ndarray] = []
    next_id = 0
    for t in range(T):
        alive = decoders[t].alive.numpy()
        cid = np.full(decoders[t].d_sae, -1, dtype=np.int64)
        if t > 0:
            prev = matches[t - 1].partner_of_b()  # earlier feature shared with each later one
            has = (prev >= 0) & alive
            cid[has] = ids[t - 1][prev[has]]
        new = alive & (cid < 0)
        cid[new] = np.arange(next_id, next_id + int(new.sum()))
        next_id += int(new.sum())
        ids.append(cid)
    rows = [pd.DataFrame({"chain": c[c >= 0], "checkpoint": steps[t], "feature": np.flatnonzero(c >= 0)})
            for t, c in enumerate(ids)]
    df = pd.concat(rows, ignore_index=True)
    # drift: cosine of each member to the chain's member at the final checkpoint
    last = ids[-1]
    final_of = {int(c): int(f) for f, c in enumerate(last) if c >= 0}
    U_final = decoders[-1].unit()
    df["drift_to_final"] = np.nan
    for t in range(T):
        sel = (df["checkpoint"] == steps[t]) & df["chain"].isin(final_of.keys())
        if not sel.any():
            continue
        f_t = df.loc[sel, "feature"].to_numpy().copy()
        f_T = np.array([final_of[int(c)] for c in df.loc[sel, "chain"]])
        df.loc[sel, "drift_to_final"] = (decoders[t].unit()[f_t] * U_final[f_T]).sum(1).numpy()
    return df


def pair_events(match: MatchResult, threshold: float) -> dict:
    """Births, deaths, splits and merges between one checkpoint (A) and the next (B)."""
    a, b = related_edges(match, threshold)
    n_children = np.bincount(a, minlength=match.n_a)
    n_parents = np.bincount(b, minlength=match.n_b)
    shared_b = match.partner_of_b() >= 0
    return {
        "live_a": int(match.alive_a.sum()),
        "live_b": int(match.alive_b.sum()),
        "shared": int(match.shared.sum()),
        "shared_fraction": match.shared_fraction,
        "mutual_nn": int(match.mutual.sum()),
        "deaths": int((match.alive_a & ~match.shared).sum()),
        "births": int((match.alive_b & ~shared_b).sum()),
        "splits": int((n_children >= 2).sum()),
        "merges": int((n_parents >= 2).sum()),
    }


def index_aligned_drift(decoders: Sequence[Decoder]) -> list[dict]:
    """Per checkpoint: median cosine of feature i to feature i of the next and of the final SAE."""
    out = []
    U = [d.unit() for d in decoders]
    for t in range(len(decoders)):
        row: dict = {}
        for name, other in (("to_next", t + 1), ("to_final", len(decoders) - 1)):
            if other >= len(decoders) or other == t or U[t].shape != U[other].shape:
                row[name] = None
                continue
            both = (decoders[t].alive & decoders[other].alive).numpy()
            cos = (U[t] * U[other]).sum(1).numpy()[both]
            row[name] = float(np.median(cos)) if cos.size else None
        out.append(row)
    return out


def mix_origins(match: MatchResult, threshold: float, labels_a: Mapping[int, str],
                labels_b: Mapping[int, str]) -> dict:
    """For every ``mix`` feature of B: where it came from among A's features.

    ``merge_ja_en``: related to a Japanese *and* an English earlier feature; ``from_mix``: to a
    mixed one (and not both languages); ``from_monolingual``: to Japanese or English ones only;
    ``from_unlabelled``: only to features without a ja/en/mix label; ``new``: to none.
    """
    a, b = related_edges(match, threshold)
    parents: dict[int, set[str]] = {}
    for ai, bi in zip(a.tolist(), b.tolist()):
        parents.setdefault(bi, set()).add(labels_a.get(ai, "unlabelled"))
    counts = dict.fromkeys(MIX_ORIGINS, 0)
    for f, lab in labels_b.items():
        if lab != "mix":
            continue
        ps = parents.get(int(f))
        if not ps:
            counts["new"] += 1
        elif {"ja", "en"} <= ps:
            counts["merge_ja_en"] += 1
        elif "mix" in ps:
            counts["from_mix"] += 1
        elif ps & {"ja", "en"}:
            counts["from_monolingual"] += 1
        else:
            counts["from_unlabelled"] += 1
    n = sum(counts.values())
    return {"n_mix": n, "counts": counts,
            "shares": {k: (v / n if n else 0.0) for k, v in counts.items()}}
