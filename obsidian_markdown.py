"""Markdown of one Obsidian note -> chunk texts: no files, no settings, only text.

    yaml_text, body, _ = split_frontmatter(text)      # properties: parse_frontmatter(yaml_text)
    sections = parse_body(body)                       # cleaned sections under their headings
    for text, path in NoteChunker(title, count_tokens, max_tokens).chunk(sections): ...

The body (frontmatter already removed) is cleaned of markup: `[[A|B]]` -> `B`, embeds of
attachments, `%%comments%%`, `^block-ids`, callout markers and plugin query blocks dropped, code
kept verbatim. Sections are then packed or cut (blocks, lines, sentences, words; the cutting
itself is `chunking.Splitter`) so that every chunk text, its header line `Title > Heading >
Subheading` included, fits the token budget.
`obsidian_to_embeddings` does the vault around it: walking, reading, frontmatter, dates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from chunking import MAX_CHARS_PER_TOKEN, Splitter  # a chunk's character cap, the one splitter

# Overlap between consecutive chunks cut out of one section: the last sentence, at most this.
DEFAULT_OVERLAP_TOKENS = 32
MIN_OVERLAP_TOKENS = 6
# The header line (title > heading path) takes at most this share of the budget.
MAX_HEADER_SHARE = 3
# Fenced blocks in these languages are plugin queries (Dataview, Bases, search...): what
# Obsidian shows is their result, not their code, so they are dropped like embeds.
QUERY_LANGUAGES = frozenset({"dataview", "dataviewjs", "query", "base", "tasks"})


# ---------------------------------------------------------------- wikilinks

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


# ---------------------------------------------------------------- frontmatter

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
    parser = _BodyParser(tags)
    for raw_line in body.splitlines():
        parser.feed(raw_line)
    return parser.finish()


def _unquote(line: str) -> str:
    """A line without its quote markers, callout marker, quoted-heading hashes and task box."""
    quote = _QUOTE.match(line)
    if quote:
        line = line[quote.end():]
        callout = _CALLOUT.match(line)
        if callout:
            line = line[callout.end():]
        line = _QUOTED_HEADING.sub("", line)
    return _TASK.sub(r"\1", line)


class _BodyParser:
    """parse_body's state, one line at a time: the open sections and heading stack, the lines
    of the block being gathered, an open code fence and an open comment."""

    def __init__(self, tags: list[str] | None):
        self.tags = tags
        self.sections = [Section(())]
        self.stack: list[tuple[int, str]] = []  # (level, heading text)
        self.lines: list[str] = []
        self.table = True  # every line so far is a table row
        self.fence: tuple[str, str] | None = None  # (marker, language)
        self.comment: str | None = None

    def feed(self, raw_line: str) -> None:
        """Take the next line of the body."""
        if self.fence is not None:
            self._code_line(raw_line)
            return
        line, self.comment = _skip_comments(raw_line, self.comment)
        if not line.strip():
            if not raw_line.strip():
                self._flush()  # a real blank line; a line that held only a comment joins its neighbours
            return
        opening = _FENCE.match(line)
        if opening:
            self._flush()
            self.fence = (opening.group(1), opening.group(2).lower())
            return
        heading = _HEADING.match(line)
        if heading:
            self._flush()
            self._open_section(len(heading.group(1)), heading.group(2) or "")
            return
        if _RULE.match(line) or _TABLE_SEPARATOR.match(line) and "-" in line and "|" in line:
            return
        self._text_line(line)

    def finish(self) -> list[Section]:
        """The sections with something in them (or a heading), once the body has been fed."""
        if self.fence is not None and self._code_block_kept():
            self.sections[-1].blocks.append(Block("code", "\n".join(self.lines).strip("\n")))  # unclosed fence
            self.lines = []
        self._flush()
        return [s for s in self.sections if s.blocks or s.path]

    def _flush(self) -> None:
        """Close the block being gathered: a table when every line of several is a row."""
        if self.lines:
            kind = "table" if self.table and len(self.lines) > 1 else "text"
            self.sections[-1].blocks.append(Block(kind, "\n".join(self.lines)))
        self.lines, self.table = [], True

    def _code_block_kept(self) -> bool:
        return self.fence[1] not in QUERY_LANGUAGES and bool("\n".join(self.lines).strip())

    def _code_line(self, raw_line: str) -> None:
        """A line inside a fence: kept verbatim, or the closing fence that ends the code block."""
        marker = self.fence[0]
        stripped = raw_line.strip()
        if stripped.startswith(marker[0] * len(marker)) and not stripped.strip(marker[0]):
            if self._code_block_kept():
                self.sections[-1].blocks.append(Block("code", "\n".join(self.lines).strip("\n")))
            self.lines, self.fence = [], None
        else:
            self.lines.append(raw_line.rstrip())

    def _open_section(self, level: int, raw_title: str) -> None:
        """A heading: a new section whose path is the enclosing headings plus this one."""
        title = clean_inline(_CLOSING_HASHES.sub("", raw_title), self.tags)
        if not title:
            return
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, title))
        self.sections.append(Section(tuple(t for _, t in self.stack)))

    def _text_line(self, line: str) -> None:
        """A line of prose, list or table: cleaned and added to the block being gathered."""
        is_row = line.lstrip().startswith("|")
        line = _unquote(line)
        if is_row:
            line = line.strip().strip("|")
            line = re.sub(r"(?<!\\)\|", " | ", line)
        text = clean_inline(line, self.tags)
        if text:
            self.table = self.table and is_row
            self.lines.append(text)



# ---------------------------------------------------------------- notes to chunk texts


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

    def chunk(self, sections: list[Section]) -> list[tuple[str, tuple[str, ...]]]:
        """(text, heading path) of each chunk, in note order."""
        # An empty heading directly followed by its own subheading is already in their headers.
        kept = [s for i, s in enumerate(sections)
                if s.blocks or not (i + 1 < len(sections) and sections[i + 1].path[:len(s.path)] == s.path
                                    and len(sections[i + 1].path) > len(s.path))]
        out: list[tuple[str, tuple[str, ...]]] = []
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
                estimate += self.splitter.count(heading) + 1
            estimate += tokens + 1
            segments.append("\n".join(part for part in (heading, body) if part))
            previous = section.path
        body = "\n\n".join(segments)
        return f"{header}\n{body}", prefix, body, estimate

    def _estimate(self, group: list[tuple[Section, str, int]]) -> int:
        text, _, _, estimate = self._render(group)
        return estimate if len(text) <= self.max_chars else self.max_tokens + 1

    def _flush(self, group: list[tuple[Section, str, int]]) -> list[tuple[str, tuple[str, ...]]]:
        if not group:
            return []
        text, prefix, body, _ = self._render(group)
        if self.splitter.fits(text, self.max_tokens, self.max_chars) is not None:
            return [(text, prefix)]
        if len(group) > 1:
            return self._flush(group[:-1]) + self._flush(group[-1:])
        return self._fit(prefix, body)

    def _split_section(self, section: Section) -> list[tuple[str, tuple[str, ...]]]:
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

    def _fit(self, path: tuple[str, ...], body: str) -> list[tuple[str, tuple[str, ...]]]:
        """Header + body, verified; a body that still overflows is cut smaller until it fits."""
        header, _ = self.header(path)
        text = f"{header}\n{body}" if body else header
        n = self.splitter.fits(text, self.max_tokens, self.max_chars)
        if n is not None or not body:
            return [(text, path)]
        excess = (self.splitter.count(text) - self.max_tokens) if len(text) <= self.max_chars else 0
        budget = self.max_tokens - self.header(path)[1] - 1 - max(excess, 1)
        chars = self.max_chars - len(header) - 1
        pieces = self.splitter.split(body, max(1, budget), max(1, chars))
        if len(pieces) == 1 and budget <= 1:
            return [(f"{header}\n{pieces[0][0]}", path)]
        return [part for piece, _ in pieces for part in self._fit(path, piece)]
