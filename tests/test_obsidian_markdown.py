"""obsidian_markdown: a note body's markup cleaned and its sections cut to token budgets, in memory.

Most tests count tokens as words (fast and exact to reason about); the budget tests use the real
packaged embedding model's tokenizer, and one the multilingual E5 (SentencePiece) one.
"""
from __future__ import annotations

import re

import pytest

from obsidian_markdown import MAX_CHARS_PER_TOKEN, NoteChunker, parse_body


def words(text: str) -> int:
    """A token counter for behaviour tests: one token per whitespace-separated word."""
    return len(text.split())


def note_chunks(body: str, title: str = "N", count=words, max_tokens: int = 200) -> list[tuple[str, tuple[str, ...]]]:
    """(text, heading path) of each chunk of a note body (frontmatter already removed)."""
    return NoteChunker(title, count, max_tokens).chunk(parse_body(body))


def note_texts(body: str, title: str = "N", count=words, max_tokens: int = 200) -> list[str]:
    return [text for text, _ in note_chunks(body, title, count, max_tokens)]


def body_words(texts: list[str]) -> list[str]:
    """Words of the chunk bodies (the header line of each chunk left out)."""
    return [w for text in texts for w in text.split("\n", 1)[-1].split()]


# ---------------------------------------------------------------- nothing lost


RICH_NOTE = """Opening paragraph with quokka and [[Target Note|visible alias]] words.
Second line keeps wombat.

## Heading One
- item koala
- [ ] task emu
- [x] done dingo

> [!warning] Callout title platypus
> Callout body echidna

| Col A | Col B |
|-------|-------|
| cassowary | [[Link#Section]] |

```python
def numbat():
    return "bilby"
```

### Deep heading
Closing sentence with ==highlighted wallaby== and [a link](https://example.com/x) to quoll.
Final line dugong"""
RICH_VISIBLE = """Opening paragraph with quokka and visible alias words. Second line keeps wombat. Heading One
item koala task emu done dingo Callout title platypus Callout body echidna Col A Col B cassowary
Link Section def numbat(): return "bilby" Deep heading Closing sentence with highlighted wallaby and
a link to quoll. Final line dugong"""


@pytest.mark.parametrize("max_tokens", [12, 25, 60, 400])
def test_no_visible_word_is_lost_at_any_budget(max_tokens):
    texts = note_texts(RICH_NOTE, "Rich", max_tokens=max_tokens)
    found = set(re.findall(r"[\w()\":]+", "\n".join(texts)))
    missing = [w for w in re.findall(r"[\w()\":]+", RICH_VISIBLE) if w not in found]
    assert missing == []
    assert all(words(text) <= max_tokens for text in texts)


# ---------------------------------------------------------------- cleaning


@pytest.mark.parametrize("markdown, expected", [
    ("See [[A|B]] now", "See B now"),
    ("See [[A#H]] now", "See A > H now"),
    ("See [[A]] and [[A.md]] and [[#Local heading]]", "See A and A and Local heading"),
    ("See [[A#^blockref]] now", "See A now"),
    ("Pic ![[photo.png]] ![[photo.png|300]] ![[doc.pdf#page=2]] ![[View.base#Table]] end", "Pic end"),
    ("Embed ![[Other note]] ![[Other note#Part]]", "Embed Other note Other note > Part"),
    ("Keep %%hidden%% this", "Keep this"),
    ("Keep <!-- html comment --> this", "Keep this"),
    ("A paragraph ^block-id-1", "A paragraph"),
    ("==highlighted== and **bold** and *italic* and ~~struck~~ and _under_", "highlighted and bold and italic and struck and under"),
    ("A [markdown link](https://example.com/a_(b)) and <https://x.org>", "A markdown link and https://x.org"),
    ("An image ![alt text|200](img.png) and ![](img.png) here", "An image alt text and here"),
    ("Footnote[^1] here ^[inline note]", "Footnote here inline note"),
    ("Inline `[[not a link]] %%kept%%` code", "Inline [[not a link]] %%kept%% code"),
    ("Escaped \\*stars\\* and 2*3*4 and snake_case_name", "Escaped *stars* and 2*3*4 and snake_case_name"),
    ("Line<br>break and <span style='x'>span</span>", "Line break and span"),
    ("| cell a | [[X\\|alias]] |", "cell a | alias"),
])
def test_inline_markup_is_cleaned(markdown, expected):
    assert note_texts(markdown) == ["N\n" + expected]


def test_inline_tags_are_collected_and_kept_in_the_text():
    tags: list[str] = []
    [section] = parse_body("We talked about #project/alpha and #wip, not #123 or https://x.org/#frag.", tags)
    assert tags == ["project/alpha", "wip"]
    assert section.blocks[0].text == "We talked about #project/alpha and #wip, not #123 or https://x.org/#frag."


def test_blocks_comments_callouts_and_code():
    body = """Before
%%
a hidden
multi-line comment
%%
After

> [!note]- Folded title
> Callout text stays
>> nested quote

---

```js
const x = "[[kept literally]]"; // %% also kept

let y = 2;
```

```dataview
TABLE file.name FROM #tag
```
~~~
tilde fence
~~~
- [ ] open task
- [x] closed task"""
    assert note_texts(body) == ["\n".join([
        "N", "Before", "After", "", "Folded title", "Callout text stays", "nested quote", "",
        'const x = "[[kept literally]]"; // %% also kept', "", "let y = 2;", "", "tilde fence", "",
        "- open task", "- closed task",
    ])]


# ---------------------------------------------------------------- headings and token budgets


def test_headings_structure_headers_and_merging():
    body = """Intro text.

# Aliases
## Add an alias to a note
Use the aliases property.
## Find a note using an alias
### Details
Type the alias in the switcher.
## Empty heading
"""
    # Small neighbours merged into one chunk, under their common heading path (none here).
    assert note_chunks(body, "Aliases", max_tokens=400) == [("\n".join([
        "Aliases", "Intro text.", "", "Aliases > Add an alias to a note", "Use the aliases property.", "",
        "Find a note using an alias > Details", "Type the alias in the switcher.", "", "Empty heading"]), ())]
    body = ("# A\n## B\none two three four five six seven eight nine ten\n"
            "## C\n### D\neleven twelve thirteen fourteen fifteen sixteen seventeen")
    assert note_chunks(body, max_tokens=21) == [
        ("N > A > B\none two three four five six seven eight nine ten", ("A", "B")),
        ("N > A > C > D\neleven twelve thirteen fourteen fifteen sixteen seventeen", ("A", "C", "D")),
    ]


def test_heading_too_long_for_the_header_goes_into_the_body():
    texts = note_texts("# Top\n## " + " ".join(f"h{i}" for i in range(30)) + "\nbody words", max_tokens=40)
    assert all(words(t) <= 40 for t in texts)
    assert texts[0].startswith("N > Top > h0 h1") and texts[0].split("\n")[0].endswith("…")
    in_order = list(dict.fromkeys(body_words(texts)))  # minus the overlap
    assert in_order == ["Top", ">"] + [f"h{i}" for i in range(30)] + ["body", "words"]


def test_big_section_is_split_with_overlap_and_header_on_every_chunk():
    sentences = [f"Sentence number {i} talks about topic{i}." for i in range(60)]
    pieces = note_texts("## Part\n" + " ".join(sentences), "Big", max_tokens=60)
    assert len(pieces) > 4
    assert all(text.startswith("Big > Part\n") and words(text) <= 60 for text in pieces)
    for before, after in zip(pieces, pieces[1:]):
        last_sentence = re.findall(r"Sentence number \d+ talks about topic\d+\.", before)[-1]
        assert after.split("\n")[1] == last_sentence  # modest overlap: one sentence
    assert all(f"topic{i}." in "\n".join(pieces) for i in range(60))


# ---------------------------------------------------------------- budgets with real tokenizers


HARD_NOTES = {
    "Giant paragraph": "Intro.\n\n" + " ".join(
        f"The {i}th sentence mentions photosynthesis and chlorophyll pigments." for i in range(400)),
    "Giant line": "## Data\n" + "x7Q" * 20_000,
    "Giant word list": " ".join(f"w{i}" for i in range(5000)),
    "Huge table": "| Name | City | Notes |\n|---|---|---|\n" + "\n".join(
        f"| person {i} | city {i % 17} | likes item {i * 7} very much |" for i in range(800)),
    "Long heading": "# " + "very long heading " * 200 + "\nbody under it",
    ("Long title " * 12).strip(): "short body",
    "Many sections": "\n".join(f"## Section {i}\nline {i} text" for i in range(300)),
    "Code": "```python\n" + "\n".join(f"value_{i} = compute({i}, 'x' * {i})" for i in range(2000)) + "\n```",
    "Unicode": "日本語のテキストです。" * 2000 + "\n\nÉmoji 🐙🌲 ação " * 300,
}


def check_budget(count, budget: int) -> dict[str, list[str]]:
    """Chunk texts of every hard note, each checked against the token and character budgets."""
    chunks = {title: note_texts(body, title, count, budget) for title, body in HARD_NOTES.items()}
    over = [(title, count(text)) for title, texts in chunks.items() for text in texts if count(text) > budget]
    assert over == []
    assert all(len(text) <= budget * MAX_CHARS_PER_TOKEN for texts in chunks.values() for text in texts)
    return chunks


def test_every_chunk_fits_the_real_model_budget(embedder):
    chunks = check_budget(embedder.count_tokens, embedder.passage_token_budget)
    giant = "\n".join(chunks["Giant paragraph"])
    assert all(f"The {i}th sentence" in giant for i in range(400))
    line_chunks = chunks["Giant line"]
    assert len(line_chunks) > 1 and "".join(body_words(line_chunks)) == "x7Q" * 20_000
    word_list = body_words(chunks["Giant word list"])  # overlap repeats a few words
    assert list(dict.fromkeys(word_list)) == [f"w{i}" for i in range(5000)] and len(word_list) < 6000
    table = chunks["Huge table"]
    assert len(table) > 5 and all(text.split("\n")[1] == "Name | City | Notes" for text in table)
    assert all(f"person {i} |" in "\n".join(table) for i in range(800))
    assert "\n".join(chunks["Many sections"]).count("line 299 text") == 1
    assert "body under it" in "\n".join(chunks["Long heading"])


def test_every_chunk_fits_a_sentencepiece_budget(multilingual_model_path):
    from embedding_generator_multilingual import Embedder

    e5 = Embedder(multilingual_model_path, device="cpu")
    check_budget(e5.count_tokens, e5.passage_token_budget)
    check_budget(e5.count_tokens, 40)


def test_token_counting_is_linear_not_quadratic():
    calls = []

    def counting(text):
        calls.append(len(text))
        return words(text)

    paragraphs = [f"Paragraph {i} says something about item {i}. It goes on a little." for i in range(3000)]
    produced = len(note_texts("\n\n".join(paragraphs), "Long", counting, 120))
    # About one count per paragraph and a few per chunk; the text counted in all is a small
    # multiple of the note (a quadratic packer would count it hundreds of times).
    assert len(calls) < 3 * len(paragraphs) + 4 * produced
    assert sum(calls) < 4 * len("\n\n".join(paragraphs))
