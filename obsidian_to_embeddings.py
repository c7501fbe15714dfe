"""Obsidian vault -> Chunks: every word of a note's visible text, none of its markup.

    python obsidian_to_embeddings.py --obsidian ~/Vault                  # print the chunks (dry run)
    python obsidian_to_embeddings.py --obsidian ~/Vault --json           # one JSON object per chunk
    python obsidian_to_embeddings.py --obsidian ~/Vault --exclude "Private/**"

What is read: `*.md` files under the vault, except dot-folders (`.obsidian`, `.trash`, `.git`...),
the templates folder (`.obsidian/templates.json`, fallback `Templates/`) and `--exclude` globs.
Frontmatter becomes metadata (tags, aliases, dates, people, other properties); the body is
cleaned (`[[A|B]]` -> `B`, embeds of attachments, `%%comments%%`, `^block-ids` and callout
markers dropped) and split at headings, then paragraphs, lines and sentences, so that every
chunk, header line included, fits the embedding model's token budget.

Exclude globs are matched against vault-relative paths: a glob without `/` matches a file or
folder name anywhere (`Private`, `*.excalidraw.md`); a glob with `/` is anchored at the vault
root (`Journal/2019/**`, `/Drafts`); `**` spans folders.
"""
from __future__ import annotations

import argparse
import codecs
import errno
import functools
import json
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Sequence

import chunking
import settings
from chunking import Chunk, Document

# Bump whenever the chunks produced from the same bytes would change: every note is re-chunked.
PARSER_VERSION = "obsidian-1"
DEFAULT_TEMPLATES_FOLDER = "Templates"
# Notes larger than this are indexed up to this size only (with a warning). A hand-written
# note, even a whole book, stays far below 2 MB; bigger `.md` files are pasted logs or data
# dumps, and 2 MB is already ~500k tokens, i.e. ~2,000 chunks and minutes of embedding for one
# file. Indexing the beginning keeps the note findable without flooding the index.
DEFAULT_MAX_NOTE_BYTES = 2 * 1024 * 1024
# A chunk never holds more characters than this per budget token. Tokenizers count a very long
# run of letters as one unknown token, so the token budget alone would let such a "word" grow
# without bound; normal text has 3-5 characters per token.
MAX_CHARS_PER_TOKEN = 8
# Overlap between consecutive chunks cut out of one section: the last sentence, at most this.
DEFAULT_OVERLAP_TOKENS = 32
MIN_OVERLAP_TOKENS = 6
# The header line (title > heading path) takes at most this share of the budget.
MAX_HEADER_SHARE = 3
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
# Fenced blocks in these languages are plugin queries (Dataview, Bases, search...): what
# Obsidian shows is their result, not their code, so they are dropped like embeds.
QUERY_LANGUAGES = frozenset({"dataview", "dataviewjs", "query", "base", "tasks"})
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


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def template_folders(vault: Path) -> list[str]:
    """Vault-relative folders holding templates: the core Templates plugin's folder
    (`.obsidian/templates.json`, else `Templates`) and the Templater plugin's, when set."""
    folders = []
    core = _read_json(vault / ".obsidian" / "templates.json").get("folder")
    templater = _read_json(vault / ".obsidian" / "plugins" / "templater-obsidian" / "data.json").get(
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
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = raw.decode("utf-16", "replace")
        return text, text.count("\ufffd")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
    # Each bad byte sequence became one U+FFFD; genuine U+FFFD characters are not counted.
    return text, text.count("\ufffd") - raw.count("\ufffd".encode())


# ---------------------------------------------------------------- frontmatter

_WIKILINK = re.compile(r"(!?)\[\[([^\[\]\n]*?)\]\]")
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")


def link_text(inner: str) -> str:
    """Readable text of a wikilink's inside: `A|B` -> `B`, `A#H` -> `A > H`, `A#^id` -> `A`, `A.md` -> `A`."""
    inner = inner.replace("\\|", "|")
    if "|" in inner:
        target, alias = inner.split("|", 1)
        if alias.strip():
            return alias.strip()
        inner = target
    target, _, sub = inner.partition("#")
    target = target.strip()
    if target.lower().endswith(".md"):
        target = target[:-3]
    parts = [p.strip() for p in sub.split("#") if p.strip() and not p.strip().startswith("^")]
    return " > ".join(([target] if target else []) + parts)


def is_attachment(inner: str) -> bool:
    """A link target with a file extension other than `.md` (image, PDF, `.base`, `.canvas`...)."""
    target = inner.replace("\\|", "|").split("|", 1)[0].split("#", 1)[0].strip()
    match = _EXTENSION.search(target)
    return bool(match) and match.group().lower() != ".md"


def unlink(text: str) -> str:
    """Wikilinks in a string replaced by their readable text (`"[[Steph Ango]]"` -> `Steph Ango`)."""
    return _WIKILINK.sub(lambda m: link_text(m.group(2)), text).strip() if "[[" in text else text


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


def split_frontmatter(text: str) -> tuple[str | None, str, int]:
    """(YAML text or None, body, line number where the body starts).

    Frontmatter is a `---` first line closed by a `---` (or `...`) line; unclosed, it is body.
    """
    if not text.startswith("---"):
        return None, text, 1
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return None, text, 1
    for index in range(1, len(lines)):
        if lines[index].rstrip() in ("---", "..."):
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1:]), index + 2
    return None, text, 1


def parse_frontmatter(yaml_text: str) -> tuple[dict, str | None]:
    """(properties, problem or None). Broken YAML keeps every top-level property that still
    parses on its own; the problem names the first bad line (1 = the line after `---`)."""
    import yaml

    def load(source: str):
        return yaml.safe_load(source)

    try:
        data = load(yaml_text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        salvaged: dict = {}
        block: list[str] = []
        for line in yaml_text.split("\n") + ["\0end"]:
            if block and (line == "\0end" or (line[:1] not in (" ", "\t", "-", "") and not line.startswith("#"))):
                try:
                    part = load("\n".join(block))
                    if isinstance(part, dict):
                        salvaged.update(part)
                except yaml.YAMLError:
                    pass
                block = []
            if line != "\0end":
                block.append(line)
        return salvaged, f"frontmatter is not valid YAML{where}"
    except (ValueError, TypeError, RecursionError) as err:
        return {}, f"frontmatter could not be read ({err.__class__.__name__})"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return {}, "frontmatter is not a list of properties (key: value lines)"
    return data, None


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


# ---------------------------------------------------------------- body cleaning

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_RULE = re.compile(r"^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_CALLOUT = re.compile(r"^\[!([^\]]*)\][+-]?\s*")
_QUOTED_HEADING = re.compile(r"^#{1,6}\s+")
_TASK = re.compile(r"^(\s*(?:[-*+]|\d+[.)])\s+)\[.\]\s+")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_MD_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^)\n]*)\)")
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\((?:[^()\n]|\([^()\n]*\))*\)")
_REF_LINK = re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]")
_AUTOLINK = re.compile(r"<((?:https?|mailto|obsidian|file):[^>\s]+)>")
_HTML_TAG = re.compile(
    r"</?(?:a|abbr|b|big|blockquote|br|center|cite|code|del|details|div|em|figcaption|figure|font|"
    r"h[1-6]|hr|i|img|ins|kbd|li|mark|ol|p|pre|q|s|small|span|strike|strong|sub|summary|sup|table|"
    r"tbody|td|th|thead|tr|u|ul|iframe|video|audio|source|input|label|section|article|aside|nav)\b[^>]*>",
    re.IGNORECASE,
)
_FOOTNOTE_REF = re.compile(r"\[\^[^\]\s]+\](?!:)")
_FOOTNOTE_DEF = re.compile(r"^\[\^[^\]\s]+\]:\s*")
_INLINE_FOOTNOTE = re.compile(r"\^\[([^\]\n]*)\]")
_BLOCK_ID = re.compile(r"(?:^|\s+)\^[A-Za-z0-9-]+\s*$")
_EMPHASIS = (
    re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"),
    re.compile(r"__(?=\S)(.+?)(?<=\S)__"),
    re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"),
    re.compile(r"==(?=\S)(.+?)(?<=\S)=="),
    re.compile(r"(?<![\w*\\])\*(?=[^\s*])(.+?)(?<=[^\s*\\])\*(?![\w*])"),
    re.compile(r"(?<![\w\\])_(?=[^\s_])(.+?)(?<=[^\s_\\])_(?!\w)"),
)
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_SPACES = re.compile(r"[ \t\u00a0]{2,}")
_INLINE_TAG = re.compile(r"(?<![^\s(\[])#([^\s#!\"$%&'()*+,.:;<=>?@\[\\\]^`{|}~\u3000]+)")
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_COMMENT_OPEN = re.compile(r"`+|%%|<!--")
_CLOSING_HASHES = re.compile(r"\s+#+$")


def _skip_comments(line: str, state: str | None) -> tuple[str, str | None]:
    """The visible part of `line` with `%%...%%` and `<!--...-->` removed; `state` carries an
    open comment to the next line. Openers inside `code spans` do not count."""
    out: list[str] = []
    pos = 0
    while pos < len(line):
        if state is not None:
            close = "%%" if state == "%%" else "-->"
            end = line.find(close, pos)
            if end < 0:
                return "".join(out), state
            pos = end + len(close)
            state = None
            continue
        match = _COMMENT_OPEN.search(line, pos)
        if match is None:
            out.append(line[pos:])
            break
        token = match.group()
        if token.startswith("`"):
            closing = line.find(token, match.end())
            stop = closing + len(token) if closing >= 0 else match.end()
            out.append(line[pos:stop])
            pos = stop
            continue
        out.append(line[pos:match.start()])
        state = token
        pos = match.end()
    return "".join(out), state


def clean_inline(line: str, tags: list[str] | None = None) -> str:
    """One line of note text without markup; inline `#tags` are appended to `tags`.

    "> [!tip] See [[Kyoto#Temples|the temples]] ==now== ^ab12" -> "See the temples now"
    """
    codes: list[str] = []

    def keep_code(match: re.Match) -> str:
        codes.append(match.group(2).strip() if match.group(2).strip() else match.group(2))
        return f"\x00{len(codes) - 1}\x00"

    # Each rewrite runs only when its marker character is there: most lines are plain prose.
    if "`" in line:
        line = _CODE_SPAN.sub(keep_code, line)
    if "[" in line:
        line = _WIKILINK.sub(lambda m: "" if m.group(1) and is_attachment(m.group(2)) else link_text(m.group(2)),
                             line)
        line = _MD_IMAGE.sub(lambda m: m.group(1).split("|")[0]
                             if re.search(r"[^\W\d_]", m.group(1).split("|")[0]) else "", line)
        line = _MD_LINK.sub(r"\1", line)
        line = _REF_LINK.sub(r"\1", line)
    if "<" in line:
        line = _AUTOLINK.sub(r"\1", line)
        line = _HTML_TAG.sub(" ", line)
    if "^" in line:
        line = _INLINE_FOOTNOTE.sub(r"\1", line)
        line = _FOOTNOTE_DEF.sub("", line)
        line = _FOOTNOTE_REF.sub("", line)
        line = _BLOCK_ID.sub("", line)
    if any(mark in line for mark in "*_~="):
        for pattern in _EMPHASIS:
            line = pattern.sub(r"\1", line)
    if tags is not None and "#" in line:
        tags.extend(t for t in _INLINE_TAG.findall(line) if not t.isdigit() and not t.replace("/", "").isdigit())
    if "\\" in line:
        line = _ESCAPE.sub(r"\1", line)
    if codes:
        line = _PLACEHOLDER.sub(lambda m: codes[int(m.group(1))], line)
    return (_SPACES.sub(" ", line) if "  " in line or "\t" in line or "\u00a0" in line else line).strip()


@dataclass
class Block:
    """A paragraph, list, table or code block of a section, already cleaned."""

    kind: str  # "text", "table" or "code"
    text: str


@dataclass
class Section:
    """The text under one heading; `path` is the heading path (empty before the first heading)."""

    path: tuple[str, ...]
    blocks: list[Block] = field(default_factory=list)


def parse_body(body: str, tags: list[str] | None = None) -> list[Section]:
    """Cleaned sections of a note body (frontmatter already removed), in order.

    Headings outside code open sections; blank lines separate blocks; fenced code is kept
    verbatim (query blocks of plugins dropped); comments, embeds and markup are removed.
    """
    sections = [Section(())]
    stack: list[tuple[int, str]] = []  # (level, heading text)
    lines: list[str] = []
    table = True
    fence: tuple[str, str] | None = None  # (marker, language)
    comment: str | None = None

    def flush() -> None:
        nonlocal lines, table
        if lines:
            sections[-1].blocks.append(Block("table" if table and len(lines) > 1 else "text", "\n".join(lines)))
        lines, table = [], True

    for raw_line in body.splitlines():
        if fence is not None:
            stripped = raw_line.strip()
            if stripped.startswith(fence[0][0] * len(fence[0])) and not stripped.strip(fence[0][0]):
                if fence[1] not in QUERY_LANGUAGES and "\n".join(lines).strip():
                    sections[-1].blocks.append(Block("code", "\n".join(lines).strip("\n")))
                lines, fence = [], None
            else:
                lines.append(raw_line.rstrip())
            continue
        line, comment = _skip_comments(raw_line, comment)
        if not line.strip():
            if not raw_line.strip():
                flush()  # a real blank line; a line that held only a comment joins its neighbours
            continue
        opening = _FENCE.match(line)
        if opening:
            flush()
            fence = (opening.group(1), opening.group(2).lower())
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            title = clean_inline(_CLOSING_HASHES.sub("", heading.group(2) or ""), tags)
            if not title:
                continue
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            sections.append(Section(tuple(t for _, t in stack)))
            continue
        if _RULE.match(line) or _TABLE_SEPARATOR.match(line) and "-" in line and "|" in line:
            continue
        is_row = line.lstrip().startswith("|")
        quote = _QUOTE.match(line)
        if quote:
            line = line[quote.end():]
            callout = _CALLOUT.match(line)
            if callout:
                line = line[callout.end():]
            line = _QUOTED_HEADING.sub("", line)
        line = _TASK.sub(r"\1", line)
        if is_row:
            line = line.strip().strip("|")
            line = re.sub(r"(?<!\\)\|", " | ", line)
        text = clean_inline(line, tags)
        if text:
            table = table and is_row
            lines.append(text)
    if fence is not None and "\n".join(lines).strip() and fence[1] not in QUERY_LANGUAGES:
        sections[-1].blocks.append(Block("code", "\n".join(lines).strip("\n")))  # unclosed fence
        lines = []
    flush()
    return [s for s in sections if s.blocks or s.path]


# ---------------------------------------------------------------- token-budgeted splitting

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？;])\s+")


class Splitter:
    """Token-budgeted splitting that calls `count_tokens` about once per piece, never on a
    growing text: units are counted once, packed by their sums, and each pack verified."""

    def __init__(self, count_tokens: Callable[[str], int]):
        self.count_tokens = count_tokens
        self.calls = 0
        self._cache: dict[str, int] = {}  # one note's blocks are looked at more than once

    def count(self, text: str) -> int:
        if text not in self._cache:
            self.calls += 1
            self._cache[text] = self.count_tokens(text)
        return self._cache[text]

    def fits(self, text: str, budget: int, chars: int) -> int | None:
        """Token count of `text` if it fits both budgets, else None (long texts are not counted)."""
        if len(text) > chars:
            return None
        n = self.count(text)
        return n if n <= budget else None

    def split(self, text: str, budget: int, chars: int, kind: str = "text") -> list[tuple[str, int]]:
        """Pieces of `text` (with their token counts), each within `budget` tokens and `chars`
        characters: whole text, else lines, else sentences, else words, else characters."""
        text = text.strip()
        if not text:
            return []
        n = self.fits(text, budget, chars)
        if n is not None:
            return [(text, n)]
        lines = [line for line in text.split("\n") if line.strip()]
        if len(lines) > 1:
            if kind == "table":
                return self._split_table(lines, budget, chars)
            return self._split_units(lines, "\n", budget, chars, kind)
        if kind != "code":
            sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
            if len(sentences) > 1:
                return self._split_units(sentences, " ", budget, chars, kind)
        return self.cut(text, budget, chars)

    def _split_units(self, units: list[str], joiner: str, budget: int, chars: int, kind: str) -> list[tuple[str, int]]:
        return self.pack_units([(unit, "text" if kind == "table" else kind) for unit in units], joiner, budget, chars)

    def pack_units(self, units: list[tuple[str, str]], joiner: str, budget: int, chars: int) -> list[tuple[str, int]]:
        """Pieces within budget made of consecutive (text, kind) units joined by `joiner`.

        Takes as many units as should fill ~95% of the budget, judged by the characters per
        token seen so far, and counts them once: about one call per piece, not one per unit.
        Too many: the estimate shrinks and it retries. A unit too big alone is split finer.
        """
        per_token = 4.0
        pieces: list[tuple[str, int]] = []
        start = 0
        while start < len(units):
            target = max(1, min(chars, int(budget * per_token * 0.95)))
            end = start + 1
            length = len(units[start][0])
            while end < len(units) and length + len(joiner) + len(units[end][0]) <= target:
                length += len(joiner) + len(units[end][0])
                end += 1
            if end - start == 1:
                pieces.extend(self.split(units[start][0], budget, chars, units[start][1]))
                start = end
                continue
            joined = joiner.join(text for text, _ in units[start:end])
            n = self.count(joined) if len(joined) <= chars else None
            if n is not None and n <= budget:
                pieces.append((joined, n))
                per_token = max(1.0, len(joined) / max(n, 1))
                start = end
            else:
                per_token = max(0.5, (len(joined) / n if n else per_token) * 0.85)
        return self.pack(pieces, joiner, budget, chars)

    def _split_table(self, rows: list[str], budget: int, chars: int) -> list[tuple[str, int]]:
        # Each piece of a long table repeats the header row, so its columns keep their names.
        header = rows[0]
        header_tokens = self.count(header)
        if header_tokens > budget // 3 or len(header) > chars // 3:
            return self._split_units(rows, "\n", budget, chars, "text")
        packs = self._split_units(rows[1:], "\n", budget - header_tokens - 1, chars - len(header) - 1, "text")
        return [(f"{header}\n{text}", n + header_tokens) for text, n in packs]

    def pack(self, pieces: list[tuple[str, int]], joiner: str, budget: int, chars: int) -> list[tuple[str, int]]:
        """Greedily join consecutive pieces (each already within budget) while the sum of their
        counts fits; every joined pack is counted once to confirm it."""
        packs: list[tuple[str, int]] = []
        current: list[tuple[str, int]] = []

        def close() -> None:
            while current:
                if len(current) == 1:
                    packs.append(current[0])
                    break
                joined = joiner.join(text for text, _ in current)
                n = self.fits(joined, budget, chars)
                if n is not None:
                    packs.append((joined, n))
                    break
                # The sum underestimated: give back the last piece and try again.
                tail = current.pop()
                close()
                current.append(tail)
            current.clear()

        total = 0
        length = 0
        for text, n in pieces:
            if current and (total + n > budget or length + len(joiner) + len(text) > chars):
                close()
                total = length = 0
            current.append((text, n))
            total += n
            length += len(text) + len(joiner)
        close()
        return packs

    def cut(self, text: str, budget: int, chars: int) -> list[tuple[str, int]]:
        """Cut a text with no line or sentence breaks: at spaces where there are some, else
        anywhere, sizing each piece from the characters-per-token seen so far."""
        pieces: list[tuple[str, int]] = []
        per_token = 4.0
        rest = text.strip()
        while rest:
            n = self.fits(rest, budget, chars) if len(rest) <= budget * per_token * 1.5 else None
            if n is not None:
                pieces.append((rest, n))
                break
            size = max(1, min(chars, int(budget * per_token * 0.9), len(rest)))
            while True:
                end = size
                space = rest.rfind(" ", size // 2, size + 1)
                if space > 0 and end < len(rest):
                    end = space
                piece = rest[:end].strip()
                n = self.count(piece) if piece else 0
                if n <= budget or size == 1:
                    break
                size = max(1, min(size - 1, int(size * budget / n * 0.9)))
            if piece:
                pieces.append((piece, n))
                per_token = max(1.0, len(piece) / max(n, 1))
            rest = rest[end:].strip()
        return pieces

    def tail(self, text: str, budget: int) -> str:
        """The last sentence (or last words) of `text` within `budget` tokens, for overlap."""
        last = text.rstrip().rsplit("\n", 1)[-1]
        sentences = [s for s in _SENTENCE_END.split(last) if s.strip()]
        candidate = sentences[-1] if sentences else last
        for _ in range(4):
            candidate = candidate.strip()
            if not candidate or len(candidate) > budget * MAX_CHARS_PER_TOKEN:
                candidate = candidate[-budget * 3:]
                space = candidate.find(" ")
                candidate = candidate[space + 1:] if space >= 0 else candidate
                continue
            if self.count(candidate) <= budget:
                return candidate
            candidate = candidate[len(candidate) // 2:]
            space = candidate.find(" ")
            candidate = candidate[space + 1:] if space >= 0 else candidate
        return ""


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


def _common_prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    prefix = paths[0]
    for path in paths[1:]:
        k = 0
        while k < min(len(prefix), len(path)) and prefix[k] == path[k]:
            k += 1
        prefix = prefix[:k]
    return prefix


class NoteChunker:
    """Turns the sections of one note into chunk texts within `max_tokens` (header included).

    A section that fits is a unit; neighbouring units are merged while they fit (the header
    then gives their common heading path and each merged section starts with its heading).
    A section too big is cut at blocks, lines, sentences, with the previous piece's last
    sentence repeated at the start of the next.
    """

    def __init__(self, title: str, count_tokens: Callable[[str], int], max_tokens: int):
        self.splitter = Splitter(count_tokens)
        self.max_tokens = max(8, max_tokens)
        self.max_chars = self.max_tokens * MAX_CHARS_PER_TOKEN
        self.overlap = min(DEFAULT_OVERLAP_TOKENS, self.max_tokens // 8)
        self.title = self._fit_header(title) or "Untitled"
        self._header_cache: dict[tuple[str, ...], tuple[str, int]] = {}
        self._line_cache: dict[str, int] = {}
        self._lost: dict[tuple[str, ...], str] = {}

    def _fit_header(self, text: str) -> str:
        limit = self.max_tokens // MAX_HEADER_SHARE
        text = " ".join(text.split())
        if self.splitter.fits(text, limit, self.max_chars // MAX_HEADER_SHARE) is not None:
            return text
        pieces = self.splitter.cut(text, limit - 1, self.max_chars // MAX_HEADER_SHARE - 1)
        return pieces[0][0] + "…" if pieces else ""

    def header(self, path: tuple[str, ...]) -> tuple[str, int]:
        """The header line for a heading path and its token count (cut to a third of the budget)."""
        if path not in self._header_cache:
            full = " > ".join((self.title, *path))
            text = self._fit_header(full) if path else self.title
            if text != full and len(path) > 1:  # rather drop middle headings than the last one
                short = " > ".join((self.title, "…", path[-1]))
                text = short if self._fit_header(short) == short else text
            self._header_cache[path] = (text, self.splitter.count(text))
            # A heading too long for the header line goes whole into the body instead.
            self._lost[path] = " > ".join(path) if path and text != full else ""
        return self._header_cache[path]

    def lost_heading(self, path: tuple[str, ...]) -> str:
        """The heading path that the header line of `path` could not hold in full, or ""."""
        self.header(path)
        return self._lost[path]

    def _line_tokens(self, line: str) -> int:
        if line not in self._line_cache:
            self._line_cache[line] = self.splitter.count(line)
        return self._line_cache[line]

    def chunk(self, sections: list[Section]) -> list[tuple[str, tuple[str, ...], str]]:
        """(text, heading path, body) of each chunk, in note order."""
        # An empty heading directly followed by its own subheading is already in their headers.
        kept = [s for i, s in enumerate(sections)
                if s.blocks or not (i + 1 < len(sections) and sections[i + 1].path[:len(s.path)] == s.path
                                    and len(sections[i + 1].path) > len(s.path))]
        out: list[tuple[str, tuple[str, ...], str]] = []
        group: list[tuple[Section, str, int]] = []
        for section in kept:
            whole = self._whole(section)
            if whole is None:
                out.extend(self._flush(group))
                group = []
                out.extend(self._split_section(section))
                continue
            candidate = group + [(section, *whole)]
            if group and self._estimate(candidate) > self.max_tokens:
                out.extend(self._flush(group))
                candidate = [(section, *whole)]
            group = candidate
        out.extend(self._flush(group))
        return out

    def _whole(self, section: Section) -> tuple[str, int] | None:
        """(body, tokens) when the whole section fits under its own header, else None."""
        header, header_tokens = self.header(section.path)
        if self.lost_heading(section.path):
            return None
        budget = self.max_tokens - header_tokens - 1
        chars = self.max_chars - len(header) - 1
        body = "\n\n".join(block.text for block in section.blocks)
        n = self.splitter.fits(body, budget, chars) if body else 0
        return None if n is None else (body, n)

    def _render(self, group: list[tuple[Section, str, int]]) -> tuple[str, tuple[str, ...], str, int]:
        """(text, header path, body, estimated tokens) of merged whole sections."""
        # A section with no text must show its heading in the body, so it limits the prefix.
        prefix = _common_prefix([s.path if body else s.path[:-1] for s, body, _ in group])
        header, estimate = self.header(prefix)
        segments = [self.lost_heading(prefix)] if self.lost_heading(prefix) else []
        previous = prefix
        for section, body, tokens in group:
            k = len(_common_prefix([previous, section.path]))
            heading = " > ".join(section.path[max(k, len(prefix)):])
            if heading:
                estimate += self._line_tokens(heading) + 1
            estimate += tokens + 1
            segments.append("\n".join(part for part in (heading, body) if part))
            previous = section.path
        body = "\n\n".join(segments)
        return f"{header}\n{body}", prefix, body, estimate

    def _estimate(self, group: list[tuple[Section, str, int]]) -> int:
        text, _, _, estimate = self._render(group)
        return estimate if len(text) <= self.max_chars else self.max_tokens + 1

    def _flush(self, group: list[tuple[Section, str, int]]) -> list[tuple[str, tuple[str, ...], str]]:
        if not group:
            return []
        text, prefix, body, _ = self._render(group)
        if self.splitter.fits(text, self.max_tokens, self.max_chars) is not None:
            return [(text, prefix, body)]
        if len(group) > 1:
            return self._flush(group[:-1]) + self._flush(group[-1:])
        return self._fit(prefix, body)

    def _split_section(self, section: Section) -> list[tuple[str, tuple[str, ...], str]]:
        header, header_tokens = self.header(section.path)
        full = max(1, self.max_tokens - header_tokens - 1)
        full_chars = max(1, self.max_chars - len(header) - 1)
        blocks = [Block("text", self.lost_heading(section.path))] + section.blocks
        # A piece of a table starts with its header row: context enough, no overlap needed.
        table_headers = {block.text.split("\n", 1)[0] for block in blocks if block.kind == "table"}
        # Pieces leave room for the overlap; then neighbours that fit together in the full budget
        # (a lone intro line before a long list) are joined, since overlap would use that room.
        packs = self.splitter.pack_units([(b.text, b.kind) for b in blocks if b.text.strip()], "\n\n",
                                         max(1, full - self.overlap - 1),
                                         max(1, full_chars - self.overlap * MAX_CHARS_PER_TOKEN))
        packs = self.splitter.pack(packs, "\n\n", full, full_chars)
        out = []
        previous = ""
        for body, tokens in packs:
            room = min(self.overlap, full - tokens - 1)
            overlap = self.splitter.tail(previous, room) if previous and room >= MIN_OVERLAP_TOKENS else ""
            previous = body
            if overlap and not body.startswith(overlap) and body.split("\n", 1)[0] not in table_headers:
                body = f"{overlap}\n{body}"
            out.extend(self._fit(section.path, body))
        return out

    def _fit(self, path: tuple[str, ...], body: str) -> list[tuple[str, tuple[str, ...], str]]:
        """Header + body, verified; a body that still overflows is cut smaller until it fits."""
        header, _ = self.header(path)
        text = f"{header}\n{body}" if body else header
        n = self.splitter.fits(text, self.max_tokens, self.max_chars)
        if n is not None or not body:
            return [(text, path, body)]
        excess = (self.splitter.count(text) - self.max_tokens) if len(text) <= self.max_chars else 0
        budget = self.max_tokens - self.header(path)[1] - 1 - max(excess, 1)
        chars = self.max_chars - len(header) - 1
        pieces = self.splitter.split(body, max(1, budget), max(1, chars))
        if len(pieces) == 1 and budget <= 1:
            return [(f"{header}\n{pieces[0][0]}", path, pieces[0][0])]
        return [part for piece, _ in pieces for part in self._fit(path, piece)]


def properties_sentence(properties: dict) -> str:
    """The content-bearing property values of a note as one line of prose, e.g.
    `{"categories": ["Trips"], "loc": ["Kyoto", "Japan"]}` -> "categories Trips; loc Kyoto, Japan"."""
    parts = []
    for key, value in properties.items():
        values = [v.strip() for v in _strings(value) if v.strip()]
        if values and str(key).strip().lower() not in NON_CONTENT_PROPERTIES:
            parts.append(f"{key} {', '.join(values)}")
    return "; ".join(parts)


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
        for chunk_text, path, _ in chunker.chunk(sections)
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


def _chunk_json(chunk: Chunk, tokens: int) -> dict:
    return {
        "source": chunk.source, "doc_id": chunk.doc_id, "title": chunk.title, "heading": chunk.heading,
        "tags": chunk.tags, "people": chunk.people,
        "started_at": chunk.started_at.isoformat() if chunk.started_at else None,
        "ended_at": chunk.ended_at.isoformat() if chunk.ended_at else None,
        "metadata": chunk.metadata, "tokens": tokens, "text": chunk.text,
    }


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Print the chunks an Obsidian vault turns into (a dry run: nothing is embedded or stored).")
    parser.add_argument("--obsidian", metavar="PATH", help="vault folder (OBSIDIAN_VAULT_PATH)")
    parser.add_argument("--exclude", metavar="GLOB", action="append", default=[],
                        help="keep matching vault paths out, comma-separated and/or repeated (OBSIDIAN_EXCLUDE)")
    parser.add_argument("--include-templates", action="store_true", help="also read the templates folder")
    parser.add_argument("--json", action="store_true", help="one JSON object per chunk")
    parser.add_argument("--embedding-model", help="model whose tokenizer budgets the chunks (EMBEDDING_MODEL)")
    parser.add_argument("--max-tokens", type=int, help="chunk budget in tokens (default: the model's passage budget)")
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
    try:  # counting long paragraphs is expected here; the tokenizer's length warning is noise
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
    except ImportError:
        pass
    budget = args.max_tokens or embedder.passage_token_budget
    notes = chunks = 0
    for document in iter_documents(Path(vault), embedder.count_tokens, budget, exclude_globs(args.exclude),
                                   skip_templates=not args.include_templates):
        notes += 1
        for chunk in document.make_chunks():
            chunks += 1
            tokens = embedder.count_tokens(chunk.text)
            if args.json:
                print(json.dumps(_chunk_json(chunk, tokens), ensure_ascii=False))
            else:
                when = f"  {chunk.started_at:%Y-%m-%d} ({chunk.metadata.get('date_origin')})" if chunk.started_at else ""
                print(f"=== {chunk.source}  [{tokens} tokens]{when}")
                print(chunk.text)
                print()
    print(f"{notes} notes, {chunks} chunks, budget {budget} tokens ({embedder.name})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    settings.run_cli(main)
