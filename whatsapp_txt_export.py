"""Parser for WhatsApp's own "Export chat" text files (Android `WhatsApp Chat with X.txt`, iOS
`_chat.txt`), loose or inside the exported `.zip`.

    parse_txt_export("26/06/2021, 10:15 - Maria: Hi\\nsecond line")
    -> [Message(time=datetime(2021, 6, 26, 10, 15), author="Maria", text="Hi\\nsecond line")]

Times are naive local wall-clock (that is all the export holds). Day-first versus month-first is
decided over the whole file: a first field > 12 means day-first, a second field > 12 month-first;
when no field settles it, the order that keeps the messages chronological wins, and a tie falls
back to day-first (most WhatsApp locales write the day first).
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Callable

DATE_ORDERS = ("auto", "dayfirst", "monthfirst")
DEFAULT_AMBIGUOUS_ORDER = "dayfirst"
# Zip members bigger than this (uncompressed) are refused: a zip bomb must not eat the memory.
DEFAULT_MAX_ZIP_MEMBER_BYTES = 200 * 1024 * 1024
MAX_AUTHOR_CHARS = 80

# Bidirectional marks WhatsApp sprinkles around names, times and system lines.
_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_STRIP_BIDI = str.maketrans("", "", _BIDI)
_HEADER = re.compile(
    r"^(?P<open>\[)?"
    r"(?P<d1>\d{1,4})[./-](?P<d2>\d{1,2})[./-](?P<d3>\d{1,4})\.?,?\s"
    r"(?P<hour>\d{1,2})[:.](?P<minute>\d{2})(?:[:.](?P<second>\d{2}))?"
    r"(?:\s?(?P<ampm>[ap])\.?\s?m\.?)?"
    r"(?(open)\]\s?|\s[-\u2013]\s)"
    r"(?P<rest>.*)$",
    re.IGNORECASE,
)

# Lines that are events, not somebody speaking (checked on the author part or the whole line).
_SYSTEM_PHRASES = re.compile(
    r"end-to-end encrypted|security code|changed the subject|changed this group|changed the group"
    r"|created group|created this group| added | added$|^added | left$| removed |joined using"
    r"|changed their phone number|changed to \+|now an admin|no longer an admin|disappearing messages"
    r"|deleted this group|pinned a message|started a call|was added|were added|changed the settings"
    r"|criptografia de ponta|cifrado de extremo|ende-zu-ende",
    re.IGNORECASE,
)
_DELETED = {
    "this message was deleted", "you deleted this message", "message deleted", "null",
    "esta mensagem foi apagada", "mensagem apagada", "você apagou esta mensagem",
    "se eliminó este mensaje", "eliminaste este mensaje", "diese nachricht wurde gelöscht",
    "du hast diese nachricht gelöscht", "ce message a été supprimé", "vous avez supprimé ce message",
    "missed voice call", "missed video call", "waiting for this message. this may take a while.",
}
_DELETED_FOLDED = {d.rstrip(".") for d in _DELETED}
_EDITED_SUFFIX = re.compile(r"\s*<(?:this message was edited|mensagem editada|se editó este mensaje|"
                            r"bearbeitet|message modifié)>\s*$", re.IGNORECASE)

# Media placeholders: "<Media omitted>", "image omitted", "<attached: x.jpg>", "x.jpg (file attached)".
_MEDIA_OMITTED_ANDROID = re.compile(
    r"^<(?:media omitted|multimedia omitido|m[ií]dia oculta|medien ausgeschlossen|m[ée]dias? omis"
    r"|media weggelaten|media omessi|medya dahil edilmedi)>$",
    re.IGNORECASE,
)
_MEDIA_OMITTED_IOS = re.compile(
    r"^(?P<kind>image|video|audio|sticker|gif|document|contact card|imagen|imagem|v[ií]deo|bild"
    r"|documento|dokument|figurinha|sticker)\s+(?:omitted|omitida|omitido|ocultad[oa]|weggelassen|omis)$",
    re.IGNORECASE,
)
_ATTACHED_IOS = re.compile(r"<attached: (?P<file>[^<>]+)>", re.IGNORECASE)
_ATTACHED_ANDROID = re.compile(
    r"^(?P<file>\S[^\n]*?\.\w{2,5}) \((?:file attached|archivo adjunto|arquivo anexado|datei angehängt"
    r"|fichier joint|bestand bijgevoegd|file allegato)\)",
    re.IGNORECASE,
)
_KIND_WORDS = {
    "image": "photo", "imagen": "photo", "imagem": "photo", "bild": "photo", "video": "video",
    "vídeo": "video", "vídeo": "video", "audio": "audio", "sticker": "sticker", "figurinha": "sticker",
    "gif": "gif", "document": "document", "documento": "document", "dokument": "document",
    "contact card": "contact",
}
_KIND_BY_EXTENSION = {
    "jpg": "photo", "jpeg": "photo", "png": "photo", "heic": "photo", "gif": "gif", "webp": "sticker",
    "mp4": "video", "mov": "video", "3gp": "video", "opus": "audio", "ogg": "audio", "m4a": "audio",
    "mp3": "audio", "aac": "audio", "amr": "audio", "vcf": "contact",
}
_KIND_BY_IOS_NAME = {"PHOTO": "photo", "VIDEO": "video", "AUDIO": "audio", "STICKER": "sticker", "GIF": "gif"}


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
    return _KIND_BY_EXTENSION.get(extension, "document" if extension else "file")


def render_media(kind: str, caption: str | None) -> str:
    """`[photo] caption`, or `[photo]` alone: the file path is never part of the text."""
    caption = (caption or "").strip()
    return f"[{kind}] {caption}" if caption else f"[{kind}]"


def clean_body(body: str) -> str | None:
    """Turn a message body into the text to embed; None for deleted messages and system rows."""
    system_hint = body[:1] in _BIDI  # iOS starts system rows (and media placeholders) with U+200E
    body = _EDITED_SUFFIX.sub("", body.translate(_STRIP_BIDI)).strip()
    first, _, after = body.partition("\n")
    first = first.strip()
    if _MEDIA_OMITTED_ANDROID.match(first):
        return render_media("media", after)
    omitted = _MEDIA_OMITTED_IOS.match(first)
    if omitted:
        return render_media(_KIND_WORDS.get(omitted["kind"].lower(), "media"), after)
    attached = _ATTACHED_IOS.search(body)
    if attached:
        caption = (body[: attached.start()] + " " + body[attached.end():]).strip()
        return render_media(media_kind_of_file(attached["file"]), caption)
    attached = _ATTACHED_ANDROID.match(first)
    if attached:
        caption = (first[attached.end():] + "\n" + after).strip()
        return render_media(media_kind_of_file(attached["file"]), caption)
    if not body or body.rstrip(".").casefold() in _DELETED_FOLDED:
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
    if header["ampm"]:
        if hour > 12:
            return None
        hour = hour % 12 + (12 if header["ampm"].lower() == "p" else 0)
    try:
        return datetime(year, month, day, hour, int(header["minute"]), int(header["second"] or 0))
    except ValueError:
        return None


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


def _split_author(rest: str) -> tuple[str | None, str]:
    """("Maria", "body") for an authored line, (None, line) for a system line."""
    cut = rest.find(": ")
    if cut < 0 and rest.endswith(":"):
        cut = len(rest) - 1
    if cut <= 0:
        return None, rest
    author = rest[:cut].translate(_STRIP_BIDI).strip()
    if not author or len(author) > MAX_AUTHOR_CHARS or _SYSTEM_PHRASES.search(author):
        return None, rest
    return author, rest[cut + 2:] if cut + 1 < len(rest) else ""


def parse_txt_export(text: str, date_order: str = "auto",
                     on_problem: Callable[[str], None] | None = None) -> list[Message]:
    """Messages of one exported chat, in file order; system rows and deleted messages dropped.

    Continuation lines (and blank lines) belong to the message above. Lines whose date cannot
    exist are dropped with one problem report; `on_problem` receives one-line descriptions.
    """
    if date_order not in DATE_ORDERS:
        raise ValueError(f"date order {date_order!r} is not one of {', '.join(DATE_ORDERS)}")
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u202f", " ").replace("\u00a0", " ")
    entries: list[tuple[re.Match, list[str], int]] = []  # header, body lines, line number
    for number, line in enumerate(text.split("\n"), start=1):
        header = _HEADER.match(line.lstrip(_BIDI)) if line[:1].isdigit() or line[:1] in _BIDI + "[" else None
        if header:
            entries.append((header, [header["rest"]], number))
        elif entries:
            entries[-1][1].append(line)
    dayfirst, problem = decide_date_order([e[0] for e in entries], date_order)
    if problem and on_problem:
        on_problem(problem)
    messages: list[Message] = []
    bad_lines: list[int] = []
    for header, lines, number in entries:
        when = _parse_time(header, dayfirst)
        if when is None:
            bad_lines.append(number)
            continue
        author, first = _split_author(lines[0])
        if author is None:
            continue
        body = clean_body("\n".join([first, *lines[1:]]).rstrip())
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
    """Exports are UTF-8 (sometimes with a BOM); UTF-16 appears when a file went through Windows."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


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
