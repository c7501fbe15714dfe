"""WhatsApp export files -> one merged Chat per conversation (no chunking: whatsapp_to_embeddings).

Inputs under the WhatsApp folder (or one file): WhatsApp-Chat-Exporter `result.json` and its
per-chat JSON files, the app's own "Export chat" `.txt`/`.zip` files (see whatsapp_txt_export),
and optionally Google Contacts' `contacts.csv` to put names on numbers.

Merging: every file that holds a chat is merged into one message list before chunking.
- JSON with JSON (same jid): a message is the same when its `key_id` (else its JSON key) was
  seen, or when its (UTC minute, normalised text) occurs more often than in what was merged.
- .txt with .txt (same chat name): (local minute, normalised text), counted as a multiset, so
  two real "ok"s in one minute survive while an overlapping second export adds nothing.
- .txt with JSON: the chat is matched by name (or phone number). The .txt clock is naive local
  time, so the UTC offset is learnt from messages whose text appears in both (the most common
  difference, DST's second offset included); .txt messages found in the JSON at such an offset
  are dropped, the rest are placed on the UTC timeline with that offset (the machine's own time
  zone when nothing overlaps).
Times: JSON messages are aware UTC, .txt-only chats naive local wall-clock.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import chunking
import settings
from whatsapp_txt_export import (
    DATE_ORDERS, Message, chat_name_from_file, clean_body, decode_export, parse_txt_export,
    read_zip_chat, render_media,
)

UNKNOWN_SENDER = "Unknown"
CALLS_CHAT_IDS = {"000000000000000"}
CALLS_CHAT_NAMES = {"whatsapp calls"}
# Two numbers are the same person when their last digits agree on at least this many digits.
MIN_NATIONAL_DIGITS = 7
# UTC offsets considered when lining a .txt clock up with the JSON's UTC (minutes).
MAX_OFFSET_MINUTES = 14 * 60

__all__ = ["Chat", "ContactBook", "load_contacts", "load_exporter_json", "load_txt_chat", "merge_chats",
           "iter_chats", "load_chats"]


# --- contacts ---------------------------------------------------------------------------------

def normalise_number(raw: str) -> tuple[str, bool]:
    """("5511999998888", True) for "+55 11 99999-8888" or "0055..."; (digits, False) if national."""
    raw = raw.strip()
    digits = re.sub(r"\D", "", raw)
    if raw.startswith("+"):
        return digits, True
    if digits.startswith("00"):
        return digits[2:], True
    return digits, False


@dataclass
class ContactBook:
    """Phone number -> name, matching on the national significant number when the country code
    is missing or differs: "011 99999-8888" names 5511999998888, "+55 11 99999-8888" names it too."""

    by_full: dict[str, str] = field(default_factory=dict)
    by_tail: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, raw_number: str, name: str) -> None:
        """Index one number of a contact."""
        digits, international = normalise_number(raw_number)
        national = digits.lstrip("0")
        if len(national) < MIN_NATIONAL_DIGITS:
            return
        if international:
            self.by_full.setdefault(digits, name)
        self.by_tail[national[-MIN_NATIONAL_DIGITS:]].append((national, name))

    def name_for(self, number: str | None) -> str | None:
        """The contact's name for a number (digits or formatted), or None."""
        if not number:
            return None
        digits = normalise_number(number)[0].lstrip("0")
        if len(digits) < MIN_NATIONAL_DIGITS:
            return None
        if digits in self.by_full:
            return self.by_full[digits]
        best: tuple[int, str] | None = None
        for national, name in self.by_tail.get(digits[-MIN_NATIONAL_DIGITS:], ()):
            # One side may carry a country code the other lacks: the shorter must end the longer.
            shorter, longer = sorted((national, digits), key=len)
            if longer.endswith(shorter) and (best is None or len(shorter) > best[0]):
                best = (len(shorter), name)
        return best[1] if best else None


def _contact_name(row: dict[str, str]) -> str | None:
    name = (row.get("Name") or "").strip()
    if not name:
        parts = [row.get(k, "").strip() for k in ("First Name", "Middle Name", "Last Name")]
        parts = parts if any(parts) else [row.get(k, "").strip() for k in ("Given Name", "Additional Name", "Family Name")]
        name = " ".join(p for p in parts if p)
    for fallback in ("Nickname", "File As", "Organization Name", "Organization 1 - Name"):
        name = name or (row.get(fallback) or "").strip()
    return name or None


def load_contacts(path: Path, warn: Callable[[str], None] = settings.warn) -> ContactBook:
    """Read a Google Contacts CSV (legacy "Google CSV" or current layout); problems -> warning."""
    book = ContactBook()
    try:
        text = decode_export(Path(path).read_bytes())
        reader = csv.DictReader(io.StringIO(text))
        fields = reader.fieldnames or []
        phone_fields = [f for f in fields if re.fullmatch(r"Phone \d+ - Value", f.strip())]
        if not phone_fields:
            warn(f"{path}: not a Google Contacts CSV (no 'Phone 1 - Value' column); numbers stay unnamed")
            return book
        for row in reader:
            name = _contact_name(row)
            if not name:
                continue
            for column in phone_fields:
                for number in (row.get(column) or "").split(":::"):
                    if number.strip():
                        book.add(number, name)
    except (OSError, csv.Error, UnicodeError) as err:
        warn(f"{path}: contacts could not be read ({err.__class__.__name__}: {err}); numbers stay unnamed")
    return book


# --- chats ------------------------------------------------------------------------------------

@dataclass
class Chat:
    """One conversation from one or more files; `key` is the jid when known, else the name."""

    key: str
    name: str
    is_group: bool
    messages: list[Message]
    paths: list[str]
    jid: str | None = None


def normalise_name(name: str) -> str:
    """Case-, accent- and spacing-insensitive form of a chat name, for matching files."""
    return " ".join(chunking.fold_text(name).split())


@functools.lru_cache(maxsize=65536)
def _normalise_text(text: str) -> str:
    # "[photo] x" in the JSON is "[media] x" in an Android export without media.
    folded = " ".join(text.casefold().split())
    return "[media]" + folded[folded.index("]") + 1:] if _MEDIA_TAG.match(folded) else folded


_MEDIA_TAG = re.compile(r"\[[a-z]+\]")


def _looks_like_number(text: str) -> bool:
    return bool(re.fullmatch(r"\+?[\d\s().\-]{7,}", text.strip()))


def _display_number(digits: str, contacts: ContactBook) -> str:
    return contacts.name_for(digits) or (f"+{digits}" if digits.isdigit() else digits)


def _json_timestamp(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    seconds = value / 1000 if value > 9_999_999_999 else value  # some versions keep milliseconds
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _media_kind(message: dict) -> str:
    if message.get("sticker"):
        return "sticker"
    mime = str(message.get("mime") or "").lower()
    for prefix, kind in (("image/webp", "sticker"), ("image/gif", "gif"), ("image/", "photo"),
                         ("video/", "video"), ("audio/", "audio"), ("text/x-vcard", "contact"),
                         ("application/", "document")):
        if mime.startswith(prefix):
            return kind
    return "media"


def _json_text(message: dict) -> str | None:
    def unbreak(value: object) -> str:
        return re.sub(r" ?<br ?/?>", "\n", str(value or ""))

    if message.get("meta"):
        return None
    if message.get("media") or message.get("sticker"):
        return render_media(_media_kind(message), unbreak(message.get("caption")))
    if not isinstance(message.get("data"), str):
        return None
    return clean_body(unbreak(message["data"]))


def _is_chat_shape(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("messages"), dict)


def load_exporter_json(path: Path, contacts: ContactBook, warn: Callable[[str], None] = settings.warn,
                       failed: list[str] | None = None) -> list[Chat]:
    """Chats of a WhatsApp-Chat-Exporter JSON (`result.json` or a per-chat file); bad file ->
    warning, and its path appended to `failed`."""
    try:
        data = json.loads(decode_export(Path(path).read_bytes()))
    except (OSError, ValueError) as err:
        warn(f"{path}: not readable JSON ({err.__class__.__name__}: {err}); file skipped")
        if failed is not None:
            failed.append(str(path))
        return []
    if not isinstance(data, dict) or not data or not all(_is_chat_shape(v) for v in data.values()):
        if isinstance(data, dict) and any(_is_chat_shape(v) for v in data.values()):
            data = {k: v for k, v in data.items() if _is_chat_shape(v)}
        else:
            warn(f"{path}: not a WhatsApp-Chat-Exporter JSON (expected {{jid: {{name, messages}}}}); file skipped")
            return []
    chats: list[Chat] = []
    bad_times = 0
    for jid, raw in data.items():
        name = raw.get("name") if isinstance(raw.get("name"), str) else None
        if jid.endswith("@broadcast") or jid in CALLS_CHAT_IDS or (name or "").casefold() in CALLS_CHAT_NAMES:
            continue
        is_group = jid.endswith("@g.us")
        number = jid.split("@", 1)[0]
        if not name or _looks_like_number(name):
            name = (contacts.name_for(name) if name else None) or (
                name if is_group and name else _display_number(number, contacts))
        messages: list[Message] = []
        for key, msg in raw["messages"].items():
            if not isinstance(msg, dict):
                continue
            text = _json_text(msg)
            if not text:
                continue
            when = _json_timestamp(msg.get("timestamp"))
            if when is None:
                bad_times += 1
                continue
            from_me = bool(msg.get("from_me"))
            sender = msg.get("sender") if isinstance(msg.get("sender"), str) else None
            if from_me:
                author = None
            elif is_group:
                author = _display_number(sender, contacts) if sender and _looks_like_number(sender) else sender
                author = author or UNKNOWN_SENDER
            else:
                author = name
            # key_id is WhatsApp's own message id; the JSON key is only a row number of one phone.
            msg_id = str(msg["key_id"]) if msg.get("key_id") else f"row:{jid}:{key}"
            messages.append(Message(time=when, author=author, text=text, from_me=from_me, msg_id=msg_id,
                                    sender_number=re.sub(r"\D", "", sender or "") or None))
        if messages:
            messages.sort(key=lambda m: m.time)
            chats.append(Chat(key=jid, name=name, is_group=is_group, messages=messages,
                              paths=[str(path)], jid=jid))
    if bad_times:
        warn(f"{path}: {bad_times} message(s) without a valid timestamp skipped")
    return chats


def load_txt_chat(text: str, source: str, chat_name: str | None, contacts: ContactBook,
                  date_order: str = "auto", warn: Callable[[str], None] = settings.warn) -> Chat | None:
    """One chat from the text of an in-app export; not an export -> warning and None."""
    problems: list[str] = []
    messages = parse_txt_export(text, date_order, on_problem=problems.append, chat_name=chat_name)
    for problem in problems:
        warn(f"{source}: {problem}" + ("; file skipped" if not messages else ""))
    if not messages:
        if not problems:  # a layout problem already named the file and a sample line
            warn(f"{source}: no WhatsApp messages found (not an in-app 'Export chat' file?); file skipped")
        return None
    for message in messages:
        if message.author and _looks_like_number(message.author):
            message.sender_number = re.sub(r"\D", "", message.author)
            message.author = contacts.name_for(message.author) or message.author
    authors = {m.author for m in messages}
    if chat_name and _looks_like_number(chat_name):
        chat_name = contacts.name_for(chat_name) or chat_name
    if not chat_name:
        # iOS `_chat.txt` with no telling folder name: the speakers are all there is.
        chat_name = " & ".join(sorted(a for a in authors if a)[:3])
    is_group = len(authors) > 2 or chat_name not in authors
    if not is_group and len(authors) == 2:
        # A 1:1 export holds the partner (named in the file name) and the owner; the owner's
        # name stays on the message for the chunk's header and lines (owner_name).
        for message in messages:
            if message.author != chat_name:
                message.from_me = True
    return Chat(key=normalise_name(chat_name), name=chat_name, is_group=is_group, messages=messages,
                paths=[source])


def _merge_into(merged: list[Message], incoming: list[Message], key: Callable[[Message], tuple]) -> None:
    """Append the messages of `incoming` that `merged` lacks, keys counted as a multiset."""
    have = Counter(key(m) for m in merged)
    seen_ids = {m.msg_id for m in merged if m.msg_id and not m.msg_id.startswith("row:")}
    count: Counter = Counter()
    for message in incoming:
        k = key(message)
        count[k] += 1
        if message.msg_id and message.msg_id in seen_ids:
            continue
        if count[k] > have[k]:
            merged.append(message)
            have[k] = count[k]


def _minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def _learn_offsets(txt: list[Message], json_messages: list[Message]) -> list[timedelta]:
    """UTC offsets (local minus UTC) at which .txt messages reappear in the JSON, commonest first."""
    by_text: dict[str, list[datetime]] = defaultdict(list)
    for m in json_messages:
        by_text[_normalise_text(m.text)].append(_minute(m.time).replace(tzinfo=None))
    txt_texts = Counter(_normalise_text(m.text) for m in txt)
    votes: Counter = Counter()
    for m in txt:
        text = _normalise_text(m.text)
        candidates = by_text.get(text, ())
        if not candidates or len(candidates) > 3 or txt_texts[text] > 3:
            continue  # "ok" said fifty times says nothing about the clock
        for utc in candidates:
            minutes = (_minute(m.time) - utc).total_seconds() / 60
            if abs(minutes) <= MAX_OFFSET_MINUTES and minutes % 15 == 0:
                votes[timedelta(minutes=minutes)] += 1
    if not votes:
        return []
    top = votes.most_common(1)[0][1]
    return [offset for offset, n in votes.most_common() if n >= max(1, top * 0.2)]


def _attach_txt(chat: Chat, txt: Chat) -> None:
    """Merge a .txt chat (naive local times) into a JSON chat (aware UTC)."""
    offsets = _learn_offsets(txt.messages, chat.messages)
    have = Counter((_minute(m.time), _normalise_text(m.text)) for m in chat.messages)
    for message in txt.messages:
        text = _normalise_text(message.text)
        duplicate = False
        for offset in offsets:
            k = ((_minute(message.time) - offset).replace(tzinfo=timezone.utc), text)
            if have[k] > 0:
                have[k] -= 1
                duplicate = True
                break
        if duplicate:
            continue
        if offsets:
            when = (message.time - offsets[0]).replace(tzinfo=timezone.utc)
        else:
            when = message.time.astimezone(timezone.utc)  # naive -> the machine's local zone
        chat.messages.append(Message(time=when, author=message.author, text=message.text,
                                     from_me=message.from_me, msg_id=message.msg_id,
                                     sender_number=message.sender_number))
    chat.paths.extend(txt.paths)


def merge_chats(json_chats: list[Chat], txt_chats: list[Chat]) -> list[Chat]:
    """One Chat per conversation, duplicates across overlapping exports removed (see module doc)."""
    by_jid: dict[str, Chat] = {}
    for chat in json_chats:
        if chat.key in by_jid:
            target = by_jid[chat.key]
            _merge_into(target.messages, chat.messages, lambda m: (_minute(m.time), _normalise_text(m.text)))
            target.paths.extend(p for p in chat.paths if p not in target.paths)
            target.name = chat.name or target.name
        else:
            by_jid[chat.key] = Chat(chat.key, chat.name, chat.is_group, list(chat.messages), list(chat.paths), chat.jid)
    by_name: dict[str, Chat] = {}
    for chat in txt_chats:
        if chat.key in by_name:
            target = by_name[chat.key]
            _merge_into(target.messages, chat.messages, lambda m: (_minute(m.time), _normalise_text(m.text)))
            target.paths.extend(chat.paths)
            target.is_group = target.is_group or chat.is_group
        else:
            by_name[chat.key] = Chat(chat.key, chat.name, chat.is_group, list(chat.messages), list(chat.paths))
    json_by_name: dict[str, list[Chat]] = defaultdict(list)
    for chat in by_jid.values():
        json_by_name[normalise_name(chat.name)].append(chat)
        json_by_name[chat.key.split("@", 1)[0]].append(chat)
    result = list(by_jid.values())
    for key, txt in by_name.items():
        digits = re.sub(r"\D", "", txt.name) if _looks_like_number(txt.name) else ""
        candidates = json_by_name.get(key) or (json_by_name.get(digits) if digits else None)
        if candidates:
            # Same name twice among the JSON chats: the one sharing most texts is this chat.
            texts = {_normalise_text(m.text) for m in txt.messages}
            best = max(candidates, key=lambda c: sum(_normalise_text(m.text) in texts for m in c.messages))
            _attach_txt(best, txt)
        else:
            result.append(txt)
    for chat in result:
        chat.messages.sort(key=lambda m: m.time)
        _assign_txt_ids(chat)
    return sorted(result, key=lambda c: c.key)


def _assign_txt_ids(chat: Chat) -> None:
    # .txt messages carry no id: a hash of what they are (and which repeat) stands in.
    seen: Counter = Counter()
    for message in chat.messages:
        if message.msg_id is None:
            author = None if message.from_me else message.author  # ids as before owner names were kept
            basis = f"{chat.key}\x1f{message.time.isoformat()}\x1f{author}\x1f{message.text}"
            seen[basis] += 1
            message.msg_id = "txt:" + hashlib.sha1(f"{basis}\x1f{seen[basis]}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


# --- files ------------------------------------------------------------------------------------

def find_files(path: Path) -> list[Path]:
    """The export files (.json, .txt, .zip) under `path` in sorted order, dot-folders skipped;
    `path` itself when it is a file."""
    if path.is_file():
        return [path]
    found = [p for p in path.rglob("*") if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(path).parts)
             and p.suffix.lower() in (".json", ".txt", ".zip")]
    return sorted(found)


def default_contacts(path: Path) -> Path | None:
    """The `contacts.csv` found beside the exports (anywhere under a folder), else None."""
    folder = path if path.is_dir() else path.parent
    candidates = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower() == "contacts.csv") if path.is_dir() \
        else [p for p in folder.iterdir() if p.name.lower() == "contacts.csv"]
    return candidates[0] if candidates else None


def check_inputs(path: Path, date_order: str) -> None:
    """UserError for a path that does not exist or a date order that is not one of DATE_ORDERS."""
    if not path.exists():
        raise settings.UserError(f"WhatsApp path {path} does not exist; set WHATSAPP_WORKING_PATH or --whatsapp")
    if date_order not in DATE_ORDERS:
        raise settings.UserError(f"WHATSAPP_DATE_ORDER={date_order!r} is not one of {', '.join(DATE_ORDERS)}")


def _file_chat_name(file: Path, book: ContactBook) -> str | None:
    """The chat name an in-app export's file name gives, settled as load_txt_chat settles it
    (a number named by the contacts); None when only its speakers can tell (iOS `_chat.txt`)."""
    folder = None if file.suffix.lower() == ".zip" else file.parent.name
    name = chat_name_from_file(file.name, folder) if folder is not None else chat_name_from_file(file.name)
    if name and _looks_like_number(name):
        name = book.name_for(name) or name
    return name


def _read_txt_file(file: Path, book: ContactBook, date_order: str, warn: Callable[[str], None],
                   failed: list[str]) -> Chat | None:
    """One in-app export (.txt or .zip) as a Chat; unreadable -> warning, path in `failed`."""
    if file.suffix.lower() == ".zip":
        text, problem = read_zip_chat(file)
        if problem:
            warn(f"{file}: {problem}; file skipped")
            failed.append(str(file))
            return None
        return load_txt_chat(text, str(file), chat_name_from_file(file.name), book, date_order, warn)
    try:
        text = decode_export(file.read_bytes())
    except OSError as err:
        warn(f"{file}: not readable ({err.__class__.__name__}); file skipped")
        failed.append(str(file))
        return None
    return load_txt_chat(text, str(file), chat_name_from_file(file.name, file.parent.name), book, date_order, warn)


def iter_chats(path: Path, contacts: Path | None = None, date_order: str = "auto",
               warn: Callable[[str], None] = settings.warn, failed: list[str] | None = None) -> Iterator[Chat]:
    """The chats of `load_chats`, one at a time: in-app exports are grouped by the chat their
    file name gives and parsed a group at a time, so memory holds the exporter JSON's chats and
    one other chat, not the whole history. Exports that may join a JSON chat (same name or
    number) or whose name only their speakers tell are read first, with the JSON. A file that
    cannot be read is in `failed` before the chat it belonged to is yielded."""
    failed = [] if failed is None else failed
    path = Path(path).expanduser()
    check_inputs(path, date_order)
    contacts_file = Path(contacts).expanduser() if contacts else default_contacts(path)
    book = load_contacts(contacts_file, warn) if contacts_file else ContactBook()
    files = find_files(path)
    if not files:
        warn(f"{path}: no WhatsApp exports found (.json from WhatsApp-Chat-Exporter, .txt or .zip from 'Export chat')")
        return
    json_chats: list[Chat] = []
    groups: dict[str, list[Path]] = defaultdict(list)  # chat key -> its in-app exports, in file order
    first_txt: list[Chat] = []
    digits_of: dict[str, str] = {}
    for file in files:
        if file.suffix.lower() == ".json":
            json_chats.extend(load_exporter_json(file, book, warn, failed))
            continue
        name = _file_chat_name(file, book)
        if name is None:
            chat = _read_txt_file(file, book, date_order, warn, failed)
            if chat:
                first_txt.append(chat)
            continue
        key = normalise_name(name)
        groups[key].append(file)
        digits_of[key] = re.sub(r"\D", "", name) if _looks_like_number(name) else ""
    joinable = {normalise_name(chat.name) for chat in json_chats} | {chat.key.split("@", 1)[0] for chat in json_chats}
    joinable |= {chat.key for chat in first_txt}
    later = []
    for key, group in groups.items():
        if key in joinable or (digits_of[key] and digits_of[key] in joinable):
            first_txt.extend(chat for chat in (_read_txt_file(f, book, date_order, warn, failed) for f in group) if chat)
        else:
            later.append(group)
    yield from merge_chats(json_chats, first_txt)
    del json_chats, first_txt
    for group in later:
        chats = [chat for chat in (_read_txt_file(f, book, date_order, warn, failed) for f in group) if chat]
        yield from merge_chats([], chats)


def load_chats(path: Path, contacts: Path | None = None, date_order: str = "auto",
               warn: Callable[[str], None] = settings.warn, failed: list[str] | None = None) -> list[Chat]:
    """Every chat under `path`, merged across files (see module doc); bad files -> warnings,
    and the paths of files that could not be read appended to `failed`."""
    return sorted(iter_chats(path, contacts, date_order, warn, failed), key=lambda chat: chat.key)
