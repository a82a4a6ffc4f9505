"""What the assistant says, in each language it speaks, and which of them a user gets.

Replies are made on the server, so they follow the language the user's browser
asks for (its ``Accept-Language``), kept per conversation. Catalog values in a
reply are shown by their display name in that language where the schema has one
(赤 for red, 半袖 for short sleeves); the words the model reads stay the
schema's English edit phrases whatever the user's language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from retrieval.catalog_schema import CatalogSchema

DEFAULT_LANGUAGE = "en"
MAX_ACCEPTED = 16

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "empty": "Tell me what you are looking for, or upload a photo.",
        "bad_image": "I could not use that image: {reason}. Nothing changed.",
        "filters_set": "Filters set; tell me what you are looking for.",
        "not_shown": "Item {item} is not among the results shown; pick one of those.",
        "pick_not_saved": "Your pick could not be saved ({error}); nothing changed, please retry.",
        "picked": "You picked {name} (rank {rank}){saved}. It is now the reference: tell me what to change "
                  "(e.g. {hint}). Here are {n} similar items.",
        "picked_saved": " and saved it",
        "nothing_changed": "Nothing changed.",
        "nothing_to_undo": "There is nothing to undo.",
        "starting_over": "Starting over.",
        "nothing_yet": "Nothing to search for yet.",
        "describe_or_upload": "Describe {example} or upload a photo.",
        "no_change": "That did not change the search.",
        "hiding": "Hiding {n} rejected item(s) from now on.",
        "free_text": "Passing {words} to the model as free text, with a spread of results.",
        "not_understood": "I did not understand {words} (this model reads {languages} only), so I left it out.",
        "results": "Here are {n} items for {state}.",
        "click_to_pick": "Click one to pick it.",
        "new_filters": "Here are {n} items with the new filters.",
        "search_failed": "The search failed: {error}. Nothing changed.",
        "no_match": "Nothing in the catalog matches these filters; try loosening them.",
        "note": " (Note: {note}.)",
        "unavailable": "No {value} items here{closest}.",
        "closest": "; closest: {values}",
        "searching_for": "searching for: ",
        "searching_nothing": "searching for: nothing yet (describe {example} or upload a photo)",
        "searching_nothing_short": "searching for: nothing yet",
        "hiding_state": " (hiding {n} rejected)",
        "reference": "ref #{id}",
        "your_photo": "your photo",
        "quote": "“{text}”",
        "list_separator": ", ",
        "picks_saved": "**{n} pick{plural} saved** this session",
        "no_picks": "No picks yet: click a result to pick it.",
        "deleted": "**Deleted** {picks} saved pick(s), {turns} search record(s) and {photos} kept photo(s) of this "
                   "session. You can go on searching; new picks are saved again.",
        "nothing_saved": "This app saves nothing, so there was nothing to delete.",
        "shortlist_needs_pick": "Pick a catalog item first: the shortlist holds catalog items.",
        "shortlisted": "Added #{id} to the shortlist.",
        "i_pick": "I pick #{id}",
        "undo": "undo",
        "start_over": "start over",
        "none_of_these": "none of these",
        "photo": "(photo)",
        "any": "any",
        "language.en": "English",
        "language.ja": "Japanese",
        "edit_example": "make it {value}",
        "value_joiner": " ",
        "sentence_joiner": " ",
    },
    "ja": {
        "empty": "探しているものを文章で伝えるか、写真をアップロードしてください。",
        "bad_image": "その画像は使えませんでした（{reason}）。何も変えていません。",
        "filters_set": "絞り込みを設定しました。探しているものを教えてください。",
        "not_shown": "商品 {item} は表示中の結果にありません。表示中の商品から選んでください。",
        "pick_not_saved": "選択を保存できませんでした（{error}）。何も変えていないので、もう一度お試しください。",
        "picked": "{name}（{rank}位）を選びました{saved}。これが新しい基準です。変えたいところを教えてください"
                  "（例：{hint}）。似た商品を{n}件表示しています。",
        "picked_saved": "（保存済み）",
        "nothing_changed": "何も変えていません。",
        "nothing_to_undo": "元に戻せる操作はありません。",
        "starting_over": "最初からやり直します。",
        "nothing_yet": "まだ検索する条件がありません。",
        "describe_or_upload": "{example}のように説明するか、写真をアップロードしてください。",
        "no_change": "検索条件は変わりませんでした。",
        "hiding": "違うと言われた{n}件を今後は表示しません。",
        "free_text": "{words}はそのままモデルに渡し、幅広く表示します。",
        "not_understood": "{words}は理解できませんでした（このモデルが読めるのは{languages}だけです）。"
                          "検索には使っていません。",
        "results": "{state}の商品を{n}件表示しています。",
        "click_to_pick": "クリックで選べます。",
        "new_filters": "新しい絞り込みで{n}件表示しています。",
        "search_failed": "検索に失敗しました（{error}）。何も変えていません。",
        "no_match": "この絞り込みに合う商品がありません。条件をゆるめてください。",
        "note": "（注：{note}）",
        "unavailable": "{value}の商品はありません{closest}。",
        "closest": "。近いもの：{values}",
        "searching_for": "検索条件：",
        "searching_nothing": "検索条件：まだありません（{example}のように説明するか、写真をアップロードしてください）",
        "searching_nothing_short": "検索条件：まだありません",
        "hiding_state": "（{n}件を非表示）",
        "reference": "基準 #{id}",
        "your_photo": "あなたの写真",
        "quote": "「{text}」",
        "list_separator": "、",
        "picks_saved": "このセッションで**{n}件の選択を保存**しました",
        "no_picks": "まだ選択していません。結果をクリックすると選べます。",
        "deleted": "このセッションの保存済みの選択{picks}件、検索記録{turns}件、保存した写真{photos}件を"
                   "**削除**しました。このまま検索を続けられます。新しい選択はまた保存されます。",
        "nothing_saved": "このアプリは何も保存していないので、削除するものはありません。",
        "shortlist_needs_pick": "先にカタログの商品を選んでください。候補リストにはカタログの商品が入ります。",
        "shortlisted": "#{id} を候補リストに追加しました。",
        "i_pick": "#{id} を選びます",
        "undo": "元に戻す",
        "start_over": "最初から",
        "none_of_these": "どれも違う",
        "photo": "（写真）",
        "any": "すべて",
        "language.en": "英語",
        "language.ja": "日本語",
        "edit_example": "{value}にして",
        "value_joiner": "の",
        "sentence_joiner": "",
    },
}
LANGUAGES = tuple(TEXTS)


def text(language: str, key: str, **values: object) -> str:
    """The sentence ``key`` in ``language`` (English where that language lacks it), filled with ``values``."""
    template = TEXTS.get(language, {}).get(key, TEXTS[DEFAULT_LANGUAGE][key])
    return template.format(**values)


def sentences(language: str, parts: Sequence[str]) -> str:
    """Sentences one after another as ``language`` writes them: spaced in English, run on in Japanese."""
    return text(language, "sentence_joiner").join(p for p in parts if p)


def quoted(language: str, words: Sequence[str]) -> str:
    """Words as quoted in running text of ``language``: “with a bow”, 「リボン」."""
    return text(language, "list_separator").join(text(language, "quote", text=w) for w in words)


def language_names(language: str, languages: Sequence[str]) -> str:
    """Language codes as names in ``language`` ("English", 英語), for telling a user what a model reads."""
    return text(language, "list_separator").join(text(language, f"language.{code}") if f"language.{code}" in
                                                 TEXTS[DEFAULT_LANGUAGE] else code for code in languages)


def choose_language(accept_language: str | None, supported: Sequence[str] = LANGUAGES) -> str:
    """The supported language a browser's ``Accept-Language`` header ranks highest (``ja-JP,ja;q=0.9`` → ja)."""
    ranked = []
    for position, part in enumerate((accept_language or "").split(",")[:MAX_ACCEPTED]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in supported and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


def value_names(schema: CatalogSchema, attribute: str, values: Sequence[str], language: str) -> list[str]:
    """Catalog values as a user of ``language`` reads them: the schema's display name there, else the value."""
    found = schema.attribute(attribute)
    return [found.label(v, language) if found is not None and found.value(v) is not None else v for v in values]


def describe_values(schema: CatalogSchema, values: Mapping[str, str], language: str) -> str:
    """Attribute values as a short description: the catalog caption in English, display names joined by の in
    Japanese (赤のストライプのワンピース)."""
    if language == DEFAULT_LANGUAGE or not values:
        return schema.describe(values)
    order = [n for n in (*schema.caption.order, schema.category) if n and n in values]
    order += [n for n in values if n not in order]
    words = [schema.attribute(n).label(values[n], language) if schema.attribute(n) else values[n] for n in order]
    return text(language, "value_joiner").join(w for w in words if w)


def examples(schema: CatalogSchema, language: str) -> tuple[str, list[str]]:
    """A description and a few refinements in the catalog's own words and the user's language, for hints."""
    if language == DEFAULT_LANGUAGE:
        return schema.examples()
    start, edits, relative = schema.example_values()
    said = [text(language, "edit_example", value=schema.attribute(a).label(v, language)) for a, v in edits]
    said += [r.shown(language) for r in relative]
    return describe_values(schema, start, language), said or [text(language, "no_change")]
