"""Writers for the WhatsApp inputs the tests need: exporter JSON, in-app .txt/.zip, contacts CSV."""
from __future__ import annotations

import csv
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path


def epoch(text: str) -> float:
    """"2021-06-26 10:15" (UTC) -> epoch seconds."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc).timestamp()


def json_message(when: str, data: str | None = None, *, from_me: bool = False, sender: str | None = None,
                 key_id: str | None = None, **extra) -> dict:
    """One message as WhatsApp-Chat-Exporter writes it (`when` is UTC)."""
    message = {
        "from_me": from_me, "timestamp": epoch(when), "time": when[-5:], "media": False,
        "key_id": key_id or f"K{abs(hash((when, data, sender))) % 10**12:012d}", "meta": False,
        "data": data, "sender": sender, "safe": False, "mime": None, "reply": None,
        "quoted_data": None, "caption": None, "thumb": None, "sticker": False,
        "message_type": 0, "received_timestamp": None, "read_timestamp": None,
    }
    message.update(extra)
    return message


def json_chat(name: str | None, messages: list[dict], device: str = "android") -> dict:
    """One chat entry: {name, type, messages: {row id: message}}."""
    return {"name": name, "type": device, "my_avatar": None, "their_avatar": None,
            "their_avatar_thumb": None, "status": None, "media_base": "",
            "messages": {str(1000 + i): m for i, m in enumerate(messages)}}


def write_json(path: Path, chats: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chats, ensure_ascii=False), encoding="utf-8")
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_zip(path: Path, members: dict[str, str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


LEGACY_FIELDS = ["Name", "Given Name", "Additional Name", "Family Name", "Nickname", "Group Membership",
                 "Phone 1 - Type", "Phone 1 - Value", "Phone 2 - Type", "Phone 2 - Value"]
CURRENT_FIELDS = ["First Name", "Middle Name", "Last Name", "Nickname", "Organization Name", "Labels",
                  "Phone 1 - Label", "Phone 1 - Value", "Phone 2 - Label", "Phone 2 - Value",
                  "Phone 3 - Label", "Phone 3 - Value"]


def write_contacts(path: Path, fields: list[str], rows: list[dict], bom: bool = True) -> Path:
    """A Google Contacts CSV with the given header (missing cells empty), BOM as Google writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({f: row.get(f, "") for f in fields})
    return path
