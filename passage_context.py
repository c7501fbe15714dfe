"""Passages sized for finding, context sized for reading: a hit is read with its neighbours.

Chats are searched by small units (a few messages, whatsapp_to_embeddings) and a chat hit grows
by the units around it in the same sitting. Notes are searched by pieces of about 200 words
(obsidian_to_embeddings.NOTE_CHUNK_TOKENS) and a note hit grows by the pieces just before and
after it that belong to the same section (same heading path), so a section that was cut for
finding is read whole, or nearly. A piece already shown inside a better passage is not repeated.
"""
from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from chunking import MESSAGES, NOTES, SITTING_SPAN, sitting_span

if TYPE_CHECKING:
    from search_results import Hit
    from store import Store

# A chat hit is read with up to CONTEXT_UNITS units before and after it, within its sitting
# (a silence of SITTING_GAP ends one; whatsapp_to_embeddings cuts units at the same gap).
CONTEXT_UNITS = 2
SITTING_GAP = timedelta(hours=1)
CONTEXT_WINDOW = timedelta(hours=12)  # how far a chat neighbour is looked for
# A note hit is read with up to NOTE_CONTEXT_PIECES pieces of its section before and after it:
# with 256-token pieces, at most ~770 tokens, about what one 512-token chunk gave the reader.
NOTE_CONTEXT_PIECES = 1
OVERLAP_SEARCH_CHARS = 600  # NoteChunker repeats about a sentence of the piece before


def _chat_rows(store: "Store", hits: list["Hit"]) -> dict[int, list[tuple]]:
    """{chunk id of a chat hit: (id, content, started_at, ended_at) of the hit and the
    CONTEXT_UNITS chunks of its chat just before and after it, in time order}, in one query."""
    chat_hits = [h for h in hits if h.source_kind == MESSAGES and h.started_at and h.chunk_id is not None]
    if not chat_hits or CONTEXT_UNITS <= 0:
        return {}
    # (started_at, id) orders a chat's units: the parts of one long message share a start.
    rows = store.conn.execute(
        """SELECT h.hit_id, n.id, n.content, n.started_at, n.ended_at
           FROM unnest(%(ids)s::bigint[], %(docs)s::text[], %(starts)s::timestamptz[]) AS h(hit_id, doc, s)
           CROSS JOIN LATERAL (
               (SELECT id, content, started_at, coalesce(ended_at, started_at) AS ended_at FROM chunks
                WHERE doc_id = h.doc AND started_at >= h.s - %(window)s AND (started_at, id) < (h.s, h.hit_id)
                ORDER BY started_at DESC, id DESC LIMIT %(n)s)
               UNION ALL
               (SELECT id, content, started_at, coalesce(ended_at, started_at) FROM chunks WHERE id = h.hit_id)
               UNION ALL
               (SELECT id, content, started_at, coalesce(ended_at, started_at) FROM chunks
                WHERE doc_id = h.doc AND started_at <= h.s + %(window)s AND (started_at, id) > (h.s, h.hit_id)
                ORDER BY started_at, id LIMIT %(n)s)) AS n
           ORDER BY h.hit_id, n.started_at, n.id""",
        {"ids": [h.chunk_id for h in chat_hits], "docs": [h.doc_id for h in chat_hits],
         "starts": [h.started_at for h in chat_hits], "window": CONTEXT_WINDOW, "n": CONTEXT_UNITS},
    ).fetchall()
    return _grouped(rows)


def _note_rows(store: "Store", hits: list["Hit"]) -> dict[int, list[tuple]]:
    """{chunk id of a note hit: (id, content) of the hit and the NOTE_CONTEXT_PIECES pieces of
    its note just before and after it under the same heading path, in note order}, in one
    query. A note's pieces are stored in note order, so their ids follow it."""
    note_hits = [h for h in hits if h.source_kind == NOTES and h.chunk_id is not None]
    if not note_hits or NOTE_CONTEXT_PIECES <= 0:
        return {}
    rows = store.conn.execute(
        """SELECT h.hit_id, n.id, n.content
           FROM unnest(%(ids)s::bigint[], %(docs)s::text[], %(headings)s::text[]) AS h(hit_id, doc, heading)
           CROSS JOIN LATERAL (
               (SELECT id, content FROM chunks
                WHERE doc_id = h.doc AND id < h.hit_id AND heading IS NOT DISTINCT FROM h.heading
                ORDER BY id DESC LIMIT %(n)s)
               UNION ALL
               (SELECT id, content FROM chunks WHERE id = h.hit_id)
               UNION ALL
               (SELECT id, content FROM chunks
                WHERE doc_id = h.doc AND id > h.hit_id AND heading IS NOT DISTINCT FROM h.heading
                ORDER BY id LIMIT %(n)s)) AS n
           ORDER BY h.hit_id, n.id""",
        {"ids": [h.chunk_id for h in note_hits], "docs": [h.doc_id for h in note_hits],
         "headings": [h.heading for h in note_hits], "n": NOTE_CONTEXT_PIECES},
    ).fetchall()
    return _grouped(rows)


def _grouped(rows) -> dict[int, list[tuple]]:
    around: dict[int, list[tuple]] = {}
    for hit_id, *row in rows:
        around.setdefault(hit_id, []).append(tuple(row))
    return around


def _sitting_units(own_id: int, units: list[tuple]) -> list[tuple]:
    """The hit's unit and up to CONTEXT_UNITS on each side, not across a sitting's silence."""
    index = next(i for i, u in enumerate(units) if u[0] == own_id)
    first = last = index
    while first > 0 and index - first < CONTEXT_UNITS and units[first][2] - units[first - 1][3] <= SITTING_GAP:
        first -= 1
    while last + 1 < len(units) and last - index < CONTEXT_UNITS and units[last + 1][2] - units[last][3] <= SITTING_GAP:
        last += 1
    return units[first:last + 1]


def without_overlap(before: str, after: str) -> str:
    """`after` less its opening words that end `before` (the sentence NoteChunker repeats at the
    start of a section's next piece): "A. B." + "B. C." -> "C."."""
    start = max(0, len(before) - OVERLAP_SEARCH_CHARS)
    for i in range(start, len(before)):
        if (i == 0 or before[i - 1].isspace()) and after.startswith(before[i:].strip()) and before[i:].strip():
            return after[len(before[i:].strip()):].lstrip()
    return after


def _widen_chat(hit: "Hit", context: list[tuple]) -> None:
    header, _, _ = hit.text.partition("\n")
    start, end = context[0][2], context[-1][3]
    hit.text = "\n".join([SITTING_SPAN.sub(sitting_span(start, end), header),
                          *(u[1].partition("\n")[2] for u in context)])
    hit.started_at, hit.ended_at = start, end


def _widen_note(hit: "Hit", context: list[tuple]) -> None:
    # The pieces of one section share their header line (title > headings): shown once.
    header, _, _ = hit.text.partition("\n")
    body = ""
    for _, content in context:
        piece = content.partition("\n")[2] if content.partition("\n")[0] == header else content
        body = f"{body}\n{without_overlap(body, piece)}" if body else piece
    hit.text = f"{header}\n{body}"


def with_context(store: "Store", hits: list["Hit"], k: int) -> list["Hit"]:
    """The first `k` passages of `hits` (best first), each chat hit widened to its neighbouring
    units of the same sitting (header span updated) and each note hit to the neighbouring pieces
    of its section. A piece already shown inside a better passage is not repeated: a hit whose
    own piece was shown is skipped and the next one comes in."""
    candidates = hits[: 2 * k]
    around = {**_chat_rows(store, candidates), **_note_rows(store, candidates)}
    shown: set[int] = set()
    out: list["Hit"] = []
    for hit in hits:
        if len(out) == k:
            break
        units = around.get(hit.chunk_id)
        if not units or not any(u[0] == hit.chunk_id for u in units):
            if hit.chunk_id not in shown:
                out.append(hit)
                shown.add(hit.chunk_id)
            continue
        if hit.chunk_id in shown:
            continue  # already read inside a better passage
        if hit.source_kind == MESSAGES:
            context = [u for u in _sitting_units(hit.chunk_id, units) if u[0] == hit.chunk_id or u[0] not in shown]
        else:
            context = [u for u in units if u[0] == hit.chunk_id or u[0] not in shown]
        shown.update(u[0] for u in context)
        if len(context) > 1:
            (_widen_chat if hit.source_kind == MESSAGES else _widen_note)(hit, context)
            hit.metadata = {**hit.metadata, "context_chunk_ids": [u[0] for u in context]}
        out.append(hit)
    return out
