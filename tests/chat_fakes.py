"""Fakes for the chat tests: an LLM with queued replies that records what it was asked, and a
retriever that records requests and returns chosen hits."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import llm_tokens
from retrieve_related_content_from_db import Hit, SearchResult
from tiny_models import SPECIAL_TOKENS

_SPECIALS = re.compile("|".join(re.escape(s) for s in sorted(SPECIAL_TOKENS, key=len, reverse=True)))


class Reply:
    """A queued reply: its text, the finish reason to report, and optionally a Ctrl-C after
    `interrupt_after` pieces."""

    def __init__(self, text: str, finish: str = "stop", interrupt_after: int | None = None):
        self.text, self.finish, self.interrupt_after = text, finish, interrupt_after


class FakeLLM:
    """Replies from a queue (str or Reply), word by word; records every call. Token counts are
    characters / 4, plus 4 per message, like a small real template. With `respond`, an empty
    queue asks `respond(messages)` for the reply (a reply that depends on the prompt)."""

    backend = "fake"
    name = "fake"

    def __init__(self, replies=(), context_window: int = 8192, respond=None):
        self.replies = list(replies)
        self.respond = respond
        self.context_window = context_window
        self.calls: list[dict] = []
        self.last_finish_reason: str | None = None

    def neutralise(self, text: str) -> str:
        return llm_tokens.neutralise(text, _SPECIALS)

    def count_text_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def count_tokens(self, messages: list[dict]) -> int:
        return 1 + sum(self.count_text_tokens(m["content"]) + 4 for m in messages)

    def stream(self, messages, max_tokens, temperature=0.0, top_p=1.0):
        self.calls.append({"messages": messages, "max_tokens": max_tokens, "temperature": temperature})
        assert self.count_tokens(messages) + max_tokens <= self.context_window, "prompt over budget"
        reply = self.replies.pop(0) if self.replies else (self.respond(messages) if self.respond else "")
        if isinstance(reply, str):
            reply = Reply(reply)
        self.last_finish_reason = "interrupted"
        for i, piece in enumerate(re.findall(r"\S+\s*", reply.text)):
            if reply.interrupt_after is not None and i == reply.interrupt_after:
                raise KeyboardInterrupt
            yield piece
        self.last_finish_reason = reply.finish

    def complete(self, messages, max_tokens, temperature=0.0):
        return "".join(self.stream(messages, max_tokens, temperature))


def make_hit(content: str, source: str = "<obsidian>:Notes/Kyoto", score: float = 0.8,
             when: datetime | None = datetime(2021, 6, 12, 10, tzinfo=timezone.utc),
             people=(), source_kind: str = "notes") -> Hit:
    return Hit(text=content, source=source, score=score, doc_id=source, source_kind=source_kind,
               people=list(people), started_at=when, ended_at=when)


class FakeRetriever:
    """Returns `hits` (or raises `error`) and records (request, k); `chunks` for count_chunks."""

    def __init__(self, hits=(), chunks: int = 100, error: Exception | None = None, note: str | None = None,
                 window_hits=()):
        self.hits, self.chunks, self.error, self.note = list(hits), chunks, error, note
        self.window_hits = list(window_hits)
        self.requests = []
        self.window_requests = []

    def __call__(self, request, k):
        self.requests.append((request, k))
        if self.error is not None:
            error, self.error = self.error, None  # fails once, like a database that comes back
            raise error
        return SearchResult(hits=self.hits[:k], request=request, filters_applied={}, note=self.note)

    def window(self, request):
        """Every passage of a window: `window_hits` (as given, oldest first)."""
        self.window_requests.append(request)
        return list(self.window_hits)

    def count_chunks(self) -> int:
        return self.chunks
