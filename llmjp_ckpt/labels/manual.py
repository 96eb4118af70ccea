"""A terminal tool for labelling feature granularity by hand, one key per feature, resumable.

Each feature shows its top examples around the max-activating token, the activation shown by
background shade (ANSI colours) or, without colours, ``[[max]]`` and ``{active}`` brackets.
One key answers: ``t`` token, ``s`` synonym, ``m`` semantic (meaning), ``u`` uninterpretable
(or ``1``–``4``), ``k`` skip, ``q`` quit. Every answer is appended at once to a JSONL file
(``{"checkpoint", "feature", "granularity", "labelled_at"}``, flushed and fsynced); a rerun
skips features already there, so quitting or a crash loses at most the feature on screen.
Corpus text is printed with control characters, escapes and byte pieces made visible, so a
token can never move the cursor or recolour the terminal.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.labels.examples import FeatureRecord

KEYS = {
    "t": "token", "1": "token",
    "s": "synonym", "2": "synonym",
    "m": "semantic", "3": "semantic",
    "u": "uninterpretable", "4": "uninterpretable",
}
PROMPT = "[t]oken [s]ynonym se[m]antic [u]ninterpretable  [k] skip [q] quit > "
_SHADES = [236, 238, 240, 58, 94, 130, 166, 202, 208, 214, 220]  # dark → bright by activation


def printable(token: str) -> str:
    """Token text safe for a terminal: newline → ⏎, tab → ⇥, other controls → ``\\xNN``."""
    if token == "<0x0A>":
        return "⏎"
    if token == "<0x09>":
        return "⇥"
    out = []
    for ch in token:
        o = ord(ch)
        if ch == "\n":
            out.append("⏎")
        elif ch == "\t":
            out.append("⇥")
        elif o < 0x20 or 0x7F <= o < 0xA0 or o in (0x2028, 0x2029) or 0x202A <= o <= 0x202E:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def render_window(window: Sequence, *, context: int = 12, color: bool = True) -> str:
    """One example as a line: ``context`` tokens either side of the max, highlighted."""
    acts = [float(a) for _, a in window]
    top = max(acts, default=0.0)
    i = acts.index(top) if acts else 0
    lo, hi = max(0, i - context), min(len(window), i + context + 1)
    parts = []
    for j in range(lo, hi):
        text = printable(str(window[j][0]))
        level = 0 if top <= 0 else max(0, min(10, round(10 * acts[j] / top)))
        if color:
            if level:
                parts.append(f"\x1b[48;5;{_SHADES[level]}m{text}\x1b[0m")
            else:
                parts.append(text)
        elif j == i:
            parts.append(f"[[{text}]]")
        elif level >= 5:
            parts.append(f"{{{text}}}")
        else:
            parts.append(text)
    return ("…" if lo > 0 else "") + "".join(parts) + ("…" if hi < len(window) else "")


def read_labels(path: str | Path) -> dict[tuple[int | None, int | None], str]:
    """Labels already written: ``{(checkpoint, feature): granularity}``; a torn last line is skipped."""
    path = Path(path)
    done: dict[tuple[int | None, int | None], str] = {}
    if not path.exists():
        return done
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # a gzipped JSONL (e.g. a peer-format file used as labels)
            raw = gzip.decompress(raw)
        lines = raw.decode("utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: expected a UTF-8 JSONL of labels, optionally gzipped ({exc})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            key = (obj["checkpoint"], obj["feature"])
            label = obj["granularity"]
        except (json.JSONDecodeError, KeyError, TypeError):
            if n == len(lines):
                continue  # interrupted while writing the last line
            raise UserError(f"{path}:{n}: expected a label line with checkpoint, feature, granularity") from None
        if label not in set(KEYS.values()):
            raise UserError(f"{path}:{n}: field 'granularity': unknown label {label!r}")
        done[key] = label
    return done


def _append(path: Path, obj: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def label_interactively(
    records: Iterable[FeatureRecord],
    out: str | Path,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    color: bool | None = None,
    max_examples: int = 10,
    context: int = 12,
    suggest=None,
) -> int:
    """Ask for a label per unlabelled feature; append answers to ``out``. Returns how many."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if color is None:
        color = stdout.isatty() and os.environ.get("NO_COLOR") is None
    done = read_labels(out)
    todo = [r for r in records if (r.checkpoint, r.feature) not in done]
    stdout.write(f"{len(done)} features already labelled in {out}; {len(todo)} to go\n")
    written = 0
    for k, rec in enumerate(todo, 1):
        hint = ""
        if suggest is not None:
            lab, conf = suggest(rec.examples)
            hint = f"  (automatic: {lab} {conf:.2f})"
        stdout.write(f"\n[{k}/{len(todo)}] checkpoint {rec.checkpoint} feature {rec.feature}{hint}\n")
        stdout.writelines(
            "  " + render_window(w, context=context, color=color) + "\n"
            for w in rec.examples[:max_examples]
        )
        while True:
            stdout.write(PROMPT)
            stdout.flush()
            line = stdin.readline()
            if not line:  # end of input: stop, everything answered is saved
                stdout.write("\n")
                return written
            key = line.strip().lower()[:1]
            if key == "q":
                return written
            if key == "k":
                break
            if key in KEYS:
                _append(out, {"checkpoint": rec.checkpoint, "feature": rec.feature,
                              "granularity": KEYS[key],
                              "labelled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                written += 1
                break
            stdout.write("  ? one of t s m u (or 1-4), k, q\n")
    return written
