"""Labels of one feature from its examples, and of every feature of an example file.

The one place where a feature's examples become its labels (language by both rules,
granularity with its confidence): the ``features`` stage (:mod:`llmjp_ckpt.features.analyze`)
and the ``label`` command both call :func:`label_feature`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llmjp_ckpt import atomic
from llmjp_ckpt.labels import GRANULARITIES, LANGUAGES
from llmjp_ckpt.labels.agreement import agreement
from llmjp_ckpt.labels.examples import FeatureRecord
from llmjp_ckpt.labels.granularity import Backend, classify
from llmjp_ckpt.labels.language import RULES, paper_language, script_language

LABEL_COLUMNS = ("language_paper", "language_script", "granularity", "granularity_confidence")


def label_feature(examples: Sequence[Sequence], *, granularity: bool = True,
                  backend: Backend | None = None) -> dict[str, Any]:
    """The :data:`LABEL_COLUMNS` of one feature; all ``None`` without examples (a dead latent).

    ``granularity=False`` leaves ``granularity`` / ``granularity_confidence`` ``None``.
    """
    if not examples:
        return dict.fromkeys(LABEL_COLUMNS)
    label, conf = classify(examples, backend) if granularity else (None, None)
    return {
        "language_paper": paper_language(examples),
        "language_script": script_language(examples),
        "granularity": label,
        "granularity_confidence": None if conf is None else float(conf),
    }


def label_records(records: Sequence[FeatureRecord], *, language_rule: str = "script",
                  granularity: bool = True, backend: Backend | None = None) -> list[dict[str, Any]]:
    """One CSV row per record: its labels (``language``: by ``language_rule``) and the file's."""
    if language_rule not in RULES:
        raise ValueError(f"language rule {language_rule!r}: expected one of {', '.join(RULES)}")
    rows = []
    for rec in tqdm(records, desc="labelling features", disable=len(records) < 500):
        lab = label_feature(rec.examples, granularity=granularity, backend=backend)
        conf = lab["granularity_confidence"]
        rows.append({
            "checkpoint": "" if rec.checkpoint is None else rec.checkpoint,
            "feature": "" if rec.feature is None else rec.feature,
            "n_examples": len(rec.examples),
            "language": lab[f"language_{language_rule}"],
            "language_paper": lab["language_paper"],
            "language_script": lab["language_script"],
            "granularity": lab["granularity"] or "",
            "granularity_confidence": "" if conf is None or math.isnan(conf) else f"{conf:.3f}",
            "file_language": rec.language or "",
            "file_granularity": rec.granularity or "",
        })
    return rows


def write_rows_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write :func:`label_records`' rows as a CSV (atomically)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buf.getvalue())


def agreement_report(rows: Sequence[dict[str, Any]], language_rule: str) -> str | None:
    """The labels of :func:`label_records` against the file's own, as text; None: no file labels."""
    parts = []
    with_lang = [r for r in rows if r["file_language"]]
    if with_lang:
        a = agreement([r["file_language"] for r in with_lang], [r["language"] for r in with_lang],
                      LANGUAGES)
        same = sum(r["file_language"] == r["language"] for r in with_lang)
        parts.append(f"\nlanguage ({language_rule} rule) vs file: {same}/{len(with_lang)} agree, "
                     f"kappa={a.kappa:.3f}")
    with_gran = [r for r in rows if r["file_granularity"] and r["granularity"]]
    if with_gran:
        a = agreement([r["file_granularity"] for r in with_gran],
                      [r["granularity"] for r in with_gran],
                      GRANULARITIES, [r["checkpoint"] for r in with_gran])
        parts.append("\n" + a.format("granularity (automatic) vs file, shares by checkpoint:"))
    return "\n".join(parts) if parts else None
