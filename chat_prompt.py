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
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Callable, Iterable

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
# Passages found again that an earlier message of the prompt already carries are not repeated.
ALSO_FOUND = "(Passages {numbers} above, sent with an earlier message, also match this one.)"
USER_MESSAGE_INTRO = "My message:"
TRUNCATED_MARK = " [...]"


def system_prompt(persona: "Persona", today: date) -> str:
    """The system message: the persona plus how to use the passages."""
    return SYSTEM_PROMPT.format(persona=persona.text, today=today.strftime("%A %Y-%m-%d"))


# ---------------------------------------------------------------- passages


def passage_header(number: int, hit: "Hit") -> str:
    """`[1] <obsidian>:Notes/Kyoto | 2021-06-12 | Maria, João`."""
    parts = [f"[{number}] {hit.source}"]
    span = chunking.span_text(hit.started_at, hit.ended_at)
    if span:
        parts.append(span)
    if hit.people:
        people = ", ".join(hit.people[:MAX_PEOPLE_SHOWN])
        parts.append(people + (" and others" if len(hit.people) > MAX_PEOPLE_SHOWN else ""))
    return " | ".join(parts)


def user_turn(text: str, passages: list[tuple[int, "Hit"]], neutralise: Callable[[str], str], dropped: int = 0,
              window: int = 0, also: list[int] = ()) -> str:
    """A user message with its numbered passages above it, untrusted text neutralised.
    `dropped` passages were found but left out for room (of a `window`-token context); `also`
    are the numbers of passages found again that an earlier message already carries."""
    parts = []
    if passages:
        # The header's source, chat name and people come from the user's data too.
        blocks = [f"{neutralise(passage_header(n, h))}\n{neutralise(h.content.strip())}" for n, h in passages]
        parts.append(PASSAGES_INTRO + "\n\n" + "\n\n".join(blocks))
    elif dropped:
        parts.append(PASSAGES_DID_NOT_FIT.format(count=dropped, window=window))
    elif not also:
        parts.append(NO_PASSAGES)
    if also:
        parts.append(ALSO_FOUND.format(numbers=", ".join(f"[{n}]" for n in also)))
    return "\n\n".join(parts + [f"{USER_MESSAGE_INTRO} {neutralise(text)}"])


def source_list(hits: list["Hit"], found: int = 0, numbers: list[int] | None = None) -> str:
    """The compact list after an answer, saying what each number is:
    `sources: [1][3] <obsidian>:Notes/Kyoto (2021-06-12..06-14); [2] <whatsapp>:Maria (2021-06-10)`;
    `numbers` are the hits' [N] (1, 2, ... when not given); `found` passages were retrieved
    (when none of them was sent, the list says so)."""
    groups: dict[str, list[tuple[int, "Hit"]]] = {}
    for number, hit in zip(numbers or range(1, len(hits) + 1), hits):
        groups.setdefault(hit.source, []).append((number, hit))
    if not groups:
        return f"sources: none used ({found} found, none fit the model's context)" if found else "sources: none found"
    parts = []
    for source, group in groups.items():
        days = period_summary.passage_days([hit for _, hit in group])
        marks = "".join(f"[{n}]" for n, _ in group)
        parts.append(f"{marks} {source}" + (f" ({chunking.span_text(*days)})" if days else ""))
    return "sources: " + settings.terminal_safe("; ".join(parts))  # chat names are other people's text


def number_ranges(numbers: list[int]) -> str:
    """`[3, 1, 2, 7]` -> `1 to 3, 7`: passage numbers as a reader scans them."""
    spans: list[list[int]] = []
    for n in sorted(set(numbers)):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a} to {b}" for a, b in spans)


class Passages:
    """The conversation's passages, each numbered once: [N] is the same passage in every answer
    until /reset, and a passage found again keeps its number."""

    def __init__(self):
        self.by_number: dict[int, "Hit"] = {}
        self._numbers: dict[tuple, int] = {}

    @staticmethod
    def key(hit: "Hit") -> tuple:
        """What makes two hits the same passage."""
        return hit.source, hit.doc_id, hit.content

    def number(self, hit: "Hit") -> int | None:
        """The number `hit` was given in this conversation (None: not sent yet)."""
        return self._numbers.get(self.key(hit))

    def next_number(self) -> int:
        """The number the next new passage gets."""
        return len(self.by_number) + 1

    def add(self, number: int, hit: "Hit") -> None:
        """Remember that `hit` was sent as [number]."""
        self.by_number[number] = hit
        self._numbers[self.key(hit)] = number


# ---------------------------------------------------------------- citations

# A citation: [3], [2, 5] or [2; 5], with the whitespace before it.
_CITATION = re.compile(r"(\s*)\[(\d{1,6}(?:\s*[,;]\s*\d{1,6})*)\]")
# What the end of a streamed text may still turn into a citation: whitespace, then "[12, 3".
_OPEN_TAIL = re.compile(r"\s*(?:\[[\d\s,;]{0,24})?\Z")


def without_citations(text: str) -> str:
    """`text` with every citation marker removed: `"Kyoto [2], then Osaka [3, 4]."` -> `"Kyoto, then Osaka."`."""
    return _CITATION.sub("", text)


class CitationFilter:
    """Removes citation markers that point to no passage of the prompt from a streamed answer,
    piece by piece: `[3]` with 2 passages goes (with the space before it), `[1, 3]` becomes `[1]`.
    Text that could still become a marker ("... [1") is held until the next piece or `flush`."""

    def __init__(self, passages: "int | Iterable[int]"):
        # The numbers that head a passage of the prompt: 1..passages, or those given.
        self.numbers = set(range(1, passages + 1)) if isinstance(passages, int) else set(passages)
        self.removed = 0  # markers (numbers) dropped
        self.cited: set[int] = set()
        self._pending = ""

    def _resolve(self, match: re.Match) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match[2])]
        kept = [n for n in numbers if n in self.numbers]
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
    hits: list["Hit"]  # the passages sent with this message, best first
    history_kept: int  # messages of earlier conversation sent
    answer_tokens: int  # room left for the answer
    truncated: bool = False  # the user's message itself had to be cut
    found: int = 0  # passages retrieved, before the budget dropped any
    numbered: list[tuple[int, "Hit"]] = field(default_factory=list)  # this message's passages: sent or above
    numbers: set[int] = field(default_factory=set)  # every passage number in the prompt
    history: list[dict] = field(default_factory=list)  # the earlier messages sent, with what they still carry
    entry: dict = field(default_factory=dict)  # this message as the history keeps it


def fit_prompt(llm: "ChatModel", system: str, hits: list["Hit"], history: list[dict], text: str,
               answer_tokens: int, passages: Passages | None = None) -> Prompt:
    """Assemble system + history + passages + message so that, with `answer_tokens` of room,
    they fit `llm.context_window`.

    The history's user messages keep the passages they were sent with (`passages`: their
    numbers in `passages`), so a prompt begins with the previous one and the model's prompt
    cache serves it; a passage found again is pointed to, not repeated, and new ones take the
    next numbers. Over budget: the oldest messages' passages go first (the weakest of each
    first), then the oldest turns, then this message's weakest passages, then the end of the
    message itself; a very long chat never errors."""
    window = llm.context_window
    answer_tokens = max(DEFAULT_MIN_ANSWER_TOKENS, min(answer_tokens, window // 2))
    limit = window - answer_tokens
    draft = _Draft(llm, system, list(hits), recent_pairs(llm, history, limit), text, limit,
                   passages if passages is not None else Passages())
    draft.drop_earlier_passages()
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
    return draft.prompt(answer_tokens)


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


def _kept(message: dict) -> list[int]:
    """The passage numbers an earlier user message still carries (none for a plain one)."""
    return message.get("kept", message.get("passages", []))


class _Draft:
    """A prompt being cut down to `limit` tokens: what is still in it, rendered, and its size."""

    def __init__(self, llm: "ChatModel", system: str, hits: list["Hit"], history: list[dict], text: str,
                 limit: int, passages: Passages):
        self.llm, self.system, self.limit, self.passages = llm, system, limit, passages
        self.history = [dict(m) for m in history]  # copies: what they carry may shrink
        self.text = text
        self.found = len(hits)
        self.truncated = False
        # Every hit's number: its own when it was sent before, else the next free ones, in order.
        fresh = passages.next_number()
        self.numbered: list[tuple[int, "Hit"]] = []
        seen: set[tuple] = set()
        for hit in hits:
            if Passages.key(hit) in seen:
                continue  # the same passage twice is one passage
            seen.add(Passages.key(hit))
            number = passages.number(hit)
            if number is None:
                number, fresh = fresh, fresh + 1
            self.numbered.append((number, hit))
        self.keep_new = len(hits)  # how many of the passages not already above are sent
        self.render()

    def carried(self) -> set[int]:
        """The passage numbers the earlier messages of the draft carry."""
        return {n for m in self.history if m["role"] == "user" for n in _kept(m)}

    def split(self) -> tuple[list[tuple[int, "Hit"]], list[tuple[int, "Hit"]], list[int]]:
        """This message's passages: those to send, those not sent for room, and the numbers of
        those an earlier message already carries."""
        carried = self.carried()
        new = [(n, h) for n, h in self.numbered if n not in carried]
        return new[:self.keep_new], new[self.keep_new:], [n for n, _ in self.numbered if n in carried]

    def _earlier(self, message: dict, carried: set[int]) -> dict:
        """An earlier message as sent with it, less the passages the budget has dropped since."""
        neutralise = self.llm.neutralise
        if message["role"] != "user" or "passages" not in message:
            return {"role": message["role"], "content": neutralise(message["content"])}
        kept = _kept(message)
        left_out = message.get("dropped", 0) + len(message["passages"]) - len(kept)
        content = user_turn(message["content"], [(n, self.passages.by_number[n]) for n in kept], neutralise,
                            left_out, self.llm.context_window, [n for n in message.get("also", []) if n in carried])
        return {"role": "user", "content": content}

    def build(self) -> list[dict]:
        """The messages for what the draft holds now."""
        neutralise = self.llm.neutralise
        carried = self.carried()
        turns = [self._earlier(m, carried) for m in self.history]
        sent, unsent, also = self.split()
        current = {"role": "user", "content": user_turn(self.text, sent, neutralise, len(unsent),
                                                        self.llm.context_window, also)}
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

    def drop_earlier_passages(self) -> None:
        """Over budget: the earlier messages' passages go, the oldest message's first and the
        weakest of each first (the prompt then still begins as the cached one, up to the first
        passage dropped); those found again for this message stay."""
        if self.used <= self.limit:
            return
        found_again = {n for n, _ in self.numbered}
        was = {i: _kept(m) for i, m in enumerate(self.history) if m["role"] == "user" and "passages" in m}
        order = [(i, n) for i, kept in was.items() for n in reversed(kept) if n not in found_again]
        if not order:
            return

        def keep_passages(count: int) -> None:
            gone = set(order[:len(order) - count])
            for i, kept in was.items():
                self.history[i]["kept"] = [n for n in kept if (i, n) not in gone]

        self._largest_fitting(len(order), keep_passages)

    def drop_oldest_turns(self) -> None:
        """Still over: keep only the newest user/assistant pairs that fit."""
        if self.used <= self.limit or not self.history:
            return
        all_turns = self.history

        def keep_turns(n: int) -> None:
            self.history = all_turns[len(all_turns) - 2 * n:] if n else []

        self._largest_fitting(len(all_turns) // 2, keep_turns)

    def drop_weakest_passages(self) -> None:
        """Still over: send only the best of this message's new passages that fit (best first)."""
        sent, unsent, _ = self.split()
        if self.used <= self.limit or not sent:
            return

        def keep_hits(n: int) -> None:
            self.keep_new = n

        self._largest_fitting(len(sent) + len(unsent), keep_hits)

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

    def prompt(self, answer_tokens: int) -> Prompt:
        """The fitted prompt, with the history entries the session keeps for the next turn."""
        sent, unsent, also = self.split()
        here = {n for n, _ in sent} | set(also)
        entry = {"passages": [n for n, _ in sent], "also": also, "dropped": len(unsent)}
        return Prompt(self.messages, [h for _, h in sent], len(self.history), answer_tokens, self.truncated,
                      self.found, numbered=[(n, h) for n, h in self.numbered if n in here],
                      numbers=self.carried() | here, history=self.history, entry=entry)
