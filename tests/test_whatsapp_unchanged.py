"""Unchanged WhatsApp exports are not parsed again: the documents of the last complete read are
yielded from a record in the data folder, checked by size + mtime + content hash."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import whatsapp_chats
import whatsapp_to_embeddings as wa
from whatsapp_export_builder import json_chat, json_message, write_json
from whatsapp_txt_export import chat_name_from_file


def count_words(text: str) -> int:
    return len(text.split())


class CountingParses:
    """Counts the full parses of the exports (whatsapp_chats.iter_chats calls)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = whatsapp_chats.iter_chats

        def counting(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(whatsapp_chats, "iter_chats", counting)


def write_exports(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "WhatsApp Chat with Maria.txt").write_text(
        "26/06/2021, 10:15 - Maria: Are we still on for the cinema?\n"
        "26/06/2021, 10:17 - Rui: Yes, at eight\n", encoding="utf-8")
    write_json(folder / "result.json", {
        "351912345678@s.whatsapp.net": json_chat("Ana", [json_message("2022-03-04 18:00", "Dinner on Friday?"),
                                                         json_message("2022-03-04 18:05", "Yes!", from_me=True)])})
    return folder


def read(folder: Path, cache: Path, max_tokens: int = 200) -> list:
    return list(wa.iter_documents(folder, count_words, max_tokens, cache_dir=cache))


def identity(documents) -> list:
    return [(d.doc_id, d.fingerprint, d.paths) for d in documents]


def age(path: Path, seconds: int = 60) -> None:
    """Move the file's mtime into the past (a file just written is hashed again on every run)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 10**9))


def test_an_unchanged_export_is_not_parsed_again(tmp_path, monkeypatch):
    folder = write_exports(tmp_path / "wa")
    for file in folder.iterdir():
        age(file)
    parses = CountingParses(monkeypatch)
    first = read(folder, tmp_path / "cache")
    assert parses.calls == 1 and len(first) == 2
    again = read(folder, tmp_path / "cache")
    assert parses.calls == 1  # nothing parsed
    assert identity(again) == identity(first)
    # A document that must be chunked (after --forget, into a fresh index) parses then, once.
    assert [c.text for c in again[0].make_chunks()] == [c.text for c in first[0].make_chunks()]
    again[1].make_chunks()
    assert parses.calls == 2


def test_a_touched_export_is_hashed_and_a_changed_one_parsed(tmp_path, monkeypatch):
    folder = write_exports(tmp_path / "wa")
    chat = folder / "WhatsApp Chat with Maria.txt"
    for file in folder.iterdir():
        age(file, 120)
    parses = CountingParses(monkeypatch)
    first = read(folder, tmp_path / "cache")
    age(chat, 60)  # copied again from the phone: same bytes, another mtime
    assert identity(read(folder, tmp_path / "cache")) == identity(first) and parses.calls == 1
    chat.write_text(chat.read_text(encoding="utf-8") + "26/06/2021, 10:20 - Maria: See you there\n",
                    encoding="utf-8")
    changed = read(folder, tmp_path / "cache")
    assert parses.calls == 2
    before, after = {d.doc_id: d.fingerprint for d in first}, {d.doc_id: d.fingerprint for d in changed}
    assert after["whatsapp:351912345678@s.whatsapp.net"] == before["whatsapp:351912345678@s.whatsapp.net"]
    assert after["whatsapp:maria"] != before["whatsapp:maria"]
    maria = next(d for d in changed if d.doc_id == "whatsapp:maria")
    assert "See you there" in maria.make_chunks()[-1].text


@pytest.mark.parametrize("change", ["budget", "contacts", "new file"])
def test_settings_contacts_and_new_files_are_part_of_the_record(tmp_path, monkeypatch, change):
    folder = write_exports(tmp_path / "wa")
    for file in folder.iterdir():
        age(file)
    parses = CountingParses(monkeypatch)
    read(folder, tmp_path / "cache")
    budget = 200
    if change == "budget":
        budget = 100
    elif change == "contacts":
        (folder / "contacts.csv").write_text("Name,Phone 1 - Value\nAna Costa,+351 912 345 678\n")
    else:
        (folder / "WhatsApp Chat with Rui.txt").write_text("01/07/2021, 09:00 - Rui: Bom dia\n", encoding="utf-8")
    documents = read(folder, tmp_path / "cache", budget)
    assert parses.calls == 2
    if change == "new file":
        assert "whatsapp:rui" in {d.doc_id for d in documents}


def test_a_read_with_an_unreadable_file_is_not_recorded(tmp_path, monkeypatch):
    folder = write_exports(tmp_path / "wa")
    (folder / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    for file in folder.iterdir():
        age(file)
    parses = CountingParses(monkeypatch)
    warnings: list[str] = []
    for _ in range(2):
        documents = list(wa.iter_documents(folder, count_words, 200, warn=warnings.append,
                                           cache_dir=tmp_path / "cache"))
        assert any(d.unreadable for d in documents)
    assert parses.calls == 2  # read again: the file may be whole next time


def test_chats_stream_one_at_a_time_and_read_as_the_whole_history_merges(tmp_path, monkeypatch):
    folder = write_exports(tmp_path / "wa")
    # Ana's .txt joins her JSON chat; Rui's two exports (overlapping) are one chat read on its own.
    (folder / "WhatsApp Chat with Ana.txt").write_text("04/03/2022, 19:00 - Ana: Dinner on Friday?\n"
                                                       "04/03/2022, 19:07 - Ana: At nine\n", encoding="utf-8")
    (folder / "old").mkdir()
    for where in (folder, folder / "old"):
        (where / "WhatsApp Chat with Rui.txt").write_text(
            "01/07/2021, 09:00 - Rui: Bom dia\n" + ("01/07/2021, 09:05 - Rui: Tudo bem?\n" if where == folder else ""),
            encoding="utf-8")
    streamed = [(c.key, c.name, len(c.messages), tuple(c.paths)) for c in whatsapp_chats.iter_chats(folder)]
    # The reference: every file read first, then merged at once (how load_chats worked before).
    book = whatsapp_chats.ContactBook()
    json_chats = whatsapp_chats.load_exporter_json(folder / "result.json", book)
    txt = [whatsapp_chats.load_txt_chat(f.read_text(encoding="utf-8"), str(f),
                                        chat_name_from_file(f.name, f.parent.name), book)
           for f in sorted(folder.rglob("*.txt"))]
    merged = [(c.key, c.name, len(c.messages), tuple(c.paths)) for c in whatsapp_chats.merge_chats(json_chats, txt)]
    assert sorted(streamed) == sorted(merged)
    assert {key for key, *_ in streamed} == {"351912345678@s.whatsapp.net", "maria", "rui"}
    # Rui's chat is parsed only when its turn comes, after the JSON's chats were handed out.
    parsed: list[str] = []
    real = whatsapp_chats._read_txt_file
    monkeypatch.setattr(whatsapp_chats, "_read_txt_file", lambda file, *a: parsed.append(file.name) or real(file, *a))
    chats = whatsapp_chats.iter_chats(folder)
    next(chats)
    assert "WhatsApp Chat with Rui.txt" not in parsed and "WhatsApp Chat with Ana.txt" in parsed
    list(chats)
    assert parsed.count("WhatsApp Chat with Rui.txt") == 2


def test_a_recorded_chat_is_cut_into_the_same_units_as_a_parsed_one(tmp_path):
    # A sitting longer than one search unit: the record's chunks (after --forget, into a fresh
    # index) must be the parsed run's small units, not chunks filling the whole budget.
    folder = tmp_path / "wa"
    folder.mkdir()
    lines = [f"26/06/2021, 10:{minute:02d} - {'Maria' if minute % 2 else 'Rui'}: message {minute}\n"
             for minute in range(wa.CHAT_UNIT_MESSAGES * 2 + 1)]
    (folder / "WhatsApp Chat with Maria.txt").write_text("".join(lines), encoding="utf-8")
    age(folder / "WhatsApp Chat with Maria.txt")
    [first] = read(folder, tmp_path / "cache")
    [again] = read(folder, tmp_path / "cache")
    parsed = [c.text for c in first.make_chunks()]
    assert len(parsed) == 3
    assert [c.text for c in again.make_chunks()] == parsed
