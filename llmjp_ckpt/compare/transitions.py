"""Class shares per checkpoint and class flows between checkpoints, from ``features.parquet``.

Shares are computed over subsets of an SAE's features: ``all`` (every row of the table),
``alive`` (not dead by :mod:`llmjp_ckpt.saes.dead` when the masks are given — the compare stage
gives them — else frequency > 0) and ``interpretable`` (a granularity label other than
``uninterpretable``). A missing label counts as ``unlabelled``. Flows count, for the features
shared between consecutive checkpoints, the pairs (class before → class after).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from llmjp_ckpt.errors import UserError

LANGUAGE_COLUMNS = ("language_paper", "language_script")
CLASS_COLUMNS = (*LANGUAGE_COLUMNS, "granularity")
REQUIRED = ("checkpoint", "sae_id", "feature", "frequency", *CLASS_COLUMNS)
UNLABELLED = "unlabelled"

SUBSETS: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "all": lambda d: pd.Series(True, index=d.index),
    "alive": lambda d: d["frequency"].fillna(0) > 0,
    "interpretable": lambda d: d["granularity"].notna() & (d["granularity"] != "uninterpretable"),
}


def load_features(path) -> pd.DataFrame:
    """Read ``features.parquet`` and check the agreed columns; labels' gaps become 'unlabelled'."""
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise UserError(f"{path}: missing; run `llmjp-ckpt features --run RUN` first") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing columns {missing}; expected {list(REQUIRED)}")
    dup = df.duplicated(["checkpoint", "sae_id", "feature"])
    if dup.any():
        r = df[dup].iloc[0]
        raise UserError(f"{path}: feature {r['feature']} of {r['sae_id']} at step {r['checkpoint']} "
                         "appears twice; expected one row per (checkpoint, sae_id, feature)")
    df = df.copy()
    df["checkpoint"] = df["checkpoint"].astype(np.int64)
    df["feature"] = df["feature"].astype(np.int64)
    df["sae_id"] = df["sae_id"].astype(str)
    return df


def _labels(df: pd.DataFrame, column: str) -> pd.Series:
    return df[column].astype(object).where(df[column].notna(), UNLABELLED).astype(str)


def shares(df: pd.DataFrame, column: str) -> dict[str, float]:
    """Share of each class of ``column`` in ``df`` (sorted by class name)."""
    if df.empty:
        return {}
    vc = _labels(df, column).value_counts(normalize=True)
    return {str(k): float(vc[k]) for k in sorted(vc.index)}


def crosstab(df: pd.DataFrame, language: str = "language_paper") -> dict[str, dict[str, int]]:
    """Counts of (language class, granularity class)."""
    if df.empty:
        return {}
    ct = pd.crosstab(_labels(df, language), _labels(df, "granularity"))
    return {str(r): {str(c): int(ct.loc[r, c]) for c in ct.columns if ct.loc[r, c]} for r in ct.index}


def alive_rows(df: pd.DataFrame, alive: dict[int, np.ndarray]) -> pd.Series:
    """True for the rows whose feature is alive at its checkpoint (``alive[step][feature]``)."""
    out = pd.Series(False, index=df.index)
    for step, mask in alive.items():
        rows = df["checkpoint"] == step
        feats = df.loc[rows, "feature"].to_numpy()
        inside = (feats >= 0) & (feats < len(mask))
        out.loc[rows] = np.where(inside, mask[np.clip(feats, 0, max(len(mask) - 1, 0))], False)
    return out


def intervals(df: pd.DataFrame, column: str, confusion: Sequence[Sequence[int]] | None = None,
              n_boot: int = 1000, level: float = 0.95) -> dict[str, dict[str, float]]:
    """Each class's bootstrap interval of its share in ``df``
    (:func:`llmjp_ckpt.labels.uncertainty.share_intervals`): latents resampled and, given the
    LOCO ``confusion`` of the granularity classifier, each one's true class drawn through it.
    ``{class: {share, corrected, lo, hi}}``; with a confusion, ``corrected`` is the centre."""
    from llmjp_ckpt.labels.uncertainty import share_intervals

    labs = _labels(df, column).tolist()
    if not labs:
        return {}
    iv = share_intervals({0: labs}, confusion, classes=sorted(set(labs)), n_boot=n_boot,
                         level=level)[0]
    return {k: {"share": round(v.share, 4), "corrected": round(v.corrected, 4),
                "lo": round(v.lo, 4), "hi": round(v.hi, 4)} for k, v in sorted(iv.items())}


def per_checkpoint(df: pd.DataFrame, alive: dict[int, np.ndarray] | None = None,
                   confusion: Sequence[Sequence[int]] | None = None, n_boot: int = 1000) -> dict:
    """For one SAE family: ``{subset: {step: {n, <column>: shares, crosstab, intervals}}}``.

    ``alive`` (``{step: mask [d_sae]}``, from :func:`llmjp_ckpt.saes.dead.alive_mask`) decides
    the ``alive`` subset when given. ``intervals[column]`` (:func:`intervals`) carries the
    granularity classifier's LOCO ``confusion`` when given; the language columns are resampled
    over latents only (the paper rule reproduces the authors' labels).
    """
    out: dict = {}
    for name, pick in SUBSETS.items():
        sub = df[alive_rows(df, alive) if name == "alive" and alive is not None else pick(df)]
        out[name] = {}
        for step in sorted(df["checkpoint"].unique()):
            d = sub[sub["checkpoint"] == step]
            out[name][str(int(step))] = {
                "n": len(d),
                **{c: shares(d, c) for c in CLASS_COLUMNS},
                "crosstab": crosstab(d),
                "intervals": {c: intervals(d, c, confusion if c == "granularity" else None, n_boot)
                              for c in CLASS_COLUMNS},
            }
    return out


def flows(df_a: pd.DataFrame, df_b: pd.DataFrame, pairs: np.ndarray) -> dict:
    """Class flows over shared pairs ``[(feature_a, feature_b), ...]`` for each class column.

    Only pairs whose two features are both in the table count.
    """
    a = df_a.set_index("feature")
    b = df_b.set_index("feature")
    p = pd.DataFrame(pairs.reshape(-1, 2), columns=["fa", "fb"])
    p = p[p["fa"].isin(a.index) & p["fb"].isin(b.index)]
    out: dict = {"n_pairs": len(p)}
    for c in CLASS_COLUMNS:
        la = _labels(a, c).reindex(p["fa"]).to_numpy()
        lb = _labels(b, c).reindex(p["fb"]).to_numpy()
        keys = pd.Series([f"{x} -> {y}" for x, y in zip(la, lb)], dtype=object)
        vc = keys.value_counts()
        out[c] = {str(k): int(vc[k]) for k in sorted(vc.index)}
    return out
