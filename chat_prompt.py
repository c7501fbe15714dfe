"""What the chat sends the model for one answer, and what it shows of the passages: the system
prompt, the passages' headers, the budget that fits it all in the model's context, the sources
line after an answer and the filter that drops citations of passages that do not exist.

    prompt = fit_prompt(llm, system_prompt(persona, today), hits, history, "when was I in Kyoto?", 512)
    prompt.messages        # system, earlier turns, then the passages and the message
    source_list(prompt.hits)   # "sources: [1] <obsidian>:Trips/Kyoto (2021-06-12); ..."

No model, database or terminal here: main.py and chat_session.py drive it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Callable

import chunking
import period_summary
import settings

if TYPE_CHECKING:
    from chat_session import Persona
    from llm_backend import ChatModel
    from retrieve_related_content_from_db import Hit

DEFAULT_MIN_ANSWER_TOKENS = 16  # answer room never shrinks below this
MAX_PEOPLE_SHOWN = 6

SYSTEM_PROMPT = """{persona}

You can read the user's personal archive: their own notes and their chat messages. With each message you receive passages retrieved from that archive, each headed by its source, its date and the people involved. Today is {today}.
- Answer from these passages, mentioning dates and people when they help.
- When the passages do not contain the answer, say so plainly instead of inventing one; you may still talk about the question in general, clearly apart from what the archive says.
- Cite the passages you use by their numbers in brackets, like [1] or [2][3], after the sentence they support; cite only numbers that head a passage, and do not copy the rest of the headers.
- Answer in the language the user writes in."""

PASSAGES_INTRO = "Passages from my notes and messages:"
NO_PASSAGES = "(No passages from my notes or messages were found for this message.)"
# Passages were found but the budget dropped them all: the model must not believe there were none.
PASSAGES_DID_NOT_FIT = ("({count} passages from my notes or messages were found for this message but did not "
                        "fit the model's context of {window} tokens, so none are shown here.)")
USER_MESSAGE_INTRO = "My message:"
TRUNCATED_MARK = " [...]"


def system_prompt(persona: "Persona", today: date) -> str:
    """The system message: the persona plus how to use the passages."""
    return SYSTEM_PROMPT.format(persona=persona.text, today=today.strftime("%A %Y-%m-%d"))


# ---------------------------------------------------------------- passages


def date_span(hit: "Hit") -> str:
    """`2021-06-12`, or `2021-06-12 to 2021-06-14` for a span of days; '' when undated."""
    if hit.started_at is None:
        return ""
    first, last = chunking.local_span(hit.started_at, hit.ended_at)
    start, end = first.date(), last.date()
    return start.isoformat() if end == start else f"{start.isoformat()} to {end.isoformat()}"


def passage_header(number: int, hit: "Hit") -> str:
    """`[1] <obsidian>:Notes/Kyoto | 2021-06-12 | Maria, João`."""
    parts = [f"[{number}] {hit.source}"]
    span = date_span(hit)
    if span:
        parts.append(span)
    if hit.people:
        people = ", ".join(hit.people[:MAX_PEOPLE_SHOWN])
        parts.append(people + (" and others" if len(hit.people) > MAX_PEOPLE_SHOWN else ""))
    return " | ".join(parts)


def user_turn(text: str, hits: list["Hit"], neutralise: Callable[[str], str], dropped: int = 0,
              window: int = 0) -> str:
    """The current user message with its passages above it, untrusted text neutralised.
    `dropped` passages were found but left out for room (of a `window`-token context)."""
    if hits:
        # The header's source, chat name and people come from the user's data too.
        blocks = [f"{neutralise(passage_header(i, h))}\n{neutralise(h.content.strip())}"
                  for i, h in enumerate(hits, 1)]
        passages = PASSAGES_INTRO + "\n\n" + "\n\n".join(blocks)
    elif dropped:
        passages = PASSAGES_DID_NOT_FIT.format(count=dropped, window=window)
    else:
        passages = NO_PASSAGES
    return f"{passages}\n\n{USER_MESSAGE_INTRO} {neutralise(text)}"


def source_list(hits: list["Hit"], found: int = 0) -> str:
    """The compact list after an answer, saying what each number is:
    `sources: [1][3] <obsidian>:Notes/Kyoto (2021-06-12..06-14); [2] <whatsapp>:Maria (2021-06-10)`;
    `found` passages were retrieved (when none of them was sent, the list says so)."""
    numbers: dict[str, list[int]] = {}
    for number, hit in enumerate(hits, 1):
        numbers.setdefault(hit.source, []).append(number)
    if not numbers:
        return f"sources: none used ({found} found, none fit the model's context)" if found else "sources: none found"
    parts = []
    for source, group in numbers.items():
        days = period_summary.passage_days([hits[n - 1] for n in group])
        marks = "".join(f"[{n}]" for n in group)
        parts.append(f"{marks} {source}" + (f" ({period_summary.day_range(*days)})" if days else ""))
    return "sources: " + settings.terminal_safe("; ".join(parts))  # chat names are other people's text


# ---------------------------------------------------------------- citations

# A citation: [3], [2, 5] or [2; 5], with the whitespace before it.
_CITATION = re.compile(r"(\s*)\[(\d{1,6}(?:\s*[,;]\s*\d{1,6})*)\]")
# What the end of a streamed text may still turn into a citation: whitespace, then "[12, 3".
_OPEN_TAIL = re.compile(r"\s*(?:\[[\d\s,;]{0,24})?\Z")


class CitationFilter:
    """Removes citation markers that point to no passage from a streamed answer, piece by
    piece: `[3]` with 2 passages goes (with the space before it), `[1, 3]` becomes `[1]`.
    Text that could still become a marker ("... [1") is held until the next piece or `flush`."""

    def __init__(self, passages: int):
        self.passages = passages
        self.removed = 0  # markers (numbers) dropped
        self.cited: set[int] = set()
        self._pending = ""

    def _resolve(self, match: re.Match) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match[2])]
        kept = [n for n in numbers if 1 <= n <= self.passages]
        self.removed += len(numbers) - len(kept)
        self.cited.update(kept)
        if not kept:
            return ""
        if len(kept) == len(numbers):
            return match[0]
        return f"{match[1]}[{', '.join(map(str, kept))}]"

    def feed(self, piece: str) -> str:
        """The part of the text so far that is safe to print."""
        text = _CITATION.sub(self._resolve, self._pending + piece)
        cut = _OPEN_TAIL.search(text).start()
        self._pending = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        """Whatever was held back (the answer ended)."""
        text, self._pending = self._pending, ""
        return text


# ---------------------------------------------------------------- context budget


@dataclass
class Prompt:
    """The messages sent for one answer, and what the budget kept of the inputs."""

    messages: list[dict]
    hits: list["Hit"]  # the passages actually sent, best first
    history_kept: int  # messages of earlier conversation sent
    answer_tokens: int  # room left for the answer
    truncated: bool = False  # the user's message itself had to be cut
    found: int = 0  # passages retrieved, before the budget dropped any


def fit_prompt(llm: "ChatModel", system: str, hits: list["Hit"], history: list[dict], text: str,
               answer_tokens: int) -> Prompt:
    """Assemble system + passages + history + message so that, with `answer_tokens` of room,
    they fit `llm.context_window`. Over budget: the oldest turns go first, then the weakest
    passages, then the end of the message itself; a very long chat never errors."""
    window = llm.context_window
    answer_tokens = max(DEFAULT_MIN_ANSWER_TOKENS, min(answer_tokens, window // 2))
    limit = window - answer_tokens
    draft = _Draft(llm, system, list(hits), recent_pairs(llm, history, limit), text, limit)
    draft.drop_oldest_turns()
    draft.drop_weakest_passages()
    draft.cut_message()
    if draft.used > limit:  # what is left is the system prompt and a short message: less answer room
        answer_tokens = window - draft.used
        if answer_tokens < DEFAULT_MIN_ANSWER_TOKENS:
            raise settings.UserError(
                f"the persona and instructions alone take {draft.used} of the model's {window} tokens; "
                "shorten PERSONA or use a model with a longer context"
            )
    return Prompt(draft.messages, draft.hits, len(draft.history), answer_tokens, draft.truncated, draft.found)


def recent_pairs(llm: "ChatModel", history: list[dict], limit: int) -> list[dict]:
    """The newest user/assistant pairs of `history` whose text alone fits `limit` tokens: older
    pairs can never be sent, so they are cut before anything is rendered (cheap on a long chat)."""
    pairs, room = 0, limit
    while 2 * (pairs + 1) <= len(history):
        room -= sum(llm.count_text_tokens(m["content"]) for m in history[-2 * (pairs + 1):][:2])
        if room < 0:
            break
        pairs += 1
    return history[len(history) - 2 * pairs:] if pairs else []


class _Draft:
    """A prompt being cut down to `limit` tokens: what is still in it, rendered, and its size."""

    def __init__(self, llm: "ChatModel", system: str, hits: list["Hit"], history: list[dict], text: str,
                 limit: int):
        self.llm, self.system, self.limit = llm, system, limit
        self.hits, self.history, self.text = hits, history, text
        self.found = len(hits)
        self.truncated = False
        self.render()

    def build(self) -> list[dict]:
        """The messages for what the draft holds now."""
        neutralise = self.llm.neutralise
        turns = [{"role": m["role"], "content": neutralise(m["content"])} for m in self.history]
        current = {"role": "user", "content": user_turn(self.text, self.hits, neutralise,
                                                        self.found - len(self.hits), self.llm.context_window)}
        # The persona can be typed in with /persona: it is untrusted text too.
        return [{"role": "system", "content": neutralise(self.system)}, *turns, current]

    def render(self) -> None:
        """Build the messages and count them (`messages`, `used`)."""
        self.messages = self.build()
        self.used = self.llm.count_tokens(self.messages)

    def _largest_fitting(self, count: int, keep: Callable[[int], None]) -> None:
        """Keep the most items (0..count) that fit, by bisection: fewer items never take more room."""
        low, high = 0, count
        while low < high:
            middle = (low + high + 1) // 2
            keep(middle)
            if self.llm.count_tokens(self.build()) <= self.limit:
                low = middle
            else:
                high = middle - 1
        keep(low)
        self.render()

    def drop_oldest_turns(self) -> None:
        """Over budget: keep only the newest user/assistant pairs that fit."""
        if self.used <= self.limit or not self.history:
            return
        all_turns = self.history

        def keep_turns(n: int) -> None:
            self.history = all_turns[len(all_turns) - 2 * n:] if n else []

        self._largest_fitting(len(all_turns) // 2, keep_turns)

    def drop_weakest_passages(self) -> None:
        """Still over: keep only the best passages that fit (hits are best first)."""
        if self.used <= self.limit or not self.hits:
            return
        all_hits = self.hits

        def keep_hits(n: int) -> None:
            self.hits = all_hits[:n]

        self._largest_fitting(len(all_hits), keep_hits)

    def cut_message(self) -> None:
        """Still over: cut the end of the message, when the message itself is what is too big (a
        short one stays whole and the answer room shrinks instead)."""
        original, keep = self.text, len(self.text)
        if self.used > self.limit and self.llm.count_text_tokens(self.text) <= self.used - self.limit:
            keep = 0
        while self.used > self.limit and keep > 0:
            # Cut by the share of the message's own tokens that is over, with a little margin.
            own = max(1, self.llm.count_text_tokens(self.text))
            keep = min(keep - 1, int(keep * max(0.0, own - (self.used - self.limit)) / own * 0.95))
            self.text = original[:keep].rstrip() + TRUNCATED_MARK if keep > 0 else TRUNCATED_MARK.strip()
            self.truncated = True
            self.render()
