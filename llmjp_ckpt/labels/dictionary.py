"""Translation and synonym relations from JMdict, for the granularity classifier's synonym rule.

The dictionary is the SQLite database shipped by the PyPI package ``jamdict-data`` (Jim Breen's
JMdict, EDRDG licence), read directly with :mod:`sqlite3`, read-only — the ``jamdict`` library
itself is not needed. Two surface forms are *related* when

* both are English words and both are single-word glosses of one JMdict sense
  (``in``/``at``/``on`` for に, ``grid``/``lattice`` for 格子, ``host``/``moderator`` for 司会);
* one is Japanese and the other a single-word gloss of one of its entries (格子 ↔ grid); or
* both are Japanese spellings of one entry (kanji and kana variants).

English words are compared by :func:`lexical.variant_key` (albums = album); one-character kana
forms (particles: に, は) and senses with more than :data:`MAX_SENSE_WORDS` single-word glosses
are left out as too ambiguous. When the package is absent, :func:`default_dictionary` returns
``None`` and logs it once: the classifier then works on spelling, inflection and loanword sound
alone.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sqlite3
from pathlib import Path

from llmjp_ckpt import chars
from llmjp_ckpt.labels import lexical

log = logging.getLogger(__name__)

MAX_SENSE_WORDS = 8  # a sense glossed by more single words than this is too vague to relate them
_CLEAN = re.compile(r"\([^)]*\)|^\s*(?:to|a|an|the)\s+")
_WORD = re.compile(r"[a-z]{2,}")


def db_path() -> Path | None:
    """The JMdict database of the installed ``jamdict-data`` package, or ``None``."""
    try:
        spec = importlib.util.find_spec("jamdict_data")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "jamdict.db"
        if path.is_file():
            return path
    return None


class JMdictLexicon:
    """Relations between surface forms (see the module docstring), from a JMdict SQLite file.

    Building the English index reads every gloss once (a few seconds); Japanese forms are looked
    up through the database's own indexes, cached.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        self._en = self._english_index()
        self._ja: dict[str, frozenset[int]] = {}  # cache of Japanese look-ups
        self._keys: dict[str, tuple[bool, frozenset[int], frozenset[int]]] = {}  # per token

    def reopen(self) -> None:
        """A fresh read-only connection (after ``fork``: SQLite connections must not cross it)."""
        self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def _english_index(self) -> dict[str, tuple[frozenset[int], frozenset[int]]]:
        """variant key of a single-word gloss -> (sense ids, entry ids) it glosses."""
        per_sense: dict[int, tuple[int, set[str]]] = {}
        rows = self._db.execute(
            "SELECT g.sid, s.idseq, lower(g.text) FROM SenseGloss g JOIN Sense s ON s.ID = g.sid"
            " WHERE g.lang = 'eng'")
        for sid, idseq, text in rows:
            w = _CLEAN.sub("", text).strip()
            if _WORD.fullmatch(w):
                per_sense.setdefault(sid, (idseq, set()))[1].add(lexical.variant_key(w))
        senses: dict[str, set[int]] = {}
        entries: dict[str, set[int]] = {}
        for sid, (idseq, words) in per_sense.items():
            if len(words) > MAX_SENSE_WORDS:
                continue
            for w in words:
                senses.setdefault(w, set()).add(sid)
                entries.setdefault(w, set()).add(idseq)
        return {w: (frozenset(senses[w]), frozenset(entries[w])) for w in senses}

    def _ja_entries(self, form: str) -> frozenset[int]:
        if form not in self._ja:
            if len(form) < 2 and all(chars.is_kana(c) for c in form):
                found: frozenset[int] = frozenset()  # one kana: a particle, far too ambiguous
            else:
                rows = self._db.execute("SELECT idseq FROM Kanji WHERE text = ? UNION "
                                        "SELECT idseq FROM Kana WHERE text = ?", (form, form))
                found = frozenset(r[0] for r in rows)
            if len(self._ja) < 1 << 17:
                self._ja[form] = found
            return found
        return self._ja[form]

    def keys(self, form: str) -> tuple[frozenset[int], frozenset[int]]:
        """(sense ids, entry ids) of a surface form; empty when the dictionary lacks it."""
        return self._lookup(form)[1:]

    def _lookup(self, form: str) -> tuple[bool, frozenset[int], frozenset[int]]:
        """(is an English word, sense ids, entry ids), cached per token text."""
        hit = self._keys.get(form)
        if hit is not None:
            return hit
        s = lexical.surface(form)
        none: frozenset[int] = frozenset()
        if lexical.is_latin_word(s):
            hit = (True, *self._en.get(lexical.variant_key(s), (none, none)))
        elif s and any(chars.in_cjk_span(c) for c in s):
            hit = (False, none, self._ja_entries(s))
        else:
            hit = (False, none, none)
        if len(self._keys) < 1 << 17:
            self._keys[form] = hit
        return hit

    def related(self, a: str, b: str) -> bool:
        """True when ``a`` and ``b`` translate or gloss one another (module docstring)."""
        la, sa, ea = self._lookup(a)
        lb, sb, eb = self._lookup(b)
        if la and lb:
            return not sa.isdisjoint(sb)
        return not ea.isdisjoint(eb)


_DEFAULT: JMdictLexicon | None = None
_LOOKED = False


def default_dictionary() -> JMdictLexicon | None:
    """The JMdict lexicon when ``jamdict-data`` is installed, else ``None`` (logged once)."""
    global _DEFAULT, _LOOKED
    if not _LOOKED:
        _LOOKED = True
        path = db_path()
        if path is None:
            log.warning("jamdict-data is not installed: granularity classifier runs without a "
                        "bilingual dictionary (spelling, inflection and loanword rules only)")
        else:
            try:
                _DEFAULT = JMdictLexicon(path)
            except sqlite3.Error as exc:
                log.warning("cannot read JMdict database %s (%s): no bilingual dictionary",
                            path, exc)
    return _DEFAULT
