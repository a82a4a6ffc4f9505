"""How a message is cut into tokens, in any script: words where a language spaces them, characters where it does not.

Japanese (and Chinese) text has no spaces between words, so every kanji, hiragana
and katakana character is a token of its own and the parser matches phrases as
runs of characters: 青にして and 青 にして read alike, and a catalog phrase
(ノースリーブ, Vネック) is cut the same way when the vocabulary is built. Latin
words stay whole, with hyphenated words split into their parts, so spacing and
hyphens never decide a match. Which language a token is in (for "can the text
tower read it") is told by its script alone.

>>> tokenize("Vネック、make it blue")
['v', 'ネ', 'ッ', 'ク', '、', 'make', 'it', 'blue']
>>> join_tokens(['リ', 'ボ', 'ン', 'with', 'a', 'bow'])
'リボン with a bow'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

TOKEN = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*|[,.;:!?&+、。・]|[\u2600-\u27bf\U0001f000-\U0001faff]")
UNSPACED = re.compile(r"[\u3005\u3006\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
UNSPACED_RUN = re.compile(UNSPACED.pattern + "|" + r"[^\u3005\u3006\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff"
                          r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
JAPANESE = "ja"
ENGLISH = "en"


def unspaced(token: str) -> bool:
    """Whether ``token`` is a character of a script written without spaces (kanji, hiragana, katakana)."""
    return bool(UNSPACED.fullmatch(token))


def tokenize(text: str) -> list[str]:
    """Lower-case tokens: Latin words (hyphenated ones split into parts), single CJK characters, punctuation."""
    tokens: list[str] = []
    for token in TOKEN.findall(text.lower()):
        for piece in UNSPACED_RUN.findall(token) if UNSPACED.search(token) else [token]:
            tokens.extend(part for part in piece.split("-") if part)
    return tokens


def join_tokens(tokens: Sequence[str]) -> str:
    """Tokens back as text: a space between words, none between characters of an unspaced script."""
    out = ""
    for i, token in enumerate(tokens):
        if i and not (unspaced(token) and unspaced(tokens[i - 1])):
            out += " "
        out += token
    return out


def language_of(token: str) -> str:
    """The language a token is written for, told by its script: Japanese for kanji and kana, else English."""
    return JAPANESE if UNSPACED.search(token) else ENGLISH
