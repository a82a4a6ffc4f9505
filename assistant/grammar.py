"""The function words of each language the rule parser reads: negation, filler, clause breaks and the commands.

A catalog's vocabulary (colours, sleeves, sizes…) is data and comes from its
schema; these are the words around it that every catalog shares: "no"/"without"
before a value in English, なし/じゃなくて after it in Japanese, the filler that
carries no request ("make it", にして, ください), and the commands ("undo",
元に戻して). The parser reads every language at once, so a message may mix them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNDO, START_OVER, NONE_OF_THESE = "undo", "start_over", "none_of_these"


@dataclass(frozen=True)
class Grammar:
    """One language's function words; ``postfix_negators`` follow the value they negate (赤じゃなくて)."""

    language: str
    negators: tuple[str, ...] = ()
    postfix_negators: tuple[str, ...] = ()
    filler: frozenset[str] = frozenset()
    separators: frozenset[str] = frozenset()
    commands: tuple[tuple[str, re.Pattern[str]], ...] = ()


ENGLISH = Grammar(
    language="en",
    negators=("no", "not", "without", "remove", "lose", "drop", "minus", "non", "get rid of", "cut off", "take off",
              "take away", "don't want", "dont want", "do not want", "less", "rather than", "instead of", "other than",
              "but not", "anything but"),
    filler=frozenset((
        "a", "an", "the", "it", "its", "it's", "this", "that", "these", "those", "one", "ones", "thing", "something",
        "make", "makes", "made", "making", "i", "i'd", "i'm", "im", "id", "me", "my", "we", "us", "our", "you",
        "your", "want", "wanted", "wants", "would", "like", "prefer", "preferably", "please", "pls", "could", "can",
        "may", "might", "show", "find", "get", "give", "version", "same", "instead", "actually", "rather", "in",
        "with", "to", "of", "for", "on", "at", "change", "changed", "switch", "turn", "colour", "color", "more",
        "much", "bit", "little", "maybe", "just", "is", "be", "are", "was", "looking", "look", "looks", "need",
        "some", "also", "now", "again", "let's", "lets", "try", "put", "add", "have", "has", "oh", "ok", "okay",
        "sorry", "wait", "yes", "yeah", "hmm", "um", "kind", "sort", "very", "really", "quite", "so", "too", "all",
        "over", "them", "they", "do", "does", "go", "got", "should", "how", "about", "what", "if", "into", "as",
        "see", "but", "then", "and", "or", "thanks", "thank", "than", "style", "one's", "length", "neckline", "neck",
        "cut", "shape", "even", "slightly", "lot", "way",
    )),
    separators=frozenset({",", ".", ";", ":", "!", "?", "and", "but", "then", "also", "plus", "&", "+", "or"}),
    commands=(
        (UNDO, re.compile(r"^(?:undo(?: that| it| the last(?: one| change)?)?|go back|back|revert(?: that)?|"
                          r"take (?:that|it) back)\b(?:$|[,.;:!-]+\s*)")),
        (START_OVER, re.compile(r"^(?:start (?:over|again|afresh|from scratch)|restart|reset|new search|"
                                r"clear(?: all)?|begin again|from scratch|forget (?:it|that|everything))"
                                r"\b(?:$|[,.;:!-]+\s*)")),
        (NONE_OF_THESE, re.compile(r"^(?:none of (?:these|those|them|the above)(?: (?:work|are right|fit))?|none|"
                                   r"not (?:these|those|any of (?:these|them))|neither|nothing here|no good|"
                                   r"show me (?:others|other ones|something else|different ones|more)|"
                                   r"something else|i (?:do not|don'?t) like (?:these|those|any(?: of "
                                   r"(?:these|them|those))?))\b(?:$|[,.;:!-]+\s*)")),
    ),
)

JA_PLEASE = r"(?:ください|下さい|くれる|ちょうだい|お願いします|おねがいします|お願い|おねがい)?"
JA_END = r"[、。,.!?・\s]*"

JAPANESE = Grammar(
    language="ja",
    postfix_negators=(
        "じゃなくて", "じゃなく", "じゃない", "ではなくて", "ではなく", "ではない", "でなくて", "でなく", "以外",
        "以外で", "なし", "無し", "なしで", "無しで", "抜き", "抜きで", "はいらない", "いらない", "要らない",
        "は要らない", "はなし", "はなしで", "をなくして", "なくして", "を取って", "をとって", "を外して", "をはずして",
        "をやめて", "はやめて", "やめて", "は嫌", "はいや", "はやだ", "は避けて", "を消して",
    ),
    filler=frozenset((
        "にして", "にしてください", "にしたい", "にする", "にします", "にしよう", "して", "してください", "してほしい",
        "してみて", "に変えて", "変えて", "変更して", "へ", "に", "で", "の", "を", "が", "は", "も", "と", "や", "な",
        "か", "ね", "よ", "です", "ます", "でお願いします", "がいい", "がいいです", "がいいな", "のほうがいい",
        "の方がいい", "ほうがいい", "方がいい", "がほしい", "が欲しい", "がほしいです", "ほしい", "欲しい",
        "を探して", "探して", "を探しています", "探しています", "を見せて", "見せて", "ありますか", "ある", "あり",
        "やっぱり", "やっぱ", "やはり", "もっと", "もう少し", "もうちょっと", "もうちょい", "少し", "すこし",
        "ちょっと", "ちょい", "かなり", "とても", "すごく", "いい", "かな", "感じ", "っぽい", "ぽい", "系", "もの",
        "物", "やつ",
        "これ", "それ", "あれ", "この", "その", "あの", "服", "商品", "アイテム", "付き", "つき", "入り", "タイプ",
        "色", "カラー", "じゃあ", "じゃ", "では", "なら", "あと", "それと", "そして", "それから", "えーと", "えっと",
        "うーん", "いや", "いいえ", "はい", "ええ", "うん", "お願いします", "おねがいします", "お願い", "ください",
        "下さい", "ちょうだい", "たい", "です", "でした", "だ", "だった", "どう", "どうかな", "どうですか",
        "ありがとう", "今度は", "次は", "代わりに", "かわりに", "にしたら", "なのを", "なもの", "のもの", "のやつ",
        "のを", "なの", "の",
    )),
    separators=frozenset({"、", "。", "・"}),
    commands=(
        (UNDO, re.compile(r"^(?:(?:ひとつ|一つ|1つ|いっこ)?(?:前に|まえに|元に|もとに)?(?:戻して|もどして|戻る|"
                          r"もどる|戻す|もどす)|(?:ひとつ|一つ|1つ)?(?:前に|まえに|元に|もとに)(?:戻って|もどって)|取り消し(?:て)?|とりけし(?:て)?|取消し?|アンドゥ|"
                          r"(?:今|いま|さっき)のは?(?:なし|無し|取り消し))" + JA_PLEASE + JA_END)),
        (START_OVER, re.compile(r"^(?:最初から(?:やり直し(?:て|たい)?|探し直し(?:て)?|にして|もう一度)?|"
                                r"はじめから(?:やり直し(?:て)?)?|初めから(?:やり直し(?:て)?)?|"
                                r"リセット(?:して)?|全部(?:消して|クリア(?:して)?|リセット(?:して)?)|"
                                r"やり直し(?:て|たい)?|新しく探(?:す|して|したい)|クリア(?:して)?)"
                                + JA_PLEASE + JA_END)),
        (NONE_OF_THESE, re.compile(r"^(?:(?:どれも|全部|ぜんぶ|いずれも|どれ一つ)(?:違う|ちがう|違います|"
                                   r"ちがいます|だめ|ダメ|駄目|いまいち|イマイチ|嫌|いや|微妙|好みじゃない|"
                                   r"気に入らない|合わない|ちがうかな|違うかな)|(?:他|ほか|別|違う)の(?:を|も)?"
                                   r"(?:見せて|みせて|見たい|ある)?|これ(?:ら)?(?:じゃない|じゃなくて|は違う|"
                                   r"ではない)|どれもピンとこない)" + JA_PLEASE + JA_END)),
    ),
)

GRAMMARS: tuple[Grammar, ...] = (ENGLISH, JAPANESE)
