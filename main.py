"""personal_llm: chat in the terminal with a local LLM that answers from your own notes and
messages, and shows where each answer came from.

    python main.py                          # the REPL (PERSONA below; --persona overrides)
    echo "when did I go to Kyoto?" | python main.py    # one answer per input line, plain text

Each message: the document keeper turns the conversation into a search request, the top
passages are retrieved, and the persona answers from them, streamed, citing them as [1], [2],
followed by its sources. A question about a whole period ("what did I do last summer?", or
`/summary 2023-05 Maria`) reads every passage of the window instead (period_summary.py).
"""
from __future__ import annotations

# Who the assistant is. Edit this line: a name from PERSONAS below, or any description
# ("You are a cheerful travel buddy who ..."). `--persona` and the PERSONA setting override it.
PERSONA = "assistant"

PERSONAS = {
    "assistant": (
        "You are a helpful, precise personal assistant. You answer briefly and clearly, and you "
        "point to the note or conversation an answer comes from."
    ),
    "philosopher": (
        "You are a calm, thoughtful philosopher and a friend of the user. You help them reflect on "
        "their ideas, choices and experiences, draw connections across the years, and now and then "
        "ask one good question back."
    ),
    "psychotherapist": (
        "You are a warm, attentive psychotherapist. You listen carefully, reflect feelings back, "
        "notice patterns in what the user has lived and written, and ask gentle open questions. "
        "You never diagnose and you never judge."
    ),
}

GREETINGS = {
    "assistant": "Hello! Ask me anything about your notes and messages.",
    "philosopher": "Welcome back. What has been on your mind lately?",
    "psychotherapist": "Hello, I'm glad you're here. How are you feeling today?",
}
DEFAULT_GREETING = "Hello! Ask me anything about your notes and messages."

import argparse
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Callable, TextIO

import chunking
import period_summary
import settings

if TYPE_CHECKING:
    from llm_backend import ChatModel
    from retrieve_related_content_from_db import Hit, SearchRequest, SearchResult

DEFAULT_TEMPERATURE = 0.6  # Llama 3 Instruct's own generation settings
DEFAULT_TOP_P = 0.9
DEFAULT_MIN_ANSWER_TOKENS = 16  # answer room never shrinks below this
MAX_PEOPLE_SHOWN = 6
PERSONA_TYPO_CUTOFF = 0.7  # difflib ratio: "philosofer" vs "philosopher" is 0.86
HISTORY_FILE = "chat_history"  # readline history, in the data folder
HISTORY_LENGTH = 1000
PROMPT_CACHE_FOLDER = "prompt_cache"  # --prompt-cache, in the data folder

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

HELP = """commands:
  /sources        the passages behind the last answer, with their scores
  /sources N      passage N (the [N] of an answer) in full
  /summary WINDOW [PERSON]
                  read every passage of a period: 2023-05, 2023-05-01..2023-05-31, last month,
                  last summer...; with a person, only what involves them
  /reset          forget the conversation
  /persona NAME   switch persona: {names}, or any description; /persona alone shows it
  /help           this list
  /exit           leave (also exit, quit, Ctrl-D); Ctrl-C stops an answer"""


# ---------------------------------------------------------------- persona


@dataclass
class Persona:
    """Who the assistant is: a named seed persona or free text."""

    name: str
    text: str
    greeting: str = DEFAULT_GREETING


def persona_from(value: str) -> Persona:
    """A named persona (`"philosopher"`, any case) or free text as a custom persona."""
    value = value.strip()
    key = value.lower()
    if key in PERSONAS:
        return Persona(key, PERSONAS[key], GREETINGS.get(key, DEFAULT_GREETING))
    return Persona("custom", value)


def persona_typo_warning(value: str) -> str | None:
    """A warning when a one-word persona is not a named one but looks like a typo of one:
    `"philosofer"` -> "... did you mean philosopher?"; None for names and descriptions."""
    value = value.strip()
    if value.lower() in PERSONAS or len(value.split()) != 1:
        return None
    suggestion = settings.closest(value.lower(), PERSONAS, PERSONA_TYPO_CUTOFF)
    if suggestion is None:
        return None
    return (f"persona {value!r} is not one of {', '.join(PERSONAS)} and is used as a description "
            f"of its own; did you mean {suggestion}?")


def resolve_persona(flag_value: str | None = None) -> Persona:
    """--persona, else the PERSONA setting (environment, .env), else the PERSONA constant."""
    return persona_from(settings.get("PERSONA", flag_value) or PERSONA)


def system_prompt(persona: Persona, today: date) -> str:
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


def window_label(request: "SearchRequest") -> str:
    """The request's dates as the user reads them: `2023-05-01..05-31`, `since 2023-05-01`."""
    since = request.since.astimezone().date() if request.since else None
    until = request.until.astimezone().date() if request.until else None
    if since and until:
        return period_summary.day_range(since, until)
    if since:
        return f"since {since.isoformat()}"
    return f"until {until.isoformat()}" if until else "all time"


def _with_people(request: "SearchRequest") -> str:
    return f" with {', '.join(request.people)}" if request.people else ""


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
    hits = list(hits)
    found = len(hits)
    # History is user/assistant pairs. Older pairs than those whose text alone would fill the
    # window can never be sent: cut them before rendering anything (cheap on a very long chat).
    pairs, room = 0, limit
    while 2 * (pairs + 1) <= len(history):
        room -= sum(llm.count_text_tokens(m["content"]) for m in history[-2 * (pairs + 1):][:2])
        if room < 0:
            break
        pairs += 1
    history = history[len(history) - 2 * pairs:] if pairs else []

    def build(message: str) -> list[dict]:
        turns = [{"role": m["role"], "content": llm.neutralise(m["content"])} for m in history]
        current = {"role": "user", "content": user_turn(message, hits, llm.neutralise, found - len(hits), window)}
        # The persona can be typed in with /persona: it is untrusted text too.
        return [{"role": "system", "content": llm.neutralise(system)}, *turns, current]

    def largest_fitting(count: int, keep) -> int:
        """The most items (0..count) that fit, by bisection: fewer items never take more room."""
        low, high = 0, count
        while low < high:
            middle = (low + high + 1) // 2
            keep(middle)
            if llm.count_tokens(build(text)) <= limit:
                low = middle
            else:
                high = middle - 1
        keep(low)
        return low

    messages = build(text)
    used = llm.count_tokens(messages)
    if used > limit and history:  # the oldest turns go first
        all_turns = history

        def keep_turns(n: int) -> None:
            nonlocal history
            history = all_turns[len(all_turns) - 2 * n:] if n else []

        largest_fitting(len(all_turns) // 2, keep_turns)
        messages = build(text)
        used = llm.count_tokens(messages)
    if used > limit and hits:  # then the weakest passages (hits are best first)
        all_hits = hits

        def keep_hits(n: int) -> None:
            nonlocal hits
            hits = all_hits[:n]

        largest_fitting(len(all_hits), keep_hits)
        messages = build(text)
        used = llm.count_tokens(messages)
    original, keep, truncated = text, len(text), False
    # Cutting the message helps only when the message itself is what is too big; a short one
    # stays whole and the answer room shrinks instead (below).
    if used > limit and llm.count_text_tokens(text) <= used - limit:
        keep = 0
    while used > limit and keep > 0:
        # Cut the message by the share of its own tokens that is over, with a little margin.
        own = max(1, llm.count_text_tokens(text))
        keep = min(keep - 1, int(keep * max(0.0, own - (used - limit)) / own * 0.95))
        text = original[:keep].rstrip() + TRUNCATED_MARK if keep > 0 else TRUNCATED_MARK.strip()
        truncated = True
        messages = build(text)
        used = llm.count_tokens(messages)
    if used > limit:
        answer_tokens = window - used
        if answer_tokens < DEFAULT_MIN_ANSWER_TOKENS:
            raise settings.UserError(
                f"the persona and instructions alone take {used} of the model's {window} tokens; "
                "shorten PERSONA or use a model with a longer context"
            )
    return Prompt(messages, hits, len(history), answer_tokens, truncated, found)


# ---------------------------------------------------------------- the session


class DatabaseDown(Exception):
    """The database could not be reached for this turn; the next turn tries again."""


def empty_index_note() -> str:
    """The chat's line for an index with nothing in it yet: what to run first."""
    return f"note: the index is empty; run {settings.ingest_hint()} to add your notes and messages"


@dataclass
class Turn:
    """What one message produced."""

    request: "SearchRequest | None" = None
    hits: list["Hit"] = field(default_factory=list)
    answer: str = ""
    finish_reason: str | None = None
    removed_markers: int = 0  # citations of passages that do not exist, taken out of the answer
    summary: bool = False  # the answer read every passage of a window


class ChatSession:
    """The conversation: history, persona, the last passages, one LLM for keeper and answer.

    `retriever(request, k) -> SearchResult` finds passages; it may raise DatabaseDown or
    retrieval's EmptyIndexError. `keeper(llm, history, today) -> SearchRequest` writes the
    search request. Both are injectable, so tests drive the session with fakes.
    """

    def __init__(self, llm: "ChatModel | None", retriever: Callable[["SearchRequest", int], "SearchResult"],
                 persona: Persona, k: int = 10, max_tokens: int = 512,
                 temperature: float = DEFAULT_TEMPERATURE, top_p: float = DEFAULT_TOP_P,
                 keeper: Callable | None = None, out: TextIO | None = None, err: TextIO | None = None,
                 today: date | None = None, dim: bool = False,
                 max_batches: int = period_summary.DEFAULT_MAX_BATCHES, models: BackgroundModels | None = None):
        if keeper is None:
            from formulate_query_for_retrieving_content import formulate_request as keeper
        self.llm = llm  # None until `models` has loaded it (the first message waits)
        self.models = models
        self.retriever = retriever
        self.keeper = keeper
        self.persona = persona
        self.k = k
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.today = today
        self.dim = dim
        self.history: list[dict] = []  # alternating user/assistant, plain text
        self.last_hits: list["Hit"] = []
        self.last_request: "SearchRequest | None" = None
        self.last_note: str | None = None
        self.last_removed = 0  # citation markers removed from the last answer
        self.last_summary: str | None = None  # the window the last answer read whole
        self.max_batches = max_batches

    # -- output

    def _print(self, text: str = "", muted: bool = False, stream: TextIO | None = None) -> None:
        if muted and self.dim:
            text = f"\033[2m{text}\033[0m"
        print(text, file=stream or self.out, flush=True)

    def _status(self, text: str) -> None:
        """A one-line note, warning or hint, kept out of the answer stream (stderr)."""
        self._print(text, muted=True, stream=self.err)

    # -- a message

    def _wait_for_models(self) -> None:
        """The first message waits for the models loading in the background (if they are)."""
        if self.llm is None:
            if not self.models.ready():
                self._status("(loading the models; the first answer waits for them)")
            self.llm = self.models.llm()

    def ask(self, text: str) -> Turn:
        """Answer one user message: keeper -> retrieval -> streamed answer -> sources."""
        from retrieve_related_content_from_db import EmptyIndexError

        self._wait_for_models()
        today = self.today or date.today()
        turn = Turn()
        conversation = self.history + [{"role": "user", "content": text}]
        turn.request = self.keeper(self.llm, conversation, today)
        self.last_note = None
        if getattr(turn.request, "note", None):
            self._status(f"note: {turn.request.note}")
        if turn.request.summary and (turn.request.since or turn.request.until):
            return self.summarise(text, turn.request)  # about a whole period: read all of it
        self.last_summary = None
        try:
            result = self.retriever(turn.request, self.k)
            hits = list(result.hits)
            self.last_note = result.note
            if result.note:
                self._status(f"note: {result.note}")
        except EmptyIndexError:
            hits = []
            self._status(empty_index_note())
        except DatabaseDown as err:
            self._status(f"warning: {err}; this message was not answered, send it again to retry")
            return turn
        prompt = fit_prompt(self.llm, system_prompt(self.persona, today), hits, self.history, text,
                            self.max_tokens)
        turn.hits = prompt.hits
        self.last_hits, self.last_request = prompt.hits, turn.request
        if prompt.truncated:
            self._status("note: your message was too long for the model's context and was cut")
        if prompt.found and not prompt.hits:  # weaker passages dropped for room is routine; all is not
            self._status(f"note: {prompt.found} passages were found but did not fit the model's context of "
                         f"{self.llm.context_window} tokens; this answer is not based on them (/reset, a shorter "
                         "message or a model with a longer context makes room)")

        pieces: list[str] = []
        citations = CitationFilter(len(prompt.hits))
        stream = self.llm.stream(prompt.messages, prompt.answer_tokens, self.temperature, self.top_p)
        try:
            for piece in stream:
                self._write_answer(citations.feed(piece), pieces)
            turn.finish_reason = self.llm.last_finish_reason
        except KeyboardInterrupt:
            # Ctrl-C stops this answer only; closing the stream ends generation there.
            stream.close()
            turn.finish_reason = "interrupted"
        self._write_answer(citations.flush(), pieces)
        turn.removed_markers = self.last_removed = citations.removed
        self._finish_turn(turn, text, pieces, source_list(prompt.hits, prompt.found),
                          self.length_note(prompt.answer_tokens))
        return turn

    def _write_answer(self, text: str, pieces: list[str]) -> None:
        """Print part of an answer as it streams (and keep it)."""
        if text:
            pieces.append(text)
            self.out.write(text)
            self.out.flush()

    def _finish_turn(self, turn: Turn, text: str, pieces: list[str], sources: str, length_note: str) -> None:
        """After the stream: the end of line, [interrupted], the history, the sources line."""
        turn.answer = "".join(pieces).strip()
        self._print()
        if turn.finish_reason == "interrupted":
            self._print("[interrupted]", muted=True)
        if turn.answer:
            self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": turn.answer}]
        self._print(sources, muted=True)
        if turn.finish_reason == "length":
            self._print(length_note, muted=True)

    # -- a whole period

    def _progress(self, line: str) -> None:
        """The summary's progress line on stderr: rewritten in place on a terminal, one line
        per step otherwise; an empty line ends it."""
        if self.err.isatty():
            self.err.write("\r\033[K" + line)
            self.err.flush()
        elif line:
            self._status(line)

    def summarise(self, text: str, request: "SearchRequest", question: str | None = None) -> Turn:
        """Answer a question about a whole period: every passage of the request's window (and
        people), read in batches by period_summary, the final answer streamed with citations and
        the sources grouped by chat. TooManyBatches (a UserError) when the window is too big."""
        self._wait_for_models()
        today = self.today or date.today()
        turn = Turn(request=request, summary=True)
        window = window_label(request)
        reader = getattr(self.retriever, "window", None)
        if reader is None:
            raise settings.UserError("this chat's retriever cannot read a whole window")
        from retrieve_related_content_from_db import EmptyIndexError

        try:
            passages = reader(request)
        except EmptyIndexError:
            self._status(empty_index_note())
            return turn
        except DatabaseDown as err:
            self._status(f"warning: {err}; this message was not answered, send it again to retry")
            return turn
        self.last_request, self.last_hits, self.last_note, self.last_removed = request, passages, None, 0
        self.last_summary = window
        turn.hits = passages
        if not passages:
            # Said without a model call: there is nothing to read.
            self._print(f"no passages from {window}{_with_people(request)} in your notes and messages; "
                        "nothing to summarise", muted=True)
            return turn
        question = question or text
        plan = period_summary.plan_batches(self.llm, passages, question, self.max_batches)
        pieces: list[str] = []
        citations = CitationFilter(len(passages))
        try:
            summary = period_summary.summarise(
                self.llm, plan, question, system_prompt(self.persona, today), window, self.max_tokens,
                self.temperature, self.top_p, progress=self._progress,
                on_piece=lambda piece: self._write_answer(citations.feed(piece), pieces))
            turn.finish_reason = summary.finish_reason
            answer_tokens = summary.answer_tokens
        except KeyboardInterrupt:
            self._progress("")
            turn.finish_reason, answer_tokens = "interrupted", self.max_tokens
        self._write_answer(citations.flush(), pieces)
        turn.removed_markers = self.last_removed = citations.removed
        batches = len(plan.batches)
        # Chat names are other people's text: no terminal control.
        sources = (f"sources (every passage read, {batches} batch{'es' if batches != 1 else ''}): "
                   + settings.terminal_safe("; ".join(period_summary.grouped_sources(passages))))
        self._finish_turn(turn, text, pieces, sources, self.length_note(answer_tokens))
        return turn

    def length_note(self, answer_tokens: int) -> str:
        """Why an answer stopped at its length limit of `answer_tokens`: --max-tokens, or the
        model's context when the prompt left less room than that."""
        if answer_tokens < self.max_tokens:
            return (f"(answer cut at {answer_tokens} tokens: that is all the room the model's context of "
                    f"{self.llm.context_window} tokens left after the passages and the conversation; "
                    "/reset or a model with a longer context leaves more)")
        return (f"(answer cut at the length limit of {answer_tokens} tokens; "
                "raise --max-tokens or LLM_MAX_TOKENS for longer answers)")

    # -- slash commands

    def command(self, line: str) -> bool:
        """Run a slash command; False means leave the chat."""
        name, _, argument = line.strip().partition(" ")
        name, argument = name.lower(), argument.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            self._print(HELP.format(names=", ".join(PERSONAS)))
        elif name == "/reset":
            self.history, self.last_hits, self.last_request, self.last_note = [], [], None, None
            self.last_removed, self.last_summary = 0, None
            self.forget_prompt_caches()
            self._print("(conversation forgotten)", muted=True)
        elif name == "/sources" and argument:
            self._print(self.describe_passage(argument))
        elif name == "/sources":
            self._print(self.describe_sources())
        elif name == "/summary":
            self.summary_command(argument)
        elif name == "/persona":
            if argument:
                typo = persona_typo_warning(argument)
                if typo:
                    self._status(f"warning: {typo}")
                self.persona = persona_from(argument)
                self.forget_prompt_caches()
                self._print(f"(persona: {self.persona.name})", muted=True)
                self._print(self.persona.greeting)
            else:
                self._print(f"persona: {self.persona.name}: {self.persona.text}\n"
                            f"named personas: {', '.join(PERSONAS)}; or /persona followed by any description")
        else:
            self._print(f"unknown command {name}; /help lists the commands")
        return True

    def summary_command(self, argument: str) -> Turn | None:
        """`/summary WINDOW [PERSON]`: summarise every passage of the window (with the person)."""
        from retrieve_related_content_from_db import SearchRequest

        if not argument:
            self._print("usage: /summary WINDOW [PERSON], e.g. /summary 2023-05 Maria, /summary last month")
            return None
        today = self.today or date.today()
        try:
            window, person = period_summary.split_window_and_person(argument, today)
            people = [person] if person else []
            question = (f"Summarise what happened in my notes and messages from {window.label}"
                        + (f" with {person}" if person else "") + ".")
            request = SearchRequest(query=question, since=window.since, until=window.until, people=people,
                                    summary=True)
            return self.summarise(f"/summary {argument}", request, question)
        except ModelLoadFailed:
            raise  # nothing can be answered: one error line, and the chat ends
        except settings.UserError as err:  # an unreadable window, one too big: the chat goes on
            self._status(f"error: {err}")
            return None

    def describe_passage(self, argument: str) -> str:
        """`/sources N`: passage N of the last answer in full, with its header."""
        if not argument.isdigit():
            return f"/sources {argument}: give a passage number, like /sources 2"
        number = int(argument)
        if not 1 <= number <= len(self.last_hits):
            known = f"the last answer had passages 1 to {len(self.last_hits)}" if self.last_hits else "no passages yet"
            return f"no passage {number}: {known}"
        hit = self.last_hits[number - 1]
        return settings.terminal_safe(f"{passage_header(number, hit)}\n{hit.content.strip()}")

    def system_messages(self, today: date) -> dict[str, list[dict]]:
        """The system message each answer and each keeper prompt begins with, as sent."""
        from formulate_query_for_retrieving_content import keeper_messages

        return {"answer": [{"role": "system", "content": self.llm.neutralise(system_prompt(self.persona, today))}],
                "keeper": keeper_messages([{"role": "user", "content": ""}], today, self.llm.neutralise)[:1]}

    def forget_prompt_caches(self) -> None:
        """Drop the model's cached prompts: nothing of the old conversation stays in memory."""
        reset = getattr(self.llm, "reset_cache", None)  # the test fakes have no cache
        if reset is not None:
            reset()

    def describe_sources(self) -> str:
        """The passages behind the last answer: score, source, date, people, first lines. For a
        summary: the window, the groups, and one line per passage read."""
        if not self.last_hits:
            return "no sources yet: ask something first" if self.last_request is None else "no passages were found"
        lines = []
        request = self.last_request
        if self.last_summary is not None:
            lines.append(settings.terminal_safe(f"read every passage of {self.last_summary}{_with_people(request)}: "
                                                + "; ".join(period_summary.grouped_sources(self.last_hits))))
        elif request is not None:
            filters = []
            if request.since or request.until:
                since = request.since.date().isoformat() if request.since else "..."
                until = request.until.date().isoformat() if request.until else "..."
                filters.append(f"{since} to {until}")
            if request.people:
                filters.append("people: " + ", ".join(request.people))
            if request.source_kind:
                filters.append(f"only {request.source_kind}")
            lines.append(f"searched for: {request.query}" + (f" ({'; '.join(filters)})" if filters else ""))
        if self.last_note:
            lines.append(f"note: {self.last_note}")
        if self.last_removed:
            lines.append(f"note: {self.last_removed} citation marker{'s' if self.last_removed != 1 else ''} "
                         "pointed to no passage and were removed from the answer")
        for number, hit in enumerate(self.last_hits, 1):
            # Chat names, senders and messages are other people's text: no terminal control.
            header = settings.terminal_safe(passage_header(number, hit).split(" ", 1)[1])
            if hit.modified_at is not None:  # the last resort, shown here only: not a date of the note
                header += f" | undated; file modified {hit.modified_at.astimezone().date().isoformat()}"
            if self.last_summary is not None:  # read in time order, not ranked: no score
                lines.append(f"{number:2d}. {header}")
                continue
            lines.append(f"{number:2d}. {hit.score:.3f}  {header}")
            content = settings.terminal_safe(hit.content)
            first = [line.strip() for line in content.splitlines() if line.strip()][:2]
            lines.extend(f"      {line[:160]}" for line in first)
        lines.append("(/sources N shows passage N in full)")
        return "\n".join(lines)


# ---------------------------------------------------------------- retrieval over the store


class StoreRetriever:
    """Search through the store, reconnecting on the next turn after the database went away."""

    def __init__(self, url: str, embedder, store=None, connect: Callable | None = None,
                 search: Callable | None = None):
        self.url = url
        self.embedder = embedder
        self.store = store
        self._connect = connect
        self._search = search

    def _open(self):
        if self.store is None:
            connect = self._connect
            if connect is None:
                from store import Store as connect
            try:
                self.store = connect(self.url)
            except settings.UserError as err:
                raise DatabaseDown(f"the database is not reachable ({err})")
        return self.store

    def _drop(self) -> None:
        try:
            self.store.close()
        except Exception:
            pass  # already broken; nothing more to release
        self.store = None

    def __call__(self, request: "SearchRequest", k: int) -> "SearchResult":
        import psycopg

        search = self._search
        if search is None:
            from retrieve_related_content_from_db import search
        store = self._open()
        try:
            return search(store, self.embedder, request, k=k)
        except psycopg.Error as err:
            self._drop()
            from store import first_error_line

            raise DatabaseDown(f"the database is not reachable ({first_error_line(err)})")

    def window(self, request: "SearchRequest") -> list["Hit"]:
        """Every passage of the request's window, oldest first; raises DatabaseDown, and
        EmptyIndexError before anything was ingested."""
        import psycopg

        from retrieve_related_content_from_db import EMPTY_INDEX_HINT, EmptyIndexError, window_passages

        store = self._open()
        try:
            if store.count_chunks() == 0:  # no table yet is not a database failure
                raise EmptyIndexError(EMPTY_INDEX_HINT)
            return window_passages(store, request)
        except psycopg.Error as err:
            self._drop()
            from store import first_error_line

            raise DatabaseDown(f"the database is not reachable ({first_error_line(err)})")

    def count_chunks(self) -> int:
        """Stored chunks (0 for an empty or new index); raises DatabaseDown."""
        import psycopg

        try:
            return self._open().count_chunks()
        except psycopg.Error as err:
            self._drop()
            raise DatabaseDown(f"the database is not reachable ({err.__class__.__name__})")


# ---------------------------------------------------------------- models in the background


class ModelLoadFailed(settings.UserError):
    """A model could not be loaded: the chat cannot answer, so it ends with this one line."""


class BackgroundModels:
    """Loads the models while the greeting prints and the user types; `llm()` waits for them.

    The embedding model (torch) loads in a thread. A transformers LLM loads in that thread too;
    an MLX one loads in the main thread at the first question, because MLX arrays belong to
    the thread that made them and answers stream from the main thread.
    """

    def __init__(self, load_llm: Callable[[], "ChatModel"], embedder=None, in_thread: bool = True,
                 after: Callable[["ChatModel"], None] | None = None):
        self._load_llm = load_llm
        self._after = after  # run in the waiting (main) thread once the LLM is there
        self._embedder = embedder
        self._in_thread = in_thread
        self._llm: "ChatModel | None" = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="load-models", daemon=True)

    def start(self) -> "BackgroundModels":
        """Begin loading; returns self."""
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            load = getattr(self._embedder, "load", None)
            if load is not None:
                load()
            if self._in_thread:
                self._llm = self._load_llm()
        except BaseException as err:  # re-raised in the main thread by llm()
            self._error = err

    def ready(self) -> bool:
        """True once `llm()` has nothing left to wait for."""
        return not self._thread.is_alive() and (self._llm is not None or self._error is not None)

    def llm(self) -> "ChatModel":
        """The chat model, once loaded; a load failure is ModelLoadFailed (one line)."""
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            if self._llm is None:
                self._llm = self._load_llm()
        except settings.UserError as err:
            raise ModelLoadFailed(str(err)) from None
        if self._after is not None:
            after, self._after = self._after, None
            after(self._llm)
        return self._llm


# ---------------------------------------------------------------- the REPL


def setup_readline(history_path) -> Callable[[], None]:
    """Line editing and a private history file; returns the function that saves it."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline: plain input still works
        return lambda: None
    try:
        readline.read_history_file(history_path)
    except (OSError, ValueError):
        pass
    readline.set_history_length(HISTORY_LENGTH)

    def save() -> None:
        try:
            history_path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history_path)
            os.chmod(history_path, 0o600)  # what you asked is private
        except OSError:
            pass

    return save


def run_repl(session: ChatSession, stdin: TextIO, interactive: bool) -> int:
    """Read messages until exit/quit/Ctrl-D (or end of input), answering each."""
    if interactive:
        session._print(session.persona.greeting)
        session._print("(/help for commands)", muted=True)
    prompt = "\nyou> " if interactive else ""
    while True:
        try:
            line = input(prompt) if interactive else stdin.readline()
        except EOFError:
            break
        except KeyboardInterrupt:  # at the prompt: drop the line, stay
            session._print()
            continue
        if not interactive and line == "":
            break
        line = line.strip()
        if not line:
            continue
        if line.lower() in ("exit", "quit"):
            break
        if line.startswith("/"):
            try:
                if not session.command(line):
                    break
            except KeyboardInterrupt:  # e.g. during /summary's reading
                session._print("\n[interrupted]", muted=True)
            continue
        try:
            session.ask(line)
        except KeyboardInterrupt:  # during the keeper or the search
            session._print("\n[interrupted]", muted=True)
        except ModelLoadFailed:
            raise  # nothing can be answered: one error line, and the chat ends
        except settings.UserError as err:  # this turn cannot be answered; the chat goes on
            session._status(f"error: {err}")
    if interactive:
        session._print()
    return 0


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Chat with a local LLM that answers from your notes and messages.")
    parser.add_argument("--persona", help=f"{', '.join(PERSONAS)} or any description (PERSONA)")
    parser.add_argument("--backend", help="auto, mlx or transformers (LLM_BACKEND)")
    parser.add_argument("--model", help="LLM hub id or local folder (LLM_MODEL)")
    parser.add_argument("--max-tokens", type=int, help="most tokens in one answer (LLM_MAX_TOKENS, default 512)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help=f"sampling temperature of answers; 0 is greedy (default {DEFAULT_TEMPERATURE})")
    parser.add_argument("-k", type=int, help="passages retrieved per message (RETRIEVAL_TOP_K, default 10)")
    parser.add_argument("--database-url", help="PostgreSQL URL (DATABASE_URL); unset: the embedded server")
    parser.add_argument("--data-dir", help="data folder (PERSONAL_LLM_DATA_DIR)")
    parser.add_argument("--embedding-model", help="hub id or folder (EMBEDDING_MODEL); the one used to ingest")
    parser.add_argument("--prompt-cache", action="store_true",
                        help="MLX: keep the system prompts' KV cache in the data folder, loaded at start")
    return parser


def fetch_chat_models(args: argparse.Namespace, embedder: bool, llm: bool) -> None:
    """Download whichever of the chat's two models is missing, before either loads; the hub is
    switched off only once both are on disk (the embedder being cached must not stop the LLM's
    first download)."""
    models = []
    if embedder:
        models.append((settings.get("EMBEDDING_MODEL", args.embedding_model), "EMBEDDING_MODEL", "embedding model"))
    if llm:
        backend = settings.llm_backend_name(args.backend)
        models.append((settings.llm_model_name(backend, args.model), "LLM_MODEL", "model"))
    if models:
        settings.fetch_models(models)


def main(argv: list[str] | None = None, *, llm: "ChatModel | None" = None, retriever=None,
         stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the chat. `llm`, `retriever` and the streams can be injected (tests)."""
    args = setup_arg_parser().parse_args(argv)
    persona = resolve_persona(args.persona)
    typo = persona_typo_warning(settings.get("PERSONA", args.persona) or PERSONA)
    max_tokens = settings.get_int("LLM_MAX_TOKENS", args.max_tokens)
    k = settings.get_int("RETRIEVAL_TOP_K", args.k)
    max_batches = settings.get_int("SUMMARY_MAX_BATCHES")
    if max_batches is None or max_batches < 1:
        raise settings.UserError(f"SUMMARY_MAX_BATCHES={max_batches} must be at least 1")
    if max_tokens is None or max_tokens < 1:
        raise settings.UserError(f"--max-tokens / LLM_MAX_TOKENS {max_tokens} must be at least 1")
    if k is None or k < 1:
        raise settings.UserError(f"-k / RETRIEVAL_TOP_K {k} must be at least 1")
    stdin = stdin or sys.stdin
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    interactive = stdin is sys.stdin and stdin.isatty()
    if typo:
        print(f"warning: {typo}", file=stderr, flush=True)

    empty_index_hint = empty_index_note()
    # The store first (fast, fails early); the empty-index hint comes before any model loads
    # (on a fresh machine it is the first thing to do). Both models are downloaded, if missing,
    # before either loads; an embedded database is created only once they are on disk, so a run
    # that cannot get its models writes nothing. The models then load in the background, so the
    # greeting and the prompt come at once (the first message waits for them).
    if retriever is None:
        import store as store_module
        from embedding_generator_multilingual import load_embedder
        from retrieve_related_content_from_db import EmptyIndexError, check_index

        external = settings.get("DATABASE_URL", args.database_url)
        if external:
            store = store_module.Store(external)
            empty = store.count_chunks() == 0
        else:
            empty = not store_module.embedded_database_exists(settings.data_dir(args.data_dir))
        if empty:
            print(empty_index_hint, file=stderr, flush=True)
        fetch_chat_models(args, embedder=True, llm=llm is None)
        url = external or store_module.database_url(None, args.data_dir)
        if not external:
            store = store_module.Store(url)
            if not empty and store.count_chunks() == 0:
                print(empty_index_hint, file=stderr, flush=True)
        embedder = load_embedder(args.embedding_model)
        retriever = StoreRetriever(url, embedder, store=store)
        try:
            check_index(store, embedder)  # another model's index is an error, not a bad answer
        except EmptyIndexError:
            pass  # told above, and the chat still runs (ingestion may happen meanwhile)
    else:
        count_chunks = getattr(retriever, "count_chunks", None)
        try:
            if count_chunks is not None and count_chunks() == 0:
                print(empty_index_hint, file=stderr, flush=True)
        except DatabaseDown as err:
            print(f"warning: {err}", file=stderr, flush=True)
        fetch_chat_models(args, embedder=False, llm=llm is None)
    def restore_prompt_caches(model: "ChatModel") -> None:
        from llm_backend import restore_system_prompt_caches

        session.llm = model  # its system prompts are neutralised for this model's tokenizer
        note = restore_system_prompt_caches(model, session.system_messages(date.today()),
                                            settings.data_dir(args.data_dir) / PROMPT_CACHE_FOLDER)
        print(f"note: {note}", file=stderr, flush=True)

    models = None
    if llm is None:
        backend = settings.llm_backend_name(args.backend)

        def load() -> "ChatModel":
            from llm_backend import load_llm

            return load_llm(backend, args.model)

        models = BackgroundModels(load, getattr(retriever, "embedder", None), in_thread=backend != "mlx",
                                  after=restore_prompt_caches if args.prompt_cache else None)
    session = ChatSession(llm, retriever, persona, k=k, max_tokens=max_tokens,
                          temperature=max(0.0, args.temperature), out=stdout, err=stderr, max_batches=max_batches,
                          dim=stdout.isatty() and not os.environ.get("NO_COLOR"), models=models)
    if models is not None:
        models.start()  # after the session exists: restoring prompt caches needs its system prompts
    elif args.prompt_cache:
        restore_prompt_caches(llm)
    save_history = lambda: None  # noqa: E731
    if interactive:
        save_history = setup_readline(settings.data_dir(args.data_dir) / HISTORY_FILE)
    try:
        return run_repl(session, stdin, interactive)
    finally:
        save_history()


if __name__ == "__main__":
    settings.run_cli(main)
