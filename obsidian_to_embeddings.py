"""Obsidian vault -> Chunks: every word of a note's visible text, none of its markup.

    python obsidian_to_embeddings.py --obsidian ~/Vault                  # print the chunks (dry run)
    python obsidian_to_embeddings.py --obsidian ~/Vault --json           # one JSON object per chunk
    python obsidian_to_embeddings.py --obsidian ~/Vault --exclude "Private/**"

What is read: `*.md` files under the vault, except dot-folders (`.obsidian`, `.trash`, `.git`...),
the templates folder (`.obsidian/templates.json`, fallback `Templates/`) and `--exclude` globs.
Frontmatter becomes metadata (tags, aliases, dates, people, other properties); the body goes to
`obsidian_markdown`, which cleans it (`[[A|B]]` -> `B`, embeds of attachments, `%%comments%%`,
`^block-ids` and callout markers dropped) and splits it at headings, then paragraphs, lines and
sentences, so that every chunk, header line included, fits the embedding model's token budget
(at most NOTE_CHUNK_TOKENS: notes are searched by pieces of about 200 words).

Exclude globs are matched against vault-relative paths: a glob without `/` matches a file or
folder name anywhere (`Private`, `*.excalidraw.md`); a glob with `/` is anchored at the vault
root (`Journal/2019/**`, `/Drafts`); `**` spans folders.
"""
from __future__ import annotations

import argparse
import codecs
import errno
import functools
import os
import re
import stat
import sys
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Sequence

import chunking
import settings
from chunking import Chunk, Document
from obsidian_markdown import (
    NoteChunker, link_text, parse_body, parse_frontmatter, split_frontmatter, unlink,
)

# Bump whenever the chunks produced from the same bytes would change: every note is re-chunked.
PARSER_VERSION = "obsidian-1"
DEFAULT_TEMPLATES_FOLDER = "Templates"
# A note is searched by pieces of at most this many tokens (header included), even where the
# embedder reads more: one vector per ~200 words finds a paragraph of a long note that a
# 512-token vector blurs with its neighbours (bench_quality, multilingual-e5-small, long notes:
# recall@10 0.78 at 512 tokens, 0.83 at 384, 0.91 at 256, 0.87 at 192, 0.91 at 128). The reader
# gets the piece with the rest of its section (retrieve_related_content_from_db.with_context).
NOTE_CHUNK_TOKENS = 256
# Notes larger than this are indexed up to this size only (with a warning). A hand-written
# note, even a whole book, stays far below 2 MB; bigger `.md` files are pasted logs or data
# dumps, and 2 MB is already ~500k tokens, i.e. ~2,000 chunks and minutes of embedding for one
# file. Indexing the beginning keeps the note findable without flooding the index.
DEFAULT_MAX_NOTE_BYTES = 2 * 1024 * 1024
# Bytes looked at to decide that a `.md` file is binary junk rather than text.
BINARY_SNIFF_BYTES = 8192
BINARY_CONTROL_RATIO = 0.3
# Frontmatter properties that name people; their plain values go into Chunk.people.
PEOPLE_PROPERTIES = ("people", "person", "persons", "author", "authors", "attendees", "participants",
                     "with", "guests", "guest", "host", "hosts", "speaker", "speakers", "organizer",
                     "contact", "contacts", "friends", "family")
DATE_PROPERTIES = ("date", "created")
# A note's own span (a trip, a project) when it has no single date: start .. end.
SPAN_PROPERTIES = ("start", "end")
# Properties that describe how Obsidian shows a note, or are indexed as metadata already.
NON_CONTENT_PROPERTIES = frozenset({"tags", "tag", "aliases", "alias", "cssclasses", "cssclass",
                                    "publish", "permalink"})
# Caps on converting frontmatter values (YAML anchors can make a small file a huge tree).
MAX_PROPERTY_NODES = 5000
MAX_PROPERTY_DEPTH = 10


# ---------------------------------------------------------------- walking the vault


def _glob_regex(pattern: str) -> re.Pattern | None:
    """Compile one exclude glob (see the module docstring) to a regex on vault-relative paths."""
    glob = pattern.strip().replace("\\", "/")
    anchored = "/" in glob.rstrip("/")
    glob = glob.strip("/")
    if not glob:
        return None
    parts: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            parts.append("(?:/.*)?")  # `Folder/**` also matches the folder itself: it is pruned
            i += 3
        elif glob.startswith("**", i):
            parts.append(".*")
            i += 2
        elif glob[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            parts.append("[^/]")
            i += 1
        elif glob[i] == "[" and "]" in glob[i + 2:]:
            end = glob.index("]", i + 2)
            body = glob[i + 1:end]
            parts.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            parts.append(re.escape(glob[i]))
            i += 1
    regex = "".join(parts)
    return re.compile(regex if anchored else f"(?:.*/)?{regex}", re.DOTALL)


def split_globs(values: Sequence[str] | str | None) -> list[str]:
    """The one exclusion parser: each value is a comma-separated list of globs.

    `split_globs(["Private, Drafts/**", "*.canvas.md"]) == ["Private", "Drafts/**", "*.canvas.md"]`.
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [glob.strip() for value in values for glob in value.split(",") if glob.strip()]


def compile_excludes(globs: Sequence[str]) -> Callable[[str], bool]:
    """A predicate on vault-relative posix paths: True when one of `globs` excludes the path."""
    regexes = [r for r in (_glob_regex(g) for g in split_globs(globs)) if r is not None]
    return lambda rel: any(r.fullmatch(rel) for r in regexes)


def exclude_globs(flag_values: Sequence[str] | None = None) -> list[str]:
    """The exclude globs in force, for every entry point: the `--exclude` flags (each one
    comma-separated, repeatable), else OBSIDIAN_EXCLUDE (comma-separated)."""
    return split_globs(flag_values) or split_globs(settings.get("OBSIDIAN_EXCLUDE"))


def template_folders(vault: Path) -> list[str]:
    """Vault-relative folders holding templates: the core Templates plugin's folder
    (`.obsidian/templates.json`, else `Templates`) and the Templater plugin's, when set."""
    folders = []
    core = settings.read_json_object(vault / ".obsidian" / "templates.json").get("folder")
    templater = settings.read_json_object(vault / ".obsidian" / "plugins" / "templater-obsidian" / "data.json").get(
        "templates_folder")
    for value in (core if isinstance(core, str) and core.strip("/ ") else DEFAULT_TEMPLATES_FOLDER, templater):
        if isinstance(value, str) and value.strip("/ ") and value.strip("/ ") not in folders:
            folders.append(value.strip("/ "))
    return folders


def _reason(err: OSError) -> str:
    return (err.strerror or err.__class__.__name__).lower()


def iter_note_paths(vault: Path, excluded: Callable[[str], bool], skip_folders: Sequence[str] = (),
                    warn: Callable[[str], None] = settings.warn) -> Iterator[tuple[Path, str]]:
    """Yield (path, vault-relative posix path) of every `.md` file, in sorted order.

    Dot-files and dot-folders, `skip_folders` and excluded paths are pruned; folder symlinks
    are followed once (a loop or a second link to the same folder is skipped with a warning).
    """
    skip = set(skip_folders)
    root_stat = os.stat(vault)
    seen: dict[tuple[int, int], str] = {(root_stat.st_dev, root_stat.st_ino): ""}
    stack: list[tuple[Path, str]] = [(vault, "")]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as err:
            warn(f"{rel_folder or '.'}/: folder cannot be read ({_reason(err)}); skipped")
            continue
        subfolders: list[tuple[Path, str]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
            if rel in skip or excluded(rel):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                try:
                    info = os.stat(entry.path)
                except OSError as err:
                    warn(f"{rel}/: folder cannot be read ({_reason(err)}); skipped")
                    continue
                key = (info.st_dev, info.st_ino)
                if key in seen:
                    first = seen[key]
                    if rel.startswith(first + "/") or not first:
                        warn(f"{rel}: symbolic link loop (it leads back to {first or 'the vault root'}/); skipped")
                    else:
                        warn(f"{rel}: link to a folder already read as {first}/; skipped")
                    continue
                seen[key] = rel
                subfolders.append((Path(entry.path), rel))
            elif entry.name.lower().endswith(".md"):
                yield Path(entry.path), rel
        stack.extend(reversed(subfolders))


# ---------------------------------------------------------------- reading a note


class NoteSkipped(Exception):
    """A file that cannot be indexed; the message says why (for a `warning:` line)."""


def read_note_bytes(path: Path, limit: int) -> tuple[bytes, int]:
    """(the first `limit` bytes, the file size); NoteSkipped when it is unreadable or binary."""
    try:
        # Non-blocking: a FIFO named `x.md` must not hang the walk.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise NoteSkipped("symbolic link loop; skipped")
        if not os.path.exists(path) and os.path.islink(path):
            raise NoteSkipped("broken symbolic link; skipped")
        raise NoteSkipped(f"cannot be read ({_reason(err)}); skipped")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NoteSkipped("not a regular file; skipped")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(limit)
    except OSError as err:
        raise NoteSkipped(f"cannot be read ({_reason(err)}); skipped")
    finally:
        os.close(fd)
    if looks_binary(raw):
        raise NoteSkipped("binary data, not text; skipped")
    return raw, info.st_size


def looks_binary(raw: bytes) -> bool:
    """True for NUL bytes (outside UTF-16 text) or a start that is mostly control characters."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    if b"\0" in raw:
        return True
    sample = raw[:BINARY_SNIFF_BYTES].decode("utf-8", "replace")
    if not sample:
        return False
    bad = sum(1 for ch in sample if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r\f\v\x1b"))
    return bad > BINARY_CONTROL_RATIO * len(sample)


def decode_note(raw: bytes, truncated: bool) -> tuple[str, int]:
    """(text, number of undecodable bytes replaced). UTF-8 (BOM allowed) or UTF-16 with a BOM;
    a `truncated` prefix is cut at its last line break so no character is split."""
    if truncated:
        cut = raw.rfind(b"\n")
        if cut > len(raw) // 2:
            raw = raw[:cut + 1]
    return chunking.decode_text(raw)


# ---------------------------------------------------------------- properties


def plain_value(value, budget: list[int] | None = None, depth: int = 0):
    """A frontmatter value made JSON-safe: dates as ISO strings, wikilinks as plain names.

    YAML reads an unquoted `[[Name]]` as a list holding a list; that becomes "Name" too.
    """
    budget = budget if budget is not None else [MAX_PROPERTY_NODES]
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_PROPERTY_DEPTH:
        return None
    if isinstance(value, str):
        return unlink(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (list, tuple, set)):
        items = list(value)
        if len(items) == 1 and isinstance(items[0], list) and len(items[0]) == 1 and isinstance(items[0][0], str):
            return link_text(items[0][0])  # unquoted [[Name]]
        return [plain_value(item, budget, depth + 1) for item in items]
    if isinstance(value, dict):
        return {str(k): plain_value(v, budget, depth + 1) for k, v in value.items()}
    return str(value)


def _strings(value) -> list[str]:
    """A property value flattened to non-empty strings."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return []
    text = str(value).strip()
    return [text] if text else []


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item.casefold() not in seen:
            seen.add(item.casefold())
            out.append(item)
    return out


# ---------------------------------------------------------------- notes to chunks


@dataclass
class NoteInfo:
    """What a note says about itself: title, properties, tags, people, date."""

    title: str
    properties: dict
    tags: list[str]
    aliases: list[str]
    people: list[str]
    started_at: datetime | None
    ended_at: datetime | None
    date_origin: str | None


_NAME_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T_](\d{2}):?(\d{2}))?(?=$|[^\d])")


def _day_span(day: date) -> tuple[datetime, datetime]:
    return datetime.combine(day, time.min).astimezone(), datetime.combine(day, time.max).astimezone()


def _date_from_name(stem: str) -> tuple[datetime, datetime] | None:
    match = _NAME_DATE.match(stem)
    if not match:
        return None
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        if match.group(4) and match.end() == len(stem):  # "2023-09-12 1430": a timestamped note
            moment = datetime.combine(day, time(int(match.group(4)), int(match.group(5)))).astimezone()
            return moment, moment
    except ValueError:
        return None
    return _day_span(day)


def _date_from_value(value) -> tuple[datetime, datetime] | None:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.astimezone()
        return moment, moment
    if isinstance(value, date):
        return _day_span(value)
    if not isinstance(value, str):
        return None
    text = unlink(value).strip()
    try:
        if len(text) == 10:
            return _day_span(date.fromisoformat(text))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return _date_from_name(text)
    moment = moment if moment.tzinfo else moment.astimezone()
    return moment, moment


def note_info(relpath: str, raw_properties: dict, inline_tags: list[str], mtime: float | None) -> NoteInfo:
    """Title, JSON-safe properties, tags, aliases, people and date of a note."""
    stem = PurePosixPath(relpath).name
    title = stem[:-3] if stem.lower().endswith(".md") else stem
    keyed = {str(k).strip().lower(): v for k, v in raw_properties.items()}
    properties = plain_value(raw_properties)
    if not isinstance(properties, dict):
        properties = {}
    plain = {str(k).strip().lower(): v for k, v in properties.items()}
    tags = [t.strip().lstrip("#") for key in ("tags", "tag")
            for value in _strings(plain.get(key)) for t in re.split(r"[,\s]+", value)]
    tags = _dedupe([t for t in tags + inline_tags if t])
    aliases = _dedupe([a.strip() for key in ("aliases", "alias") for value in _strings(plain.get(key))
                       for a in (value.split(",") if key == "alias" else [value]) if a.strip()])
    people = _dedupe([name for key in PEOPLE_PROPERTIES for name in _strings(plain.get(key))])
    span, origin = _date_from_name(title), "filename"
    if span is None:
        origin = "frontmatter"
        for key in DATE_PROPERTIES:
            span = _date_from_value(keyed.get(key))
            if span:
                break
    if span is None:
        start, end = (_date_from_value(keyed.get(key)) for key in SPAN_PROPERTIES)
        if start:
            span = (start[0], (end or start)[1])
    if span is None and mtime is not None:
        moment = datetime.fromtimestamp(mtime).astimezone()
        span, origin = (moment, moment), chunking.MTIME_ORIGIN
    if span is None:
        origin = None
    return NoteInfo(title, properties, tags, aliases, people, span[0] if span else None,
                    span[1] if span else None, origin)


def properties_sentence(properties: dict) -> str:
    """The content-bearing property values of a note as one line of prose, e.g.
    `{"categories": ["Trips"], "loc": ["Kyoto", "Japan"]}` -> "categories Trips; loc Kyoto, Japan"."""
    parts = []
    for key, value in properties.items():
        values = [v.strip() for v in _strings(value) if v.strip()]
        if values and str(key).strip().lower() not in NON_CONTENT_PROPERTIES:
            parts.append(f"{key} {', '.join(values)}")
    return "; ".join(parts)


def note_budget(passage_budget: int) -> int:
    """The token budget of one note chunk for an embedder that reads `passage_budget` tokens."""
    return min(passage_budget, NOTE_CHUNK_TOKENS)


def note_to_chunks(text: str, relpath: str, count_tokens: Callable[[str], int], max_tokens: int,
                   warn: Callable[[str], None] = settings.warn, mtime: float | None = None) -> list[Chunk]:
    """Chunks of one note's text; `relpath` is its vault-relative posix path (with `.md`).

    A note with any visible text (headings included) yields at least one chunk; an empty or
    frontmatter-only note yields none, with a warning naming it.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    yaml_text, body, _ = split_frontmatter(text)
    properties: dict = {}
    if yaml_text is not None and yaml_text.strip():
        properties, problem = parse_frontmatter(yaml_text)
        if problem:
            kept = "with the properties that could be read" if properties else "without its properties"
            warn(f"{relpath}: {problem}; the body was indexed {kept}")
    inline_tags: list[str] = []
    sections = parse_body(body, inline_tags)
    info = note_info(relpath, properties, inline_tags, mtime)
    if not sections and not body.strip():
        # A note made of properties (a trip: start, end, places) still says something: index
        # their values as one line. Written as prose ("loc Kyoto, Japan"), never as YAML.
        sections = parse_body(properties_sentence(info.properties))
    if not sections:
        # Said once per edit of the note (unchanged notes are not re-read), so it cannot nag.
        # Embed-only notes (a Bases view, a gallery) are normal and stay silent.
        if not text.strip():
            warn(f"{relpath}: empty note; nothing to index")
        elif not body.strip():
            warn(f"{relpath}: properties only, no text; nothing to index")
        return []
    doc_id = "obsidian:" + relpath
    source = "<obsidian>:" + (relpath[:-3] if relpath.lower().endswith(".md") else relpath)
    metadata = {"path": relpath, "aliases": info.aliases, "properties": info.properties,
                "date_origin": info.date_origin}
    chunker = NoteChunker(info.title, count_tokens, max_tokens)
    return [
        Chunk(text=chunk_text, source=source, doc_id=doc_id, source_kind=chunking.NOTES, title=info.title,
              heading=" > ".join(path) or None, people=list(info.people), tags=list(info.tags),
              started_at=info.started_at, ended_at=info.ended_at, metadata=dict(metadata))
        for chunk_text, path in chunker.chunk(sections)
    ]


def _make_chunks(path: Path, relpath: str, count_tokens: Callable[[str], int], max_tokens: int,
                 max_note_bytes: int, warn: Callable[[str], None]) -> list[Chunk]:
    try:
        raw, size = read_note_bytes(path, max_note_bytes)
        mtime = os.stat(path).st_mtime
    except NoteSkipped as skipped:
        warn(f"{relpath}: {skipped}")
        raise chunking.SourceUnreadable(relpath)
    except OSError as err:
        warn(f"{relpath}: cannot be read ({_reason(err)}); skipped")
        raise chunking.SourceUnreadable(relpath)
    text, replaced = decode_note(raw, truncated=size > len(raw))
    if replaced:
        warn(f"{relpath}: not valid UTF-8; {replaced} bad byte sequence{'s' * (replaced != 1)} replaced by \ufffd")
    return note_to_chunks(text, relpath, count_tokens, max_tokens, warn, mtime)


def iter_documents(vault: Path, count_tokens: Callable[[str], int], max_tokens: int,
                   exclude: Sequence[str] = (), warn: Callable[[str], None] = settings.warn, *,
                   skip_templates: bool = True,
                   max_note_bytes: int = DEFAULT_MAX_NOTE_BYTES) -> Iterator[Document]:
    """One Document per note of `vault`, cheaply: only the bytes are read here (for the
    fingerprint); parsing and chunking wait for `make_chunks()`.

    Unreadable, binary and non-regular files are skipped with a warning; a note over
    `max_note_bytes` is indexed up to that size with a warning. `max_tokens` budgets whole
    chunk texts (header line included), in tokens of `count_tokens`.
    """
    root = Path(vault).expanduser()
    if not root.is_dir():
        raise settings.UserError(
            f"Obsidian vault {root} is not a folder; set OBSIDIAN_VAULT_PATH or --obsidian to your vault")
    root = root.absolute()
    skip = template_folders(root) if skip_templates else []
    excluded = compile_excludes(list(exclude))
    for path, rel in iter_note_paths(root, excluded, skip, warn):
        try:
            raw, size = read_note_bytes(path, max_note_bytes)
        except NoteSkipped as skipped:
            warn(f"{rel}: {skipped}")
            # Kept, not deleted: a note that turned unreadable must not lose its stored chunks.
            yield chunking.unreadable_file(chunking.NOTES, str(path), doc_id="obsidian:" + rel)
            continue
        if size > len(raw):
            warn(f"{rel}: {size / 2**20:.1f} MB is over the {max_note_bytes / 2**20:g} MB note limit; only "
                 f"its beginning was indexed (split the note, or keep it out with --exclude)")
        yield Document(
            doc_id="obsidian:" + rel,
            source_kind=chunking.NOTES,
            # Dates from daily-note names and mtimes are local: the zone is part of the note.
            fingerprint=chunking.fingerprint(raw, PARSER_VERSION, str(max_tokens), chunking.local_zone()),
            make_chunks=functools.partial(_make_chunks, path, rel, count_tokens, max_tokens, max_note_bytes, warn),
            paths=(str(path),),
        )


# ---------------------------------------------------------------- command line


PREVIEW_FIELDS = ("source", "doc_id", "title", "heading", "tags", "people", "started_at", "ended_at", "metadata")


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Print the chunks an Obsidian vault turns into (a dry run: nothing is embedded or stored).")
    parser.add_argument("--obsidian", metavar="PATH", help="vault folder (OBSIDIAN_VAULT_PATH)")
    parser.add_argument("--exclude", metavar="GLOB", action="append", default=[],
                        help="keep matching vault paths out, comma-separated and/or repeated (OBSIDIAN_EXCLUDE)")
    parser.add_argument("--include-templates", action="store_true", help="also read the templates folder")
    parser.add_argument("--json", action="store_true", help="one JSON object per chunk")
    parser.add_argument("--embedding-model", help="model whose tokenizer budgets the chunks (EMBEDDING_MODEL)")
    parser.add_argument("--max-tokens", type=int,
                        help=f"chunk budget in tokens (default: the model's passage budget, at most {NOTE_CHUNK_TOKENS})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    vault = settings.get("OBSIDIAN_VAULT_PATH", args.obsidian)
    if not vault:
        raise settings.UserError("no vault given; pass --obsidian PATH or set OBSIDIAN_VAULT_PATH")
    if not Path(vault).expanduser().is_dir():
        raise settings.UserError(f"Obsidian vault {vault} is not a folder; fix --obsidian or OBSIDIAN_VAULT_PATH")
    from embedding_generator_multilingual import load_embedder

    embedder = load_embedder(args.embedding_model)
    budget = args.max_tokens or note_budget(embedder.passage_token_budget)
    documents = iter_documents(Path(vault), embedder.count_tokens, budget, exclude_globs(args.exclude),
                               skip_templates=not args.include_templates)

    def heading(chunk: Chunk, tokens: int) -> str:
        when = f"  {chunk.started_at:%Y-%m-%d} ({chunk.metadata.get('date_origin')})" if chunk.started_at else ""
        return f"=== {chunk.source}  [{tokens} tokens]{when}"

    # A clipped web page or a synced shared note can carry terminal escapes, like a chat message.
    notes, chunks = chunking.preview(documents, embedder.count_tokens, args.json, PREVIEW_FIELDS, heading,
                                     clean=settings.terminal_safe)
    print(f"{notes} notes, {chunks} chunks, budget {budget} tokens ({embedder.name})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    settings.run_cli(main)
