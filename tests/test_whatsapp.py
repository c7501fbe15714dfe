"""WhatsApp ingestion on exports written by the tests (exporter JSON, Android/iOS .txt and .zip,
both Google Contacts layouts) and on real in-app exports from ../shared (chat-miner)."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import chunking
import whatsapp_chats
import whatsapp_to_embeddings as wa
from whatsapp_export_builder import (
    CURRENT_FIELDS, LEGACY_FIELDS, json_chat, json_message, write_contacts, write_json, write_text,
    write_zip,
)
from whatsapp_txt_export import parse_txt_export, read_zip_chat


@pytest.fixture(autouse=True)
def utc_machine(monkeypatch):
    """Lines show local time: pin the machine's zone so JSON times read the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def words(text: str) -> int:
    return len(text.split())


def documents(path, warnings=None, count_tokens=words, max_tokens=200, **kwargs):
    collected = warnings if warnings is not None else []
    return list(wa.iter_documents(Path(path), count_tokens, max_tokens, warn=collected.append, **kwargs))


def chunks_of(document) -> list[chunking.Chunk]:
    return document.make_chunks()


def message_lines(chunks) -> list[str]:
    return [line for c in chunks for line in c.text.split("\n")[1:]]


# --- .txt parsing -----------------------------------------------------------------------------

def test_chat_miner_exports_match_their_target(shared_fixtures):
    folder = shared_fixtures / "whatsapp-txt" / "chat-miner"
    target = json.loads((folder / "target.json").read_text(encoding="utf-8"))
    expected = sorted((t["timestamp"], t["author"], t["message"]) for t in target)
    files = sorted(folder.glob("*.txt"))
    assert len(files) == 5
    for file in files:
        problems = []
        messages = parse_txt_export(file.read_text(encoding="utf-8"), on_problem=problems.append)
        got = sorted((m.time.isoformat(), m.author, " ".join(m.text.split())) for m in messages)
        assert got == expected, file.name
        assert problems == [], file.name


ANDROID_DAYFIRST = """\
26/06/2021, 10:15 - Messages and calls are end-to-end encrypted. No one outside of this chat can read them.
26/06/2021, 10:15 - Maria Silva: Are we still on for Saturday?
26/06/2021, 10:17 - João: Yes: at the usual place
and bring the map

please
26/06/2021, 10:18 - Maria Silva: <Media omitted>
26/06/2021, 10:19 - Maria Silva: IMG-20210626-WA0001.jpg (file attached)
The view from here
26/06/2021, 10:20 - João: This message was deleted
26/06/2021, 10:21 - Maria Silva changed the subject from "a: b" to "c"
13/07/2021, 09:05 - João: see you <This message was edited>
"""


def test_android_export_lines_multiline_media_and_system_rows():
    messages = parse_txt_export(ANDROID_DAYFIRST)
    assert [(m.time, m.author, m.text) for m in messages] == [
        (datetime(2021, 6, 26, 10, 15), "Maria Silva", "Are we still on for Saturday?"),
        (datetime(2021, 6, 26, 10, 17), "João", "Yes: at the usual place\nand bring the map\n\nplease"),
        (datetime(2021, 6, 26, 10, 18), "Maria Silva", "[media]"),
        (datetime(2021, 6, 26, 10, 19), "Maria Silva", "[photo] The view from here"),
        (datetime(2021, 7, 13, 9, 5), "João", "see you"),
    ]
    assert all(m.time.tzinfo is None for m in messages)


IOS_EXPORT = (
    "[26/06/2021, 10:15:03] Trip group: \u200eMessages and calls are end-to-end encrypted.\n"
    "[26/06/2021, 10:15:40] Trip group: \u200eMaria created group “Trip group”\n"
    "\u200e[26/06/2021, 10:16:00] Maria Silva: \u200eimage omitted\n"
    "[26/06/2021, 10:16:30] Maria Silva: Beach day \u200e<attached: 00000012-PHOTO-2021-06-26-10-16-30.jpg>\n"
    "[26/06/2021, 10:17:05] \u202a+55 11 98765-4321\u202c: I'll bring drinks\n"
    "[26/06/2021, 10:18:00] João: \u200eaudio omitted\n"
    "[27/06/2021, 9:02:11\u202fPM] João: late one\n"
)


def test_ios_export_brackets_seconds_marks_and_attachments():
    messages = parse_txt_export(IOS_EXPORT)
    assert [(m.time, m.author, m.text) for m in messages] == [
        (datetime(2021, 6, 26, 10, 16), "Maria Silva", "[photo]"),
        (datetime(2021, 6, 26, 10, 16, 30), "Maria Silva", "[photo] Beach day"),
        (datetime(2021, 6, 26, 10, 17, 5), "+55 11 98765-4321", "I'll bring drinks"),
        (datetime(2021, 6, 26, 10, 18), "João", "[audio]"),
        (datetime(2021, 6, 27, 21, 2, 11), "João", "late one"),
    ]


@pytest.mark.parametrize("line, expected", [
    ("6/26/21, 10:15 PM - Ann: hi", datetime(2021, 6, 26, 22, 15)),
    ("6/26/21, 12:05 AM - Ann: hi", datetime(2021, 6, 26, 0, 5)),
    ("26/06/2021, 10:15 p. m. - Ann: hi", datetime(2021, 6, 26, 22, 15)),
    ("26/06/2021, 10:15\u00a0a.\u00a0m. - Ann: hi", datetime(2021, 6, 26, 10, 15)),
    ("26/06/2021, 12:15\u202fp.m. - Ann: hi", datetime(2021, 6, 26, 12, 15)),
    ("2021-06-26, 10:15 - Ann: hi", datetime(2021, 6, 26, 10, 15)),
    ("26.06.21, 10:15 - Ann: hi", datetime(2021, 6, 26, 10, 15)),
    ("[26.06.21, 10:15:09] Ann: hi", datetime(2021, 6, 26, 10, 15, 9)),
    ("\u200e[6/26/21, 10:15:09 AM] Ann: hi", datetime(2021, 6, 26, 10, 15, 9)),
])
def test_header_variants(line, expected):
    messages = parse_txt_export(line)
    assert [(m.time, m.author, m.text) for m in messages] == [(expected, "Ann", "hi")]


def test_date_order_is_decided_over_the_whole_file_and_can_be_forced():
    month_first = "01/02/21, 10:00 - Ann: a\n01/13/21, 10:00 - Ann: b\n"
    assert [m.time.date().isoformat() for m in parse_txt_export(month_first)] == ["2021-01-02", "2021-01-13"]
    day_first = "01/02/21, 10:00 - Ann: a\n13/02/21, 10:00 - Ann: b\n"
    assert [m.time.date().isoformat() for m in parse_txt_export(day_first)] == ["2021-02-01", "2021-02-13"]
    # Nothing over 12: the order that keeps the chat chronological wins (here month-first).
    chronological = "03/04/21, 10:00 - Ann: a\n03/05/21, 10:00 - Ann: b\n04/01/21, 10:00 - Ann: c\n"
    assert [m.time.month for m in parse_txt_export(chronological)] == [3, 3, 4]
    # A single ambiguous date: day-first.
    assert parse_txt_export("03/04/21, 10:00 - Ann: a")[0].time.month == 4
    forced = parse_txt_export("03/04/21, 10:00 - Ann: a", date_order="monthfirst")
    assert forced[0].time.month == 3


def test_impossible_dates_are_reported_and_dropped():
    problems = []
    text = "31/01/21, 10:00 - Ann: ok\n30/02/21, 10:00 - Ann: never\n01/03/21, 10:00 - Ann: fine\n"
    messages = parse_txt_export(text, on_problem=problems.append)
    assert [m.text for m in messages] == ["ok", "fine"]
    assert problems == ["1 line(s) with impossible dates skipped (first at line 2)"]


# --- JSON, contacts and chunks ----------------------------------------------------------------

def exporter_result(tmp_path: Path) -> Path:
    maria = "5511987654321@s.whatsapp.net"
    return write_json(tmp_path / "export" / "result.json", {
        maria: json_chat(None, [
            json_message("2021-06-26 10:15", "Are we still on for Saturday?"),
            json_message("2021-06-26 10:16", "Yes!<br>See you there", from_me=True),
            json_message("2021-06-26 10:17", "/sdcard/WhatsApp/Media/IMG-1.jpg", media=True,
                         mime="image/jpeg", caption="The view"),
            json_message("2021-06-26 10:18", "/sdcard/WhatsApp/Media/AUD-1.opus", media=True, mime="audio/ogg"),
            json_message("2021-06-26 10:19", "Message deleted", meta=True),
            json_message("2021-06-26 10:20", "You changed the group", meta=True),
        ]),
        "120363000000000001@g.us": json_chat("Family", [
            json_message("2021-06-27 08:00", "Morning all", sender="447700900123"),
            json_message("2021-06-27 08:01", "Hi!", sender="Uncle Bob"),
            json_message("2021-06-27 08:02", "hello", from_me=True),
            {**json_message("2021-06-27 08:03", "millis"), "timestamp": 1624780980000, "sender": "Uncle Bob"},
        ]),
        "status@broadcast": json_chat(None, [json_message("2021-06-27 08:00", "my status")]),
        "1624780000@broadcast": json_chat("List", [json_message("2021-06-27 08:00", "to many")]),
        "000000000000000": json_chat("WhatsApp Calls", [json_message("2021-06-27 08:00", "A call", meta=True)]),
        "5511000000000@s.whatsapp.net": json_chat("Nobody", []),
    })


def test_exporter_json_chats_with_contacts_both_layouts(tmp_path):
    exporter_result(tmp_path)
    # Legacy layout names Maria by her national number (trunk 0, no country code).
    write_contacts(tmp_path / "export" / "contacts.csv", LEGACY_FIELDS, [
        {"Name": "Maria Silva", "Phone 1 - Value": "011 98765-4321 ::: +55 11 3333-4444"},
    ])
    warnings = []
    docs = documents(tmp_path / "export", warnings)
    assert warnings == []
    assert [d.doc_id for d in docs] == ["whatsapp:120363000000000001@g.us", "whatsapp:5511987654321@s.whatsapp.net"]
    family, maria = (chunks_of(d) for d in docs)
    assert maria[0].text.split("\n") == [
        "WhatsApp chat with Maria Silva, 2021-06-26 10:15 to 2021-06-26 10:18",
        "10:15 Maria Silva: Are we still on for Saturday?",
        "10:16 Me: Yes! See you there",
        "10:17 Maria Silva: [photo] The view",
        "10:18 Maria Silva: [audio]",
    ]
    chunk = maria[0]
    assert (chunk.source, chunk.chat_name, chunk.chat_id, chunk.people) == (
        "<whatsapp>:Maria Silva", "Maria Silva", "5511987654321@s.whatsapp.net", ["Maria Silva"])
    assert chunk.started_at == datetime(2021, 6, 26, 10, 15, tzinfo=timezone.utc)
    assert chunk.ended_at == datetime(2021, 6, 26, 10, 18, tzinfo=timezone.utc)
    assert len(chunk.metadata["message_ids"]) == 4 and chunk.source_kind == chunking.MESSAGES
    # Group: senders named, the unknown number shown as +number; the current layout names it.
    assert "08:00 +447700900123: Morning all" in family[0].text
    assert family[0].text.startswith("WhatsApp group Family, ")
    assert "08:03 Uncle Bob: millis" in family[0].text
    assert family[0].people == ["+447700900123", "Uncle Bob"]

    write_contacts(tmp_path / "export" / "contacts.csv", CURRENT_FIELDS, [
        {"First Name": "Priya", "Last Name": "Patel", "Phone 1 - Value": "07700 900111",
         "Phone 3 - Value": "0044 7700 900123"},
        {"Organization Name": "Bakery", "Phone 2 - Value": "+55 11 98765-4321"},
    ], bom=True)
    family, maria = (chunks_of(d) for d in documents(tmp_path / "export"))
    assert "08:00 Priya Patel: Morning all" in family[0].text
    assert maria[0].chat_name == "Bakery"


def test_per_chat_json_files_and_explicit_contacts(tmp_path):
    write_json(tmp_path / "per-chat" / "447700900123@s.whatsapp.net.json", {
        "447700900123@s.whatsapp.net": json_chat("447700900123", [json_message("2021-01-01 09:00", "Happy new year")]),
    })
    contacts = write_contacts(tmp_path / "elsewhere.csv", CURRENT_FIELDS,
                              [{"Nickname": "Pri", "Phone 1 - Value": "+44 7700 900123"}], bom=False)
    [doc] = documents(tmp_path / "per-chat", contacts=contacts)
    [chunk] = chunks_of(doc)
    assert chunk.text.split("\n")[1] == "09:00 Pri: Happy new year"


def test_contact_numbers_normalise_and_match_on_national_number():
    book = whatsapp_chats.ContactBook()
    book.add("+55 (11) 98765-4321", "Maria")
    book.add("0044 7700 900123", "Priya")
    book.add("06 12 34 56 78", "Luc")
    assert book.name_for("5511987654321") == "Maria"
    assert book.name_for("+447700900123") == "Priya"
    assert book.name_for("33612345678") == "Luc"   # saved without country code
    assert book.name_for("11987654321") == "Maria"  # shown without country code
    assert book.name_for("5511987650000") is None
    assert book.name_for("123") is None


def test_session_gap_single_message_and_token_budget_with_real_model(tmp_path, embedder):
    budget = embedder.passage_token_budget
    talk = [json_message(f"2021-06-26 10:{m:02d}", f"message number {m} about the trip to Lisbon and the hotel",
                         from_me=m % 2 == 0) for m in range(60)]
    talk.append(json_message("2021-06-26 13:00", "after a long silence"))
    giant = " ".join(f"word{i} and more" for i in range(1500))
    write_json(tmp_path / "result.json", {
        "441@s.whatsapp.net": json_chat("Ann", talk),
        "442@s.whatsapp.net": json_chat("Bo", [json_message("2021-06-26 10:00", "just one")]),
        "443@s.whatsapp.net": json_chat("Cy", [json_message("2021-06-26 10:00", giant)]),
    })
    docs = {d.doc_id: d for d in documents(tmp_path, count_tokens=embedder.count_tokens, max_tokens=budget)}
    ann = chunks_of(docs["whatsapp:441@s.whatsapp.net"])
    assert len(ann) >= 3
    assert all(embedder.count_tokens(c.text) <= budget for c in ann)
    assert ann[-1].text.split("\n")[1:] == ["13:00 Ann: after a long silence"]
    lines = message_lines(ann[:-1])
    assert len(lines) == 60 and lines[0] == "10:00 Me: message number 0 about the trip to Lisbon and the hotel"
    ids = [i for c in ann for i in c.metadata["message_ids"]]
    assert len(ids) == len(set(ids)) == 61
    [bo] = chunks_of(docs["whatsapp:442@s.whatsapp.net"])
    assert bo.text == "WhatsApp chat with Bo, 2021-06-26 10:00 to 2021-06-26 10:00\n10:00 Bo: just one"
    cy = chunks_of(docs["whatsapp:443@s.whatsapp.net"])
    assert len(cy) > 5 and all(embedder.count_tokens(c.text) <= budget for c in cy)
    rebuilt = " ".join(line.split("Cy: ", 1)[1] for line in message_lines(cy))
    assert rebuilt.split() == giant.split()
    assert len({tuple(c.metadata["message_ids"]) for c in cy}) == 1  # one message, many parts


def test_a_message_over_the_budget_is_cut_at_clause_ends_like_a_note(tmp_path):
    # The one splitter (chunking.Splitter) cuts a long message where it cuts a note's sentences,
    # at `.`, `!`, `?` and `;`; every piece repeats the time and speaker and fits the budget.
    clauses = [f"clause {i} has six words here{';' if i % 3 else '.'}" for i in range(12)]
    write_text(tmp_path / "WhatsApp Chat with Dee.txt", "26/06/2021, 10:00 - Dee: " + " ".join(clauses) + "\n")
    [doc] = documents(tmp_path, max_tokens=30)
    chunks = chunks_of(doc)
    lines = message_lines(chunks)
    assert all(words(chunk.text) <= 30 for chunk in chunks) and len(lines) > 1
    assert all(line.startswith("10:00 Dee: ") and line.endswith((";", ".")) for line in lines)
    assert " ".join(line.split("Dee: ", 1)[1] for line in lines) == " ".join(clauses)


def test_documents_fingerprint_is_stable_and_follows_budget(tmp_path):
    exporter_result(tmp_path)
    first = {d.doc_id: d.fingerprint for d in documents(tmp_path)}
    again = {d.doc_id: d.fingerprint for d in documents(tmp_path)}
    other = {d.doc_id: d.fingerprint for d in documents(tmp_path, max_tokens=100)}
    assert first == again and set(first) == set(other)
    assert all(first[k] != other[k] for k in first)
    [doc] = [d for d in documents(tmp_path) if "g.us" in d.doc_id]
    assert doc.paths == (str(tmp_path / "export" / "result.json"),)


# --- merging overlapping exports --------------------------------------------------------------

def test_overlapping_json_exports_do_not_duplicate(tmp_path):
    jid = "441@s.whatsapp.net"
    old = [json_message("2021-06-26 10:00", "hi", key_id="A"), json_message("2021-06-26 10:01", "ok", key_id="B"),
           json_message("2021-06-26 10:01", "ok", key_id="C")]
    new = old[1:] + [json_message("2021-06-26 10:05", "bye", key_id="D")]
    write_json(tmp_path / "2021" / "result.json", {jid: json_chat("Ann", old)})
    write_json(tmp_path / "2022" / "result.json", {jid: json_chat("Ann", new)})
    [doc] = documents(tmp_path)
    [chunk] = chunks_of(doc)
    assert [line.split(" ", 1)[1] for line in message_lines([chunk])] == ["Ann: hi", "Ann: ok", "Ann: ok", "Ann: bye"]
    assert chunk.metadata["message_ids"] == ["A", "B", "C", "D"]
    assert [Path(p).name for p in doc.paths] == ["result.json", "result.json"]


def test_overlapping_txt_exports_android_and_ios_merge(tmp_path):
    write_text(tmp_path / "WhatsApp Chat with Ann.txt",
               "26/06/2021, 10:00 - Ann: hi\n26/06/2021, 10:01 - Me Myself: ok\n26/06/2021, 10:01 - Ann: ok\n")
    write_zip(tmp_path / "WhatsApp Chat - Ann.zip", {
        "_chat.txt": "[26/06/2021, 10:01:10] Me Myself: ok\n[26/06/2021, 10:01:40] Ann: ok\n"
                     "[26/06/2021, 10:30:00] Ann: new one\n",
        "00000001-PHOTO-2021-06-26.jpg": b"\xff\xd8",
    })
    warnings = []
    [doc] = documents(tmp_path, warnings)
    assert warnings == [] and doc.doc_id == "whatsapp:ann"
    [chunk] = chunks_of(doc)
    assert message_lines([chunk]) == [
        "10:00 Ann: hi", "10:01 Me Myself: ok", "10:01 Ann: ok",
        "10:30 Ann: new one"]
    assert chunk.started_at == datetime(2021, 6, 26, 10, 0) and chunk.started_at.tzinfo is None
    assert len(set(chunk.metadata["message_ids"])) == 4


def test_txt_and_json_of_the_same_chat_merge_across_time_zones(tmp_path):
    # The phone was at UTC+2: the .txt says 12:15 for the JSON's 10:15 UTC.
    write_json(tmp_path / "result.json", {"5511987654321@s.whatsapp.net": json_chat("Maria Silva", [
        json_message("2021-06-26 10:15", "Are we still on for Saturday?"),
        json_message("2021-06-26 10:16", "Yes!<br>See you", from_me=True),
        json_message("2021-06-26 10:17", "x.jpg", media=True, mime="image/jpeg"),
    ])})
    write_text(tmp_path / "WhatsApp Chat with Maria Silva.txt",
               "26/06/2021, 12:15 - Maria Silva: Are we still on for Saturday?\n"
               "26/06/2021, 12:16 - Ana: Yes!\nSee you\n"
               "26/06/2021, 12:17 - Maria Silva: <Media omitted>\n"
               "26/06/2021, 12:40 - Maria Silva: Only in the newer export\n")
    [doc] = documents(tmp_path)
    assert doc.doc_id == "whatsapp:5511987654321@s.whatsapp.net"
    [chunk] = chunks_of(doc)
    assert message_lines([chunk]) == [
        "10:15 Maria Silva: Are we still on for Saturday?",
        "10:16 Me: Yes! See you",
        "10:17 Maria Silva: [photo]",
        "10:40 Maria Silva: Only in the newer export",
    ]
    assert chunk.ended_at == datetime(2021, 6, 26, 10, 40, tzinfo=timezone.utc)
    assert sorted(Path(p).name for p in doc.paths) == ["WhatsApp Chat with Maria Silva.txt", "result.json"]


# --- bad input --------------------------------------------------------------------------------

def test_bad_files_warn_by_name_and_the_rest_is_still_read(tmp_path):
    write_text(tmp_path / "truncated.json", '{"441@s.whatsapp.net": {"name": "Ann", "messages": {')
    write_text(tmp_path / "other.json", '{"version": 3, "items": [1, 2]}')
    write_text(tmp_path / "notes.txt", "shopping list\n- eggs\n")
    write_zip(tmp_path / "photos.zip", {"IMG-1.jpg": b"\xff\xd8"})
    write_text(tmp_path / "broken.zip", "not a zip at all")
    (tmp_path / "contacts.csv").write_bytes(b"\x00\x01garbage\xff")
    write_text(tmp_path / "WhatsApp Chat with Bo.txt", "26/06/2021, 10:00 - Bo: still here\n")
    warnings = []
    docs = documents(tmp_path, warnings)
    assert [d.doc_id for d in docs if not d.unreadable] == ["whatsapp:bo"]
    # Files that could not be read are reported, so ingestion keeps the chats stored from them.
    assert sorted(Path(d.paths[0]).name for d in docs if d.unreadable) == ["broken.zip", "photos.zip", "truncated.json"]
    text = "\n".join(warnings)
    for name, problem in [("truncated.json", "not readable JSON"), ("other.json", "not a WhatsApp-Chat-Exporter JSON"),
                          ("notes.txt", "no WhatsApp messages found"), ("photos.zip", "holds no chat .txt"),
                          ("broken.zip", "not a readable zip"), ("contacts.csv", "not a Google Contacts CSV")]:
        assert any(str(tmp_path / name) in w and problem in w for w in warnings), (name, text)


def test_empty_folder_warns_and_missing_path_is_an_error(tmp_path):
    warnings = []
    assert documents(tmp_path, warnings) == []
    assert warnings == [f"{tmp_path}: no WhatsApp exports found (.json from WhatsApp-Chat-Exporter, .txt or .zip "
                        "from 'Export chat')"]
    with pytest.raises(wa.settings.UserError):
        documents(tmp_path / "missing")


def test_zip_member_over_the_cap_is_refused(tmp_path):
    archive = write_zip(tmp_path / "WhatsApp Chat - Ann.zip", {"_chat.txt": "26/06/2021, 10:00 - Ann: hi\n" * 1000})
    text, problem = read_zip_chat(archive, max_bytes=1000)
    assert text is None and "over the 1000 byte cap" in problem
    text, problem = read_zip_chat(archive)
    assert problem is None and text.count("Ann: hi") == 1000


# --- command line -----------------------------------------------------------------------------

def test_cli_prints_chunks_as_json(tmp_path, capsys, embedding_model_path):
    write_text(tmp_path / "WhatsApp Chat with Bo.txt", "26/06/2021, 10:00 - Bo: hello there\n")
    assert wa.main(["--whatsapp", str(tmp_path), "--json", "--embedding-model", embedding_model_path]) == 0
    [line] = capsys.readouterr().out.strip().split("\n")
    row = json.loads(line)
    assert row["doc_id"] == "whatsapp:bo" and row["text"].endswith("10:00 Bo: hello there")
    assert row["tokens"] <= 254 and row["started_at"] == "2021-06-26T10:00:00"


def test_cli_preview_strips_terminal_escapes_from_other_peoples_messages(tmp_path, capsys, embedding_model_path):
    write_text(tmp_path / "WhatsApp Chat with Bo.txt", "26/06/2021, 10:00 - Bo: \x1b]0;pwned\x07hello \x1b[2Jthere\n")
    assert wa.main(["--whatsapp", str(tmp_path), "--embedding-model", embedding_model_path]) == 0
    out = capsys.readouterr().out
    assert "Bo: hello there" in out and "\x1b" not in out and "\x07" not in out


def test_cli_without_a_path_is_one_clear_error():
    with pytest.raises(wa.settings.UserError, match="--whatsapp PATH or set WHATSAPP_WORKING_PATH"):
        wa.main([])


def test_ios_group_zip_names_numbers_and_joins_the_json_group(tmp_path):
    write_json(tmp_path / "result.json", {"120363000000000009@g.us": json_chat("Trip group", [
        json_message("2021-06-03 09:00", "Tickets booked", sender="Maria Silva"),
    ])})
    write_zip(tmp_path / "WhatsApp Chat - Trip group.zip", {"_chat.txt": (
        "[06/03/21, 10:00:00] Trip group: \u200eMessages and calls are end-to-end encrypted.\n"
        "[06/03/21, 10:00:05] Maria Silva: Tickets booked\n"
        "[06/04/21, 11:00:00] \u202a+55 11 98765-4321\u202c: Great, see you \u200e<attached: 00000003-PHOTO-x.jpg>\n"
    )})
    write_contacts(tmp_path / "contacts.csv", CURRENT_FIELDS,
                   [{"First Name": "Rui", "Phone 2 - Value": "011 98765-4321"}])
    # 06/03 then 06/04 is ambiguous and chronological both ways: the flag decides (June 3, 4).
    [doc] = documents(tmp_path, date_order="monthfirst")
    assert doc.doc_id == "whatsapp:120363000000000009@g.us"
    chunks = chunks_of(doc)
    assert message_lines(chunks) == ["09:00 Maria Silva: Tickets booked",
                                     "10:00 Rui: [photo] Great, see you"]
    assert chunks[-1].people == ["Rui"] and chunks[0].text.startswith("WhatsApp group Trip group, ")


def test_a_one_to_one_export_names_its_owner_in_the_header_lines_and_people(tmp_path):
    # Questions name both people ("When did Ana adopt a cat?"): the exporter's name is kept in
    # the header, in their own lines (not "Me") and in the people the person filter matches.
    write_text(tmp_path / "WhatsApp Chat with Maria Silva.txt",
               "26/06/2021, 10:15 - Maria Silva: How is the kitten?\n"
               "26/06/2021, 10:16 - Ana: We adopted her yesterday, her name is Noodle\n")
    [doc] = documents(tmp_path)
    [chunk] = chunks_of(doc)
    assert chunk.text.split("\n") == [
        "WhatsApp chat with Maria Silva (me: Ana), 2021-06-26 10:15 to 2021-06-26 10:16",
        "10:15 Maria Silva: How is the kitten?",
        "10:16 Ana: We adopted her yesterday, her name is Noodle",
    ]
    assert chunk.people == ["Maria Silva", "Ana"]
    # A group export names no single owner.
    write_text(tmp_path / "WhatsApp Chat with Family.txt",
               "26/06/2021, 10:15 - Maria Silva: hi all\n26/06/2021, 10:16 - Rui: hello\n")
    family = next(d for d in documents(tmp_path) if d.doc_id == "whatsapp:family")
    assert "(me:" not in chunks_of(family)[0].text
