"""Long two-person chats with planted facts and the questions that find them (no model needed).

    .venv/bin/python bench/memory_corpus.py OUT_DIR      # writes the .txt exports + questions.json

Ten (or more) chats between two friends, each with ~30 sittings spread over about a year, ~20
messages a sitting, written as WhatsApp's in-app "Export chat" files (`WhatsApp Chat with B.txt`,
Android layout). Like the held-out set of issue 15, both speakers are named in the questions
(the exporter of a chat is named in the export's lines, as Android writes them), facts
are told with relative times ("yesterday", "last weekend"), sittings are full of small talk, and
every chat tells the same kinds of facts (pets, trips, jobs, classes...) with other details.

Questions, with the evidence messages marked (chat + exact message text):
- single:    one fact from one sitting ("What is the name of Ines's rabbit?")
- when:      when something happened ("When did Ines adopt a rabbit?"), the date is the sitting's
- multi:     facts from several sittings combined ("Which places has Ines travelled to?",
             "Where did Ines go to visit her sister?": the sister's move + the visit)
- inference: what follows from what was said ("Would Ines enjoy a week in a mountain cabin?"),
             evidence = the speaker's messages that show the trait
"""
from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

KINDS = ("single", "when", "multi", "inference")
DEFAULT_CHATS = 10
DEFAULT_SEED = 15
SITTINGS = (24, 34)
DAYS_BETWEEN_SITTINGS = (4, 16)
FILLER_PER_SITTING = (9, 15)
INFERENCE_PER_TRAIT = 2

FIRST_NAMES = [
    "Ines", "Marcus", "Priya", "Tomas", "Yuki", "Dara", "Leila", "Oskar", "Amara", "Felix", "Noor", "Caleb",
    "Rosa", "Idris", "Hana", "Jonah", "Zofia", "Mateo", "Keiko", "Elias", "Vera", "Samir", "Lena", "Kofi",
    "Mirela", "Teodor", "Aisha", "Bruno", "Selin", "Arjun",
]


@dataclass
class Message:
    """One line of a sitting."""

    time: datetime
    speaker: str
    text: str


@dataclass
class Fact:
    """A planted fact: who told it, the message that tells it, and what questions it serves."""

    family: str
    who: str
    sitting: int
    message: Message
    slots: dict
    event_day: datetime
    traits: tuple[str, ...] = ()


@dataclass
class Question:
    """One question; `evidence` are the texts of the messages that answer it (in `chat`)."""

    text: str
    kind: str
    chat: str
    evidence: list[str]
    answer: str = ""
    family: str = ""


@dataclass
class Conversation:
    """One chat: `owner` exported it (becomes "Me"), `partner` names the file."""

    owner: str
    partner: str
    messages: list[Message] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        """The in-app export's file name."""
        return f"WhatsApp Chat with {self.partner}.txt"

    def export_text(self) -> str:
        """The chat as Android's 'Export chat' writes it (day-first dates)."""
        head = (f"{self.messages[0].time:%d/%m/%Y, %H:%M} - Messages and calls are end-to-end encrypted. "
                "No one outside of this chat, not even WhatsApp, can read or listen to them.")
        lines = [head] + [f"{m.time:%d/%m/%Y, %H:%M} - {m.speaker}: {m.text}" for m in self.messages]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- fact families
# Each family: slot values, statements (first person, {rel} = relative time), follow-ups that
# talk about it without the answer, and question templates. Traits feed inference questions.

PETS = ["rabbit", "cat", "dog", "parrot", "hamster", "tortoise", "kitten", "puppy", "ferret", "goldfish"]
PET_NAMES = ["Biscuit", "Pepper", "Mango", "Luna", "Oscar", "Ziggy", "Noodle", "Waffles", "Juniper", "Pickles",
             "Tofu", "Maple", "Clementine", "Bruno", "Olive", "Pistachio", "Gizmo", "Saffron"]
PLACES = ["Lisbon", "Kyoto", "Reykjavik", "Lake Tahoe", "the Dolomites", "Marrakesh", "Vancouver", "Crete",
          "Patagonia", "Edinburgh", "Seoul", "Banff", "Tuscany", "Oaxaca", "Prague", "Tasmania", "Hokkaido",
          "the Azores", "Cape Town", "Bruges"]
TRIP_DOINGS = ["went kayaking in the bay", "ate our way through the night market", "hiked up to a hidden waterfall",
               "toured an old castle on the hill", "took a cooking class with a local grandma",
               "rode bikes along the coast road", "went snorkelling with sea turtles",
               "watched the sunrise from a volcano", "got lost in the old town for hours",
               "did a boat trip to see whales"]
ROLES = ["pediatric nurse", "data analyst", "pastry chef", "kindergarten teacher", "architect", "physiotherapist",
         "UX designer", "electrician", "court translator", "park ranger", "sound engineer", "pharmacist",
         "dental hygienist", "museum curator", "social worker"]
CARING_ROLES = {"pediatric nurse", "kindergarten teacher", "physiotherapist", "social worker", "pharmacist"}
ORGS = ["the children's hospital", "a small startup downtown", "the bakery on Elm Street", "the city council",
        "a design studio by the river", "the national park office", "a community clinic", "the public library",
        "a recording studio", "the science museum"]
CLASSES = ["pottery", "salsa dancing", "watercolour painting", "rock climbing", "sourdough baking", "Japanese",
           "guitar", "chess", "woodworking", "film photography", "swimming", "improv theatre", "jazz piano",
           "bouldering", "calligraphy"]
TEACHERS = ["Gloria", "Mr. Abernathy", "Luis", "Madame Ferrand", "Kenji", "Bettina", "Omar", "Ruth", "Desmond",
            "Ingrid", "Paolo", "Sunita"]
BOOKS = [("The Salt Orchard", "Mara Quill"), ("Nine Lanterns", "Oren Vale"), ("A House of Small Winds", "Ida Renn"),
         ("The Cartographer's Daughter", "Lucas Penhale"), ("Glass Tides", "Amaya Stroud"),
         ("The Last Tram to Vienna", "Piet Hollis"), ("Copper Moon", "Nadia Ferro"), ("Quiet Engines", "Rafe Dunmore"),
         ("The Honey Thief", "Clara Voss"), ("Winter Cartography", "Soren Blyth"), ("Paper Elephants", "June Okafor"),
         ("The Orchid Ledger", "Tobias Wren")]
BANDS = ["The Velvet Owls", "Neon Harbour", "Paper Kites", "Saltwater Choir", "The Midnight Tailors",
         "Copper Lungs", "Shizuka Drive", "Mother Ocean", "The Lantern Society", "Broken Compass", "Glass Animals Club",
         "Honey Static"]
VENUES = ["the Roundhouse", "the old cathedral", "the park amphitheatre", "a tiny jazz bar", "the stadium",
          "the harbour warehouse", "the botanical garden"]
RELATIVES = ["sister", "brother", "cousin", "mom", "dad", "grandmother", "uncle", "aunt", "nephew", "niece"]
CITIES = ["Denver", "Porto", "Melbourne", "Toronto", "Glasgow", "Austin", "Munich", "Wellington", "Valencia",
          "Montreal", "Bergen", "Nairobi"]
FAMILY_NEWS = ["got engaged on a hot air balloon", "graduated from nursing school", "retired after forty years",
               "broke an arm skiing", "opened a little flower shop", "won a regional baking contest",
               "ran for the town council", "adopted twin boys", "finished a PhD in marine biology"]
PURCHASES = [("a second-hand car", "dark green hatchback"), ("a road bike", "matte blue one with drop bars"),
             ("an espresso machine", "shiny Italian lever one"), ("a sofa", "mustard yellow velvet one"),
             ("a telescope", "big Dobsonian one"), ("an inflatable kayak", "bright orange two-seater"),
             ("a sewing machine", "vintage Singer from the 70s"), ("a drum kit", "electric one with mesh pads"),
             ("a tent", "four-person one that sets up in five minutes"), ("a record player", "walnut one with speakers")]
INJURIES = ["sprained my ankle playing volleyball", "had my wisdom teeth pulled", "pulled a muscle in my back lifting boxes",
            "caught a nasty flu", "cracked a rib falling off my bike", "got stung by a jellyfish",
            "twisted my knee on the stairs", "burnt my hand on the oven tray"]
ACHIEVEMENTS = [("ran my first half marathon", "in 1 hour 58 minutes"), ("finished a 100 km charity bike ride", "in pouring rain"),
                ("swam across the lake", "two whole kilometres"), ("won the club tennis tournament", "in three sets"),
                ("climbed my first 6a route", "without falling once"), ("did a 10k trail race", "and came fourth in my age group"),
                ("completed a sprint triathlon", "in just under 90 minutes")]
VOLUNTEERING = ["at the animal shelter walking dogs", "at the food bank sorting donations", "tutoring kids in maths",
                "at the community garden", "reading to residents at a care home", "on a beach clean-up crew",
                "at the refugee welcome centre"]
NEIGHBOURHOODS = ["Riverside", "Oak Hill", "the Old Port", "Greenfield", "Marble Arch", "Willow Park", "Lower Town",
                  "the Arts Quarter", "Cedar Heights"]
DISHES = [("a three-layer lasagna", "my dad's birthday"), ("homemade ramen", "a dinner with the neighbours"),
          ("a lemon meringue pie", "the office potluck"), ("paella", "a picnic by the river"),
          ("beef bourguignon", "our anniversary"), ("vegan tacos", "a games night"),
          ("a huge pot of chili", "the Super Bowl party"), ("pierogi from scratch", "my grandma's visit")]
GIFTS = [("a hand-knitted scarf", "my mom"), ("a vintage camera", "my boyfriend"), ("concert tickets", "my best friend"),
         ("a bonsai tree", "my boss"), ("a personalised star map", "my girlfriend"), ("a cast-iron pan", "my brother"),
         ("a puzzle of a lighthouse", "my grandpa")]
SERIES = ["a Danish crime series", "a documentary about octopuses", "an old sitcom from the 90s",
          "a Korean cooking show", "a space opera with eight seasons", "a baking competition"]
PLANTS = ["tomatoes and basil", "a lemon tree", "sunflowers along the fence", "chillies on the balcony",
          "strawberries in hanging pots", "a little herb spiral"]
MILESTONES = ["passed my driving test", "got my scuba diving certificate", "finished my first marathon training plan",
              "got promoted to team lead", "paid off my student loan", "got my residency permit",
              "passed the bar exam", "got my yoga teacher certificate"]

TRAITS = {
    "outdoors": ["Would {who} enjoy a week in a mountain cabin with no wifi?",
                 "Is {who} the kind of person who would like a national park holiday?",
                 "Would {who} be up for a weekend of camping and hiking?"],
    "animals": ["Would {who} be open to fostering a dog for a few weeks?",
                "Is {who} likely to enjoy a visit to a wildlife sanctuary?",
                "Would {who} be a good person to ask for help pet-sitting?"],
    "music": ["Would {who} enjoy tickets to a music festival?", "Is {who} likely to enjoy a jam session?",
              "Would {who} want to join a community choir?"],
    "cooking": ["Would {who} appreciate a cookbook as a present?", "Is {who} likely to enjoy a food market tour?",
                "Would {who} be the one to host a dinner party?"],
    "reading": ["Would {who} like a subscription to a book club?", "Is {who} likely to enjoy a literary festival?",
                "Would {who} appreciate a gift card for a bookshop?"],
    "fitness": ["Would {who} consider signing up for a triathlon?", "Is {who} likely to enjoy an early morning bootcamp?",
                "Would {who} be interested in a running club?"],
    "caring": ["Is {who} someone who likes helping others?", "Would {who} be interested in volunteering at a hospice?",
               "Would {who} be a good mentor for a new colleague?"],
}

# family -> (statements, follow-ups by the teller, single questions, when question, traits)
FAMILIES = {
    "pet": (["We finally adopted a {pet} from the shelter {rel}! We named her {name}.",
             "Guess what, I brought home a {pet} {rel}. His name is {name} and he is tiny."],
            ["{name_cap} already has the whole flat wrapped around a paw haha", "Sleeping on my feet right now"],
            ["What is the name of {who}'s {pet}?", "What did {who} call the {pet} that was adopted?"],
            "When did {who} get the {pet} called {name}?", ("animals",)),
    "trip": (["Just got back from {place}! {rel_cap} we {doing}, still can't believe it.",
              "{place_cap} was incredible, {rel} we {doing}."],
             ["I already miss it there", "Totally want to go back next year"],
             ["What did {who} do in {place}?", "What was the highlight of {who}'s trip to {place}?"],
             "When did {who} go to {place}?", ("outdoors",)),
    "job": (["Big news: I started a new job as a {role} at {org} {rel}!",
             "So I officially became a {role} {rel}, I'm working at {org} now."],
            ["First week has been a blur honestly", "The team seems really nice so far"],
            ["What new job did {who} start?", "Where does {who} work now as a {role}?"],
            "When did {who} start working as a {role}?", ("caring",)),
    "class": (["I signed up for a {klass} class {rel}, the teacher is called {teacher}.",
               "Went to my first {klass} lesson {rel}! {teacher} teaches it and is hilarious."],
              ["I was so bad at it haha but it was fun", "Going every Thursday from now on"],
              ["Who teaches {who}'s {klass} class?", "What is the name of {who}'s {klass} teacher?"],
              "When did {who} start {klass} lessons?", ()),
    "book": (["I started reading {book} by {author} {rel} and can't put it down.",
              "Finished {book} {rel}, {author} is my new favourite writer."],
             ["The ending made me cry on the bus", "I'll lend it to you when I'm done"],
             ["Which book by {author} did {who} read?", "Who wrote the book {who} couldn't put down?"],
             "When did {who} read {book}?", ("reading",)),
    "concert": (["Went to see {band} live at {venue} {rel}, they played for almost three hours!",
                 "{rel_cap} I saw {band} at {venue}, best concert of my life."],
                ["My ears are still ringing", "I bought a t-shirt at the merch stand"],
                ["Which band did {who} see at {venue}?", "Where did {who} see {band} play?"],
                "When did {who} go to the {band} concert?", ("music",)),
    "family": (["My {relative} {news} {rel}!", "Family update: {rel} my {relative} {news}."],
               ["We're all still a bit in shock", "Mom has been calling everyone about it"],
               ["What happened with {who}'s {relative}?", "What news did {who} share about the {relative}?"],
               "When did {who}'s {relative} {news_short}?", ()),
    "moved": (["My {relative} just moved to {city} {rel}, so far away from us.",
               "{rel_cap} my {relative} packed everything and moved to {city}."],
              ["I'm going to miss the Sunday lunches", "At least I have a reason to travel now"],
              ["Where did {who}'s {relative} move to?", "Which city does {who}'s {relative} live in now?"],
              "When did {who}'s {relative} move away?", ()),
    "purchase": (["I bought {item} {rel}, a {detail}.", "Treated myself to {item} {rel}: a {detail}!"],
                 ["Best money I've spent all year", "Still figuring out how it all works"],
                 ["What did {who} buy, and what does it look like?", "Describe the {item_short} {who} bought."],
                 "When did {who} buy {item}?", ()),
    "injury": (["Ugh, I {injury} {rel}.", "Not a great week, I {injury} {rel}."],
               ["The doctor said to take it easy for a while", "Lots of ice and painkillers"],
               ["What injury or illness did {who} have?", "What happened to {who}'s health?"],
               "When did {who} get hurt or sick?", ()),
    "achievement": (["I {feat} {rel}, {how}!", "Proud moment: {rel} I {feat}, {how}."],
                    ["My legs are completely dead", "Already looking for the next one"],
                    ["What sporting achievement did {who} share?", "How did {who} do in the event?"],
                    "When did {who} {feat_short}?", ("fitness",)),
    "volunteer": (["I started volunteering {where} {rel}.", "{rel_cap} was my first shift volunteering {where}."],
                  ["It feels really good to give something back", "Going every other Saturday now"],
                  ["Where does {who} volunteer?", "What kind of volunteering does {who} do?"],
                  "When did {who} start volunteering?", ("caring",)),
    "home": (["We moved into a new flat in {hood} {rel}!", "Got the keys to our place in {hood} {rel}."],
             ["Boxes everywhere still", "The view from the kitchen is amazing"],
             ["Which neighbourhood did {who} move to?", "Where is {who}'s new flat?"],
             "When did {who} move house?", ()),
    "cooking": (["I made {dish} for {occasion} {rel}.", "{rel_cap} I cooked {dish} for {occasion}, everyone had seconds."],
                ["Took me the whole afternoon", "I'll send you the recipe"],
                ["What did {who} cook for {occasion}?", "Which dish did {who} make for {occasion}?"],
                "When did {who} cook for {occasion}?", ("cooking",)),
    "gift": (["I got {recipient} {gift} {rel} for their birthday.", "Gave {recipient} {gift} {rel}, they loved it."],
             ["Took forever to find the right one", "Wrapped it myself, very proud"],
             ["What present did {who} give to {recipient}?", "What birthday gift did {who} pick for {recipient}?"],
             "When did {who} give {recipient} a present?", ()),
    "series": (["I binge-watched {series} {rel}, the whole thing in one go.", "{rel_cap} I started {series}, totally hooked."],
               ["No spoilers please", "I need to sleep more honestly"],
               ["What show did {who} binge-watch?", "What has {who} been watching?"],
               "When did {who} watch {series}?", ()),
    "garden": (["I planted {plants} {rel}.", "Spent {rel} in the garden planting {plants}."],
               ["My hands are still full of dirt", "Fingers crossed they survive"],
               ["What did {who} plant?", "What is growing in {who}'s garden?"],
               "When did {who} plant {plants}?", ("outdoors",)),
    "milestone": (["I {milestone} {rel}!!", "Finally {rel} I {milestone}."],
                  ["Celebrating with cake tonight", "So relieved it's done"],
                  ["What milestone did {who} reach?", "What did {who} finally achieve?"],
                  "When did {who} {milestone_short}?", ()),
}
# Facts a person tells more than once (multi-sitting questions join them).
REPEATED = {"trip": (2, 4), "class": (2, 3), "concert": (1, 3), "pet": (1, 2), "book": (1, 3), "family": (1, 2),
            "cooking": (1, 3), "achievement": (1, 2), "volunteer": (0, 1), "injury": (0, 2), "purchase": (1, 2),
            "gift": (0, 2), "series": (0, 2), "garden": (0, 2), "milestone": (0, 2), "job": (0, 1), "home": (0, 1)}
GROUP_QUESTIONS = {
    "trip": "Which places has {who} travelled to?", "class": "What classes or lessons has {who} taken?",
    "concert": "Which bands has {who} seen live?", "pet": "What pets does {who} have?",
    "book": "Which books has {who} read?", "family": "What family news has {who} shared?",
    "cooking": "What dishes has {who} cooked for people?", "achievement": "What sporting events has {who} done?",
    "injury": "What injuries or illnesses has {who} had?", "purchase": "What things has {who} bought?",
    "gift": "What presents has {who} given?", "series": "What shows has {who} watched?",
    "garden": "What has {who} planted?", "milestone": "What milestones has {who} reached?",
}

FILLER = """How's your week going?|Work has been crazy lately|I'm so tired today honestly|The weather is finally nice
|It rained all day here|Did you sleep ok?|I had the weirdest dream last night|Traffic was awful this morning
|I'm making pasta again lol|Do you have plans for the weekend?|Not much, just resting|Same here, lazy day
|I need a holiday|My phone battery dies so fast now|Have you eaten yet?|Just had lunch|Coffee number three today
|I keep forgetting to call the bank|The neighbours are drilling again|Ugh Mondays|Can't believe it's already this month
|Time flies|I cleaned the whole kitchen|My back hurts from sitting all day|I should really go to bed earlier
|The bus was late again|Finally some sun|I'm watching the rain from the window|Just got home
|I'm starving|What are you up to?|Not much, you?|I'm at the supermarket|Forgot my umbrella of course
|The meeting went on forever|My boss was in a good mood for once|I'm trying to drink more water
|I can't decide what to cook|Pizza night it is|Have you heard from the others?|Long day|Short day today, yay
|I'm so behind on emails|I finally fixed the wifi|Power cut for an hour this afternoon|My plant is dying again
|The cafe downtown closed|Prices are going up everywhere|I spilled tea on my laptop, it survived|Such a slow day
|Just woke up from a nap|I'm sitting in the park|It's freezing today|It's so hot I can't think""".replace("\n", "").split("|")
REACTIONS = """That's amazing!|Haha no way|Wow, good for you!|Oh that's so sweet|I'm so happy for you|Tell me more!
|Sounds like a blast|Ugh, sorry to hear that|That's so cool|You deserve it|Omg|Send pics!|Hahaha|Love that
|That's wild|Oh no!|Proud of you|Wait really?|So jealous right now|Aww|Nice!!|That sounds lovely""".replace("\n", "").split("|")
OPENERS = ["Hey {other}!", "Hi {other}, how are you?", "Morning!", "Hey, long time no talk!", "Hiii",
           "Hey, got a minute?", "Evening {other}!", "Hello hello"]
CLOSERS = ["Gotta run, talk soon!", "Night night!", "Let's catch up again soon", "Ok I'm off to bed",
           "Talk later!", "Speak soon x", "Bye for now!"]
RELATIVE_DAYS = [("yesterday", 1), ("this morning", 0), ("two days ago", 2), ("last weekend", None), ("last week", 7),
                 ("on Friday", "friday"), ("a few days ago", 3), ("last night", 1), ("today", 0)]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _event_day(sitting_day: datetime, rel) -> datetime:
    if rel is None:  # last weekend: the Saturday before
        back = (sitting_day.weekday() - 5) % 7 or 7
        return sitting_day - timedelta(days=back)
    if rel == "friday":
        back = (sitting_day.weekday() - 4) % 7 or 7
        return sitting_day - timedelta(days=back)
    return sitting_day - timedelta(days=rel)


def _slots(family: str, rng: random.Random, used: set) -> dict:
    """Slot values for one fact; `used` keeps a chat from telling the same detail twice."""
    for _ in range(50):
        if family == "pet":
            s = {"pet": rng.choice(PETS), "name": rng.choice(PET_NAMES)}
        elif family == "trip":
            s = {"place": rng.choice(PLACES), "doing": rng.choice(TRIP_DOINGS)}
        elif family == "job":
            s = {"role": rng.choice(ROLES), "org": rng.choice(ORGS)}
        elif family == "class":
            s = {"klass": rng.choice(CLASSES), "teacher": rng.choice(TEACHERS)}
        elif family == "book":
            s = dict(zip(("book", "author"), rng.choice(BOOKS)))
        elif family == "concert":
            s = {"band": rng.choice(BANDS), "venue": rng.choice(VENUES)}
        elif family == "family":
            news = rng.choice(FAMILY_NEWS)
            s = {"relative": rng.choice(RELATIVES), "news": news, "news_short": " ".join(news.split()[:2])}
        elif family == "moved":
            s = {"relative": rng.choice(RELATIVES), "city": rng.choice(CITIES)}
        elif family == "purchase":
            item, detail = rng.choice(PURCHASES)
            s = {"item": item, "detail": detail, "item_short": item.split()[-1]}
        elif family == "injury":
            s = {"injury": rng.choice(INJURIES)}
        elif family == "achievement":
            feat, how = rng.choice(ACHIEVEMENTS)
            s = {"feat": feat, "how": how, "feat_short": " ".join(feat.split()[:3])}
        elif family == "volunteer":
            s = {"where": rng.choice(VOLUNTEERING)}
        elif family == "home":
            s = {"hood": rng.choice(NEIGHBOURHOODS)}
        elif family == "cooking":
            s = dict(zip(("dish", "occasion"), rng.choice(DISHES)))
        elif family == "gift":
            s = dict(zip(("gift", "recipient"), rng.choice(GIFTS)))
        elif family == "series":
            s = {"series": rng.choice(SERIES)}
        elif family == "garden":
            s = {"plants": rng.choice(PLANTS)}
        else:
            milestone = rng.choice(MILESTONES)
            s = {"milestone": milestone, "milestone_short": " ".join(milestone.split()[:2])}
        key = (family, tuple(sorted(s.items())))
        # One detail once per chat (the first slot names the thing: a second "rabbit" would be ambiguous).
        first = (family, next(iter(s.values())))
        if key not in used and first not in used:
            used.update({key, first})
            return s
    return s


def _fill(template: str, slots: dict, rel: str = "") -> str:
    values = {**slots, "rel": rel, "rel_cap": _cap(rel)}
    values.update({f"{k}_cap": _cap(str(v)) for k, v in slots.items()})
    return template.format(**values)


def _plan_facts(rng: random.Random) -> list[str]:
    families = []
    for family, (low, high) in REPEATED.items():
        families += [family] * rng.randint(low, high)
    return families


def build_conversation(owner: str, partner: str, rng: random.Random, start: datetime) -> Conversation:
    """One chat of SITTINGS sittings between owner and partner, facts spread over it."""
    conv = Conversation(owner, partner)
    people = (owner, partner)
    plans = {p: _plan_facts(rng) for p in people}
    traits = {p: set() for p in people}
    for person in people:  # the moves that later visits refer to
        plans[person] += ["moved"]
    queue = [(p, f) for p in people for f in plans[p]]
    rng.shuffle(queue)
    sittings = rng.randint(*SITTINGS)
    # Spread the facts over the sittings, FACTS_PER_SITTING at a time, a visit after each move.
    per_sitting: list[list[tuple[str, str]]] = [[] for _ in range(sittings)]
    for i, item in enumerate(queue):
        per_sitting[min(sittings - 1, i * sittings // max(1, len(queue)))].append(item)
    used: set = set()
    day = start
    moves: dict[str, Fact] = {}
    for index in range(sittings):
        day = day + timedelta(days=rng.randint(*DAYS_BETWEEN_SITTINGS))
        clock = day.replace(hour=rng.randint(8, 21), minute=rng.randint(0, 59))
        lines: list[tuple[str, str]] = []
        first = rng.choice(people)
        other = partner if first == owner else owner
        lines.append((first, rng.choice(OPENERS).format(other=other)))
        lines.append((other, rng.choice(["Hey!", "Hi!", "Heyy", f"Hi {first}!", "Good, you?", "All good here"])))
        items = per_sitting[index]
        # A visit to a relative who moved in an earlier sitting: a two-sitting chain.
        for person, move in list(moves.items()):
            if rng.random() < 0.35:
                items = items + [(person, "visit")]
                del moves[person]
        fillers = rng.randint(*FILLER_PER_SITTING)
        slots_of_facts: list[tuple[str, str | None]] = [(p, f) for p, f in items] + [("", None)] * fillers
        rng.shuffle(slots_of_facts)
        for person, family in slots_of_facts:
            speaker = person or rng.choice(people)
            if family is None:
                lines.append((speaker, rng.choice(FILLER)))
                continue
            listener = partner if person == owner else owner
            rel, back = rng.choice(RELATIVE_DAYS)
            if family == "visit":
                move = next(f for f in conv.facts if f.family == "moved" and f.who == person)
                text = _fill(rng.choice(["Spent {rel} with my {relative}, finally saw the new place!",
                                         "{rel_cap} I flew out to see my {relative}, we walked all over town."]),
                             move.slots, rel)
                lines.append((person, text))
                fact = Fact("visit", person, index, None, dict(move.slots), _event_day(day, back))
            else:
                statements, follow_ups, _, _, fact_traits = FAMILIES[family]
                slots = _slots(family, rng, used)
                text = _fill(rng.choice(statements), slots, rel)
                lines.append((person, text))
                if family == "job" and slots["role"] not in CARING_ROLES:
                    fact_traits = ()
                fact = Fact(family, person, index, None, slots, _event_day(day, back), fact_traits)
                traits[person].update(fact_traits)
                if rng.random() < 0.7:
                    lines.append((listener, rng.choice(REACTIONS)))
                if rng.random() < 0.6:
                    lines.append((person, _fill(rng.choice(follow_ups), slots)))
                if family == "moved":
                    moves[person] = fact
            fact.message = _line_index(lines, person, text)  # the Message once timed, below
            conv.facts.append(fact)
        lines.append((rng.choice(people), rng.choice(CLOSERS)))
        base = len(conv.messages)
        for offset, (speaker, text) in enumerate(lines):
            clock += timedelta(minutes=rng.randint(1, 6))
            conv.messages.append(Message(clock, speaker, text))
        for fact in conv.facts:
            if fact.sitting == index and isinstance(fact.message, int):
                fact.message = conv.messages[base + fact.message]
    return conv


def _line_index(lines: list[tuple[str, str]], speaker: str, text: str) -> int:
    for i in range(len(lines) - 1, -1, -1):
        if lines[i] == (speaker, text):
            return i
    raise ValueError(text)


def _unique_messages(conv: Conversation) -> None:
    """Evidence is matched by text within the chat: make each fact's message text unique there."""
    counts = defaultdict(int)
    for m in conv.messages:
        counts[m.text] += 1
    for fact in conv.facts:
        if counts[fact.message.text] > 1:
            fact.message.text += " " + rng_suffix(fact)
            counts[fact.message.text] += 1


def rng_suffix(fact: Fact) -> str:
    """A harmless tail that tells two identical statements apart."""
    return ["Crazy, right?", "Anyway.", "Just saying!", "lol", "Wild."][fact.sitting % 5]


def questions_for(conv: Conversation, rng: random.Random) -> list[Question]:
    """The four kinds of questions over one chat, each with its evidence messages."""
    chat = conv.partner
    out: list[Question] = []
    for fact in conv.facts:
        if fact.family == "visit":
            continue
        _, _, singles, when, _ = FAMILIES[fact.family]
        slots = {**fact.slots, "who": fact.who}
        out.append(Question(_fill(rng.choice(singles), slots), "single", chat, [fact.message.text],
                            family=fact.family))
        if rng.random() < 0.75:
            out.append(Question(_fill(when, slots), "when", chat, [fact.message.text],
                                answer=f"{fact.event_day:%Y-%m-%d}", family=fact.family))
    by_person_family = defaultdict(list)
    for fact in conv.facts:
        by_person_family[(fact.who, fact.family)].append(fact)
    for (who, family), facts in by_person_family.items():
        if family in GROUP_QUESTIONS and len({f.sitting for f in facts}) >= 2:
            out.append(Question(GROUP_QUESTIONS[family].format(who=who), "multi", chat,
                                [f.message.text for f in facts], family=family))
    for fact in conv.facts:
        if fact.family == "visit":
            move = next(f for f in conv.facts if f.family == "moved" and f.who == fact.who)
            for template in ("Which city did {who} fly to for the visit to the {relative}?",
                             "How far did {who} travel to see the {relative}, and where to?"):
                out.append(Question(template.format(who=fact.who, **fact.slots), "multi", chat,
                                    [move.message.text, fact.message.text], family="visit"))
    for person in (conv.owner, conv.partner):
        other = conv.partner if person == conv.owner else conv.owner
        by_trait = defaultdict(list)
        for fact in conv.facts:
            if fact.who == person:
                for trait in fact.traits:
                    by_trait[trait].append(fact)
        for trait, facts in by_trait.items():
            for template in rng.sample(TRAITS[trait], INFERENCE_PER_TRAIT):
                out.append(Question(template.format(who=person), "inference", chat,
                                    [f.message.text for f in facts], family=trait))
        # What the two share: both people's messages.
        shared = [t for t in by_trait if any(t in f.traits for f in conv.facts if f.who == other)]
        if person == conv.owner and shared:
            trait = shared[0]
            evidence = [f.message.text for f in conv.facts if trait in f.traits]
            out.append(Question(f"What interest do {person} and {other} have in common?", "multi", chat,
                                evidence, family=trait))
    return out


def build(chats: int = DEFAULT_CHATS, seed: int = DEFAULT_SEED) -> tuple[list[Conversation], list[Question]]:
    """`chats` conversations and their questions, deterministic for a seed."""
    rng = random.Random(seed)
    names = rng.sample(FIRST_NAMES, 2 * chats) if 2 * chats <= len(FIRST_NAMES) else \
        [f"{rng.choice(FIRST_NAMES)} {chr(65 + i % 26)}." for i in range(2 * chats)]
    conversations, questions = [], []
    for i in range(chats):
        owner, partner = names[2 * i], names[2 * i + 1]
        start = datetime(2022, 1, 1) + timedelta(days=rng.randint(0, 400))
        conv = build_conversation(owner, partner, rng, start)
        _unique_messages(conv)
        conversations.append(conv)
        questions += questions_for(conv, rng)
    return conversations, questions


def write(folder: Path, conversations: list[Conversation], questions: list[Question]) -> None:
    """The exports (one .txt per chat) and questions.json into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for conv in conversations:
        (folder / conv.file_name).write_text(conv.export_text(), encoding="utf-8")
    (folder / "questions.json").write_text(json.dumps([asdict(q) for q in questions], indent=1, ensure_ascii=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--chats", type=int, default=DEFAULT_CHATS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    conversations, questions = build(args.chats, args.seed)
    write(args.out, conversations, questions)
    kinds = {k: sum(q.kind == k for q in questions) for k in KINDS}
    print(f"{len(conversations)} chats, {sum(len(c.messages) for c in conversations)} messages, "
          f"{len(questions)} questions {kinds} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
