"""The headline share figures: one line per label over checkpoints with its bootstrap band,
short panel titles that do not overlap."""

from __future__ import annotations

import pandas as pd

from llmjp_ckpt.features.analyze import share_figure, short_titles
from llmjp_ckpt.labels.uncertainty import share_intervals


def _table() -> pd.DataFrame:
    rows = []
    for sid in ("x4_k8_lr0.003_none", "x4_k8_lr0.003_standardization"):
        for step, n_ja in ((10, 5), (100, 30)):
            for f in range(40):
                lab = None if f >= 38 else ("ja" if f < n_ja else "en")  # two dead latents
                rows.append({"checkpoint": step, "sae_id": sid, "feature": f, "language_script": lab})
    return pd.DataFrame(rows)


def test_short_titles_drop_the_shared_prefix() -> None:
    assert short_titles(["x4_k8_lr0.003_none", "x4_k8_lr0.003_standardization"]) == (
        ["none", "standardization"], "x4_k8_lr0.003")
    assert short_titles(["x4_k8", "x8_k8"]) == (["x4_k8", "x8_k8"], "")
    assert short_titles(["a_b"]) == (["a_b"], "")


def test_share_figure_draws_each_label_with_its_interval() -> None:
    df = _table()
    fig = share_figure(df, "language_script", "Language", n_boot=200)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(lines) == len(bands) == 2 * 2  # (en, ja) x 2 SAEs
    assert [t.name for t in lines if t.showlegend] == ["en", "ja"]
    part = df[(df.sae_id == "x4_k8_lr0.003_none")].dropna(subset=["language_script"])
    want = share_intervals({s: g["language_script"].tolist() for s, g in part.groupby("checkpoint")},
                           classes=["en", "ja"], n_boot=200)
    ja_line = next(t for t in lines if t.name == "ja")  # the first panel's
    assert list(ja_line.y) == [want[10]["ja"].share, want[100]["ja"].share] == [5 / 38, 30 / 38]
    ja_band = bands[1]
    assert list(ja_band.y) == [want[10]["ja"].hi, want[100]["ja"].hi, want[100]["ja"].lo, want[10]["ja"].lo]
    assert all(b.y[0] >= ln.y[0] >= b.y[-1] for b, ln in zip(bands, lines))  # band around the line
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["none", "standardization"] and "x4_k8_lr0.003" in fig.layout.title.text


def test_granularity_bands_carry_the_classifier_confusion() -> None:
    from llmjp_ckpt.labels.granularity import LABELS
    from llmjp_ckpt.labels.uncertainty import load_confusion

    df = _table().rename(columns={"language_script": "granularity"})
    df["granularity"] = df["granularity"].map({"ja": "token", "en": "semantic"})
    m = load_confusion()
    plain = share_figure(df, "granularity", "Granularity", n_boot=200)
    fig = share_figure(df, "granularity", "Granularity", n_boot=200, confusion=m)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert sorted({t.name for t in lines}) == sorted(LABELS)  # true classes nobody was labelled
    assert "LOCO confusion" in fig.layout.title.text and "LOCO" not in plain.layout.title.text

    def width(f, name):
        band = next(t for t in f.data if t.fill == "toself" and t.name.startswith(name))
        return band.y[0] - band.y[-1]

    assert width(fig, "token") > width(plain, "token")
    tok = next(t for t in lines if t.name == "token")
    assert list(tok.y) == [5 / 38, 30 / 38]  # the line stays the share as labelled
