"""What each person said in a chat passage, embedded on its own. A chat unit's vector mixes both
speakers (and the header), so for "What milestone did Leila reach?" it cannot tell the unit
where Leila tells her news from the one where her friend tells theirs. Each chat unit therefore
also gets one vector per speaker, of that speaker's lines alone ("Leila: Finally I passed the
bar exam"), and a question that names someone re-ranks its candidates by the named person's own
lines (`speaker_ranking`, fused in by retrieve_related_content_from_db._ranking; bench_memory:
all questions 0.881 -> 0.911, single facts 0.923 -> 0.945, inference 0.689 -> 0.756).

The vectors live in `chunk_speakers`, beside `chunks` (deleted with their chunk), and are filled
after each ingestion for the chat chunks that have none yet (`fill_missing`): new units, and on
the first run after an upgrade, every stored one. A search over an index without the table
simply skips the re-ranking.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

import numpy as np

from chunking import MESSAGES, fold_text

if TYPE_CHECKING:
    from search_results import Hit
    from store import Store

TABLE = "chunk_speakers"
FILL_BATCH = 512  # chat chunks read, embedded and written per step (and per commit)
# A chat passage's message line as whatsapp_to_embeddings writes it: "14:05 Leila: text" (older
# indexes: "2023-04-01 14:05 Leila: text"). The name ends at the first ": ".
_LINE = re.compile(r"^(?:\d{4}-\d\d-\d\d )?\d\d:\d\d (.+?): (.*)$")

_has_table: set[tuple] = set()  # (url, search path) of stores known to have the table


def create_table(cur, dimension: int) -> None:
    """The table, idempotently (Store._create_tables calls it with the chunks' dimension)."""
    from psycopg import sql

    cur.execute(sql.SQL(
        """CREATE TABLE IF NOT EXISTS chunk_speakers (
            chunk_id bigint NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
            speaker text NOT NULL, embedding vector({dim}) NOT NULL,
            PRIMARY KEY (chunk_id, speaker))""").format(dim=sql.Literal(dimension)))


def speaker_texts(content: str) -> dict[str, str]:
    """{folded speaker name: "Name: text" lines of theirs, in order} for a chat passage's
    content (the header line skipped): "h\\n14:05 Leila: Hi\\n14:06 Omar: Yo" ->
    {"leila": "Leila: Hi", "omar": "Omar: Yo"}. Lines of another shape are left out."""
    lines: dict[str, list[str]] = {}
    for line in content.split("\n")[1:]:
        match = _LINE.match(line)
        if match:
            lines.setdefault(fold_text(match.group(1)), []).append(f"{match.group(1)}: {match.group(2)}")
    return {speaker: "\n".join(said) for speaker, said in lines.items()}


_MISSING = """FROM chunks AS c WHERE c.source_kind = %s AND c.id > %s
               AND NOT EXISTS (SELECT 1 FROM chunk_speakers AS s WHERE s.chunk_id = c.id)"""


def fill_missing(store: "Store", embedder, on_progress: Callable[[int, int], None] | None = None) -> int:
    """Embed and store the speaker vectors of every chat chunk that has none; returns how many
    vectors were written. Commits after each batch, so an interrupted run keeps what it did and
    the next one goes on from there. Nothing to do (the usual re-run) costs one query.
    `on_progress(chunks done, chunks to do)` after each batch (the count is one more query)."""
    written, after, done = 0, 0, 0
    total = store.conn.execute(f"SELECT count(*) {_MISSING}", (MESSAGES, 0)).fetchone()[0] if on_progress else 0
    if total:
        on_progress(0, total)  # the bar starts with the work, so its rate and ETA hold
    while True:
        rows = store.conn.execute(f"SELECT c.id, c.content {_MISSING} ORDER BY c.id LIMIT %s",
                                  (MESSAGES, after, FILL_BATCH)).fetchall()
        if not rows:
            store.commit()
            return written
        after = rows[-1][0]  # a chunk with no speaker line is not read again in this run
        pairs = [(chunk_id, speaker, text) for chunk_id, content in rows
                 for speaker, text in speaker_texts(content).items()]
        if pairs:
            vectors = embedder.embed_passages([text for _, _, text in pairs])
            store.register_vector()
            with store.conn.cursor() as cur:
                with cur.copy("COPY chunk_speakers (chunk_id, speaker, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                    copy.set_types(("int8", "text", "vector"))
                    for (chunk_id, speaker, _), vector in zip(pairs, vectors, strict=True):
                        copy.write_row((chunk_id, speaker.replace("\x00", ""), np.asarray(vector, dtype=np.float32)))
            written += len(pairs)
        store.commit()
        done += len(rows)
        if on_progress is not None:
            on_progress(done, total)


def _table_exists(store: "Store") -> bool:
    key = (store.url, store.search_path)
    if key not in _has_table and store.table_exists(TABLE, commit=False):
        _has_table.add(key)  # once there it stays; an old index is asked again (one cheap query)
    return key in _has_table


def speaker_ranking(store: "Store", vector, hits: list["Hit"], names: list[str], limit: int) -> list["Hit"]:
    """The `limit` chat hits among `hits` in which one of `names` (folded full names) speaks
    nearest to `vector`, best first by the cosine to that person's own lines in the passage; []
    when the index has no speaker vectors."""
    ids = [hit.chunk_id for hit in hits if hit.source_kind == MESSAGES and hit.chunk_id is not None]
    if not ids or not names or not _table_exists(store):
        return []
    rows = store.conn.execute(
        """SELECT chunk_id FROM chunk_speakers WHERE chunk_id = ANY(%s) AND speaker = ANY(%s)
           GROUP BY chunk_id ORDER BY min(embedding <=> %s), chunk_id LIMIT %s""",
        (ids, names, np.asarray(vector, dtype=np.float32), limit)).fetchall()
    by_id = {hit.chunk_id: hit for hit in hits}
    return [by_id[chunk_id] for (chunk_id,) in rows]
