"""obsidian_to_embeddings: vault walking, frontmatter, dates, documents, bad input, the preview CLI.

Tokens are counted as words (fast and exact to reason about), except on the real vault, which uses
the packaged embedding model's tokenizer. Markup cleaning and chunking are in test_obsidian_markdown.
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest

import chunking
import obsidian_markdown
import obsidian_to_embeddings as obsidian
import settings


def words(text: str) -> int:
    """A token counter for behaviour tests: one token per whitespace-separated word."""
    return len(text.split())


def write(vault: Path, rel: str, content: str | bytes) -> Path:
    path = vault / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def ingest(vault: Path, count=words, max_tokens: int = 200, **kwargs):
    """({doc_id: [Chunk]}, [warning]) for the whole vault."""
    warnings: list[str] = []
    docs = list(obsidian.iter_documents(vault, count, max_tokens, warn=warnings.append, **kwargs))
    return {d.doc_id: d.make_chunks() for d in docs if not d.unreadable}, warnings


def unreadable_ids(vault: Path) -> set[str]:
    """Doc ids the parser reports as present but unreadable (their stored chunks are kept)."""
    docs = obsidian.iter_documents(vault, words, 200, warn=lambda message: None)
    return {d.doc_id for d in docs if d.unreadable}


def text_of(chunks) -> str:
    return "\n".join(c.text for c in chunks)


# ---------------------------------------------------------------- nothing lost


def test_first_and_last_lines_and_short_notes_are_kept(tmp_path):
    write(tmp_path, "Long.md", "First line aardvark.\n" + "middle words here.\n" * 300 + "Last line zebra")
    write(tmp_path, "Short.md", "Hi")
    write(tmp_path, "One word heading.md", "# Solo")
    chunks, warnings = ingest(tmp_path, max_tokens=50)
    assert warnings == []
    long_chunks = chunks["obsidian:Long.md"]
    assert long_chunks[0].text.splitlines()[1] == "First line aardvark."
    assert long_chunks[-1].text.endswith("Last line zebra")
    assert [c.text for c in chunks["obsidian:Short.md"]] == ["Short\nHi"]
    assert "Solo" in text_of(chunks["obsidian:One word heading.md"])


# ---------------------------------------------------------------- walking the vault


def test_dot_folders_and_default_templates_folder_are_skipped(tmp_path):
    for rel in (".obsidian/x.md", ".trash/old.md", ".git/x.md", "Notes/.hidden.md", "Templates/Daily.md",
                "Templates/Sub/T.md"):
        write(tmp_path, rel, "skipped text")
    write(tmp_path, "Notes/Kept.md", "kept text")
    write(tmp_path, "Notes/picture.png", b"\x89PNG\0\0")
    write(tmp_path, "Notes/readme.txt", "not markdown")
    chunks, _ = ingest(tmp_path)
    assert sorted(chunks) == ["obsidian:Notes/Kept.md"]
    with_templates, _ = ingest(tmp_path, skip_templates=False)
    assert "obsidian:Templates/Sub/T.md" in with_templates


def test_templates_folder_comes_from_obsidian_settings(tmp_path):
    write(tmp_path, ".obsidian/templates.json", json.dumps({"folder": "/Meta/Tpl/"}))
    write(tmp_path, ".obsidian/plugins/templater-obsidian/data.json", json.dumps({"templates_folder": "Tmpl2"}))
    write(tmp_path, "Meta/Tpl/T.md", "template")
    write(tmp_path, "Tmpl2/T.md", "templater template")
    write(tmp_path, "Meta/Other.md", "kept")
    write(tmp_path, "Templates/Not templates here.md", "kept too")
    chunks, _ = ingest(tmp_path)
    assert sorted(chunks) == ["obsidian:Meta/Other.md", "obsidian:Templates/Not templates here.md"]


def test_exclude_globs(tmp_path):
    for rel in ("Private/a.md", "Private/deep/b.md", "Journal/2019/x.md", "Journal/2020/y.md",
                "Work/drafts/d.md", "Work/plan.secret.md", "Work/plan.md", "Other/Private.md"):
        write(tmp_path, rel, "some text")
    chunks, _ = ingest(tmp_path, exclude=["Private/**", "/Journal/2019", "drafts", "*.secret.md"])
    assert sorted(chunks) == ["obsidian:Journal/2020/y.md", "obsidian:Other/Private.md", "obsidian:Work/plan.md"]


def test_exclude_setting_and_flags(monkeypatch):
    monkeypatch.setenv("OBSIDIAN_EXCLUDE", "Private/**, *.secret.md ,")
    assert obsidian.exclude_globs() == ["Private/**", "*.secret.md"]
    assert obsidian.exclude_globs(["Only/**"]) == ["Only/**"]
    monkeypatch.delenv("OBSIDIAN_EXCLUDE")
    assert obsidian.exclude_globs() == []


def test_duplicate_basenames_stay_distinct_and_sources_drop_md(tmp_path):
    write(tmp_path, "A/Note.md", "first copy")
    write(tmp_path, "B/Note.md", "second copy")
    chunks, _ = ingest(tmp_path)
    assert sorted(chunks) == ["obsidian:A/Note.md", "obsidian:B/Note.md"]
    chunk = chunks["obsidian:B/Note.md"][0]
    assert (chunk.source, chunk.doc_id, chunk.title, chunk.source_kind) == (
        "<obsidian>:B/Note", "obsidian:B/Note.md", "Note", chunking.NOTES)
    assert chunk.metadata["path"] == "B/Note.md"


def test_documents_are_cheap_and_fingerprinted(tmp_path):
    calls = []

    def counting(text):
        calls.append(text)
        return words(text)

    path = write(tmp_path, "N.md", "some text here")
    first = list(obsidian.iter_documents(tmp_path, counting, 100))
    assert calls == []  # no parsing or counting until make_chunks
    assert first[0].paths == (str(path.absolute()),)
    assert first[0].fingerprint == chunking.fingerprint(b"some text here", obsidian.PARSER_VERSION, "100",
                                                         chunking.local_zone())
    again = list(obsidian.iter_documents(tmp_path, counting, 100))[0].fingerprint
    other_budget = list(obsidian.iter_documents(tmp_path, counting, 120))[0].fingerprint
    path.write_text("some text changed")
    changed = list(obsidian.iter_documents(tmp_path, counting, 100))[0].fingerprint
    assert again == first[0].fingerprint and len({again, other_budget, changed}) == 3
    assert first[0].make_chunks() and calls


# ---------------------------------------------------------------- frontmatter and metadata


def test_frontmatter_becomes_metadata_not_text(tmp_path):
    write(tmp_path, "Meetings/Sync.md", """---
tags:
  - work
  - "#meeting"
aliases: [Weekly sync, The sync]
date: 2023-09-12
people:
  - "[[Steph Ango]]"
  - "[[Maria Silva|Maria]]"
author: [[Kevin Kelly]]
rating: 7
loc: "[[Kyoto]]"
nested: {a: [1, 2023-01-02]}
---
We talked about #project/alpha and #wip, not #123 or https://x.org/#frag.
""")
    chunks, warnings = ingest(tmp_path)
    assert warnings == []
    [chunk] = chunks["obsidian:Meetings/Sync.md"]
    assert chunk.text == "Sync\nWe talked about #project/alpha and #wip, not #123 or https://x.org/#frag."
    assert chunk.tags == ["work", "meeting", "project/alpha", "wip"]
    assert chunk.metadata["aliases"] == ["Weekly sync", "The sync"]
    assert chunk.people == ["Steph Ango", "Maria", "Kevin Kelly"]
    props = chunk.metadata["properties"]
    assert props["loc"] == "Kyoto" and props["rating"] == 7 and props["date"] == "2023-09-12"
    assert props["nested"] == {"a": [1, "2023-01-02"]}
    assert json.loads(json.dumps(chunk.metadata)) == chunk.metadata
    assert chunk.metadata["date_origin"] == "frontmatter"
    assert chunk.started_at.date().isoformat() == "2023-09-12"
    assert chunk.started_at.tzinfo is not None and chunk.ended_at >= chunk.started_at


def test_broken_yaml_warns_and_keeps_body_and_readable_properties(tmp_path):
    write(tmp_path, "Notes/x.md", "---\ntags: [ok]\ntitle: : :\nbad: [unclosed\n---\nThe body mentions capybaras.\n")
    chunks, warnings = ingest(tmp_path)
    [chunk] = chunks["obsidian:Notes/x.md"]
    assert "capybaras" in chunk.text and "title" not in chunk.text
    assert chunk.tags == ["ok"]
    assert len(warnings) == 1
    assert warnings[0].startswith("Notes/x.md: frontmatter is not valid YAML (line 3)")


def test_unclosed_frontmatter_is_body_and_yaml_list_is_ignored(tmp_path):
    write(tmp_path, "Unclosed.md", "---\nnot: frontmatter after all\n")
    write(tmp_path, "List.md", "---\n- a\n- b\n---\nbody text\n")
    chunks, warnings = ingest(tmp_path)
    assert "not: frontmatter after all" in text_of(chunks["obsidian:Unclosed.md"])
    assert text_of(chunks["obsidian:List.md"]) == "List\nbody text"
    assert warnings == ["List.md: frontmatter is not a list of properties (key: value lines); "
                        "the body was indexed without its properties"]


def test_dates_from_daily_note_name_frontmatter_or_mtime(tmp_path):
    write(tmp_path, "Daily/2023-09-12.md", "---\ndate: 2020-01-01\n---\ndaily text")
    write(tmp_path, "Journal/2023-09-13 1430.md", "journal text")
    write(tmp_path, "Created.md", "---\ncreated: 2021-06-05T10:30:00\n---\ntext")
    write(tmp_path, "Linked.md", "---\ndate: \"[[2022-02-03]]\"\n---\ntext")
    undated = write(tmp_path, "Undated.md", "---\ndate: someday\n---\ntext")
    os.utime(undated, (1_600_000_000, 1_600_000_000))
    chunks, _ = ingest(tmp_path)

    def when(doc):
        chunk = chunks[doc][0]
        return chunk.started_at, chunk.ended_at, chunk.metadata["date_origin"]

    start, end, origin = when("obsidian:Daily/2023-09-12.md")
    assert (start.date().isoformat(), end.date().isoformat(), origin) == ("2023-09-12", "2023-09-12", "filename")
    assert (start.hour, end.hour) == (0, 23)
    start, end, origin = when("obsidian:Journal/2023-09-13 1430.md")
    assert (start.isoformat()[:16], origin) == ("2023-09-13T14:30", "filename")
    start, _, origin = when("obsidian:Created.md")
    assert (start.isoformat()[:16], origin) == ("2021-06-05T10:30", "frontmatter")
    assert when("obsidian:Linked.md")[0].date().isoformat() == "2022-02-03"
    start, end, origin = when("obsidian:Undated.md")
    assert (start, end, origin) == (datetime.fromtimestamp(1_600_000_000).astimezone(),) * 2 + ("mtime",)


# ---------------------------------------------------------------- bad input


def test_bad_files_warn_and_the_rest_is_ingested(tmp_path):
    write(tmp_path, "Good.md", "good note about lemurs")
    write(tmp_path, "Bad/junk.md", bytes(range(256)) * 64)
    write(tmp_path, "Bad/nul bytes.md", b"text with \x00 nul \x00 bytes\n" * 10)
    write(tmp_path, "Bad/random.md", os.urandom(4096).replace(b"\0", b"\1"))
    write(tmp_path, "Bad/invalid utf8.md", b"caf\xe9 and \xff wombats\n")
    write(tmp_path, "Bad/utf16.md", "# Título\ntexto em UTF-16 com ação".encode("utf-16"))
    write(tmp_path, "Empty.md", "")
    write(tmp_path, "Blank.md", " \n\n\t\n")
    write(tmp_path, "Frontmatter only.md", "---\ntags: [x]\n---\n")
    write(tmp_path, "Embeds only.md", "![[picture.png]]\n%% a comment %%\n")
    (tmp_path / "Links").mkdir()
    os.symlink(tmp_path, tmp_path / "Links" / "loop")
    os.symlink(tmp_path / "missing.md", tmp_path / "Links" / "dangling.md")
    os.symlink(tmp_path / "Links" / "b.md", tmp_path / "Links" / "a.md")
    os.symlink(tmp_path / "Links" / "a.md", tmp_path / "Links" / "b.md")
    os.mkfifo(tmp_path / "Links" / "fifo.md")
    (tmp_path / "Folder.md").mkdir()
    write(tmp_path, "Folder.md/Inside.md", "a folder named like a note is just a folder")
    chunks, warnings = ingest(tmp_path)

    assert text_of(chunks["obsidian:Good.md"]) == "Good\ngood note about lemurs"
    assert "wombats" in text_of(chunks["obsidian:Bad/invalid utf8.md"])
    assert "texto em UTF-16 com ação" in text_of(chunks["obsidian:Bad/utf16.md"])
    assert "just a folder" in text_of(chunks["obsidian:Folder.md/Inside.md"])
    for empty in ("Empty.md", "Blank.md", "Frontmatter only.md", "Embeds only.md"):
        assert chunks["obsidian:" + empty] == []  # still a Document, so stale chunks get deleted
    skipped = {"Bad/junk.md", "Bad/nul bytes.md", "Bad/random.md", "Links/dangling.md", "Links/a.md",
               "Links/b.md", "Links/fifo.md"}
    assert not {"obsidian:" + rel for rel in skipped} & set(chunks)
    # Reported as unreadable rather than left out, so ingestion keeps what it stored before.
    assert unreadable_ids(tmp_path) == {"obsidian:" + rel for rel in skipped}
    expected = {
        "Bad/junk.md: binary data", "Bad/nul bytes.md: binary data", "Bad/random.md: binary data",
        "Bad/invalid utf8.md: not valid UTF-8; 2 bad byte sequences", "Links/loop: symbolic link loop",
        "Links/dangling.md: broken symbolic link", "Links/a.md: symbolic link loop", "Links/b.md: symbolic link loop",
        "Links/fifo.md: not a regular file",
        "Empty.md: empty note", "Blank.md: empty note", "Frontmatter only.md: properties only, no text",
    }
    assert len(warnings) == len(expected)
    assert all(any(w.startswith(e) for w in warnings) for e in expected), warnings


def test_unreadable_file_warns(tmp_path, monkeypatch):
    write(tmp_path, "Good.md", "fine")
    locked = write(tmp_path, "Locked.md", "secret")
    real_open = os.open

    def deny(path, *args, **kwargs):
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(obsidian.os, "open", deny)
    chunks, warnings = ingest(tmp_path)
    assert sorted(chunks) == ["obsidian:Good.md"]
    assert warnings == ["Locked.md: cannot be read (permission denied); skipped"]


def test_folder_symlinks_are_followed_once(tmp_path):
    outside = tmp_path / "outside"
    write(outside, "Shared.md", "shared text")
    vault = tmp_path / "vault"
    write(vault, "Own.md", "own text")
    os.symlink(outside, vault / "Linked")
    os.symlink(outside, vault / "Linked again")
    chunks, warnings = ingest(vault)
    assert sorted(chunks) == ["obsidian:Linked/Shared.md", "obsidian:Own.md"]
    assert warnings == ["Linked again: link to a folder already read as Linked/; skipped"]


def test_huge_note_is_capped_with_a_warning(tmp_path):
    line = "the pangolin ledger line goes on\n"
    write(tmp_path, "Huge.md", "First words.\n" + line * (20 * 2**20 // len(line)))
    write(tmp_path, "Small.md", "small note")
    docs, warnings = [], []
    for doc in obsidian.iter_documents(tmp_path, words, 200, warn=warnings.append, max_note_bytes=2**20):
        docs.append(doc)
    assert [d.doc_id for d in docs] == ["obsidian:Huge.md", "obsidian:Small.md"]
    assert warnings == ["Huge.md: 20.0 MB is over the 1 MB note limit; only its beginning was indexed "
                        "(split the note, or keep it out with --exclude)"]
    chunks = docs[0].make_chunks()
    assert chunks[0].text.startswith("Huge\nFirst words.")
    assert 2**20 * 0.9 < sum(len(c.text) for c in chunks) < 2**20 * 1.2
    assert chunks[-1].text.endswith("the pangolin ledger line goes on")


def test_missing_vault_is_a_user_error(tmp_path):
    with pytest.raises(settings.UserError, match="is not a folder"):
        list(obsidian.iter_documents(tmp_path / "nope", words, 100))


# ---------------------------------------------------------------- the real vault


FRONTMATTER_KEY_LINE = re.compile(r"^[A-Za-z_][\w-]*:(\s|$)")


def test_kepano_vault(shared_fixtures, embedder):
    vault = shared_fixtures / "obsidian" / "kepano-obsidian"
    budget = embedder.passage_token_budget
    chunks, warnings = ingest(vault, count=embedder.count_tokens, max_tokens=budget)
    assert warnings == []
    assert not any(d.startswith(("obsidian:.obsidian/", "obsidian:Templates/")) for d in chunks)
    expected_ids = {"obsidian:" + p.relative_to(vault).as_posix() for p in vault.rglob("*.md")
                    if not p.relative_to(vault).as_posix().startswith((".", "Templates/"))}
    assert set(chunks) == expected_ids

    for doc_id, doc_chunks in chunks.items():
        raw = (vault / doc_id.removeprefix("obsidian:")).read_text(encoding="utf-8")
        yaml_text, body, _ = obsidian_markdown.split_frontmatter(raw)
        visible = re.sub(r"!\[\[[^\]]*\]\]", "", body).strip()
        if visible:
            assert doc_chunks, f"{doc_id} has body text but no chunk"
        frontmatter_lines = {line.strip() for line in (yaml_text or "").splitlines() if line.strip()}
        for chunk in doc_chunks:
            assert embedder.count_tokens(chunk.text) <= budget
            assert not any(mark in chunk.text for mark in ("[[", "]]", "%%", "![", "[!"))
            for line in chunk.text.splitlines():
                assert line.strip() not in frontmatter_lines and not FRONTMATTER_KEY_LINE.match(line), line
            assert chunk.source == "<obsidian>:" + doc_id.removeprefix("obsidian:")[:-3]

    for daily in ("2023-09-12", "2023-09-30"):
        [chunk] = chunks[f"obsidian:Daily/{daily}.md"]
        assert chunk.metadata["date_origin"] == "filename"
        assert chunk.started_at.date().isoformat() == daily
    meeting = chunks["obsidian:Notes/2023-09-12 Meeting with Steph.md"][0]
    assert "Discussed the book Out of Control on the topic of Emergence" in meeting.text
    assert meeting.people == ["Steph Ango"]
    # Properties only: their values are the note's text, its start..end its time span.
    [trip] = chunks["obsidian:Notes/2023 Japan Trip.md"]
    assert trip.text == "2023 Japan Trip\ncategories Trips; start 2023-09-12; end 2023-09-30; loc Kyoto, Japan"
    assert (trip.started_at.date().isoformat(), trip.ended_at.date().isoformat()) == ("2023-09-12", "2023-09-30")
    evergreen = chunks["obsidian:Notes/Evergreen notes turn ideas into objects that you can manipulate.md"]
    assert "0🌲" in evergreen[0].tags and "A company is a superorganism" in text_of(evergreen)


# ---------------------------------------------------------------- command line


def test_cli_prints_chunks(tmp_path, embedding_model_path, capsys):
    write(tmp_path, "Notes/Kyoto.md", "---\ntags: [travel]\n---\n# Temples\nFushimi Inari at dawn.")
    write(tmp_path, "Private/Diary.md", "private words")
    assert obsidian.main(["--obsidian", str(tmp_path), "--json", "--exclude", "Private/**",
                          "--embedding-model", embedding_model_path]) == 0
    out, err = capsys.readouterr()
    [record] = [json.loads(line) for line in out.splitlines()]
    assert record["source"] == "<obsidian>:Notes/Kyoto" and record["tags"] == ["travel"]
    assert record["text"] == "Kyoto > Temples\nFushimi Inari at dawn." and record["tokens"] > 0
    assert "1 notes, 1 chunks" in err
    assert obsidian.main(["--obsidian", str(tmp_path), "--embedding-model", embedding_model_path]) == 0
    out, _ = capsys.readouterr()
    assert "=== <obsidian>:Notes/Kyoto" in out and "private words" in out


def test_cli_preview_strips_terminal_escapes_from_a_clipped_note(tmp_path, embedding_model_path, capsys):
    write(tmp_path, "Clips/Page.md", "# Clipped\nhello \x1b[2Jthere \x1b]0;pwned\x07friend")
    assert obsidian.main(["--obsidian", str(tmp_path), "--embedding-model", embedding_model_path]) == 0
    out = capsys.readouterr().out
    assert "hello there friend" in out and "\x1b" not in out and "\x07" not in out


def test_cli_without_vault_is_a_user_error(tmp_path):
    with pytest.raises(settings.UserError, match="--obsidian"):
        obsidian.main([])
    with pytest.raises(settings.UserError, match="not a folder"):
        obsidian.main(["--obsidian", str(tmp_path / "missing")])


def test_ingestion_cuts_notes_into_pieces_smaller_than_a_long_reading_embedder_takes(tmp_path, multilingual_model_path):
    # multilingual-e5 reads ~510 tokens, but a note is searched by pieces of at most
    # NOTE_CHUNK_TOKENS (a paragraph is found, not blurred with its neighbours); chats keep
    # the embedder's whole budget.
    import argparse

    from create_and_persist_embeddings import build_sources
    from embedding_generator_multilingual import Embedder

    e5 = Embedder(multilingual_model_path, device="cpu")
    assert e5.passage_token_budget > obsidian.NOTE_CHUNK_TOKENS
    assert obsidian.note_budget(e5.passage_token_budget) == obsidian.NOTE_CHUNK_TOKENS
    assert obsidian.note_budget(100) == 100
    days = "\n\n".join(f"## Day {d}\n\n" + " ".join(f"Sentence {d}.{i} about the walk and the food." for i in range(12))
                       for d in range(1, 7))
    write(tmp_path / "vault", "Trips/Japan.md", days)
    documents = build_sources({"obsidian": tmp_path / "vault"}, argparse.Namespace(exclude=[]), e5)["obsidian"]
    chunks = [c for document in documents for c in document.make_chunks()]
    tokens = [e5.count_tokens(c.text) for c in chunks]
    whole_budget = obsidian.note_to_chunks(days, "Trips/Japan.md", e5.count_tokens, e5.passage_token_budget)
    assert max(tokens) <= obsidian.NOTE_CHUNK_TOKENS < max(e5.count_tokens(c.text) for c in whole_budget)
    assert len(chunks) > len(whole_budget)
    assert all(f"Sentence {d}.{i} " in "\n".join(c.text for c in chunks) for d in range(1, 7) for i in range(12))
