"""The conversation: one message in, the document keeper's search, the passages, the streamed
answer with its citations and sources out; the slash commands; the personas it can switch to.

    session = ChatSession(llm, retriever, persona, personas=personas)
    session.ask("when was I in Kyoto?")      # prints the answer and its sources line
    session.command("/sources 2")            # passage [2] in full

The model, the retriever and the keeper are injected, so tests drive a session with fakes;
main.py builds the real ones and runs the REPL around it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Callable, TextIO

import period_summary
import settings
from chat_prompt import (CitationFilter, Passages, Prompt, fit_prompt, number_ranges, passage_header, source_list,
                         system_prompt, without_citations)
from chunking import span_text
from chat_resources import BackgroundModels, DatabaseDown, ModelLoadFailed

if TYPE_CHECKING:
    from llm_backend import ChatModel
    from retrieve_related_content_from_db import Hit, SearchRequest, SearchResult

DEFAULT_TEMPERATURE = 0.6  # Llama 3 Instruct's own generation settings
DEFAULT_TOP_P = 0.9
PERSONA_TYPO_CUTOFF = 0.7  # difflib ratio: "philosofer" vs "philosopher" is 0.86

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


# ---------------------------------------------------------------- personas


@dataclass
class Persona:
    """Who the assistant is: a named seed persona or free text."""

    name: str
    text: str
    greeting: str = ""


@dataclass
class Personas:
    """The named personas (main.py's PERSONAS and GREETINGS) and what a typed value becomes."""

    texts: dict[str, str] = field(default_factory=dict)
    greetings: dict[str, str] = field(default_factory=dict)
    default_greeting: str = ""

    def get(self, value: str) -> Persona:
        """A named persona (`"philosopher"`, any case) or free text as a custom persona."""
        value = value.strip()
        key = value.lower()
        if key in self.texts:
            return Persona(key, self.texts[key], self.greetings.get(key, self.default_greeting))
        return Persona("custom", value, self.default_greeting)

    def typo_warning(self, value: str) -> str | None:
        """A warning when a one-word persona is not a named one but looks like a typo of one:
        `"philosofer"` -> "... did you mean philosopher?"; None for names and descriptions."""
        value = value.strip()
        if value.lower() in self.texts or len(value.split()) != 1:
            return None
        suggestion = settings.closest(value.lower(), self.texts, PERSONA_TYPO_CUTOFF)
        if suggestion is None:
            return None
        return (f"persona {value!r} is not one of {', '.join(self.texts)} and is used as a description "
                f"of its own; did you mean {suggestion}?")


# ---------------------------------------------------------------- the session


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
    search request. Both are injectable, so tests drive the session with fakes. `personas` are
    the named ones /persona can switch to (without them, any /persona text is a description).
    """

    def __init__(self, llm: "ChatModel | None", retriever: Callable[["SearchRequest", int], "SearchResult"],
                 persona: Persona, k: int = 10, max_tokens: int = 512,
                 temperature: float = DEFAULT_TEMPERATURE, top_p: float = DEFAULT_TOP_P,
                 keeper: Callable | None = None, out: TextIO | None = None, err: TextIO | None = None,
                 today: date | None = None, dim: bool = False,
                 max_batches: int = period_summary.DEFAULT_MAX_BATCHES, models: BackgroundModels | None = None,
                 personas: Personas | None = None):
        if keeper is None:
            from formulate_query_for_retrieving_content import formulate_request as keeper
        self.llm = llm  # None until `models` has loaded it (the first message waits)
        self.models = models
        self.retriever = retriever
        self.keeper = keeper
        self.persona = persona
        self.personas = personas or Personas()  # what /persona NAME can switch to
        self.k = k
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.today = today
        self.dim = dim
        # Alternating user/assistant; a user message may carry the passages sent with it (chat_prompt).
        self.history: list[dict] = []
        self.passages = Passages()  # the conversation's numbered passages
        self.last_hits: list["Hit"] = []
        self.last_numbers: list[int] = []  # the [N] of each of last_hits (1, 2, ... when empty)
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
                            self.max_tokens, self.passages)
        self._keep_context(prompt)
        self._show_passages(turn, prompt.numbered, turn.request)
        if prompt.truncated:
            self._status("note: your message was too long for the model's context and was cut")
        if prompt.found and not prompt.numbered:  # weaker passages dropped for room is routine; all is not
            self._status(f"note: {prompt.found} passages were found but did not fit the model's context of "
                         f"{self.llm.context_window} tokens; this answer is not based on them (/reset, a shorter "
                         "message or a model with a longer context makes room)")

        pieces: list[str] = []
        citations = CitationFilter(prompt.numbers)
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
        # Earlier passages the answer cites are its sources too.
        here = {n for n, _ in prompt.numbered}
        cited = [(n, self.passages.by_number[n]) for n in sorted(citations.cited - here)]
        self._show_passages(turn, prompt.numbered + cited, turn.request)
        self._finish_turn(turn, text, pieces, source_list(turn.hits, prompt.found, self.last_numbers),
                          self.length_note(prompt.answer_tokens), {**prompt.entry, "role": "user", "content": text})
        return turn

    def _keep_context(self, prompt: Prompt) -> None:
        """Remember what this prompt carries: its new passages' numbers, and the earlier messages
        as sent (passages the budget dropped stay dropped, so the next prompt begins the same)."""
        for number, hit in prompt.numbered:
            if self.passages.number(hit) is None:
                self.passages.add(number, hit)
        if prompt.history:
            self.history[len(self.history) - len(prompt.history):] = prompt.history

    def _show_passages(self, turn: Turn, numbered: list[tuple[int, "Hit"]], request: "SearchRequest") -> None:
        """The passages /sources shows for this answer, with their numbers."""
        turn.hits = [hit for _, hit in numbered]
        self.last_hits, self.last_numbers, self.last_request = turn.hits, [n for n, _ in numbered], request

    def _write_answer(self, text: str, pieces: list[str]) -> None:
        """Print part of an answer as it streams (and keep it)."""
        if text:
            pieces.append(text)
            self.out.write(text)
            self.out.flush()

    def _finish_turn(self, turn: Turn, text: str, pieces: list[str], sources: str, length_note: str,
                     entry: dict | None = None) -> None:
        """After the stream: the end of line, [interrupted], the history (the user message as
        `entry`, with the passages it carried), the sources line."""
        turn.answer = "".join(pieces).strip()
        self._print()
        if turn.finish_reason == "interrupted":
            self._print("[interrupted]", muted=True)
        if turn.answer:
            self.history += [entry or {"role": "user", "content": text}, {"role": "assistant", "content": turn.answer}]
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
        self.last_numbers = []  # a summary numbers what it read 1, 2, ... of its own
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
        if turn.answer:
            # Its [N] number the passages it read, which later prompts do not carry: kept, they
            # would read as the conversation's own passage numbers.
            self.history[-1] = {"role": "assistant", "content": without_citations(turn.answer)}
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
            self._print(HELP.format(names=", ".join(self.personas.texts)))
        elif name == "/reset":
            self.history, self.last_hits, self.last_request, self.last_note = [], [], None, None
            self.last_removed, self.last_summary, self.last_numbers, self.passages = 0, None, [], Passages()
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
                typo = self.personas.typo_warning(argument)
                if typo:
                    self._status(f"warning: {typo}")
                self.persona = self.personas.get(argument)
                self.forget_prompt_caches()
                self._print(f"(persona: {self.persona.name})", muted=True)
                self._print(self.persona.greeting)
            else:
                self._print(f"persona: {self.persona.name}: {self.persona.text}\n"
                            f"named personas: {', '.join(self.personas.texts)}; or /persona followed by any description")
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
        """`/sources N`: passage N in full, with its header: any passage of the conversation (the
        numbers hold until /reset), or after a summary the one it read as [N]."""
        if not argument.isdigit():
            return f"/sources {argument}: give a passage number, like /sources 2"
        number = int(argument)
        shown = dict(zip(self._last_numbers(), self.last_hits))
        hit = shown.get(number) or (self.passages.by_number.get(number) if self.last_summary is None else None)
        if hit is None:
            known = (f"the last answer had passages {number_ranges(list(shown))}" if self.last_hits
                     else "no passages yet")
            return f"no passage {number}: {known}"
        return settings.terminal_safe(f"{passage_header(number, hit)}\n{hit.content.strip()}")

    def _last_numbers(self) -> list[int]:
        """The [N] of each passage of the last answer."""
        return self.last_numbers if len(self.last_numbers) == len(self.last_hits) else list(
            range(1, len(self.last_hits) + 1))

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
                filters.append(window_label(request))
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
        for number, hit in zip(self._last_numbers(), self.last_hits):
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




def window_label(request: "SearchRequest") -> str:
    """The request's dates as the user reads them: `2023-05-01 to 2023-05-31`, `since 2023-05-01`."""
    since = request.since.astimezone().date() if request.since else None
    until = request.until.astimezone().date() if request.until else None
    if since and until:
        return span_text(since, until)
    if since:
        return f"since {since.isoformat()}"
    return f"until {until.isoformat()}" if until else "all time"


def _with_people(request: "SearchRequest") -> str:
    return f" with {', '.join(request.people)}" if request.people else ""
