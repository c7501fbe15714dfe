"""Writes a vault and a WhatsApp folder mixing good files with hostile and broken ones.

`build(root)` returns (vault, whatsapp, good, bad): `good` maps each good file to a phrase that
must be findable in the index afterwards; `bad` lists the file names a warning must mention.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

BIG_NOTE_MB = 50


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def build(root: Path) -> tuple[Path, Path, dict[str, str], list[str]]:
    """Create the corpus under `root`; see the module docstring."""
    vault = root / "vault"
    whatsapp = root / "whatsapp"
    good: dict[str, str] = {}
    bad: list[str] = []

    # Good notes, some with hostile-looking but legitimate content.
    _write_bytes(vault / "Good" / "Plain.md", b"# Plain\nThe zebrafish aquarium needs cleaning on Fridays.\n")
    good["Good/Plain.md"] = "zebrafish aquarium"
    _write_bytes(vault / "Good" / "Injection.md",
                 "Robert'); DROP TABLE chunks;-- likes quokka sandwiches.\n".encode())
    good["Good/Injection.md"] = "quokka sandwiches"
    _write_bytes(vault / "Good" / "emoji 🐙 name.md", "The octopus 🐙 collection grows.\n".encode())
    good["Good/emoji 🐙 name.md"] = "octopus"
    _write_bytes(vault / "Good" / "line\nbreak.md", b"A file name with a newline talks about narwhals.\n")
    good["Good/line\nbreak.md"] = "narwhals"
    nested = "".join("  " * depth + f"- level {depth}\n" for depth in range(200))
    _write_bytes(vault / "Good" / "Nested.md", ("Deep list about axolotls.\n" + nested).encode())
    good["Good/Nested.md"] = "axolotls"
    _write_bytes(vault / "Good" / "Broken frontmatter.md",
                 b"---\ntags: [unclosed\ntitle: : :\n---\nThe body mentions capybaras.\n")
    good["Good/Broken frontmatter.md"] = "capybaras"
    bad.append("Broken frontmatter.md")
    # 100k lines, nearly all empty quote markers: the parser walks every line, the model embeds little.
    long_lines = "\n".join(f"> line {i} of the pangolin ledger" if i % 20_000 == 0 else ">" for i in range(100_000))
    _write_bytes(vault / "Good" / "Hundred thousand lines.md", long_lines.encode())
    good["Good/Hundred thousand lines.md"] = "pangolin ledger"

    # A billion-laughs frontmatter: YAML anchors that expand to a huge tree.
    laughs = ["a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]"]
    laughs += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
               f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]" for i in range(8)]
    _write_bytes(vault / "Good" / "Laughs.md", ("---\n" + "\n".join(laughs) + "\n---\nThe body is about tapirs.\n").encode())
    good["Good/Laughs.md"] = "tapirs"
    # A folder link back to its parent: walking must not loop.
    (vault / "Good" / "Loop").mkdir(parents=True, exist_ok=True)
    (vault / "Good" / "Loop" / "back").symlink_to("..", target_is_directory=True)
    bad.append("Loop/back")

    # Bad notes.
    _write_bytes(vault / "Bad" / "junk.md", bytes(range(256)) * 64)
    bad.append("junk.md")
    _write_bytes(vault / "Bad" / "invalid utf8.md", b"caf\xe9 and \xff\xfe wombats\n")
    good["Bad/invalid utf8.md"] = "wombats"  # readable text is kept, bad bytes replaced
    bad.append("invalid utf8.md")
    _write_bytes(vault / "Bad" / "nul bytes.md", b"text with \x00 nul \x00 bytes\n" * 10)
    bad.append("nul bytes.md")
    _write_bytes(vault / "Bad" / "huge.md", b"A" * (BIG_NOTE_MB * 1024 * 1024))
    bad.append("huge.md")

    # WhatsApp: one good export, and broken ones.
    good_chat = {
        "111@s.whatsapp.net": {
            "name": "Maria Silva", "type": "ios", "messages": {
                "m1": {"from_me": False, "timestamp": 1624702500, "data": "Shall we visit the lemur sanctuary?",
                       "sender": None, "media": False, "meta": False},
                "m2": {"from_me": True, "timestamp": 1624702600, "data": "Yes, Saturday!",
                       "sender": None, "media": False, "meta": False},
            },
        }
    }
    _write_bytes(whatsapp / "good" / "result.json", json.dumps(good_chat).encode())
    good["<whatsapp>:Maria Silva"] = "lemur sanctuary"
    truncated = json.dumps({"222@s.whatsapp.net": {"name": "Cut", "messages": {
        "x": {"from_me": True, "timestamp": 1, "data": "never seen okapi"}}}})
    _write_bytes(whatsapp / "truncated" / "result.json", truncated[: len(truncated) // 2].encode())
    bad.append("truncated")
    _write_bytes(whatsapp / "wrongtypes" / "result.json", json.dumps(
        {"333@s.whatsapp.net": {"name": 5, "messages": ["not", "a", "dict"]}}).encode())
    bad.append("wrongtypes")
    _write_bytes(whatsapp / "WhatsApp Chat with Dates.txt",
                 "45/13/21, 10:15 - Ana: impossible date\n99/99/99, 99:99 - Ana: more\n".encode())
    bad.append("WhatsApp Chat with Dates.txt")
    mixed = {
        "444@s.whatsapp.net": {"name": "Mixed Bag", "messages": {
            "g": {"from_me": False, "timestamp": 1624702500, "data": "The gecko terrarium arrived."},
            "t": {"from_me": False, "timestamp": "yesterday", "data": "bad time"},
            "d": {"from_me": True, "timestamp": 1624702600, "data": {"not": "text"}},
            "n": None,
        }},
    }
    _write_bytes(whatsapp / "mixed" / "result.json", json.dumps(mixed).encode())
    good["<whatsapp>:Mixed Bag"] = "gecko terrarium"
    bad.append("mixed")
    _write_bytes(whatsapp / "WhatsApp Chat with Corrupt.zip", b"PK\x03\x04" + bytes(range(256)) * 4)
    bad.append("WhatsApp Chat with Corrupt.zip")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("WhatsApp Chat with Bomb.txt", b"0" * (600 * 1024 * 1024))
    _write_bytes(whatsapp / "WhatsApp Chat with Bomb.zip", bomb.getvalue())
    bad.append("WhatsApp Chat with Bomb.zip")
    return vault, whatsapp, good, bad
