"""The toy world's lexicon: concepts in semantic categories, with Japanese and English forms.

Each concept has one English form and two Japanese forms: the main one and an orthographic
variant (猫 / ネコ, 赤 / あか, 金閣寺 / きんかくじ, 一 / 壱 the formal numeral) so that "same
meaning, different token" exists inside one language, for every concept. Concepts also carry
fixed facts (a colour, a home, a favourite food) that the corpus states in both languages, so
that knowing *which* concept a form names pays off in prediction, and a language-neutral tag
(①, ②, …) that may follow a mention in either language.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Concept:
    """One planted concept.

    Attributes:
        id: stable English identifier, e.g. ``"cat"``.
        category: semantic category, e.g. ``"animal"``.
        ja: Japanese surface forms; the first is the main one, the rest orthographic variants.
        en: the English surface form (one word, lower case unless a proper name).
    """

    id: str
    category: str
    ja: tuple[str, ...]
    en: str

    @property
    def forms(self) -> list[tuple[str, str]]:
        """Every surface form as ``(language, form)``."""
        return [("ja", f) for f in self.ja] + [("en", self.en)]


def _c(category: str, en: str, *ja: str) -> Concept:
    return Concept(id=en.lower(), category=category, ja=tuple(ja), en=en)


CONCEPTS: tuple[Concept, ...] = (
    # animals: kanji / katakana variants, as Japanese writes them
    _c("animal", "cat", "猫", "ネコ"),
    _c("animal", "dog", "犬", "イヌ"),
    _c("animal", "bird", "鳥", "トリ"),
    _c("animal", "horse", "馬", "ウマ"),
    _c("animal", "cow", "牛", "ウシ"),
    _c("animal", "rabbit", "ウサギ", "兎"),
    _c("animal", "fox", "キツネ", "狐"),
    _c("animal", "deer", "鹿", "シカ"),
    _c("animal", "bear", "熊", "クマ"),
    # colours
    _c("colour", "red", "赤", "あか"),
    _c("colour", "blue", "青", "あお"),
    _c("colour", "white", "白", "しろ"),
    _c("colour", "black", "黒", "くろ"),
    _c("colour", "green", "緑", "みどり"),
    _c("colour", "yellow", "黄色", "きいろ"),
    # foods: kanji / hiragana / katakana variants
    _c("food", "apple", "りんご", "リンゴ"),
    _c("food", "rice", "米", "コメ"),
    _c("food", "fish", "魚", "さかな"),
    _c("food", "bread", "パン", "麺麭"),
    _c("food", "tofu", "豆腐", "とうふ"),
    _c("food", "sushi", "寿司", "すし"),
    _c("food", "egg", "卵", "たまご"),
    _c("food", "tea", "茶", "ちゃ"),
    # places in Kyoto
    _c("place", "Kinkakuji", "金閣寺", "きんかくじ"),
    _c("place", "Ginkakuji", "銀閣寺", "ぎんかくじ"),
    _c("place", "Kiyomizudera", "清水寺", "きよみずでら"),
    _c("place", "Arashiyama", "嵐山", "あらしやま"),
    _c("place", "Gion", "祇園", "ぎおん"),
    _c("place", "Fushimi", "伏見", "ふしみ"),
    _c("place", "Kamogawa", "鴨川", "かもがわ"),
    _c("place", "Sagano", "嵯峨野", "さがの"),
    # instruments
    _c("instrument", "piano", "ピアノ", "ぴあの"),
    _c("instrument", "guitar", "ギター", "ぎたー"),
    _c("instrument", "drum", "太鼓", "たいこ"),
    _c("instrument", "flute", "笛", "ふえ"),
    _c("instrument", "violin", "バイオリン", "ヴァイオリン"),
    _c("instrument", "koto", "琴", "箏"),
    _c("instrument", "trumpet", "トランペット", "喇叭"),
    # numbers
    _c("number", "one", "一", "壱"),
    _c("number", "two", "二", "弐"),
    _c("number", "three", "三", "参"),
    _c("number", "four", "四", "肆"),
    _c("number", "five", "五", "伍"),
    _c("number", "six", "六", "陸"),
    _c("number", "seven", "七", "漆"),
    _c("number", "eight", "八", "捌"),
)

BY_ID: dict[str, Concept] = {c.id: c for c in CONCEPTS}
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(c.category for c in CONCEPTS))


def in_category(*categories: str) -> list[Concept]:
    """The concepts of the given categories, in lexicon order."""
    return [c for c in CONCEPTS if c.category in categories]


def _fact(subjects: list[Concept], objects: list[Concept], stride: int) -> dict[str, str]:
    # A fixed, spread-out assignment (not random) so the facts never depend on a seed.
    return {s.id: objects[(i * stride + 1) % len(objects)].id for i, s in enumerate(subjects)}


def _tags(n: int) -> list[str]:
    # Circled numbers ①…⑳, ❶…❿, ➀…➉, ➊…➓: one code point each, neither Japanese nor English to
    # llmjp_ckpt.chars (and outside its CJK span), so a tag is the same token in both languages
    # and evidence for neither. (㉑… would fall inside the CJK span.)
    points = [*range(0x2460, 0x2474), *range(0x2776, 0x2794)]
    return [chr(points[i]) for i in range(n)]


# A concept's tag: a mark that follows a mention of it in either language, as an identifier, a
# year or a formula follows an entity in both Wikipedias. Its only job in the toy is to make the
# ja and en forms of a concept predict the same next token.
TAG_OF: dict[str, str] = dict(zip((c.id for c in CONCEPTS), _tags(len(CONCEPTS)), strict=True))

# Facts the corpus states in both languages.
COLOUR_OF: dict[str, str] = _fact(in_category("animal", "food", "instrument"), in_category("colour"), 5)
HOME_OF: dict[str, str] = _fact(in_category("animal"), in_category("place"), 3)
LIKES: dict[str, str] = _fact(in_category("animal"), in_category("food"), 3)


def all_forms() -> list[tuple[str, str, Concept]]:
    """Every ``(language, form, concept)`` of the lexicon."""
    return [(lang, form, c) for c in CONCEPTS for lang, form in c.forms]
