"""Language of a feature: the study's ``paper`` rule, reproduced exactly, and our ``script`` rule.

``paper`` (the study's): per example take the max-activating token (quantised 0–10 activation,
first on ties), strip whitespace; English if it is only ASCII letters, whitespace and
``"'(),.-``; a digits-only token defers to the token before it; anything else (kana, kanji,
byte pieces, an empty string, other punctuation) is Japanese. The feature is ``en`` / ``ja``
when that class is > 0.9 of its examples, else ``mix``. The study's code looks the previous
token up as ``i - 1``, which at the start of a window wraps round to the window's *last*
token; we keep that quirk, without which its published counts are not reproduced (with it:
298/298 labels and counts on the peer file).

``script`` (our default): every token is ``en`` (Latin letters), ``ja`` (kana or kanji — any
such character makes the token Japanese, as Latin letters occur inside Japanese text but not
the other way round) or ``neutral`` (whitespace, newlines, digits, punctuation, symbols, byte
pieces ``<0xNN>``, control characters and other scripts). Per example the *active* tokens
(activation ≥ ``active_frac`` × the example's max) vote with their activation; when all of an
example's active tokens are neutral, the nearest non-neutral token before the max (else after
it) in the same window votes with the max activation; a wholly neutral window does not vote.
The feature is ``en`` / ``ja`` when that script holds > 0.9 of the vote, else ``mix`` —
including the **neutral rule**: a feature with no script evidence at all is ``mix``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from llmjp_ckpt.chars import (
    Language,
    Script,
    char_script,
    majority_language,
    strip_byte_pieces,
)

WindowLike = Sequence[Sequence]  # a window: [[token_text, activation], ...]
_PAPER_EN = re.compile(r"^[A-Za-z\s\"'(),.\-]+$")
_DIGITS = re.compile(r"^[0-9]+$")


# ----------------------------------------------------------------------------- paper rule
def quantise(examples: Sequence[WindowLike]) -> list[list[tuple[str, int]]]:
    """Activations as the study's 0–10 ints; already-quantised input is returned unchanged.

    Float activations are scaled by the feature's maximum and rounded (an assumption: the
    published data holds only the result).
    """
    acts = [float(a) for w in examples for _, a in w]
    if all(a == int(a) and 0 <= a <= 10 for a in acts):
        return [[(t, int(a)) for t, a in w] for w in examples]
    top = max(acts, default=0.0)
    scale = 10.0 / top if top > 0 else 0.0
    return [[(t, int(max(0.0, float(a)) * scale + 0.5)) for t, a in w] for w in examples]


def paper_token_class(window: Sequence, i: int) -> Literal["en", "ja"]:
    """The paper's class of token ``i`` of ``window`` (digits defer to ``i - 1``, wrapping)."""
    for _ in range(len(window)):
        text = str(window[i][0]).strip()
        if not _DIGITS.match(text):
            return "en" if _PAPER_EN.match(text) else "ja"
        i -= 1  # the study's ``i - 1``: -1 is the window's last token
    return "ja"  # a window of digits only


def paper_counts(examples: Sequence[WindowLike]) -> dict[str, int]:
    """Number of examples whose max-activating token is English / Japanese by the paper's rule."""
    counts = {"en": 0, "ja": 0}
    for w in quantise(examples):
        if not w:
            continue  # an empty window has no max token
        i = max(range(len(w)), key=lambda j: w[j][1])  # first on ties
        counts[paper_token_class(w, i)] += 1
    return counts


def paper_language(examples: Sequence[WindowLike]) -> Language:
    """The study's language label of a feature: ``en``, ``ja`` or ``mix``."""
    return majority_language(paper_counts(examples))


# ---------------------------------------------------------------------------- script rule
@lru_cache(maxsize=1 << 17)  # pieces repeat: the vocabulary is ~100k
def token_script(token: str) -> Script:
    """``ja`` if the token holds kana/kanji, else ``en`` if it holds Latin letters, else neutral."""
    scripts = {char_script(c) for c in strip_byte_pieces(unicodedata.normalize("NFKC", token))}
    return "ja" if "ja" in scripts else "en" if "en" in scripts else "neutral"


def script_scores(
    examples: Sequence[WindowLike], active_frac: float = 0.5
) -> dict[str, float]:
    """Activation-weighted votes ``{"en": ..., "ja": ...}`` of the script rule."""
    votes = {"en": 0.0, "ja": 0.0}
    for w in examples:
        acts = [max(0.0, float(a)) for _, a in w]
        top = max(acts, default=0.0)
        if top <= 0:
            continue
        voted = False
        for (t, _), a in zip(w, acts):
            s = token_script(str(t)) if a >= active_frac * top else "neutral"
            if s != "neutral":
                votes[s] += a
                voted = True
        if not voted:
            i = acts.index(top)
            for j in [*range(i - 1, -1, -1), *range(i + 1, len(w))]:
                s = token_script(str(w[j][0]))
                if s != "neutral":
                    votes[s] += top
                    break
    return votes


def script_language(examples: Sequence[WindowLike], active_frac: float = 0.5) -> Language:
    """Our script-aware language label: ``en``, ``ja`` or ``mix`` (no evidence at all: ``mix``)."""
    return majority_language(script_scores(examples, active_frac))


RULES = {"paper": paper_language, "script": script_language}


def language(examples: Sequence[WindowLike], rule: str = "script") -> Language:
    """Dispatch by rule name (``paper`` or ``script``)."""
    if rule not in RULES:
        raise ValueError(f"language rule {rule!r}: expected one of {', '.join(RULES)}")
    return RULES[rule](examples)
