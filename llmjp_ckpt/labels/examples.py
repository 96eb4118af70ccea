"""Load and validate a feature's examples: the peer JSONL and the study's published per-feature JSON.

Formats read:

* JSONL (``.jsonl`` or ``.jsonl.gz``), one feature per line with ``checkpoint``, ``feature``,
  ``examples`` and optionally the authors' ``language``, ``language_counts`` and
  ``granularity`` (``../shared/data/peer-labels-dev.jsonl.gz``);
* the study's published per-feature JSON ``{"token_act": [[[token, q], ...], ...],
  "language": {"en": a, "ja": b}, "granularity": g}`` (granularity codes 1 uninterpretable,
  2 semantic, 3 synonym, 4 token), as one ``.json`` file, a list of such objects in one file,
  or a folder of such files (the feature id taken from a ``feature`` key or the digits of the
  file name, the checkpoint from a ``checkpoint`` key or an ``iter_XXXXXXX`` folder name).

Any malformed input raises :class:`~llmjp_ckpt.errors.UserError` naming file, line and field.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmjp_ckpt.chars import majority_language
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import parse_step_dir

Window = list[tuple[str, float]]

#: The study's demo granularity codes.
GRANULARITY_CODES = {1: "uninterpretable", 2: "semantic", 3: "synonym", 4: "token"}
_GRANULARITIES = frozenset(GRANULARITY_CODES.values())
_LANGUAGES = frozenset({"en", "ja", "mix"})


@dataclass
class FeatureRecord:
    """One feature's examples plus whatever labels the input file carried."""

    checkpoint: int | None
    feature: int | None
    examples: list[Window]
    language: str | None = None  # the file's (authors') language label, if any
    granularity: str | None = None  # the file's (authors') granularity label, if any
    language_counts: dict[str, int] | None = None
    source: str = ""  # "file:line" for messages


def validate_examples(obj: Any, where: str, *, allow_empty: bool = False) -> list[Window]:
    """Check ``obj`` is a list of windows of ``[token_text, activation]`` pairs; return it typed.

    Token text is kept verbatim (control characters, HTML and byte pieces are legal tokens:
    the label rules treat them as neutral and every display escapes them).
    """
    if not isinstance(obj, list):
        raise UserError(f"{where}: field 'examples': expected a list of windows, got {_kind(obj)}")
    if not obj and not allow_empty:
        raise UserError(f"{where}: field 'examples': expected at least one window, got an empty list")
    windows: list[Window] = []
    for wi, win in enumerate(obj):
        if not isinstance(win, list) or not win:
            raise UserError(
                f"{where}: field 'examples[{wi}]': expected a non-empty list of "
                f"[token_text, activation] pairs, got {_kind(win)}"
            )
        # Fast path (the common, valid case); the loop below finds and names any culprit.
        try:
            pairs: Window = [(t, float(a)) for t, a in win
                             if type(t) is str and type(a) in (int, float)]
        except (TypeError, ValueError):
            pairs = []
        if len(pairs) == len(win) and math.isfinite(sum(a for _, a in pairs)):
            windows.append(pairs)
            continue
        pairs = []
        for ti, pair in enumerate(win):
            loc = f"{where}: field 'examples[{wi}][{ti}]'"
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise UserError(f"{loc}: expected a [token_text, activation] pair, got {_kind(pair)}")
            tok, act = pair
            if not isinstance(tok, str):
                raise UserError(f"{loc}: token_text: expected a string, got {_kind(tok)}")
            if isinstance(act, bool) or not isinstance(act, (int, float)) or not math.isfinite(act):
                raise UserError(f"{loc}: activation: expected a finite number, got {act!r}")
            pairs.append((tok, float(act)))
        windows.append(pairs)
    return windows


def load_records(path: str | Path) -> list[FeatureRecord]:
    """Read every feature of ``path`` (JSONL, ``.jsonl.gz``, published JSON file or folder)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(path.rglob("*.json"))
        if not files:
            raise UserError(f"{path}: folder holds no *.json feature files")
        return [rec for f in files for rec in _read_published(f)]
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return list(_read_jsonl(path))
    if name.endswith(".json"):
        return _read_published(path)
    raise UserError(f"{path}: expected a .jsonl, .jsonl.gz or .json file (or a folder of .json)")


def _read_jsonl(path: Path) -> Iterator[FeatureRecord]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            lines = list(fh)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    seen = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{where}: expected a JSON object per line, got {_kind(obj)}")
        for key in ("checkpoint", "feature", "examples"):
            if key not in obj:
                raise UserError(f"{where}: missing field '{key}'")
        seen += 1
        yield FeatureRecord(
            checkpoint=_int_field(obj, "checkpoint", where),
            feature=_int_field(obj, "feature", where),
            examples=validate_examples(obj["examples"], where),
            language=_language_field(obj.get("language"), where),
            granularity=_granularity_field(obj.get("granularity"), where),
            language_counts=_counts_field(obj.get("language_counts"), where),
            source=where,
        )
    if not seen:
        raise UserError(f"{path}: no features in file (expected one JSON object per line)")


def _read_published(path: Path) -> list[FeatureRecord]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    objs = obj if isinstance(obj, list) else [obj]
    folder_step = next((s for p in path.parents if (s := parse_step_dir(p.name)) is not None), None)
    digits = re.findall(r"\d+", path.stem)
    out = []
    for i, o in enumerate(objs):
        where = f"{path}" + (f"[{i}]" if isinstance(obj, list) else "")
        if not isinstance(o, dict):
            raise UserError(f"{where}: expected a feature object, got {_kind(o)}")
        if "token_act" not in o:
            raise UserError(f"{where}: missing field 'token_act'")
        if "feature" in o:
            feat = _int_field(o, "feature", where)
        elif not isinstance(obj, list) and digits:
            feat = int(digits[-1])
        else:
            feat = i
        if "checkpoint" in o:
            ckpt = _int_field(o, "checkpoint", where)
        else:
            ckpt = folder_step
        counts = _counts_field(o.get("language"), where, name="language")
        out.append(FeatureRecord(
            checkpoint=ckpt,
            feature=feat,
            examples=validate_examples(o["token_act"], where),
            language=majority_language(counts) if counts else None,
            granularity=_granularity_field(o.get("granularity"), where),
            language_counts=counts,
            source=where,
        ))
    return out


def _int_field(obj: dict, key: str, where: str) -> int:
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise UserError(f"{where}: field '{key}': expected a non-negative integer, got {v!r}")
    return v


def _language_field(v: Any, where: str) -> str | None:
    if v is None:
        return None
    if v not in _LANGUAGES:
        raise UserError(f"{where}: field 'language': expected one of en, ja, mix, got {v!r}")
    return v


def _granularity_field(v: Any, where: str) -> str | None:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool) and v in GRANULARITY_CODES:
        return GRANULARITY_CODES[v]
    if isinstance(v, str) and v.isdigit() and int(v) in GRANULARITY_CODES:
        return GRANULARITY_CODES[int(v)]
    if v in _GRANULARITIES:
        return v
    raise UserError(
        f"{where}: field 'granularity': expected token|synonym|semantic|uninterpretable or a "
        f"code 1-4, got {v!r}"
    )


def _counts_field(v: Any, where: str, name: str = "language_counts") -> dict[str, int] | None:
    if v is None:
        return None
    ok = isinstance(v, dict) and all(
        k in ("en", "ja") and isinstance(c, int) and not isinstance(c, bool) and c >= 0
        for k, c in v.items()
    )
    if not ok:
        raise UserError(f"{where}: field '{name}': expected {{\"en\": int, \"ja\": int}}, got {v!r}")
    return dict(v)


def _kind(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False, default=str)
    return f"{type(v).__name__} {text[:40]}{'…' if len(text) > 40 else ''}"
