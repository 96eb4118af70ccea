"""A seeded generator of the toy bilingual corpus, written in the llm-jp-corpus v3 layout.

Sentences come from templates ("frames") with concept slots, realised in Japanese or English.
Documents are mostly monolingual; a share are bilingual: parallel (each sentence followed by its
translation), glossed (「猫 (cat) は…」) or code-switched (a concept named in the other
language), so that the cross-lingual correspondence of the planted concepts is learnable.
A share of the mentions, in either language, is followed by the concept's language-neutral tag
(猫① / cat①): the ja and en forms then predict the same next token, which is what makes the
model give them one direction late in training (``docs/toy-known-answer.md``).
Output: ``ja/ja_wiki/train_0.jsonl.gz`` and ``en/en_wiki/train_0.jsonl.gz``, one
``{"text": ...}`` per line, gzip with a zero timestamp so the same seed gives the same bytes.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from llmjp_ckpt import atomic
from llmjp_ckpt.toy.lexicon import BY_ID, CATEGORIES, COLOUR_OF, HOME_OF, LIKES, TAG_OF, Concept, in_category
from llmjp_ckpt.toy.tokenizer import DELIMITER, chunks

LANGS = ("ja", "en")
CORPUS_FILES = {"ja": "ja/ja_wiki/train_0.jsonl.gz", "en": "en/en_wiki/train_0.jsonl.gz"}
TAG = "tag"  # the "language" of a tag segment (a concept's language-neutral mark, not a form)


@dataclass(frozen=True)
class Frame:
    """A sentence template with two concept slots ``{a}`` and ``{b}``.

    ``fact`` names a lexicon table fixing ``b`` from ``a`` (the same in both languages);
    without it both slots are drawn independently.
    """

    name: str
    a: tuple[str, ...]
    b: tuple[str, ...]
    ja: str
    en: str
    fact: dict[str, str] | None = None


FRAMES: tuple[Frame, ...] = (
    Frame("colour", ("animal", "food", "instrument"), ("colour",),
          "{a}の色は{b}です。", "The colour of the {a} is {b}.", COLOUR_OF),
    Frame("home", ("animal",), ("place",), "{a}は{b}に住んでいる。", "The {a} lives in {b}.", HOME_OF),
    Frame("likes", ("animal",), ("food",), "{a}は{b}が好きだ。", "The {a} likes {b}.", LIKES),
    Frame("eat", ("animal",), ("food",), "{a}は{b}を食べた。", "The {a} ate the {b}."),
    Frame("see", ("place",), ("animal",), "{a}で{b}を見た。", "I saw the {b} in {a}."),
    Frame("hear", ("place",), ("instrument",), "{a}で{b}の音を聞いた。", "In {a} I heard the {b}."),
    Frame("count", ("animal", "food"), ("number",), "{a}の数は{b}だ。", "The number of {a} is {b}."),
    Frame("play", ("instrument",), ("place",), "{b}で友達が{a}を演奏した。", "My friend played the {a} in {b}."),
    # Generic frames take a concept of any category in either slot, so that a form's neighbours
    # say less about its category: the category frames above no longer decide it by step 30, and
    # the concept level (categories, synonyms) is learned after the tokens. Half of all sentences.
    Frame("about", CATEGORIES, CATEGORIES, "{a}と{b}について書いた。", "I wrote about the {a} and the {b}."),
    Frame("photo", CATEGORIES, CATEGORIES, "{a}の写真の横に{b}の絵がある。",
          "Next to a photo of the {a} is a picture of the {b}."),
    Frame("list", CATEGORIES, CATEGORIES, "表には{a}と{b}が並んでいる。", "The list shows the {a} and the {b}."),
)
FRAME_WEIGHTS = (3, 2, 2, 1, 1, 1, 1, 1, 4, 4, 4)

# A segment of generated text: (text, concept id if it is a planted form or its tag, language of
# the form or TAG).
Segment = tuple[str, str | None, str | None]


@dataclass(frozen=True)
class CorpusConfig:
    """How much corpus to generate and of which kinds.

    Attributes:
        n_docs: number of documents (both languages together).
        bilingual_share: fraction of documents in which both languages appear (documents are
            of one length distribution whatever their kind, so this is also their token share).
        kinds: relative weights of the bilingual kinds (parallel, gloss, codeswitch).
        variant_share: probability that a Japanese form is an orthographic variant (ネコ for 猫).
        tag_share: probability that a mention (in either language) is followed by the concept's
            language-neutral tag (``lexicon.TAG_OF``); 0 turns tags off.
        length: (min, max) target length of a document in tokens, drawn uniformly; sentences
            (or sentence pairs) are added until the estimate reaches it, so Japanese documents
            (about 4 tokens a sentence) get as long as English ones (about 8), like Wikipedia
            articles: the study keeps documents of at least 65 tokens (BOS + 64).
    """

    n_docs: int = 2220
    bilingual_share: float = 0.5
    kinds: tuple[float, float, float] = (0.5, 0.25, 0.25)
    variant_share: float = 0.35
    tag_share: float = 0.05
    length: tuple[int, int] = (72, 136)


@dataclass
class Doc:
    """One generated document: its major language, kind and segments."""

    lang: str
    kind: str
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(s[0] for s in self.segments)

    def delimited(self, delimiter: str) -> str:
        """The text with ``delimiter`` around every planted form (for tokenizer training)."""
        return "".join(delimiter + t + delimiter if cid else t for t, cid, _ in self.segments)


class Generator:
    """Draws sentences and documents from one seeded ``random.Random``."""

    def __init__(self, seed: int, config: CorpusConfig | None = None):
        self.rng = random.Random(seed)
        self.config = config or CorpusConfig()

    # -- concepts and forms --------------------------------------------------------------
    def frame(self) -> Frame:
        return self.rng.choices(FRAMES, weights=FRAME_WEIGHTS)[0]

    def fill(self, frame: Frame, a: Concept | None = None) -> tuple[Concept, Concept]:
        """Concepts for a frame's slots (``a`` may be fixed by the caller)."""
        a = a or self.rng.choice(in_category(*frame.a))
        b = BY_ID[frame.fact[a.id]] if frame.fact else self.rng.choice(in_category(*frame.b))
        return a, b

    def ja_form(self, c: Concept) -> str:
        if len(c.ja) > 1 and self.rng.random() < self.config.variant_share:
            return self.rng.choice(c.ja[1:])
        return c.ja[0]

    # -- sentences -----------------------------------------------------------------------
    def sentence(self, frame: Frame, a: Concept, b: Concept, lang: str,
                 style: str = "plain", forms: dict[str, str] | None = None) -> list[Segment]:
        """Realise ``frame`` in ``lang``.

        ``style``: ``plain``; ``gloss`` (each concept followed by its other-language form in
        brackets); ``switch`` (each concept, with probability 1/2, named in the other language).
        ``forms`` fixes the Japanese form per concept id (so a translation reuses it).
        """
        template = frame.ja if lang == "ja" else frame.en
        out: list[Segment] = []
        for part in re.split(r"(\{[ab]\})", template):
            if part not in ("{a}", "{b}"):
                if part:
                    out.append((part, None, None))
                continue
            c = a if part == "{a}" else b
            ja = (forms or {}).get(c.id) or self.ja_form(c)
            own, other = (ja, c.en) if lang == "ja" else (c.en, ja)
            other_lang = "en" if lang == "ja" else "ja"
            tag = [(TAG_OF[c.id], c.id, TAG)] if self.rng.random() < self.config.tag_share else []
            if style == "switch" and self.rng.random() < 0.5:
                pad = " " if lang == "ja" else ""  # English words inside Japanese keep spaces
                out += [(pad, None, None), (other, c.id, other_lang), *tag, (pad, None, None)]
            elif style == "gloss":
                pad = " " if lang == "ja" else ""
                out += [(own, c.id, lang), (" (", None, None), (other, c.id, other_lang),
                        (")", None, None), *tag, (pad, None, None)]
            else:
                out += [(own, c.id, lang), *tag]
        return [s for s in out if s[0]]

    # -- documents -----------------------------------------------------------------------
    def document(self, lang: str | None = None) -> Doc:
        """One document of major language ``lang`` (drawn at random when ``None``)."""
        cfg = self.config
        lang = lang or self.rng.choice(LANGS)
        kind = "mono"
        if self.rng.random() < cfg.bilingual_share:
            kind = self.rng.choices(("parallel", "gloss", "switch"), weights=cfg.kinds)[0]
        target = self.rng.randint(*cfg.length)
        sep = "" if kind != "parallel" and lang == "ja" else " "
        segments: list[Segment] = []
        size = 0
        while size < target:
            frame = self.frame()
            a, b = self.fill(frame)
            if kind == "parallel":
                forms = {c.id: self.ja_form(c) for c in (a, b)}
                other = "en" if lang == "ja" else "ja"
                part = self.sentence(frame, a, b, lang, forms=forms) + [(" ", None, None)]
                part += self.sentence(frame, a, b, other, forms=forms)
            else:
                style = {"gloss": "gloss", "switch": "switch"}.get(kind, "plain")
                part = self.sentence(frame, a, b, lang, style)
            segments += ([(sep, None, None)] if segments and sep else []) + part
            size += estimate_tokens(part)
        return Doc(lang, kind, _tidy(segments))

    def documents(self, n: int | None = None) -> list[Doc]:
        """``n`` documents, alternating ja / en so both languages get the same number (the study
        balances its windows 50/50 and cuts the longer language to the shorter one)."""
        return [self.document(LANGS[i % 2]) for i in range(n or self.config.n_docs)]


def estimate_tokens(segments: list[Segment]) -> int:
    """About how many pieces the toy tokenizer cuts ``segments`` into: one per word, form or
    literal run (the chunks its vocabulary is built from; rare ones may split further)."""
    return len(chunks(Doc("", "", segments).delimited(DELIMITER)))


def _tidy(segments: list[Segment]) -> list[Segment]:
    """Collapse doubled spaces and trim the ends (code-switched words bring their own)."""
    out: list[Segment] = []
    for text, cid, lang in segments:
        if cid is None and out and out[-1][1] is None:
            text = out.pop()[0] + text
        if cid is None:
            text = re.sub(r" {2,}", " ", text)
            text = re.sub(r" (?=[。.])", "", text)
            if out and out[-1][0].endswith(" "):
                text = text.lstrip(" ")
        out.append((text, cid, lang))
    if out and out[0][1] is None:
        out[0] = (out[0][0].lstrip(" "), None, None)
    if out and out[-1][1] is None:
        out[-1] = (out[-1][0].rstrip(" "), None, None)
    return [s for s in out if s[0]]


def write_corpus(docs: list[Doc], out_dir: str | Path) -> dict[str, int]:
    """Write ``docs`` in the llm-jp-corpus v3 layout under ``out_dir``; return docs per language."""
    counts = {}
    for lang in LANGS:
        lines = [json.dumps({"text": d.text}, ensure_ascii=False) for d in docs if d.lang == lang]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        atomic.write_bytes(Path(out_dir) / CORPUS_FILES[lang], gzip.compress(data, mtime=0))
        counts[lang] = len(lines)
    return counts


def read_corpus(out_dir: str | Path, lang: str) -> list[str]:
    """The texts of one language's corpus file."""
    with gzip.open(Path(out_dir) / CORPUS_FILES[lang], "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]
