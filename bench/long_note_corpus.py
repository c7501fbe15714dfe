"""Long notes with planted facts, and the questions that find them (bench_quality's second set).

bench/quality_corpus.py plants each fact in a note of one or two sentences, so it cannot tell
how the size of a note's chunks affects finding one paragraph of a long note. Here every note is
written as Markdown (frontmatter, headings, lists) and goes through the real parser and chunker
(obsidian_to_embeddings.note_to_chunks) at the budget under test. Families of look-alike notes
(trip journals day by day, weekly meeting notes, book notes by chapter, recipes, a research log,
Portuguese trip diaries) share their headings and most of their sentences, so a question is
answered only by the section that holds its planted sentence. bench_quality marks each chunk with
the facts whose planted sentences it contains (`metadata["facts"]`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from quality_corpus import Question


@dataclass
class LongNote:
    """One Markdown note: its vault path (with `.md`), its text, and {fact: planted sentence}."""

    relpath: str
    text: str
    facts: dict[str, str]


TRAVEL_FILLER = [
    "Breakfast at the hotel was buffet style, too much coffee as usual.",
    "We walked for hours and my feet were sore by the afternoon.",
    "The weather turned grey after lunch, so we went back to rest.",
    "Took the metro across town; the ticket machines were confusing at first.",
    "Dinner at a small family place near the station, simple and good.",
    "Bought postcards and a few stamps at a kiosk.",
    "The old town was crowded with tour groups until about five.",
    "Spent the evening on the balcony reading and planning the next day.",
    "A long queue at the museum, but worth it for the top floor views.",
    "We got lost twice and ended up in a quiet residential street with nice gardens.",
    "Packed a picnic from the supermarket and ate it in the park.",
    "Rented bikes for a few hours and rode along the river.",
    "The train was late by forty minutes, nobody seemed surprised.",
    "Met a friendly couple from Canada at the bar and swapped tips.",
    "Laundry day at the hotel, then a slow walk around the market.",
    "Sunset from the hill behind the cathedral, many photos.",
    "Tried the local beer, a bit too sweet for me.",
    "Slept badly because of the noise from the street below.",
]
TRIPS = [
    ("Travel/Japan 2023", "2023-04-02", ["Tokyo", "Hakone", "Kyoto", "Nara", "Osaka", "Hiroshima", "Tokyo"], {
        "japan-deer": (3, "In Nara a deer snatched the paper map out of my hand and ate half of it."),
        "japan-ryokan": (1, "The ryokan in Hakone served a kaiseki dinner of eleven courses in our room."),
    }),
    ("Travel/Portugal 2022", "2022-09-10", ["Lisbon", "Lisbon", "Sintra", "Porto", "Douro valley", "Porto"], {
        "portugal-tram": (1, "Someone picked my pocket on tram 28 and I lost about sixty euros."),
        "portugal-port": (5, "At the Douro winery we bought six bottles of 20-year tawny to ship home."),
    }),
    ("Travel/Mexico 2021", "2021-12-18", ["Mexico City", "Mexico City", "Oaxaca", "Oaxaca", "Puebla", "Mexico City"], {
        "mexico-mole": (3, "The cooking class in Oaxaca taught us mole negro with twenty-six ingredients."),
    }),
    ("Travel/Iceland 2024", "2024-02-05", ["Reykjavik", "Golden Circle", "Vik", "Jokulsarlon", "Reykjavik"], {
        "iceland-tyre": (2, "Near Vik the rental car got a flat tyre and we waited two hours for help."),
    }),
    ("Travel/Italy 2019", "2019-05-20", ["Rome", "Rome", "Florence", "Siena", "Bologna", "Venice", "Venice"], {
        "italy-passport": (4, "In Bologna I left my passport at the front desk and only noticed in Venice."),
    }),
]

MEETING_FILLER = [
    "Sprint velocity roughly the same as last week.",
    "QA found a handful of minor bugs, all triaged.",
    "Design shared new mockups for the settings page.",
    "Support tickets are down a little since the last release.",
    "The on-call week was quiet apart from one disk alert.",
    "Marketing wants screenshots for the newsletter by Friday.",
    "We reviewed the roadmap and nothing moved.",
    "Hiring: two candidates in the final round.",
    "Budget review is next month, finance will send the template.",
    "The staging environment was slow again, infra is looking at it.",
    "Docs need an update after the API change.",
    "Everyone agreed to keep the meeting to thirty minutes.",
]
MEETINGS = [
    ("Work/Meetings/Weekly sync 2023-03-07", "2023-03-07", {
        "sync-launch": ("Decisions", "We move the mobile launch to 12 May because the translation vendor is two weeks late."),
    }),
    ("Work/Meetings/Weekly sync 2023-03-14", "2023-03-14", {
        "sync-pricing": ("Decisions", "Pricing stays at 9 euros a month; the annual plan gets two months free instead of a discount code."),
    }),
    ("Work/Meetings/Weekly sync 2023-03-21", "2023-03-21", {
        "sync-owner": ("Action items", "Keisha owns the data retention policy draft and presents it at the April all-hands."),
    }),
    ("Work/Meetings/Weekly sync 2023-03-28", "2023-03-28", {
        "sync-outage": ("Updates", "The login outage on Sunday lasted 47 minutes and was caused by an expired signing key."),
    }),
    ("Work/Meetings/Weekly sync 2023-04-04", "2023-04-04", {}),
    ("Work/Meetings/Weekly sync 2023-04-11", "2023-04-11", {}),
]

BOOK_FILLER = [
    "The author repeats the main argument a few times with new examples.",
    "A slow chapter, mostly background and history.",
    "Good anecdotes but thin on evidence here.",
    "I underlined a lot in this part, need to reread it.",
    "The tone gets more personal towards the end of the chapter.",
    "Some of the statistics feel dated now.",
    "This links nicely to what I read last year on habits.",
    "Not sure I agree, but the reasoning is clear.",
    "Short chapter, a bridge to the next part.",
    "The case study is the best part of the chapter.",
]
BOOKS = [
    ("Books/Thinking in Systems", "2022-02-14", 6, {
        "systems-bathtub": (2, "The bathtub picture: a stock only changes through its inflows and outflows, so you cannot drain it faster than the outflow allows."),
    }),
    ("Books/The Design of Everyday Things", "2021-07-03", 7, {
        "design-doors": (1, "A door that needs a sign saying push has already failed; the handle itself should tell you what to do."),
    }),
    ("Books/Deep Work", "2020-10-11", 5, {
        "deepwork-shutdown": (4, "Newport ends every workday with a shutdown ritual and says the phrase schedule shutdown complete."),
    }),
    ("Books/Range", "2023-06-25", 6, {}),
]

RECIPE_FILLER = [
    "Season with salt and pepper to taste.",
    "Keeps in the fridge for three days in a closed box.",
    "Use a heavy pan so nothing burns at the bottom.",
    "Serve with a green salad on the side.",
    "Chop everything before you start, it goes fast later.",
    "Double the quantities for a party, it freezes well.",
    "Let it rest ten minutes before cutting.",
    "A squeeze of lemon at the end brightens it up.",
]
RECIPES = [
    ("Recipes/Sourdough bread", "2021-03-01", {
        "bread-oven": ("Notes", "Bake covered at 250 degrees for 20 minutes, then uncovered at 230 for another 25 until the crust is dark."),
    }),
    ("Recipes/Lasagne", "2020-11-15", {
        "lasagne-bechamel": ("Notes", "A pinch of nutmeg in the bechamel is what made grandma's version taste right."),
    }),
    ("Recipes/Thai green curry", "2022-08-08", {}),
    ("Recipes/Banana pancakes", "2023-01-29", {}),
]

LOG_FILLER = [
    "Ran the nightly jobs, all green.", "Cleaned up the notebook and pushed to the repo.",
    "Read two papers on the topic, nothing directly useful.", "Short day, mostly meetings.",
    "Refactored the data loader, tests pass.", "Plotted last week's results again with error bars.",
]
LOG_FACTS = {
    "log-sensor": ("2022-05-17", "Found the cause of the drift: the humidity sensor was mounted next to the fan and read 8% too low."),
    "log-grant": ("2022-06-02", "Heard back from the foundation: the grant was approved for 18 months instead of 24."),
}

PT_FILLER = [
    "Acordamos cedo e tomamos café na padaria da esquina.",
    "Andamos muito e à tarde choveu forte.",
    "Almoçamos peixe frito com arroz e feijão num restaurante simples.",
    "Fomos à praia de manhã, a água estava gelada.",
    "À noite ficamos na pousada conversando e jogando cartas.",
    "O ônibus atrasou quase uma hora, paciência.",
    "Compramos lembrancinhas na feira de artesanato.",
    "Dia tranquilo, li um livro na rede da varanda.",
]
PT_TRIPS = [
    ("Viagens/Bahia 2022", "2022-01-08", ["Salvador", "Salvador", "Morro de São Paulo", "Itacaré", "Itacaré"], {
        "bahia-celular": (2, "No barco para Morro de São Paulo o meu celular caiu no mar e se perdeu."),
    }),
    ("Viagens/Minas 2023", "2023-07-14", ["Belo Horizonte", "Ouro Preto", "Ouro Preto", "Tiradentes", "Inhotim"], {
        "minas-queijo": (3, "Em Tiradentes compramos três queijos canastra para levar de presente."),
    }),
]

QUESTIONS = [
    ("What happened to my map in Nara?", "japan-deer", "long-rare"),
    ("Which animal ate something of mine on the Japan trip?", "japan-deer", "long-paraphrase"),
    ("How many courses was the dinner at the ryokan?", "japan-ryokan", "long-rare"),
    ("Where did I get robbed in Lisbon?", "portugal-tram", "long-paraphrase"),
    ("What wine did we buy in Portugal?", "portugal-port", "long-paraphrase"),
    ("What dish did we learn to cook in Oaxaca?", "mexico-mole", "long-rare"),
    ("What went wrong with the car in Iceland?", "iceland-tyre", "long-paraphrase"),
    ("Where did I forget my passport in Italy?", "italy-passport", "long-paraphrase"),
    ("Why was the mobile launch delayed?", "sync-launch", "long-paraphrase"),
    ("What did we decide about the annual plan price?", "sync-pricing", "long-paraphrase"),
    ("Who is writing the data retention policy?", "sync-owner", "long-paraphrase"),
    ("How long was the login outage and why?", "sync-outage", "long-paraphrase"),
    ("What is the bathtub metaphor about stocks and flows?", "systems-bathtub", "long-rare"),
    ("What did the book say about doors that need signs?", "design-doors", "long-paraphrase"),
    ("How does Newport end his workday?", "deepwork-shutdown", "long-rare"),
    ("At what temperature do I bake the sourdough?", "bread-oven", "long-paraphrase"),
    ("What spice goes in grandma's white sauce?", "lasagne-bechamel", "long-paraphrase"),
    ("Why was the sensor drifting in my research log?", "log-sensor", "long-paraphrase"),
    ("How long is the grant from the foundation?", "log-grant", "long-paraphrase"),
    ("O que aconteceu com o meu celular na Bahia?", "bahia-celular", "long-pt"),
    ("Where did I lose my phone on the boat?", "bahia-celular", "long-crosslingual"),
    ("O que compramos em Tiradentes?", "minas-queijo", "long-pt"),
    ("Which cheese did we bring back from Minas?", "minas-queijo", "long-crosslingual"),
]


def _frontmatter(day: str, tags: list[str]) -> str:
    return f"---\ncreated: {day}\ntags: [{', '.join(tags)}]\n---\n"


def _paragraph(rng: random.Random, pool: list[str], n: int, planted: str | None = None) -> str:
    sentences = rng.sample(pool, n)
    if planted:
        sentences.insert(rng.randrange(len(sentences) + 1), planted)
    return " ".join(sentences)


def _trip(rng, relpath, day, places, facts, pool, heading) -> LongNote:
    by_day = {index: sentence for index, sentence in facts.values()}
    parts = [_frontmatter(day, ["travel"]), f"Trip journal, {len(places)} days.\n"]
    for index, place in enumerate(places):
        parts.append(f"## {heading} {index + 1}: {place}\n\n{_paragraph(rng, pool, 6, by_day.get(index))}\n")
    return LongNote(f"{relpath}.md", "\n".join(parts), {fact: s for fact, (_, s) in facts.items()})


def _meeting(rng, relpath, day, facts) -> LongNote:
    by_section = {section: sentence for section, sentence in facts.values()}
    attendees = ", ".join(rng.sample(["Keisha", "Tomás", "Yuki", "Priya", "Ben", "Olga", "Samir"], 4))
    parts = [_frontmatter(day, ["meeting"]), f"## Attendees\n\n{attendees}\n"]
    for section in ("Updates", "Risks", "Decisions", "Action items", "Notes"):
        planted = by_section.get(section)
        items = rng.sample(MEETING_FILLER, 4) + ([planted] if planted else [])
        rng.shuffle(items)
        parts.append(f"## {section}\n\n" + "\n".join(f"- {item}" for item in items) + "\n")
    return LongNote(f"{relpath}.md", "\n".join(parts), {fact: s for fact, (_, s) in facts.items()})


def _book(rng, relpath, day, chapters, facts) -> LongNote:
    by_chapter = {index: sentence for index, sentence in facts.values()}
    parts = [_frontmatter(day, ["books"]), "Reading notes, chapter by chapter.\n"]
    for index in range(chapters):
        parts.append(f"## Chapter {index + 1}\n\n{_paragraph(rng, BOOK_FILLER, 6, by_chapter.get(index))}\n")
    return LongNote(f"{relpath}.md", "\n".join(parts), {fact: s for fact, (_, s) in facts.items()})


def _recipe(rng, relpath, day, facts) -> LongNote:
    planted = {section: sentence for section, sentence in facts.values()}
    steps = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(rng.sample(RECIPE_FILLER, 4)))
    parts = [_frontmatter(day, ["recipe"]), "## Ingredients\n\n- flour\n- salt\n- water\n- olive oil\n",
             f"## Steps\n\n{steps}\n", f"## Notes\n\n{_paragraph(rng, RECIPE_FILLER, 3, planted.get('Notes'))}\n",
             f"## Variations\n\n{_paragraph(rng, RECIPE_FILLER, 2)}\n"]
    return LongNote(f"{relpath}.md", "\n".join(parts), {fact: s for fact, (_, s) in facts.items()})


def _log(rng) -> LongNote:
    planted = {day: sentence for day, sentence in LOG_FACTS.values()}
    days = sorted({f"2022-{month:02d}-{day:02d}" for month in (4, 5, 6) for day in (2, 9, 17, 24)} | set(planted))
    parts = [_frontmatter("2022-04-01", ["research"]), "Lab log for the weather station project.\n"]
    for day in days:
        parts.append(f"## {day}\n\n{_paragraph(rng, LOG_FILLER, 3, planted.get(day))}\n")
    return LongNote("Research/Station log.md", "\n".join(parts), {fact: s for fact, (_, s) in LOG_FACTS.items()})


def build(seed: int = 0) -> tuple[list[LongNote], list[Question]]:
    """The long notes and their questions, deterministic per seed."""
    rng = random.Random(seed)
    notes = [_trip(rng, *trip, TRAVEL_FILLER, "Day") for trip in TRIPS]
    notes += [_trip(rng, *trip, PT_FILLER, "Dia") for trip in PT_TRIPS]
    notes += [_meeting(rng, *meeting) for meeting in MEETINGS]
    notes += [_book(rng, *book) for book in BOOKS]
    notes += [_recipe(rng, *recipe) for recipe in RECIPES]
    notes.append(_log(rng))
    planted = {fact for n in notes for fact in n.facts}
    questions = [Question(text, fact, category) for text, fact, category in QUESTIONS]
    assert all(q.fact in planted for q in questions)
    return notes, questions
