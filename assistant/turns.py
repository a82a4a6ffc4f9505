"""One turn of the assistant: parse the message, update the conversation, search, log picks, reply.

This is the whole product minus the widgets: the Gradio app, the API and the
tests drive the same ``Assistant``. Bad input gets a clear message and leaves
the conversation exactly as it was; a pick is confirmed only after its record
is on disk.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from assistant.conversation import Conversation, ShownItem
from assistant.log_retention import Retention, delete_session
from assistant.messages import examples, language_names, quoted, sentences, text
from assistant.parser import NONE_OF_THESE, START_OVER, UNDO, Parsed, RuleParser, clean_text, readable_part
from assistant.searcher import CatalogSearcher, Searcher
from assistant.triplet_log import TripletLog
from assistant.turn_log import TurnLog, turn_log_path
from assistant.uploads import UploadStore
from assistant.vocabulary import Vocabulary
from retrieval.image_io import ImageRejected
from retrieval.query_encoder import QueryEncoder
from retrieval.search import ReferenceNotFound
from retrieval.store import BadFilter, CatalogStore, where_clause

Progress = Callable[[float, str], Any]
DEFAULT_K = 12
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Filters:
    """The structured filters beside the chat: wanted values per attribute (any of them) and numeric ranges."""

    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)

    def where(self) -> str | None:
        return where_clause({k: v for k, v in self.values.items() if v},
                            {k: r for k, r in self.ranges.items() if r != (None, None)})


@dataclass
class Reply:
    """What the user sees after an action."""

    message: str
    shown: list[ShownItem] = field(default_factory=list)
    state_line: str = ""
    chips: list[str] = field(default_factory=list)
    query: str | None = None
    mode: str | None = None
    ok: bool = True
    logged: dict[str, Any] | None = None

    def details(self) -> dict[str, Any]:
        """The machine-readable reply, for the API and the UI's details panel."""
        return {
            "ok": self.ok, "message": self.message, "state": self.state_line, "chips": self.chips,
            "query": self.query, "mode": self.mode,
            "results": [{**s.to_dict(), "metadata": dict(s.metadata)} for s in self.shown],
            "logged": self.logged,
        }


def _quiet(_fraction: float, _desc: str) -> None:
    return None


class Assistant:
    """Runs turns for many conversations against one searcher, parser, upload store and triplet log.

    Each search turn is also counted in a turn log (by default ``turns.jsonl``
    beside the triplet log), so the shop's figures include sessions that never picked.
    """

    def __init__(self, searcher: Searcher, parser: Any = None, log: TripletLog | None = None,
                 uploads: UploadStore | None = None, k: int = DEFAULT_K, turn_log: TurnLog | None = None):
        self.searcher = searcher
        self.schema = searcher.schema
        self.vocabulary = getattr(parser, "vocabulary", None) or Vocabulary(self.schema)
        self.parser = parser or RuleParser(self.vocabulary)
        self.log = log
        self.uploads = uploads or UploadStore()
        self.k = k
        if turn_log is None and log is not None:
            turn_log = TurnLog(turn_log_path(log.path), log.salt)
        self.turn_log = turn_log

    @classmethod
    def for_catalog(cls, store: CatalogStore, encoder: QueryEncoder, log_path: Path, salt: bytes) -> Assistant:
        """The assistant as a shop runs it on one catalog (its schema's rule parser), picks logged to ``log_path``:
        what ``circhat build`` hands its simulated shoppers, as the layer below may not build one itself."""
        return cls(CatalogSearcher(store, encoder), log=TripletLog(log_path, salt=salt))

    def forget(self, conv: Conversation) -> Retention | None:
        """Delete this session's picks, turns and the upload copies only its picks named (“Delete my data”)."""
        if self.log is None:
            return None
        turns = self.turn_log.path if self.turn_log is not None else None
        return delete_session(self.log.path, conv.session_id, self.log.salt, turns)

    def start(self, session_id: str) -> Conversation:
        return Conversation(session_id=session_id, schema=self.schema)

    def say(self, conv: Conversation, message: str = "", image: str | None = None, filters: Filters = Filters(),
            progress: Progress = _quiet) -> Reply:
        """A chat message: text, an uploaded photo, or both."""
        message = clean_text(message)
        language = conv.language
        if not message and not image:
            return self._reply(conv, text(language, "empty"), ok=False)
        upload = None
        if image:
            progress(0.1, "reading your photo")
            try:
                upload = self.uploads.add(image)
            except ImageRejected as err:
                return self._reply(conv, text(language, "bad_image", reason=err.reason), ok=False)
        progress(0.3, "understanding your message")
        parsed = self.parser.parse(message, conv.known()) if message else Parsed()
        parsed.instructions = [replace(i, message=message) for i in parsed.instructions]
        return self._turn(conv, self.readable(parsed), upload, filters, progress)

    @property
    def text_languages(self) -> frozenset[str] | None:
        """The languages the search model's text tower reads (None: not known, so everything is passed on)."""
        return getattr(self.searcher, "text_languages", None)

    def readable(self, parsed: Parsed) -> Parsed:
        """``parsed`` without the free-text words the text tower cannot read, which are listed as not understood
        instead of being passed on (Japanese words to an English-only tower)."""
        languages = self.text_languages
        if languages is None:
            return parsed
        kept = []
        for instruction in parsed.instructions:
            if instruction.attribute is not None:
                kept.append(instruction)
                continue
            readable, unread = readable_part(instruction.text, languages)
            parsed.not_understood.extend(unread)
            if readable:
                kept.append(replace(instruction, text=readable))
        parsed.instructions = kept
        return parsed

    def command(self, conv: Conversation, command: str, filters: Filters = Filters(),
                progress: Progress = _quiet) -> Reply:
        """A button: undo, start over, none of these."""
        return self._turn(conv, Parsed(command=command), None, filters, progress)

    def refresh(self, conv: Conversation, filters: Filters = Filters(), progress: Progress = _quiet) -> Reply:
        """Search again with the same state, e.g. after the filters changed."""
        if not conv.searchable:
            return self._reply(conv, text(conv.language, "filters_set"))
        return self._search_reply(conv, filters, progress, lambda n: text(conv.language, "new_filters", n=n),
                                  "refresh")

    def pick(self, conv: Conversation, item_id: str, filters: Filters = Filters(), consent: bool = False,
             progress: Progress = _quiet) -> Reply:
        """The user chose a shown item: log the triplet durably, then make the item the reference."""
        item = conv.find_shown(str(item_id))
        language = conv.language
        if item is None:
            return self._reply(conv, text(language, "not_shown", item=item_id), ok=False)
        saved = _snapshot(conv)
        event = conv.pick(item)
        record = None
        if self.log is not None:
            progress(0.2, "saving your pick")
            upload_png = None
            if event.reference is not None and event.reference.kind == "upload":
                upload_png = self.uploads.png(event.reference.key)
            try:
                record = self.log.record(event, conv.session_id, self.searcher.model_version, upload_png, consent)
            except OSError as err:
                _restore(conv, saved)
                return self._reply(conv, text(language, "pick_not_saved", error=err), ok=False)
        name = item.metadata.get(self.schema.roles.get("name", "name")) or f"#{item.id}"
        hint = quoted(language, examples(self.schema, language)[1])
        saved_note = text(language, "picked_saved") if record is not None else ""
        reply = self._search_reply(conv, filters, progress, lambda n: text(
            language, "picked", name=name, rank=item.rank, saved=saved_note, hint=hint, n=n), "pick")
        reply.logged = record
        return reply

    def _turn(self, conv: Conversation, parsed: Parsed, upload: Any, filters: Filters, progress: Progress) -> Reply:
        saved = _snapshot(conv)
        had_history = bool(conv.history)
        changed = conv.apply(parsed, upload)
        language = conv.language
        notes = [parsed.note] if parsed.note else []
        notes += [u.message(language, self.schema) for u in parsed.unavailable]
        if parsed.not_understood:
            notes.append(text(language, "not_understood", words=quoted(language, parsed.not_understood),
                              languages=language_names(language, sorted(self.text_languages or ()))))
        if (parsed.unavailable or parsed.not_understood) and not changed and parsed.command is None \
                and upload is None:
            return self._reply(conv, sentences(language, [*notes, text(language, "nothing_changed")]))
        if parsed.command == UNDO and not had_history:
            notes.append(text(language, "nothing_to_undo"))
        if not conv.searchable:
            conv.record_results(None, None, None, [])
            opening = text(language, "starting_over" if parsed.command in (START_OVER, UNDO) else "nothing_yet")
            return self._reply(conv, sentences(language, [
                opening, *notes, text(language, "describe_or_upload", example=conv.example(language))]))
        if parsed.command is None and upload is None and not changed:
            notes.append(text(language, "no_change"))
        if parsed.command == NONE_OF_THESE:
            notes.append(text(language, "hiding", n=len(conv.rejected)))
        free = [i.text for i in parsed.instructions if i.attribute is None]
        if free:
            notes.append(text(language, "free_text", words=quoted(language, free)))
        reply = self._search_reply(conv, filters, progress, lambda n: sentences(language, [
            *notes, text(language, "results", n=n, state=conv.describe(language).removeprefix(
                text(language, "searching_for"))), text(language, "click_to_pick")]), parsed.command or "message")
        if not reply.ok:
            _restore(conv, saved)
            reply.state_line, reply.chips = conv.describe(), conv.chips()
        return reply

    def _search_reply(self, conv: Conversation, filters: Filters, progress: Progress,
                      message: Callable[[int], str], action: str) -> Reply:
        reference, instructions = conv.query()
        where = filters.where()
        progress(0.5, "searching the catalog")
        try:
            results = self.searcher.search(reference, instructions, where, self.k, sorted(conv.rejected),
                                           diverse=any(i.attribute is None for i in conv.instructions))
        except (BadFilter, ReferenceNotFound, ImageRejected, ValueError) as err:
            return self._reply(conv, text(conv.language, "search_failed", error=err), ok=False)
        shown = [ShownItem(h.id, rank, float(h.score), h.path, dict(h.metadata))
                 for rank, h in enumerate(results.hits, start=1)]
        conv.record_results(results.query, results.mode, where, shown)
        self._log_turn(conv, len(shown), action, results.mode)
        progress(1.0, "done")
        said = message(len(shown)) if shown else text(conv.language, "no_match")
        if results.note:
            said += text(conv.language, "note", note=results.note)
        return Reply(said, shown, conv.describe(), conv.chips(), results.query, results.mode)

    def _log_turn(self, conv: Conversation, results: int, action: str, mode: str | None) -> None:
        """Statistics only: a turn log that cannot be written must not cost the shopper the answer."""
        if self.turn_log is None:
            return
        try:
            self.turn_log.record(conv.session_id, self.searcher.model_version, conv.turns, results, action, mode)
        except OSError as err:
            logger.warning("turn log %s not written: %s", self.turn_log.path, err)

    def _reply(self, conv: Conversation, message: str, ok: bool = True) -> Reply:
        return Reply(message, list(conv.shown), conv.describe(), conv.chips(), conv.last_query, conv.last_mode,
                     ok=ok)


def _snapshot(conv: Conversation) -> Conversation:
    """A copy of the conversation to restore if the turn fails (the catalog schema is shared, not copied)."""
    return copy.deepcopy(conv, {id(conv.schema): conv.schema})


def _restore(conv: Conversation, saved: Conversation) -> None:
    conv.__dict__.update(saved.__dict__)
