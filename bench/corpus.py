"""A synthetic personal corpus for benchmarks: an Obsidian vault of Markdown notes and a
WhatsApp-Chat-Exporter `result.json`, sized in (approximate) chunks of the MiniLM budget.

    .venv/bin/python bench/corpus.py OUT_DIR --chunks 3000      # writes OUT_DIR/vault, OUT_DIR/whatsapp

About 60 % of the chunks come from notes (sections of ~170 words under headings, so one
section is about one 256-token chunk), 40 % from chats (sessions of ~10 messages, an hour or
more apart, so one session is about one chunk). Deterministic for a given size and seed.
`count_chunks` runs the real parsers to tell the exact number.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

DEFAULT_CHUNKS = 3000
DEFAULT_SEED = 7
NOTE_SHARE = 0.6
SECTIONS_PER_NOTE = (1, 5)
WORDS_PER_SECTION = (140, 190)
MESSAGES_PER_SESSION = (7, 11)
WORDS_PER_MESSAGE = (6, 16)
SESSIONS_PER_CHAT = 40

WORDS = """
the a to and of in is it that for on with was we at this be have are not you but they from
or by so as if my our your about what when where which who will would can could should just
really also then there here now today tomorrow yesterday week month year morning evening night
time day plan trip train station airport hotel dinner lunch breakfast coffee tea market garden
book chapter idea project budget meeting design review draft deadline report client team office
house kitchen bread butter oven recipe soup rice beans lemons cake birthday party music concert
film cinema beach mountain river bridge temple museum park walk run bike car bus ticket price
cheap expensive early late quickly slowly carefully together alone friend family brother sister
mother father children school teacher doctor appointment medicine weather rain sun cold warm
wind snow holiday flight bag passport phone message photo letter email note list question answer
remember forget think know feel want need like love hate try start finish stop open close build
fix break buy sell pay send read write call visit stay leave arrive return bring take give find
keep show tell ask help learn teach work rest sleep cook clean wash paint plant water grow
""".split()
PLACES = ["Kyoto", "Porto", "Lisbon", "Osaka", "Berlin", "Recife", "Sintra", "Nara", "Madrid", "Oslo"]
PEOPLE = ["Maria Silva", "Joao Pereira", "Ana Costa", "Pedro Alves", "Lucia Gomes", "Tiago Rocha",
          "Helena Dias", "Rui Santos", "Sofia Lima", "Bruno Melo"]
FOLDERS = ["Notes", "Projects", "Journal", "Travel", "Recipes", "Reading"]


def sentence(rng: random.Random, low: int = 6, high: int = 16) -> str:
    """A pseudo-English sentence, sometimes naming a place or a person."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), rng.choice(PLACES))
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), rng.choice(PEOPLE).split()[0])
    return " ".join(words).capitalize() + "."


def paragraph_block(rng: random.Random, words: int) -> str:
    """About `words` words as 2-4 paragraphs."""
    sentences, count = [], 0
    while count < words:
        text = sentence(rng)
        sentences.append(text)
        count += len(text.split())
    cut = sorted(rng.sample(range(1, len(sentences)), k=min(len(sentences) - 1, rng.randint(1, 3))))
    paragraphs = [" ".join(sentences[a:b]) for a, b in zip([0, *cut], [*cut, len(sentences)])]
    return "\n\n".join(p for p in paragraphs if p)


def note_text(rng: random.Random, index: int, sections: int) -> str:
    """A note with frontmatter, a title and `sections` sections of about one chunk each."""
    created = datetime(2020, 1, 1) + timedelta(days=index % 1400)
    parts = [f"---\ntags: [{rng.choice(FOLDERS).lower()}, t{index % 9}]\ncreated: {created:%Y-%m-%d}\n---",
             f"# {rng.choice(PLACES)} {rng.choice(WORDS)} {index}"]
    for number in range(sections):
        parts.append(f"## {rng.choice(WORDS).capitalize()} {number}")
        parts.append(paragraph_block(rng, rng.randint(*WORDS_PER_SECTION)))
    return "\n\n".join(parts) + "\n"


def write_vault(folder: Path, chunks: int, rng: random.Random, notes: int | None = None) -> list[Path]:
    """Notes totalling about `chunks` sections (or exactly `notes` notes); returns their paths."""
    paths, made, index = [], 0, 0
    while (made < chunks) if notes is None else (index < notes):
        sections = rng.randint(*SECTIONS_PER_NOTE) if notes is not None else min(rng.randint(*SECTIONS_PER_NOTE), chunks - made)
        path = folder / FOLDERS[index % len(FOLDERS)] / f"Note {index:05d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(note_text(rng, index, sections), encoding="utf-8")
        paths.append(path)
        made += sections
        index += 1
    (folder / ".obsidian").mkdir(exist_ok=True)  # what a real vault has; the parser skips it
    return paths


def write_whatsapp(folder: Path, chunks: int, rng: random.Random) -> Path:
    """A result.json with 1:1 and group chats totalling about `chunks` conversation sessions."""
    folder.mkdir(parents=True, exist_ok=True)
    export: dict[str, dict] = {}
    sessions_left, chat_index, msg_id = chunks, 0, 1
    while sessions_left > 0:
        sessions = min(SESSIONS_PER_CHAT, sessions_left)
        group = chat_index % 4 == 3
        person = PEOPLE[chat_index % len(PEOPLE)]
        jid = f"{chat_index:03d}-group@g.us" if group else f"55119{chat_index:08d}@s.whatsapp.net"
        members = rng.sample(PEOPLE, 3) if group else [person]
        moment = datetime(2021, 1, 1, 9, tzinfo=timezone.utc) + timedelta(days=chat_index)
        messages = {}
        for _ in range(sessions):
            for _ in range(rng.randint(*MESSAGES_PER_SESSION)):
                moment += timedelta(minutes=rng.randint(1, 6))
                from_me = rng.random() < 0.4
                messages[str(msg_id)] = {
                    "from_me": from_me, "timestamp": int(moment.timestamp()),
                    "data": sentence(rng, *WORDS_PER_MESSAGE).replace(". ", ".<br>", 1),
                    "sender": None if from_me or not group else rng.choice(members),
                    "media": False, "meta": False, "key_id": f"K{msg_id}",
                }
                msg_id += 1
            moment += timedelta(hours=rng.randint(3, 40))  # a new conversation session
        export[jid] = {"name": f"Trip club {chat_index}" if group else person, "type": "android",
                       "status": None, "messages": messages}
        sessions_left -= sessions
        chat_index += 1
    path = folder / "result.json"
    path.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    return path


def write_corpus(root: Path, chunks: int = DEFAULT_CHUNKS, seed: int = DEFAULT_SEED) -> dict[str, Path]:
    """Write `root/vault` and `root/whatsapp/result.json` for about `chunks` chunks."""
    rng = random.Random(f"{seed}:{chunks}")
    note_chunks = round(chunks * NOTE_SHARE)
    write_vault(root / "vault", note_chunks, rng)
    write_whatsapp(root / "whatsapp", chunks - note_chunks, rng)
    return {"obsidian": root / "vault", "whatsapp": root / "whatsapp"}


def write_notes_vault(root: Path, notes: int, seed: int = DEFAULT_SEED) -> Path:
    """Write `root/vault` with exactly `notes` notes (1-5 sections of about one chunk each)."""
    write_vault(root / "vault", 0, random.Random(f"{seed}:notes:{notes}"), notes=notes)
    return root / "vault"


def edit_one_note(vault: Path, seed: int = DEFAULT_SEED) -> Path:
    """Rewrite one section of the first note (as a user edit would); returns its path."""
    path = sorted(vault.rglob("*.md"))[0]
    text = path.read_text(encoding="utf-8")
    rng = random.Random(f"edit:{seed}")
    marker = text.index("## ")
    head, rest = text[:marker], text[marker:]
    title_end = rest.index("\n\n")
    path.write_text(head + rest[:title_end] + "\n\n" + paragraph_block(rng, 160) + "\n", encoding="utf-8")
    return path


def iter_sources(paths: dict[str, Path], count_tokens, max_tokens: int) -> dict:
    """The real parsers' document iterators over a written corpus (notes at ingestion's note budget)."""
    import obsidian_to_embeddings
    import whatsapp_to_embeddings

    readers = {"obsidian": obsidian_to_embeddings.iter_documents, "whatsapp": whatsapp_to_embeddings.iter_documents}
    budgets = {"obsidian": obsidian_to_embeddings.note_budget(max_tokens), "whatsapp": max_tokens}
    return {name: readers[name](path, count_tokens, budgets[name]) for name, path in paths.items()}


def chunk_texts(paths: dict[str, Path], count_tokens, max_tokens: int) -> list[str]:
    """Every chunk text the real parsers make from the corpus, in order."""
    texts = []
    for documents in iter_sources(paths, count_tokens, max_tokens).values():
        for document in documents:
            texts.extend(chunk.text for chunk in document.make_chunks())
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic vault + WhatsApp result.json.")
    parser.add_argument("out", type=Path, help="folder to write vault/ and whatsapp/ into")
    parser.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS, help="about how many chunks")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    paths = write_corpus(args.out, args.chunks, args.seed)
    print(json.dumps({name: str(path) for name, path in paths.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
