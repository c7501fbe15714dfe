"""Never lose the index to a mistake (issue 20, ingestion side) and say what really happened
(issue 13): validation before any deletion, one exclusion parser, a rebuild that swaps in at the
end, sources that suddenly look empty, model identity, document paths, moves, the forget list.
Real embedded PostgreSQL + pgvector, the real packaged embedding model, the real parsers.
"""
from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import psycopg
import pytest

import create_and_persist_embeddings as cpe
import obsidian_to_embeddings as obsidian
import settings


# ---------------------------------------------------------------- helpers


@pytest.fixture
def cli_args(database_url, embedding_model_path):
    return ["--database-url", database_url, "--embedding-model", embedding_model_path, "--device", "cpu"]


def run_main(argv: list[str]) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert cpe.main(argv) == 0
    return out.getvalue(), err.getvalue()


def ingest_json(argv: list[str]) -> dict:
    return json.loads(run_main([*argv, "--json", "--quiet"])[0])


def stored(url: str) -> tuple[frozenset, frozenset]:
    """({(doc_id, content_hash, content)}, {(doc_id, fingerprint)}): the whole index, comparable."""
    with psycopg.connect(url) as conn:
        chunks = frozenset(conn.execute("SELECT doc_id, content_hash, content FROM chunks").fetchall())
        documents = frozenset(conn.execute("SELECT doc_id, fingerprint FROM documents").fetchall())
    return chunks, documents


def sources_listed(url: str) -> set[str]:
    out, _ = run_main(["--list", "--json", "--database-url", url])
    return {json.loads(line)["source"] for line in out.splitlines()}


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_vault(root: Path, notes: int = 4) -> Path:
    vault = root / "vault"
    (vault / ".obsidian").mkdir(parents=True)
    for i in range(notes):
        write(vault, f"Notes/n{i}.md", f"# Note {i}\n\nParagraph about topic {i * 7} and nothing else.\n")
    return vault


def write_whatsapp(root: Path) -> Path:
    folder = root / "wa"
    folder.mkdir()
    (folder / "WhatsApp Chat with Maria Silva.txt").write_text(
        "26/06/2021, 12:30 - Maria Silva: Bring the frisbee\n26/06/2021, 12:31 - Me: Sure, and the ball\n")
    (folder / "WhatsApp Chat with Joao.txt").write_text("01/07/2021, 09:00 - Joao: The keys are under the mat\n")
    return folder


# ---------------------------------------------------------------- validate before anything is dropped


def test_rebuild_with_a_note_instead_of_the_vault_is_refused_before_anything_is_dropped(tmp_path, database_url, cli_args):
    vault, wa = write_vault(tmp_path), write_whatsapp(tmp_path)
    ingest_json(["--obsidian", str(vault), "--whatsapp", str(wa), *cli_args])
    before = stored(database_url)
    assert len(before[0]) == 6  # 4 notes, 2 chats

    with pytest.raises(settings.UserError) as err:
        cpe.main(["--rebuild", "--obsidian", str(vault / "Notes" / "n0.md"), *cli_args])
    assert str(err.value).startswith(f"OBSIDIAN_VAULT_PATH {vault / 'Notes' / 'n0.md'} is not a folder;")
    assert stored(database_url) == before

    # A missing contacts file is found out before the rebuild drops anything, too.
    with pytest.raises(settings.UserError, match="WHATSAPP_CONTACTS .*missing.csv does not exist"):
        cpe.main(["--rebuild", "--whatsapp", str(wa), "--contacts", str(tmp_path / "missing.csv"), *cli_args])
    assert stored(database_url) == before


# ---------------------------------------------------------------- one exclusion parser


def test_exclude_is_parsed_the_same_by_the_preview_and_by_ingestion_flag_or_setting(
        tmp_path, database_url, cli_args, embedding_model_path, monkeypatch, capsys):
    vault = write_vault(tmp_path, notes=2)
    write(vault, "Private/Diary.md", "# Diary\n\nThe private words nobody may read.\n")
    write(vault, "Drafts/Plan.md", "# Plan\n\nA half-written plan.\n")
    public = {"<obsidian>:Notes/n0", "<obsidian>:Notes/n1"}

    assert obsidian.main(["--obsidian", str(vault), "--json", "--exclude", "Private, Drafts",
                          "--embedding-model", embedding_model_path]) == 0
    previewed = {json.loads(line)["source"] for line in capsys.readouterr().out.splitlines()}
    assert previewed == public

    ingest_json(["--obsidian", str(vault), "--exclude", "Private, Drafts", *cli_args])
    assert sources_listed(database_url) == public  # the preview and ingestion agree

    # OBSIDIAN_EXCLUDE, and a flag mixing commas with repetition, go through the same parser.
    monkeypatch.setenv("OBSIDIAN_EXCLUDE", "Drafts,Private/**")
    write(vault, "Private/More.md", "# More\n\nStill private.\n")
    ingest_json(["--obsidian", str(vault), *cli_args])
    assert sources_listed(database_url) == public
    monkeypatch.delenv("OBSIDIAN_EXCLUDE")
    ingest_json(["--obsidian", str(vault), "--exclude", "Private,Nothing", "--exclude", "Drafts", *cli_args])
    assert sources_listed(database_url) == public


# ---------------------------------------------------------------- sources that suddenly look empty


def test_an_empty_vault_or_whatsapp_folder_keeps_what_is_stored_and_says_how_to_remove_it(
        tmp_path, database_url, cli_args):
    vault, wa = write_vault(tmp_path), write_whatsapp(tmp_path)
    sources = ["--obsidian", str(vault), "--whatsapp", str(wa)]
    ingest_json([*sources, *cli_args])
    before = stored(database_url)

    # The cloud folder has not synced yet / the drive is not mounted: both folders are empty.
    empty_vault, empty_wa = tmp_path / "empty-vault", tmp_path / "empty-wa"
    empty_vault.mkdir(), empty_wa.mkdir()
    out, err = run_main(["--obsidian", str(empty_vault), "--whatsapp", str(empty_wa), "--json", *cli_args])
    summary = json.loads(out)
    assert stored(database_url) == before
    assert (summary["documents_deleted"], summary["chunks_deleted"], summary["documents_missing"]) == (0, 0, 6)
    assert "obsidian: 4 of the 4 documents stored from it are missing this run" in err
    assert "whatsapp: 2 of the 2 documents stored from it are missing" in err
    assert "--prune obsidian beside --obsidian PATH" in err

    # The fix the warning names removes them for real.
    summary = ingest_json(["--obsidian", str(empty_vault), "--prune", "obsidian", *cli_args])
    assert (summary["documents_deleted"], summary["documents_missing"]) == (4, 0)
    assert {doc_id for doc_id, _ in stored(database_url)[1]} == {doc_id for doc_id, _ in before[1]
                                                                 if doc_id.startswith("whatsapp:")}


def test_losing_more_than_half_of_a_vault_keeps_it_but_one_vanished_note_is_deleted(tmp_path, database_url, cli_args):
    vault = write_vault(tmp_path, notes=5)
    args = ["--obsidian", str(vault), *cli_args]
    ingest_json(args)

    (vault / "Notes" / "n4.md").unlink()
    summary = ingest_json(args)
    assert (summary["documents_deleted"], summary["documents_missing"]) == (1, 0)

    for i in range(1, 4):  # 3 of the 4 left vanish at once
        (vault / "Notes" / f"n{i}.md").unlink()
    before = stored(database_url)
    out, err = run_main([*args, "--json"])
    assert stored(database_url) == before and json.loads(out)["documents_missing"] == 3
    assert "obsidian: 3 of the 4 documents stored from it are missing this run; kept them" in err
    assert "missing but kept" in run_main(args)[0]

    summary = ingest_json([*args, "--prune", "obsidian"])
    assert summary["documents_deleted"] == 3 and sources_listed(database_url) == {"<obsidian>:Notes/n0"}


# ---------------------------------------------------------------- model identity


def test_one_model_spelt_with_a_trailing_slash_or_a_relative_path_is_the_same_model(
        tmp_path, database_url, embedding_model_path, monkeypatch):
    import os

    from embedding_generator_multilingual import load_embedder
    import store
    import store_values

    vault = write_vault(tmp_path, notes=2)
    base = ["--database-url", database_url, "--device", "cpu", "--obsidian", str(vault)]
    # An index as today's main built it: the model recorded by name only.
    with store.Store(database_url) as db:
        db.ensure_schema(embedding_model_path, load_embedder(embedding_model_path, "cpu").dimension)
    monkeypatch.chdir(Path(embedding_model_path).parent)
    relative = os.path.join(".", os.path.basename(embedding_model_path))
    for spelling in (embedding_model_path + "/", relative, embedding_model_path):
        summary = ingest_json([*base, "--embedding-model", spelling])
        assert summary["chunks_total"] == 2
    with psycopg.connect(database_url) as conn:
        meta = dict(conn.execute("SELECT key, value FROM index_meta").fetchall())
    assert meta["embedding_model_folder"] == str(Path(embedding_model_path).resolve())  # migrated in place

    # Another folder is another model; a folder and a hub id that is not cached are not compared.
    assert not store_values.same_model(embedding_model_path, None, str(tmp_path), None)
    assert not store_values.same_model("intfloat/multilingual-e5-large", None, embedding_model_path, embedding_model_path)


# ---------------------------------------------------------------- a rebuild swaps in at the end


def rebuild_leftover(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regnamespace('personal_llm_rebuild') IS NOT NULL").fetchone()[0]


@pytest.mark.parametrize("failing", ["copy_chunks", "ensure_vector_index"])
def test_a_rebuild_that_fails_midway_leaves_the_old_index_whole_and_searchable(
        tmp_path, database_url, cli_args, embedder, monkeypatch, failing):
    import retrieve_related_content_from_db as retrieve
    import store

    vault, wa = write_vault(tmp_path), write_whatsapp(tmp_path)
    sources = ["--obsidian", str(vault), "--whatsapp", str(wa)]
    ingest_json([*sources, *cli_args])
    before = stored(database_url)
    write(vault, "Notes/extra.md", "# Extra\n\nA note only the rebuild would see.\n")

    # The rebuild dies after some of its chunks are written (copy), or with all of them written
    # and committed, just before its vector index (ensure_vector_index).
    original = getattr(store.Store, failing)
    calls = []

    def fail_the_second_time(self, *args):
        calls.append(1)
        if len(calls) == (2 if failing == "copy_chunks" else 1):
            raise RuntimeError("injected failure")
        return original(self, *args)

    monkeypatch.setattr(store.Store, failing, fail_the_second_time)
    with pytest.raises(RuntimeError, match="injected failure"):
        run_main(["--rebuild", *sources, *cli_args])
    monkeypatch.setattr(store.Store, failing, original)

    assert stored(database_url) == before  # every chunk and document of the old index
    with store.Store(database_url) as db:
        result = retrieve.search(db, embedder, retrieve.SearchRequest("keys under the mat"), k=3)
        assert result.hits[0].source == "<whatsapp>:Joao"
        assert db.count_chunks() == 6

    # The next rebuild drops the leftovers under the lock and swaps its index in.
    summary = ingest_json(["--rebuild", *sources, *cli_args])
    assert summary["rebuilt"] and summary["chunks_total"] == 7 and not rebuild_leftover(database_url)
    assert "<obsidian>:Notes/extra" in sources_listed(database_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('public.chunks_embedding_hnsw') IS NOT NULL").fetchone()[0]
    assert ingest_json([*sources, *cli_args])["documents_unchanged"] == 7  # the swapped-in index is live


def test_an_interrupted_rebuild_leaves_nothing_behind_after_an_ordinary_run(tmp_path, database_url, cli_args, monkeypatch):
    import store

    vault = write_vault(tmp_path, notes=2)
    args = ["--obsidian", str(vault), *cli_args]
    ingest_json(args)
    monkeypatch.setattr(store.Store, "ensure_vector_index", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        run_main(["--rebuild", *args])
    monkeypatch.undo()
    assert rebuild_leftover(database_url)
    assert ingest_json(args)["documents_unchanged"] == 2 and not rebuild_leftover(database_url)


# ---------------------------------------------------------------- a document's files are a tuple


def assert_every_document_counted(summary: dict) -> None:
    kinds = ("new", "changed", "unchanged", "kept", "skipped")
    assert summary["documents"] == sum(summary[f"documents_{kind}"] for kind in kinds), summary


def test_a_chat_named_with_a_comma_is_indexed_beside_a_truncated_export_of_its_namesake(
        tmp_path, database_url, cli_args):
    from whatsapp_export_builder import write_zip

    wa = tmp_path / "wa"
    ana_zip = write_zip(wa / "WhatsApp Chat with Ana.zip", {
        "WhatsApp Chat with Ana.txt": "26/06/2021, 12:30 - Ana: The boat leaves at nine\n"})
    args = ["--whatsapp", str(wa), *cli_args]
    first = ingest_json(args)
    assert first["documents_new"] == 1 and sources_listed(database_url) == {"<whatsapp>:Ana"}

    # The zip is cut short by a failed copy, and a group chat with Ana arrives in the same run.
    ana_zip.write_bytes(ana_zip.read_bytes()[:40])
    write(wa, "WhatsApp Chat with Ana, Rui.txt", "02/07/2021, 10:00 - Rui: Who brings the map?\n")
    out, err = run_main([*args, "--json"])
    summary = json.loads(out)
    assert "WhatsApp Chat with Ana.zip" in err  # the truncated file is named
    assert (summary["documents_new"], summary["documents_kept"], summary["documents_skipped"]) == (1, 1, 0)
    assert_every_document_counted(summary)
    assert sources_listed(database_url) == {"<whatsapp>:Ana", "<whatsapp>:Ana, Rui"}
    with psycopg.connect(database_url) as conn:
        paths = dict(conn.execute("SELECT doc_id, paths FROM documents").fetchall())
    assert sorted(Path(p).name for [p] in paths.values()) == ["WhatsApp Chat with Ana, Rui.txt",
                                                              "WhatsApp Chat with Ana.zip"]


def test_every_document_is_counted_once_in_the_summary_line_and_json(tmp_path, database_url, cli_args):
    vault = write_vault(tmp_path, notes=3)
    args = ["--obsidian", str(vault), *cli_args]
    assert_every_document_counted(ingest_json(args))
    write(vault, "Notes/n0.md", "# Note 0\n\nRewritten.\n")
    write(vault, "Notes/new.md", "# New\n\nFresh.\n")
    (vault / "Notes" / "n1.md").write_bytes(b"\x00\x01binary junk\xff" * 50)  # unreadable now: kept
    summary = ingest_json(args)
    assert_every_document_counted(summary)
    assert [summary[f"documents_{kind}"] for kind in ("new", "changed", "unchanged", "kept")] == [1, 1, 1, 1]
    line = run_main(args)[0]
    assert line.startswith("4 documents (0 new, 0 changed, 3 unchanged, 1 kept as stored (unreadable now); 0 removed")


def test_paths_stored_as_one_joined_text_are_migrated_in_place_to_whole_files(tmp_path, database_url, cli_args):
    from whatsapp_export_builder import json_chat, json_message, write_json

    wa = tmp_path / "wa"
    jid = "441@s.whatsapp.net"
    write_json(wa / "2021" / "result.json", {jid: json_chat("Ann", [json_message("2021-06-26 10:00", "hi")])})
    write_json(wa / "2022" / "result.json", {jid: json_chat("Ann", [json_message("2022-06-26 10:00", "bye")])})
    write(wa, "WhatsApp Chat with Ana, Rui.txt", "02/07/2021, 10:00 - Rui: Who brings the map?\n")
    args = ["--whatsapp", str(wa), *cli_args]
    ingest_json(args)
    with psycopg.connect(database_url) as conn:
        expected = dict(conn.execute("SELECT doc_id, paths FROM documents").fetchall())
        # The index as an older version stored it: one ", "-joined text.
        conn.execute("ALTER TABLE documents ADD COLUMN path text")
        conn.execute("UPDATE documents SET path = array_to_string(paths, ', ')")
        conn.execute("ALTER TABLE documents DROP COLUMN paths")
    assert sorted(len(p) for p in expected.values()) == [1, 2]

    assert ingest_json(args)["documents_unchanged"] == 2
    with psycopg.connect(database_url) as conn:
        assert dict(conn.execute("SELECT doc_id, paths FROM documents").fetchall()) == expected


# ---------------------------------------------------------------- moves and time zones


def vectors_by_source(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT source, embedding::text FROM chunks").fetchall())


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "index-without-text-hashes"])
def test_a_note_moved_to_another_folder_reuses_its_vectors(tmp_path, database_url, cli_args, legacy):
    vault = write_vault(tmp_path, notes=3)
    args = ["--obsidian", str(vault), *cli_args]
    ingest_json(args)
    before = vectors_by_source(database_url)
    if legacy:  # an index from before text hashes: they are filled in place on the next run
        with psycopg.connect(database_url) as conn:
            conn.execute("ALTER TABLE chunks DROP COLUMN text_hash")

    (vault / "Archive").mkdir()
    (vault / "Notes" / "n1.md").rename(vault / "Archive" / "n1.md")
    summary = ingest_json(args)
    assert (summary["documents_new"], summary["documents_deleted"]) == (1, 1)
    assert (summary["chunks_embedded"], summary["chunks_reused"]) == (0, 1)
    after = vectors_by_source(database_url)
    assert set(after) == {"<obsidian>:Notes/n0", "<obsidian>:Archive/n1", "<obsidian>:Notes/n2"}
    assert after["<obsidian>:Archive/n1"] == before["<obsidian>:Notes/n1"]

    write(vault, "Archive/n1.md", "# Note 1\n\nNow with different words.\n")  # a real edit still embeds
    assert ingest_json(args)["chunks_embedded"] == 1


def test_the_obsidian_fingerprint_follows_the_local_time_zone(tmp_path, monkeypatch):
    import time

    vault = write_vault(tmp_path, notes=1)

    def fingerprints(zone: str) -> list[str]:
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        return [d.fingerprint for d in obsidian.iter_documents(vault, len, 100)]

    try:
        assert fingerprints("Europe/Lisbon") == fingerprints("Europe/Lisbon")
        # Daily-note dates and mtimes are local dates: another zone is another note.
        assert fingerprints("Europe/Lisbon") != fingerprints("Asia/Tokyo")
    finally:
        monkeypatch.undo()
        time.tzset()


# ---------------------------------------------------------------- the forget list


def test_forgetting_is_permanent_across_runs_moves_and_rebuilds_until_unforget(tmp_path, database_url, cli_args):
    vault, wa = write_vault(tmp_path), write_whatsapp(tmp_path)
    args = ["--obsidian", str(vault), "--whatsapp", str(wa), *cli_args]
    ingest_json(args)
    db = ["--database-url", database_url]
    run_main(["--forget", "<whatsapp>:Maria", *db])
    run_main(["--forget", "<obsidian>:Notes/n1", *db])
    kept = {"<obsidian>:Notes/n0", "<obsidian>:Notes/n2", "<obsidian>:Notes/n3", "<whatsapp>:Joao"}
    assert sources_listed(database_url) == kept

    # The export and the vault still hold them: a re-run keeps them out, and so does moving the
    # note (its text is on the list) and a rebuild (the list is not part of the index).
    summary = ingest_json(args)
    assert sources_listed(database_url) == kept
    assert (summary["chunks_embedded"], summary["chunks_forgotten"]) == (0, 2)
    (vault / "Archive").mkdir()
    (vault / "Notes" / "n1.md").rename(vault / "Archive" / "n1.md")
    ingest_json(args)
    assert sources_listed(database_url) == kept
    ingest_json(["--rebuild", *args])
    assert sources_listed(database_url) == kept

    out, _ = run_main(["--list", "--forgotten", *db])
    assert [line.split("\t")[0] for line in out.splitlines()] == ["<obsidian>:Notes/n1", "<whatsapp>:Maria"]
    assert all(line.endswith("\t1 passages kept out") for line in out.splitlines())
    listed = [json.loads(line) for line in run_main(["--list", "--forgotten", "--json", *db])[0].splitlines()]
    assert {r["prefix"]: r["texts"] for r in listed} == {"<obsidian>:Notes/n1": 1, "<whatsapp>:Maria": 1}

    # --unforget lets them back on the next run, without touching the rest.
    run_main(["--unforget", "<whatsapp>:Maria", *db])
    run_main(["--unforget", "<obsidian>:Notes/n1", *db])
    assert run_main(["--list", "--forgotten", *db])[0] == ""
    summary = ingest_json(args)
    assert summary["chunks_forgotten"] == 0 and summary["chunks_embedded"] == 2
    assert sources_listed(database_url) == kept | {"<whatsapp>:Maria Silva", "<obsidian>:Archive/n1"}

    with pytest.raises(settings.UserError, match="is not on the forget list; --list --forgotten shows"):
        cpe.main(["--unforget", "<whatsapp>:Nobody", *db])


def test_a_rebuild_from_an_empty_folder_is_not_swapped_in_unless_pruned(tmp_path, database_url, cli_args):
    vault, wa = write_vault(tmp_path), write_whatsapp(tmp_path)
    ingest_json(["--obsidian", str(vault), "--whatsapp", str(wa), *cli_args])
    before = stored(database_url)
    empty = tmp_path / "unsynced-vault"
    empty.mkdir()
    with pytest.raises(settings.UserError) as err:
        run_main(["--rebuild", "--obsidian", str(empty), "--whatsapp", str(wa), *cli_args])
    assert str(err.value).startswith("the rebuild was not swapped in: obsidian gave 0 documents and 4 of the 4")
    assert "re-run with --rebuild --prune obsidian beside --obsidian PATH" in str(err.value)
    assert stored(database_url) == before and not rebuild_leftover(database_url)

    summary = ingest_json(["--rebuild", "--prune", "obsidian", "--obsidian", str(empty), "--whatsapp", str(wa),
                           *cli_args])
    assert summary["chunks_total"] == 2 and sources_listed(database_url) == {"<whatsapp>:Maria Silva",
                                                                           "<whatsapp>:Joao"}


def test_a_rebuild_on_a_fresh_database_creates_the_index_where_searches_look(tmp_path, database_url, cli_args):
    vault = write_vault(tmp_path, notes=2)
    summary = ingest_json(["--rebuild", "--obsidian", str(vault), *cli_args])
    assert summary["rebuilt"] and summary["chunks_total"] == 2 and not rebuild_leftover(database_url)
    with psycopg.connect(database_url) as conn:
        schemas = dict(conn.execute(
            """SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relname IN ('chunks', 'documents', 'index_meta', 'chunks_embedding_hnsw')""").fetchall())
        vector_schema = conn.execute(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    assert set(schemas.values()) == {"public"} and len(schemas) == 4 and vector_schema == "public"
