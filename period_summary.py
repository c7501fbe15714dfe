"""Questions about a whole period ("what did I do in May?", "how was my week with Maria?"):
read *every* passage of the window, not the top 10, by map-reduce within the model's context.

    window = parse_window("last month", today)            # or 2023-05, 2023-05-01..2023-05-31
    plan = plan_batches(llm, passages, question)           # passages oldest first, numbered 1..n
    answer = summarise(llm, plan, question, system, on_piece=print)

Map: the passages, in time order, are packed into batches that fit the context; each batch is
summarised with its dates and people, citing passage numbers. Reduce: the partial summaries are
combined (in rounds, when they do not fit one prompt) and the last step, in the persona's voice,
is streamed. One batch needs no combine step: its answer is the final one.
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Callable, Iterator

import settings
from chunking import span_text

if TYPE_CHECKING:
    from llm_backend import ChatModel
    from retrieve_related_content_from_db import Hit

DEFAULT_MAX_BATCHES = 50  # SUMMARY_MAX_BATCHES: each batch is one model call
PARTIAL_TOKENS = 256  # room for one partial summary...
PARTIAL_SHARE = 8  # ...but never more than 1/8 of the context (tiny models)
MIN_PASSAGE_TOKENS = 32  # a passage cut to fit a batch keeps at least this much
TRUNCATED_MARK = " [...]"
MAP_TEMPERATURE = 0.0  # partial summaries are factual: greedy

MAP_SYSTEM = """You summarise part of a person's archive (their own notes and chat messages) for them. Each passage is headed by its number, source, date and people.
- Write a compact summary of these passages in time order: what happened, on which dates, with whom.
- Keep names, dates and concrete details; leave out small talk.
- Cite the passages you use by their numbers in brackets, like [3] or [4][7].
- Write in the language of the user's question."""

MAP_REQUEST = """The user's question: {question}

Passages {first}-{last} of {total} ({span}):

{passages}

Summarise these passages for the question."""

COMBINE_SYSTEM = """You merge partial summaries of a person's archive into one summary, in time order. Keep the dates, the names and the passage numbers in brackets, like [3]. Write in the language of the user's question."""

COMBINE_REQUEST = """The user's question: {question}

Partial summaries, oldest first:

{partials}

Merge them into one summary for the question."""

FINAL_REQUEST = """Summaries of every passage of my notes and messages from {window} ({count}), oldest first. The numbers in brackets are passage numbers; cite them.

{partials}

My message: {question}"""

FINAL_PASSAGES_REQUEST = """Every passage of my notes and messages from {window} ({count}), oldest first:

{passages}

My message: {question}"""

ACCEPTED_WINDOWS = ("2023, 2023-05, 2023-05-14, 2023-05-01..2023-05-31, today, yesterday, "
                    "this week, last month, last year, last summer (or spring, autumn, winter), "
                    "summer 2023, last 7 days")
SEASONS = {"spring": (3, 5), "summer": (6, 8), "autumn": (9, 11), "fall": (9, 11), "winter": (12, 2)}


class TooManyBatches(settings.UserError):
    """The window needs more model calls than SUMMARY_MAX_BATCHES allows."""


# ---------------------------------------------------------------- windows


@dataclass
class Window:
    """An inclusive span of days, as local datetimes (start of the first day, end of the last)."""

    since: datetime
    until: datetime

    @property
    def label(self) -> str:
        """`2023-05-01 to 2023-05-31`, or one date."""
        return span_text(self.since.date(), self.until.date())


def _days(first: date, last: date) -> Window:
    return Window(datetime.combine(first, time.min).astimezone(), datetime.combine(last, time.max).astimezone())


def _calendar_span(text: str) -> tuple[date, date] | None:
    """`2023` / `2023-05` / `2023-05-14` -> its first and last day."""
    match = re.fullmatch(r"(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?", text)
    if not match:
        return None
    year, month, day = int(match[1]), match[2], match[3]
    try:
        if month is None:
            return date(year, 1, 1), date(year, 12, 31)
        month = int(month)
        if day is None:
            return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
        one = date(year, month, int(day))
        return one, one
    except ValueError:
        return None


def _season(name: str, year: int) -> tuple[date, date]:
    """A northern-hemisphere season; winter `year` starts in December of `year`."""
    first_month, last_month = SEASONS[name]
    end_year = year + 1 if last_month < first_month else year
    return date(year, first_month, 1), date(end_year, last_month, calendar.monthrange(end_year, last_month)[1])


def _latest_season(name: str, today: date, include_current: bool) -> tuple[date, date]:
    """The most recent season `name` that has started (include_current) or ended by today."""
    for year in (today.year, today.year - 1, today.year - 2):
        first, last = _season(name, year)
        if (first <= today if include_current else last < today):
            return first, last
    raise AssertionError("a season recurs every year")


def parse_window(text: str, today: date) -> Window:
    """A window from the user's words: `2023-05`, `2023-05-01..2023-05-31` (or `... to ...`, as
    windows are printed), `last month`, `this week` (weeks start on Monday), `last summer`,
    `last 10 days`, `summer 2022`. Anything else is a UserError listing the accepted forms."""
    words = " ".join(text.lower().split())
    span = None
    if match := re.fullmatch(r"(\S+) *(?:\.\.| to ) *(\S+)", words):
        start, end = match.groups()
        first, last = _calendar_span(start), _calendar_span(end)
        if first and last and first[0] <= last[1]:
            span = first[0], last[1]
    elif words in ("today", "yesterday"):
        day = today if words == "today" else today - timedelta(days=1)
        span = day, day
    elif match := re.fullmatch(r"(this|last) (week|month|year)", words):
        which, unit = match.groups()
        if unit == "week":
            start = today - timedelta(days=today.weekday())
            if which == "last":
                start -= timedelta(days=7)
            span = start, start + timedelta(days=6)
        elif unit == "month":
            month_start = today.replace(day=1)
            if which == "last":
                month_start = (month_start - timedelta(days=1)).replace(day=1)
            span = _calendar_span(month_start.strftime("%Y-%m"))
        else:
            span = _calendar_span(str(today.year - (which == "last")))
    elif match := re.fullmatch(r"last (\d{1,4}) days", words):
        span = today - timedelta(days=int(match[1]) - 1), today
    elif match := re.fullmatch(r"(this|last) (spring|summer|autumn|fall|winter)", words):
        span = _latest_season(match[2], today, include_current=match[1] == "this")
    elif match := re.fullmatch(r"(spring|summer|autumn|fall|winter) (\d{4})", words):
        span = _season(match[1], int(match[2]))
    else:
        span = _calendar_span(words)
    if span is None:
        raise settings.UserError(f"cannot read the window {text.strip()!r}; use one of: {ACCEPTED_WINDOWS}")
    return _days(*span)


def split_window_and_person(argument: str, today: date) -> tuple[Window, str | None]:
    """`/summary`'s argument: the longest leading words that read as a window, then a person.
    `"last month Maria Silva"` -> (last month, "Maria Silva")."""
    words = argument.split()
    for count in range(len(words), 0, -1):
        try:
            window = parse_window(" ".join(words[:count]), today)
        except settings.UserError:
            continue
        person = " ".join(words[count:]) or None
        return window, person
    return parse_window(argument, today), None  # raises with the accepted forms


# ---------------------------------------------------------------- dates and groups


def _local_day(moment: datetime | None) -> date | None:
    return moment.astimezone().date() if moment is not None else None


def passage_days(hits: list["Hit"]) -> tuple[date, date] | None:
    """The first and last day the passages cover (None when all are undated)."""
    starts = [d for d in (_local_day(h.started_at) for h in hits) if d]
    ends = [d for d in (_local_day(h.ended_at or h.started_at) for h in hits) if d]
    if not starts:
        return None
    return min(starts), max(ends)


def group_label(hit: "Hit") -> str:
    """What a passage is grouped under in a summary's sources: the chat's name, or `notes`."""
    if hit.source_kind == "notes":
        return "notes"
    return hit.chat_name or hit.source


def grouped_sources(hits: list["Hit"]) -> list[str]:
    """`["Maria: 14 passages, 2023-05-02..05-29", "notes: 3 passages from 2 notes, 2023-05-04..05-20"]`,
    largest group first."""
    groups: dict[str, list] = {}
    for hit in hits:
        groups.setdefault(group_label(hit), []).append(hit)
    lines = []
    for label, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        count = f"{len(members)} passage{'' if len(members) == 1 else 's'}"
        if label == "notes":
            documents = len({h.doc_id for h in members})
            count += f" from {documents} note{'' if documents == 1 else 's'}"
        days = passage_days(members)
        lines.append(f"{label}: {count}" + (f", {span_text(*days)}" if days else ""))
    return lines


# ---------------------------------------------------------------- batches


@dataclass
class Batch:
    """Consecutive passages (by their 1-based numbers) that fit one map prompt."""

    numbers: list[int]
    texts: list[str]  # each passage's text as sent (cut when one passage alone is too big)
    prompt_tokens: int = 0


@dataclass
class Plan:
    """How a window will be read: the passages (oldest first), the batches, the token budget."""

    passages: list["Hit"]
    batches: list[Batch]
    partial_tokens: int
    question: str

    @property
    def prompt_tokens(self) -> int:
        """Tokens of all map prompts together (what reading the window costs)."""
        return sum(b.prompt_tokens for b in self.batches)


def partial_tokens_for(llm: "ChatModel") -> int:
    """Room for one partial summary on this model."""
    return max(MIN_PASSAGE_TOKENS, min(PARTIAL_TOKENS, llm.context_window // PARTIAL_SHARE))


def _header(number: int, hit: "Hit") -> str:
    from chat_prompt import passage_header  # one header format for answers and summaries

    return passage_header(number, hit)


def _block(number: int, hit: "Hit", text: str, neutralise) -> str:
    # The header's source, chat name and people come from the user's data too.
    return f"{neutralise(_header(number, hit))}\n{neutralise(text)}"


def _span_of(hits: list["Hit"]) -> str:
    days = passage_days(hits)
    return span_text(*days) if days else "undated"


def map_messages(llm: "ChatModel", passages: list["Hit"], batch: Batch, question: str) -> list[dict]:
    """The chat for one map step."""
    hits = [passages[n - 1] for n in batch.numbers]
    blocks = [_block(n, passages[n - 1], text, llm.neutralise) for n, text in zip(batch.numbers, batch.texts)]
    user = MAP_REQUEST.format(question=llm.neutralise(question), first=batch.numbers[0] if batch.numbers else 0,
                              last=batch.numbers[-1] if batch.numbers else 0, total=len(passages),
                              span=_span_of(hits), passages="\n\n".join(blocks))
    return [{"role": "system", "content": MAP_SYSTEM}, {"role": "user", "content": user}]


def _cut_to_fit(llm: "ChatModel", passages: list["Hit"], number: int, question: str, limit: int) -> str:
    """One passage's text, cut at the end so that a batch of it alone fits `limit` tokens."""
    text = passages[number - 1].content.strip()
    while len(text) > 1:
        batch = Batch([number], [text])
        over = llm.count_tokens(map_messages(llm, passages, batch, question)) - limit
        if over <= 0:
            return text
        own = max(1, llm.count_text_tokens(text))
        keep = int(len(text) * max(0.0, own - over) / own * 0.95)
        text = text[:min(keep, len(text) - 1)].rstrip()
        if keep <= 0:
            break
        text = text + TRUNCATED_MARK
    raise settings.UserError(
        f"the summary instructions alone do not fit the model's {llm.context_window}-token context; "
        "use a model with a longer context")


def plan_batches(llm: "ChatModel", passages: list["Hit"], question: str,
                 max_batches: int | None = None) -> Plan:
    """Pack the passages, in order, into as few map prompts as fit the context with room for a
    partial summary each. Token counts are estimated per passage and each batch is then checked
    with the real template. More batches than `max_batches` raise TooManyBatches (before any
    model call) with the counts and the fix."""
    partial = partial_tokens_for(llm)
    limit = llm.context_window - partial
    base = llm.count_tokens(map_messages(llm, passages, Batch([], []), question))
    batches: list[Batch] = []
    number, total = 1, len(passages)
    while number <= total:
        numbers, texts, used = [], [], base
        while number <= total:
            text = passages[number - 1].content.strip()
            cost = llm.count_text_tokens(_block(number, passages[number - 1], text, llm.neutralise)) + 2
            if numbers and used + cost > limit:
                break
            numbers.append(number)
            texts.append(text)
            used += cost
            number += 1
        batch = Batch(numbers, texts)
        # The estimate can be off by a few tokens at block boundaries: give passages back.
        while len(batch.numbers) > 1 and llm.count_tokens(map_messages(llm, passages, batch, question)) > limit:
            batch.numbers.pop()
            batch.texts.pop()
            number -= 1
        if len(batch.numbers) == 1:
            batch.texts[0] = _cut_to_fit(llm, passages, batch.numbers[0], question, limit)
        batch.prompt_tokens = llm.count_tokens(map_messages(llm, passages, batch, question))
        batches.append(batch)
    if max_batches is not None and len(batches) > max_batches:
        raise TooManyBatches(
            f"this window holds {total} passages: {len(batches)} batches for this model, more than "
            f"SUMMARY_MAX_BATCHES={max_batches}; narrow it (a shorter window, or a person) or raise SUMMARY_MAX_BATCHES")
    return Plan(list(passages), batches, partial, question)


# ---------------------------------------------------------------- running


@dataclass
class Partial:
    """One summary of consecutive passages, with the days they cover (None: undated)."""

    days: tuple[date, date] | None
    text: str

    @property
    def span(self) -> str:
        return span_text(*self.days) if self.days else "undated"


@dataclass
class Summary:
    """What a summary produced: the streamed final answer and how it got there."""

    answer: str = ""
    finish_reason: str | None = None
    answer_tokens: int = 0
    partials: list[Partial] = field(default_factory=list)
    calls: int = 0


def _generate(llm: "ChatModel", messages: list[dict], max_tokens: int, temperature: float,
              top_p: float = 1.0, on_piece: Callable[[str], None] | None = None) -> str:
    """Run one model call to the end; the stream is closed however it ends (Ctrl-C included),
    so the model stays usable."""
    stream: Iterator[str] = llm.stream(messages, max_tokens, temperature, top_p)
    pieces = []
    try:
        for piece in stream:
            pieces.append(piece)
            if on_piece is not None:
                on_piece(piece)
    finally:
        stream.close()
    return "".join(pieces)


def _partials_text(partials: list[Partial], neutralise) -> str:
    return "\n\n".join(f"({p.span})\n{neutralise(p.text.strip())}" for p in partials)


def _combine_rounds(llm: "ChatModel", partials: list[Partial], question: str, fits: Callable[[list[Partial]], bool],
                    partial_tokens: int, progress: Callable[[str], None], summary: Summary) -> list[Partial]:
    """Merge neighbouring partial summaries until `fits(partials)`: each round packs as many
    as one combine prompt holds (at least two) into one, keeping time order."""
    limit = llm.context_window - partial_tokens

    def combine_messages(group: list[Partial]) -> list[dict]:
        user = COMBINE_REQUEST.format(question=llm.neutralise(question), partials=_partials_text(group, llm.neutralise))
        return [{"role": "system", "content": COMBINE_SYSTEM}, {"role": "user", "content": user}]

    while len(partials) > 1 and not fits(partials):
        groups: list[list[Partial]] = []
        for partial in partials:
            if groups and (len(groups[-1]) < 2 or llm.count_tokens(combine_messages(groups[-1] + [partial])) <= limit):
                groups[-1].append(partial)
            else:
                groups.append([partial])
        merged = []
        for i, group in enumerate(groups, 1):
            if len(group) == 1:
                merged.append(group[0])
                continue
            progress(f"combining {i} of {len(groups)} groups of summaries")
            messages = combine_messages(group)
            while llm.count_tokens(messages) > limit:  # two over-long partials: shorten the longest
                longest = max(group, key=lambda p: len(p.text))
                longest.text = longest.text[: len(longest.text) * 3 // 4]
                messages = combine_messages(group)
            text = _generate(llm, messages, partial_tokens, MAP_TEMPERATURE)
            summary.calls += 1
            dated = [p.days for p in group if p.days]
            days = (min(d[0] for d in dated), max(d[1] for d in dated)) if dated else None
            merged.append(Partial(days, text.strip()))
        partials = merged
    return partials


def summarise(llm: "ChatModel", plan: Plan, question: str, system: str, window_label: str,
              answer_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
              progress: Callable[[str], None] = lambda line: None,
              on_piece: Callable[[str], None] | None = None) -> Summary:
    """Read every batch of `plan` (map), combine the partial summaries (reduce) and stream the
    final answer in the persona's `system` prompt through `on_piece`. `progress` gets a line per
    step ("reading 3 of 11 batches"). Ctrl-C propagates as KeyboardInterrupt after closing the
    current stream; `Summary.answer` then holds what was streamed."""
    summary = Summary()
    passages = plan.passages
    count = llm.neutralise(", ".join(grouped_sources(passages)))  # chat names are other people's text
    window_label = llm.neutralise(window_label)
    window_answer = max(16, min(answer_tokens, llm.context_window // 2))
    final_limit = llm.context_window - window_answer

    def final_messages_from_passages(batch: Batch) -> list[dict]:
        blocks = [_block(n, passages[n - 1], text, llm.neutralise) for n, text in zip(batch.numbers, batch.texts)]
        user = FINAL_PASSAGES_REQUEST.format(window=window_label, count=count, passages="\n\n".join(blocks),
                                             question=llm.neutralise(question))
        return [{"role": "system", "content": llm.neutralise(system)}, {"role": "user", "content": user}]

    def final_messages(partials: list[Partial]) -> list[dict]:
        user = FINAL_REQUEST.format(window=window_label, count=count, question=llm.neutralise(question),
                                    partials=_partials_text(partials, llm.neutralise))
        return [{"role": "system", "content": llm.neutralise(system)}, {"role": "user", "content": user}]

    def stream_final(messages: list[dict]) -> Summary:
        used = llm.count_tokens(messages)
        summary.answer_tokens = max(1, min(window_answer, llm.context_window - used))
        progress("")  # the progress line ends before the answer starts
        pieces: list[str] = []

        def keep(piece: str) -> None:
            pieces.append(piece)
            if on_piece is not None:
                on_piece(piece)

        try:
            _generate(llm, messages, summary.answer_tokens, temperature, top_p, keep)
            summary.finish_reason = llm.last_finish_reason
        finally:
            summary.answer = "".join(pieces)
            summary.calls += 1
        return summary

    total = len(plan.batches)
    if total == 1:
        messages = final_messages_from_passages(plan.batches[0])
        if llm.count_tokens(messages) <= final_limit:
            return stream_final(messages)  # one batch: the passages themselves, no combine step
    for i, batch in enumerate(plan.batches, 1):
        progress(f"reading {i} of {total} batches")
        text = _generate(llm, map_messages(llm, passages, batch, question), plan.partial_tokens, MAP_TEMPERATURE)
        summary.calls += 1
        summary.partials.append(Partial(passage_days([passages[n - 1] for n in batch.numbers]), text.strip()))
    partials = _combine_rounds(llm, list(summary.partials), question,
                               lambda group: llm.count_tokens(final_messages(group)) <= final_limit,
                               plan.partial_tokens, progress, summary)
    messages = final_messages(partials)
    while llm.count_tokens(messages) > final_limit and partials[0].text:  # one partial, still too long
        partials[0].text = partials[0].text[: len(partials[0].text) * 3 // 4]
        messages = final_messages(partials)
    progress(f"combining {total} batch summaries")
    return stream_final(messages)
