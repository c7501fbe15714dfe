"""What a search asks and what it gives back, with no database in sight: the request, a hit
(a stored chunk plus its scores), the result, and the plain-Python steps around the SQL of
`retrieve_related_content_from_db`: date bounds, the query's keywords, reciprocal rank fusion,
the per-document cap, and the terminal / JSON renderings of hits.

    request -> (SQL: vector + keyword rankings) -> fuse_ranking -> diversify -> format_hit / hits_json
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import settings
from chunking import MESSAGES, Chunk, fold_text, json_fields, span_text

DEFAULT_TOP_K = 10
# Reciprocal rank fusion constant (Cormack et al. 2009): 1 / (RRF_K + rank).
RRF_K = 60
# At most this many chunks of one note, or of one day of a chat, in the top-k, while others
# still have candidates (bench/bench_memory.py: a cap per chat took all-questions recall@10
# from 0.65 to 0.60).
MAX_CHUNKS_PER_DOCUMENT = 3
# Query words that carry no meaning for keyword search (English and Portuguese); words of
# MIN_WORD_LENGTH characters or fewer are dropped too, in any language.
MIN_WORD_LENGTH = 2
MAX_QUERY_WORDS = 32
STOPWORDS = frozenset("""
    the and for are but not you all any can had her was one our out has him his how its may
    new now old see two who did get got let say she too use what when where which while with
    about after again also been before being both could does doing down during each from
    further have having here into just more most other over same should some such than that
    their them then there these they this those through under until very were will would your
    yours myself ourselves tell show find know remember something anything thing things about
    para com que uma por dos das nos nas sem sob sua seu suas seus ele ela eles elas voce voces
    isso isto esse essa este esta aquilo aquele aquela como quando onde qual quais quem porque
    mas mais muito muita pelo pela pelos pelas num numa foi era sao ser ter tem tinha fiz
    fez estou estava sobre entre depois antes ainda tambem lembra lembro alguma algum coisa
""".split())

# What `search --json` shows of a hit, in this order ("content" is the chunk's text).
HIT_JSON_FIELDS = ("source", "content", "score", "fused_score", "vector_rank", "text_rank", "doc_id",
                   "source_kind", "title", "heading", "chat_name", "chat_id", "people", "tags",
                   "started_at", "ended_at", "metadata")


@dataclass
class SearchRequest:
    """What to look for. Dates are inclusive; an `until` at midnight means the end of that day.
    `people` match participants/senders or names mentioned in the text (case- and
    accent-insensitive, whole words: "maria" finds "Maria Silva")."""

    query: str
    since: datetime | None = None
    until: datetime | None = None
    people: list[str] = field(default_factory=list)
    source_kind: str | None = None  # chunking.NOTES / chunking.MESSAGES / None for both
    note: str | None = None  # for the user: why the request is plainer than asked (the keeper could not run)
    summary: bool = False  # a question about the whole period: read every passage of the window
    # The facts a question joins, one query each (the keeper writes them; the search CLI none):
    # each is searched under the same filters and fused with the question's own ranking.
    sub_queries: list[str] = field(default_factory=list)


@dataclass
class Hit(Chunk):
    """One retrieved chunk: the Chunk that was stored, plus how it scored.

    `score`: cosine similarity to the query (1 - distance). `fused_score`: the RRF score that
    ordered the hybrid results (None in vector mode). `vector_rank`/`text_rank`: 1-based rank
    in each list before fusion (None when the chunk was not a candidate there). `chunk_id`:
    the stored row's id (what fusion and neighbour context match hits by)."""

    score: float = field(kw_only=True)
    fused_score: float | None = None
    vector_rank: int | None = None
    text_rank: int | None = None
    chunk_id: int | None = None
    modified_at: datetime | None = None  # a note's file time, when it has no date of its own

    @property
    def content(self) -> str:
        """The passage text (`text`), under the name the store's column and the JSON use."""
        return self.text

    @content.setter
    def content(self, value: str) -> None:
        self.text = value

    def to_json(self) -> dict:
        """A JSON-safe dict (datetimes as ISO 8601 strings)."""
        record = json_fields(self, HIT_JSON_FIELDS)
        record["score"] = round(self.score, 6)
        record["fused_score"] = None if self.fused_score is None else round(self.fused_score, 6)
        return record


@dataclass
class SearchResult:
    """Hits best first, plus what was actually applied.

    `fell_back`: the filtered search found nothing, so these are unfiltered results and
    `note` says so in a sentence fit for the user."""

    hits: list[Hit]
    request: SearchRequest
    filters_applied: dict
    fell_back: bool = False
    note: str | None = None


# ---------------------------------------------------------------- dates


def parse_date(text: str, end: bool = False) -> datetime:
    """`YYYY`, `YYYY-MM`, `YYYY-MM-DD` or an ISO datetime -> local aware datetime; with `end`,
    the last instant of that year/month/day: `parse_date("2021-06", end=True)` is
    2021-06-30 23:59:59.999999. Raises ValueError on anything else."""
    text = text.strip()
    match = re.fullmatch(r"(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?", text)
    if match:
        year, month, day = int(match[1]), match[2], match[3]
        if month is None:
            first, last = date(year, 1, 1), date(year, 12, 31)
        elif day is None:
            month = int(month)
            first = date(year, month, 1)
            last = date(year, month, calendar.monthrange(year, month)[1])
        else:
            first = last = date(year, int(month), int(day))
        moment = datetime.combine(last, time.max) if end else datetime.combine(first, time.min)
        return moment.astimezone()
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.astimezone()


def date_bound(moment: datetime | date | None, end: bool) -> datetime | None:
    """A request's `since` (or, with `end`, `until`) as an aware datetime: a bare date, or an
    `until` at exactly midnight, stands for the whole day."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time.max if end else time.min)
    elif end and moment.timetz().replace(tzinfo=None) == time.min:
        moment = moment + timedelta(days=1) - timedelta(microseconds=1)
    return moment if moment.tzinfo else moment.astimezone()


def filter_names(applied: dict) -> list[str]:
    """The kinds of filter in an applied-filters dict, for the user: ["date", "person"]."""
    parts = []
    if "since" in applied or "until" in applied:
        parts.append("date")
    if "people" in applied:
        parts.append("person")
    if "source_kind" in applied:
        parts.append("source")
    return parts


# ---------------------------------------------------------------- query words


def text_query_words(query: str) -> list[str]:
    """The meaningful, accent-folded words of a query, for an OR full-text match:
    `text_query_words("Quando a Márcia foi a Kyoto?") == ["marcia", "kyoto"]`."""
    words: list[str] = []
    for word in re.findall(r"[^\W_]+", fold_text(query)):
        if len(word) <= MIN_WORD_LENGTH or word in STOPWORDS or word in words:
            continue
        words.append(word)
    return words[:MAX_QUERY_WORDS]


# ---------------------------------------------------------------- the question as embedded


def fit_query(embedder, text: str) -> tuple[str, str | None]:
    """(the text to embed, a note for the user or None): a question longer than the embedder's
    `query_token_budget` is cut at the last whole word that fits (the model would silently drop
    the rest). An embedder that cannot count tokens gets the text as it is."""
    budget = getattr(embedder, "query_token_budget", None)
    count = getattr(embedder, "count_tokens", None)
    if budget is None or count is None:
        return text, None
    total = count(text)
    if total <= budget:
        return text, None
    # Binary search for the longest prefix that fits: over word ends, else (one huge "word")
    # over characters.
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    kept = _longest_fitting(ends, lambda end: count(text[:end]) <= budget)
    if kept == 0:
        ends = list(range(1, len(text) + 1))
        kept = _longest_fitting(ends, lambda end: count(text[:end]) <= budget)
    cut = text[:ends[kept - 1]] if kept else ""
    return cut, (f"the question is {total} tokens, more than the embedding model reads ({budget}); "
                 f"searched with its first {len(cut.split())} words")


def _longest_fitting(ends: list[int], fits) -> int:
    """How many of the increasing `ends` fit (`fits` is monotone: true, then false)."""
    low, high = 0, len(ends)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(ends[middle - 1]):
            low = middle
        else:
            high = middle - 1
    return low


def embed_queries(embedder, texts: list[str]):
    """Query vectors for `texts` (rows), in one batch where the embedder has `embed_queries`."""
    import numpy as np

    batch = getattr(embedder, "embed_queries", None)
    if batch is not None:
        return batch(texts)
    return np.stack([embedder.embed_query(text) for text in texts])


def nothing_close_note(hits: list[Hit], close_score: float | None) -> str | None:
    """The note for a search whose best passage is less similar than `close_score` (the
    embedder's `close_score`; None: no judgement), else None. The hits are shown anyway."""
    if close_score is None or not hits:
        return None
    best = max(hit.score for hit in hits)
    if best >= close_score:
        return None
    return (f"nothing in the index is close to this question (best similarity {best:.2f}); "
            "these are the nearest passages")


def join_notes(*notes: str | None) -> str | None:
    """The notes that are set, as one line ("; " between them), or None."""
    return "; ".join(n for n in notes if n) or None


# ---------------------------------------------------------------- fusion and the cap


def fuse_ranking(fused: dict[int, Hit], ranking: list[Hit], weight: float = 1.0) -> None:
    """Add one ranking (best first) to `fused` ({chunk id: hit}) by reciprocal rank: each of its
    hits gains weight / (RRF_K + rank); one not yet in `fused` joins with that alone (and no
    rank of its own in the first lists)."""
    for rank, hit in enumerate(ranking, 1):
        known = fused.get(hit.chunk_id)
        if known is None:
            known = fused[hit.chunk_id] = hit
            known.fused_score, known.vector_rank, known.text_rank = 0.0, None, None
        known.fused_score = (known.fused_score or 0.0) + weight / (RRF_K + rank)


def fuse_rankings(rankings: list[list[Hit]]) -> list[Hit]:
    """Several rankings of one search (the question's, then each sub-query's) as one, by
    reciprocal rank: a hit's fused score is the sum of 1 / (RRF_K + rank) over the lists it is
    in. A hit keeps the scores of the first list that has it (its cosine to that query).
    "[a b c], [c d] -> c a b d" (c: 1/63 + 1/61 beats a: 1/61)."""
    fused: dict[int, Hit] = {}
    totals: dict[int, float] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            fused.setdefault(hit.chunk_id, hit)
            totals[hit.chunk_id] = totals.get(hit.chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    for chunk_id, hit in fused.items():
        hit.fused_score = totals[chunk_id]
    return by_fused_score(fused.values())


def by_fused_score(hits) -> list[Hit]:
    """Hits best first by fused score; ties by vector rank, then by stored order."""
    return sorted(hits, key=lambda h: (-(h.fused_score or 0.0), h.vector_rank or 10**9, h.chunk_id))


def diversity_key(hit: Hit) -> tuple:
    """What the per-document cap counts: a note, or one day (a sitting) of a chat. A question
    about one person, whose whole history is one chat, must be able to fill the list from their
    many sittings; one long sitting still cannot."""
    if hit.source_kind == MESSAGES and hit.started_at is not None:
        return hit.doc_id, hit.started_at.astimezone().date()
    return hit.doc_id, None


def diversify(hits: list[Hit], k: int, per_document: int = MAX_CHUNKS_PER_DOCUMENT) -> list[Hit]:
    """The best `k` hits with at most `per_document` per note or chat day (`diversity_key`);
    when too few others have candidates, the capped ones fill the remaining slots (after the
    others, best first) so the list stays full. "12 hits from one note and 2 others, k=5,
    cap 3 -> 3 + 2"; "a0 a1 a2 a3 b0, k=5, cap 2 -> a0 a1 b0 a2 a3"."""
    kept: list[Hit] = []
    held_back: list[Hit] = []
    per_key: dict[tuple, int] = {}
    for hit in hits:
        if len(kept) == k:
            break
        key = diversity_key(hit)
        if per_key.get(key, 0) >= per_document:
            held_back.append(hit)
            continue
        per_key[key] = per_key.get(key, 0) + 1
        kept.append(hit)
    # Refills go last: the cap decides priority, so they are the first to go when the
    # prompt runs short of room.
    return kept + held_back[: k - len(kept)]


# ---------------------------------------------------------------- renderings


def format_hit(rank: int, hit: Hit, lines: int = 3) -> str:
    """A hit for the terminal: rank, score, source, date span, the first lines of text."""
    span = span_text(hit.started_at, hit.ended_at, minutes=True)
    span = f"  {span}" if span else ""
    # Other people's text (chat names, messages) reaches the terminal: no escape sequences.
    text = [line for line in settings.terminal_safe(hit.text).splitlines() if line.strip()][:lines]
    body = "\n".join(f"    {line[:200]}" for line in text)
    return f"{rank:2d}. {hit.score:.3f}  {settings.terminal_safe(hit.source)}{span}\n{body}"


def hits_json(hits: list[Hit], applied: dict, fell_back: bool = False) -> list[dict]:
    """The `--json` array: each hit carries the filters that produced it."""
    return [{**hit.to_json(), "filters": applied, "fell_back": fell_back} for hit in hits]


def result_json(result: SearchResult) -> list[dict]:
    """`hits_json` of a search result."""
    return hits_json(result.hits, result.filters_applied, result.fell_back)
