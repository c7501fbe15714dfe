"""Parser for WhatsApp's own "Export chat" text files (Android `WhatsApp Chat with X.txt`, iOS
`_chat.txt`), loose or inside the exported `.zip`.

    parse_txt_export("26/06/2021, 10:15 - Maria: Hi\\nsecond line")
    -> [Message(time=datetime(2021, 6, 26, 10, 15), author="Maria", text="Hi\\nsecond line")]

Header layouts read (HEADER_LAYOUTS; U+202F/U+00A0 spaces and U+200E/U+200F marks allowed):

    layout                                      example
    Android day-first, 4-digit year             26/06/2021, 10:15 - Maria: hi
    Android day-first, 2-digit year             26/06/21, 10:15 - Maria: hi
    Android month-first, 12 h                   6/26/21, 10:15 PM - Maria: hi
    Android 12 h with a. m./p. m. (es, pt)      26/06/2021, 10:15 p. m. - Maria: hi
    Android dotted date (de, ru, tr, pl)        26.06.21, 10:15 - Maria: hi
    Android dashed date, no comma (nl)          26-06-2021 10:15 - Maria: hi
    Android year-first (sv, zh, ja)             2021-06-26 10:15 - Maria: hi   (also 2021/06/26)
    Android dot time (fi, id, da)               26/06/2021, 10.15 - Maria: hi
    Android Finnish 'klo' with seconds          13.6.2018 klo 21.25.15 - Mika: hi
    colon after the time                        13.06.18 21.25.15: Laura: hi
    Android 12 h marker first (ko, zh)          2021. 6. 26. 오후 10:15 - Maria: hi  (上午/下午, 午前/午後)
    Android Arabic digits and comma             ٢٦/٠٦/٢٠٢١، ١٠:١٥ م - Maria: hi
    iOS bracketed, day-first                    [26/06/2021, 10:15:03] Maria: hi
    iOS bracketed, month-first 12 h             \u200e[6/26/21, 10:15:03\u202fPM] Maria: hi
    iOS bracketed, dotted date and dot time     [26.06.21, 10.15.03] Maria: hi
    iOS bracketed, year-first                   [2021/06/26 10:15:03] Maria: hi

The layout most header lines share is the file's; a line in another layout, or an authorless one
dated before the message above, is text quoted inside that message. Media placeholders, attachment
lines and system rows are recognised in every language of whatsapp_locales.LANGUAGES.

Times are naive local wall-clock (that is all the export holds). Day-first versus month-first is
decided over the whole file: a first field > 12 means day-first, a second field > 12 month-first;
when no field settles it, the order that keeps the messages chronological wins, and a tie falls
back to day-first (most WhatsApp locales write the day first).
"""
from __future__ import annotations

import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Callable

from chunking import decode_text
from whatsapp_locales import (
    ANDROID_MEDIA_FILE, ATTACHED_ANDROID, ATTACHED_IOS, DOCUMENT_OMITTED_ENDINGS, DOCUMENT_OMITTED_TAIL,
    EDITED_SUFFIX, is_system_line, is_system_text, media_kind_of_placeholder,
)

DATE_ORDERS = ("auto", "dayfirst", "monthfirst")
DEFAULT_AMBIGUOUS_ORDER = "dayfirst"
# Zip members bigger than this (uncompressed) are refused: a zip bomb must not eat the memory.
DEFAULT_MAX_ZIP_MEMBER_BYTES = 200 * 1024 * 1024
MAX_AUTHOR_CHARS = 80

# Bidirectional marks WhatsApp sprinkles around names, times and system lines.
_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_STRIP_BIDI = str.maketrans("", "", _BIDI)
_MARK = "[\u200e\u200f]?"  # Arabic and Hebrew exports put a mark after each number
_HEADER = re.compile(
    rf"^{_MARK}(?P<open>\[)?{_MARK}"
    rf"(?P<d1>\d{{1,4}}){_MARK}(?P<dsep>[./-])\s?(?P<d2>\d{{1,2}}){_MARK}(?P=dsep)\s?(?P<d3>\d{{1,4}}){_MARK}\.?"
    rf"(?P<comma>[,،])?{_MARK}\s(?P<klo>klo\s)?"
    r"(?:(?P<pre>오전|오후|上午|下午|午前|午後)\s?)?"
    rf"(?P<hour>\d{{1,2}})(?P<tsep>[:.])(?P<minute>\d{{2}})(?:(?P=tsep)(?P<second>\d{{2}}))?{_MARK}"
    r"(?:\s?(?P<ampm>[ap]\.?\s?m\.?|ص|م)(?![^\W\d_]))?"
    r"(?(open)\]\s?|(?P<after>\s[-\u2013]\s|:\s))"
    r"(?P<rest>.*)$",
    re.IGNORECASE,
)
_PM_MARKERS = ("p", "오후", "下午", "午後", "م")

# The layouts _HEADER reads, as documented in the module docstring and README (tests parse each).
HEADER_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("Android day-first, 4-digit year", "26/06/2021, 10:15 - Maria: hi"),
    ("Android day-first, 2-digit year", "26/06/21, 10:15 - Maria: hi"),
    ("Android month-first, 12 h", "6/26/21, 10:15 PM - Maria: hi"),
    ("Android 12 h with a. m./p. m. (es, pt)", "26/06/2021, 10:15 p. m. - Maria: hi"),
    ("Android dotted date (de, ru, tr, pl)", "26.06.21, 10:15 - Maria: hi"),
    ("Android dashed date, no comma (nl)", "26-06-2021 10:15 - Maria: hi"),
    ("Android year-first (sv, zh, ja)", "2021-06-26 10:15 - Maria: hi"),
    ("Android dot time (fi, id, da)", "26/06/2021, 10.15 - Maria: hi"),
    ("Android Finnish 'klo' with seconds", "13.6.2018 klo 21.25.15 - Mika: hi"),
    ("colon after the time", "13.06.18 21.25.15: Laura: hi"),
    ("Android 12 h marker first (ko, zh)", "2021. 6. 26. 오후 10:15 - Maria: hi"),
    ("Android Arabic digits and comma", "\u0662\u0666/\u0660\u0666/\u0662\u0660\u0662\u0661\u060c "
                                        "\u0661\u0660:\u0661\u0665 \u0645 - Maria: hi"),
    ("iOS bracketed, day-first", "[26/06/2021, 10:15:03] Maria: hi"),
    ("iOS bracketed, month-first 12 h (U+202F, U+200E)", "\u200e[6/26/21, 10:15:03\u202fPM] Maria: hi"),
    ("iOS bracketed, dotted date and dot time", "[26.06.21, 10.15.03] Maria: hi"),
    ("iOS bracketed, year-first", "[2021/06/26 10:15:03] Maria: hi"),
)

_KIND_BY_EXTENSION = {
    "jpg": "photo", "jpeg": "photo", "png": "photo", "heic": "photo", "gif": "gif", "webp": "sticker",
    "mp4": "video", "mov": "video", "3gp": "video", "opus": "audio", "ogg": "audio", "m4a": "audio",
    "mp3": "audio", "aac": "audio", "amr": "audio", "vcf": "contact",
}
_KIND_BY_IOS_NAME = {"PHOTO": "photo", "VIDEO": "video", "AUDIO": "audio", "STICKER": "sticker", "GIF": "gif"}
# Android names its media IMG-…, VID-…; a name cut to its extension still tells the kind.
_KIND_BY_ANDROID_PREFIX = {"IMG": "photo", "VID": "video", "AUD": "audio", "PTT": "audio", "STK": "sticker"}


@dataclass
class Message:
    """One chat message as parsed: `time` is aware UTC (exporter JSON) or naive local (.txt).

    `author` is the display name as exported (None when the owner sent it and the source says so
    through `from_me`); `text` keeps the message's own line breaks; media became `[photo] caption`.
    """

    time: datetime
    author: str | None
    text: str
    from_me: bool = False
    msg_id: str | None = None
    sender_number: str | None = None  # digits, when the source identifies the sender by number


def media_kind_of_file(name: str) -> str:
    """`00000012-PHOTO-2021-06-26.jpg` -> "photo"; `IMG-1.jpg` -> "photo"; unknown -> "file"."""
    for marker, kind in _KIND_BY_IOS_NAME.items():
        if f"-{marker}-" in name.upper():
            return kind
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension in _KIND_BY_EXTENSION:
        return _KIND_BY_EXTENSION[extension]
    prefix = name.strip()[:3].upper()
    if name.strip()[3:4] == "-" and prefix in _KIND_BY_ANDROID_PREFIX:
        return _KIND_BY_ANDROID_PREFIX[prefix]
    return "document" if extension or prefix == "DOC" else "file"


def render_media(kind: str, caption: str | None) -> str:
    """`[photo] caption`, or `[photo]` alone: the file path is never part of the text."""
    caption = (caption or "").strip()
    return f"[{kind}] {caption}" if caption else f"[{kind}]"


def clean_body(body: str, sender: str | None = None, chat_name: str | None = None) -> str | None:
    """Turn a message body into the text to embed: media placeholders of any app language become
    `[photo] caption`; None for deleted messages and system rows (see whatsapp_locales).

    `sender` and `chat_name` let short group events ("Anna left") count as system rows when an
    export files them under the chat's own name or a "System" sender."""
    system_hint = body[:1] in _BIDI  # iOS starts system rows (and media placeholders) with U+200E
    body = EDITED_SUFFIX.sub("", body.translate(_STRIP_BIDI)).strip()
    first, _, after = body.partition("\n")
    first = first.strip()
    kind = media_kind_of_placeholder(first)
    if kind:
        return render_media(kind, after)
    attached = ATTACHED_IOS.search(body) if "<" in body else None
    if attached:
        caption = (body[: attached.start()] + " " + body[attached.end():]).strip()
        return render_media(media_kind_of_file(attached["file"]), caption)
    attached = (ATTACHED_ANDROID.match(first) or ANDROID_MEDIA_FILE.match(first)) if "(" in first else None
    if attached:
        caption = (first[attached.end():] + "\n" + after).strip()
        return render_media(media_kind_of_file(attached["file"]), caption)
    if first.casefold().rstrip(" .。!>").endswith(DOCUMENT_OMITTED_ENDINGS) \
            and DOCUMENT_OMITTED_TAIL.search(first):
        # iOS: "Lease.pdf • 3 pages document omitted": the name is the file's, not a caption.
        return render_media("document", after)
    if not body or is_system_text(body, sender, chat_name):
        return None
    if system_hint:
        return None
    return body


def _year(field: str) -> int:
    value = int(field)
    return value + 2000 if len(field) <= 2 else value


def _parse_time(header: re.Match, dayfirst: bool) -> datetime | None:
    d1, d2, d3 = header["d1"], header["d2"], header["d3"]
    if len(d1) == 4:
        year, month, day = int(d1), int(d2), int(d3)
    elif dayfirst:
        day, month, year = int(d1), int(d2), _year(d3)
    else:
        month, day, year = int(d1), int(d2), _year(d3)
    hour = int(header["hour"])
    marker = header["ampm"] or header["pre"]
    if marker:
        if hour > 12:
            return None
        hour = hour % 12 + (12 if marker.lower().startswith(_PM_MARKERS) else 0)
    try:
        return datetime(year, month, day, hour, int(header["minute"]), int(header["second"] or 0))
    except ValueError:
        return None


def _layout_of(header: re.Match) -> tuple:
    """What stays the same on every header line of one export: brackets, date and time separators,
    year first or last, "klo". A line quoting a date in another layout is not a header."""
    return (bool(header["open"]), header["dsep"], len(header["d1"]) == 4, bool(header["klo"]), header["tsep"],
            (header["after"] or "").strip().replace("\u2013", "-"))


def decide_date_order(headers: list[re.Match], date_order: str = "auto") -> tuple[bool, str | None]:
    """(dayfirst, problem): a field > 12 settles it; otherwise chronology; tie -> day-first."""
    if date_order in ("dayfirst", "monthfirst"):
        return date_order == "dayfirst", None
    pairs = [(int(h["d1"]), int(h["d2"])) for h in headers if len(h["d1"]) != 4]
    if not pairs:
        return True, None
    first_big = sum(1 for a, b in pairs if a > 12)
    second_big = sum(1 for a, b in pairs if b > 12)
    if first_big and second_big:
        dayfirst = first_big >= second_big
        return dayfirst, (f"dates are inconsistent ({first_big} read only day-first, {second_big} only "
                          f"month-first); using {'day' if dayfirst else 'month'}-first, "
                          "or set --date-order/WHATSAPP_DATE_ORDER")
    if first_big or second_big:
        return bool(first_big), None

    def disorder(dayfirst: bool) -> int:
        times = [t for t in (_parse_time(h, dayfirst) for h in headers) if t is not None]
        return sum(1 for a, b in zip(times, times[1:]) if b < a) + 2 * (len(headers) - len(times))

    by_day, by_month = disorder(True), disorder(False)
    if by_day == by_month:
        return DEFAULT_AMBIGUOUS_ORDER == "dayfirst", None
    return by_day < by_month, None


_QUOTE_CHARS = set("\"'“”„«»「」‘’")


def _unbalanced_quotes(text: str) -> bool:
    if _QUOTE_CHARS.isdisjoint(text):
        return False
    return any(text.count(a) != text.count(b) for a, b in (("“", "”"), ("„", "“"), ("«", "»"), ("「", "」"))) \
        or text.count('"') % 2 == 1


def _split_author(rest: str) -> tuple[str | None, str]:
    """("Maria", "body") for an authored line, (None, line) for a system line."""
    cut = rest.find(": ")
    if cut < 0 and rest.endswith(":"):
        cut = len(rest) - 1
    if cut <= 0:
        return None, rest
    author = rest[:cut].translate(_STRIP_BIDI).strip()
    # A quote opened before the colon and closed after it: `X changed the subject from "a: b" to "c"`.
    if not author or len(author) > MAX_AUTHOR_CHARS or _unbalanced_quotes(author) \
            or (_QUOTE_CHARS & set(author) and is_system_line(rest.translate(_STRIP_BIDI))):
        return None, rest
    return author, rest[cut + 2:] if cut + 1 < len(rest) else ""


def parse_txt_export(text: str, date_order: str = "auto",
                     on_problem: Callable[[str], None] | None = None,
                     chat_name: str | None = None) -> list[Message]:
    """Messages of one exported chat, in file order; system rows and deleted messages dropped.

    Continuation lines (and blank lines) belong to the message above, and so does a line that
    only looks like a header: one in another layout than the file's, or an authorless one dated
    before the message above (a quoted date). Lines whose date cannot exist are dropped with one
    problem report; a file with no header in any known layout gets one report with a sample line.
    `on_problem` receives one-line descriptions; `chat_name` helps spot system rows filed under it.
    """
    if date_order not in DATE_ORDERS:
        raise ValueError(f"date order {date_order!r} is not one of {', '.join(DATE_ORDERS)}")
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u202f", " ").replace("\u00a0", " ")
    lines = text.split("\n")
    found = [(number, _HEADER.match(line)) for number, line in enumerate(lines, start=1)
             if line[:1].isdigit() or line[:1] in _BIDI + "["]
    found = [(number, header) for number, header in found if header]
    if not found:
        sample = next((line.strip() for line in lines if line.strip()), "")
        if sample and on_problem:
            on_problem(f"no WhatsApp messages found: no line starts like a message in a layout this reader "
                       f"knows (first line: {sample[:60]!r}; README, WhatsApp, lists the layouts)")
        return []
    layouts = Counter(_layout_of(header) for _, header in found)
    most = max(layouts.values())
    headers = {number: header for number, header in found if layouts[_layout_of(header)] == most}
    entries: list[tuple[re.Match, list[str], int]] = []  # header, body lines, line number
    for number, line in enumerate(lines, start=1):
        header = headers.get(number)
        if header:
            entries.append((header, [header["rest"]], number))
        elif entries:
            entries[-1][1].append(line)
    dayfirst, problem = decide_date_order([e[0] for e in entries], date_order)
    if problem and on_problem:
        on_problem(problem)
    rows: list[tuple[datetime, str | None, list[str]]] = []  # time, author, body lines
    bad_lines: list[int] = []
    for header, body_lines, number in entries:
        when = _parse_time(header, dayfirst)
        if when is None:
            bad_lines.append(number)
            continue
        author, first = _split_author(body_lines[0])
        if author is None and rows and rows[-1][1] is not None and when < rows[-1][0] \
                and not is_system_text(first):
            rows[-1][2].extend([lines[number - 1], *body_lines[1:]])  # a date quoted inside a message
            continue
        rows.append((when, author, [first, *body_lines[1:]]))
    messages: list[Message] = []
    for when, author, body_lines in rows:
        if author is None:
            continue
        body = clean_body("\n".join(body_lines).rstrip(), author, chat_name)
        if body is not None:
            messages.append(Message(time=when, author=author, text=body))
    if bad_lines and on_problem:
        on_problem(f"{len(bad_lines)} line(s) with impossible dates skipped (first at line {bad_lines[0]})")
    return messages


def looks_like_chat_name(member: str) -> bool:
    """Zip members that hold the chat: `_chat.txt`, `WhatsApp Chat with X.txt` and localised forms."""
    name = PurePosixPath(member).name
    return name.lower().endswith(".txt") and not name.startswith(".")


def read_zip_chat(path, max_bytes: int = DEFAULT_MAX_ZIP_MEMBER_BYTES) -> tuple[str | None, str | None]:
    """(text of the chat file inside an exported zip, problem). Only the chat member is read, and
    never more than `max_bytes` of it, whatever the zip's header claims."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [i for i in archive.infolist() if not i.is_dir() and looks_like_chat_name(i.filename)]
            if not members:
                return None, "holds no chat .txt file (expected _chat.txt or 'WhatsApp Chat with ....txt')"
            members.sort(key=lambda i: (PurePosixPath(i.filename).name != "_chat.txt",
                                        "whatsapp" not in i.filename.lower(), len(i.filename)))
            member = members[0]
            if member.file_size > max_bytes:
                return None, f"its chat file {member.filename} is {member.file_size} bytes uncompressed, over the {max_bytes} byte cap"
            with archive.open(member) as handle:
                data = handle.read(max_bytes + 1)
            if len(data) > max_bytes:
                return None, f"its chat file {member.filename} is over the {max_bytes} byte cap uncompressed"
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as err:
        return None, f"is not a readable zip ({err.__class__.__name__}: {err})"
    return decode_export(data), None


def decode_export(data: bytes) -> str:
    """An export's text: UTF-8 (sometimes with a BOM), or UTF-16 when it went through Windows."""
    return decode_text(data)[0]


_CHAT_FILE_PREFIXES = re.compile(
    r"^(?:whatsapp chat (?:with|-)|whatsapp-chat mit|conversa do whatsapp com|chat de whatsapp con"
    r"|discussion whatsapp avec|chat whatsapp con|whatsapp-chat met|whatsapp chat -)\s*",
    re.IGNORECASE,
)


def chat_name_from_file(file_name: str, folder_name: str | None = None) -> str | None:
    """`WhatsApp Chat with Maria Silva.txt` -> "Maria Silva"; `_chat.txt` -> the folder/zip name."""
    stem = PurePosixPath(file_name).stem
    if stem.lower() in ("_chat", "chat") and folder_name:
        stem = PurePosixPath(folder_name).stem
    if stem.lower() in ("_chat", "chat"):
        return None
    stem = re.sub(r"\s*\(\d+\)$", "", stem)  # "… (1).zip": a second download of the same export
    return _CHAT_FILE_PREFIXES.sub("", stem).strip() or None
