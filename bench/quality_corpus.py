"""A synthetic vault and WhatsApp history with planted facts, and the questions that find them.

Everything is generated from a seed: families of look-alike documents (doctor visits, restaurant
notes, incident postmortems, monthly weekend plans with the same friend, monthly reading notes,
chats about the same topics with different people) so that only a name, a rare word, a date, a
person or the source kind singles out the answer. Chunk texts mirror the parsers' layout
(WhatsApp: a header line and `YYYY-MM-DD HH:MM Name: text` lines; notes: the title first).
Each answer chunk carries `metadata["fact"]`; each Question names that fact and carries the
filters a well-behaved document keeper would emit for it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from chunking import MESSAGES, NOTES, Chunk

UTC = timezone.utc
ME = "Me"


@dataclass
class Question:
    """One evaluation question: the fact that answers it and the scripted keeper's filters."""

    text: str
    fact: str
    category: str  # name, rare, paraphrase, date, person, source, pt, crosslingual
    filters: dict = field(default_factory=dict)  # since/until (YYYY-MM-DD), people, source_kind


def _at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def note(path: str, text: str, day: str | None = None, fact: str | None = None, tags=()) -> Chunk:
    """A note chunk: title line, then the body (as the vault parser lays it out)."""
    title = path.rsplit("/", 1)[-1]
    when = _at(day) if day else None
    return Chunk(text=f"{title}\n{text}", source=f"<obsidian>:{path}", doc_id=f"obsidian:{path}.md",
                 source_kind=NOTES, title=title, tags=list(tags), started_at=when, ended_at=when,
                 metadata={"fact": fact} if fact else {})


def chat(name: str, lines: list[tuple[str, str]], day: str, hour: int = 18, group: list[str] | None = None,
         fact: str | None = None) -> Chunk:
    """A WhatsApp chunk: header, then one `time speaker: text` line per message, a few minutes apart."""
    start = _at(day, hour)
    times = [start + timedelta(minutes=3 * i) for i in range(len(lines))]
    kind = "WhatsApp group" if group else "WhatsApp chat with"
    header = f"{kind} {name}, {times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M}"
    body = "\n".join(f"{t:%Y-%m-%d %H:%M} {who}: {text}" for t, (who, text) in zip(times, lines))
    people = list(dict.fromkeys(([] if group else [name]) + [w for w, _ in lines if w != ME]))
    return Chunk(text=f"{header}\n{body}", source=f"<whatsapp>:{name}",
                 doc_id=f"whatsapp:{name.lower().replace(' ', '-')}", source_kind=MESSAGES, chat_name=name,
                 chat_id=f"{name.lower().replace(' ', '.')}@s.whatsapp.net", people=people,
                 started_at=times[0], ended_at=times[-1], metadata={"fact": fact} if fact else {})


# ---------------------------------------------------------------- planted facts


def _doctors(chunks, questions):
    visits = [
        ("okonkwo", "Health/Dr Okonkwo", "2021-02-11",
         "Saw Dr. Okonkwo at the orthopaedic clinic. The knee pain comes from a strained tendon; "
         "she said to stop running for six weeks and cycle instead.",
         "What did Dr. Okonkwo tell me to do?"),
        ("halvorsen", "Health/Dr Halvorsen", "2021-05-03",
         "Visit with Dr. Halvorsen, the dermatologist. The mole on my shoulder is benign; check again "
         "in a year and wear sunscreen every day.", "What was Halvorsen's verdict?"),
        ("ramires", "Saude/Dra Ramires", "2022-01-19",
         "Consulta com a Dra. Ramires: a dor nas costas é postural, ela recomendou pilates duas vezes "
         "por semana e trocar a cadeira do escritório.", "O que a Dra. Ramires recomendou?"),
        ("nakashima", "Health/Dr Nakashima", "2020-09-08",
         "Dr. Nakashima, the dentist, found a small cavity in a lower molar; the filling is booked "
         "for next Thursday morning.", "What did Nakashima find?"),
        ("brennan", "Health/Dr Brennan", "2022-06-14",
         "Dr. Brennan went through my blood tests: cholesterol slightly high, so less cheese and "
         "oats for breakfast, retest in six months.", "What did Brennan advise after looking at my results?"),
        ("vasquez", "Health/Dr Vasquez", "2023-03-22",
         "Eye exam with Dr. Vasquez: my prescription went from -1.25 to -1.75 in both eyes; new "
         "glasses ordered at the optician downstairs.", "How did my prescription change according to Vasquez?"),
    ]
    for fact, path, day, text, question in visits:
        chunks.append(note(path, text, day, fact=fact, tags=["health"]))
        questions.append(Question(question, fact, "name"))


def _restaurants(chunks, questions):
    places = [
        ("hanabi", "Places/Okonomiyaki Hanabi",
         "Dinner at Okonomiyaki Hanabi: I had the seafood pancake with extra bonito flakes; the owner "
         "gave us free mochi for dessert.", "What did I eat at Hanabi?", "rare"),
        ("pirolito", "Lugares/Tasca do Pirolito",
         "Almoço na Tasca do Pirolito: bacalhau à brás e vinho verde, a conta deu 38 euros para dois.",
         "Quanto custou o almoço na Tasca do Pirolito?", "rare"),
        ("quintal", "Places/Bistro Quintal",
         "Bistro Quintal has the best mushroom risotto in town; book the garden table, the inside is "
         "cramped.", "What should I order at Quintal?", "rare"),
        ("gans", "Places/Zur Goldenen Gans",
         "Zur Goldenen Gans in Vienna: schnitzel the size of the plate, apple strudel, a very loud room.",
         "How was the food at the Goldenen Gans?", "rare"),
        ("xodo", "Lugares/Lanchonete Xodó",
         "Lanchonete Xodó serve uma coxinha de jaca que parece frango de verdade; tudo vegano.",
         "Which snack bar had the jackfruit coxinha?", "crosslingual"),
        ("okra", "Places/Smokey Okra",
         "Smokey Okra BBQ in Austin: the brisket was dry but the fried okra was amazing.",
         "Where did I have the fried okra?", "rare"),
    ]
    for fact, path, text, question, category in places:
        chunks.append(note(path, text, fact=fact, tags=["food"]))
        questions.append(Question(question, fact, category))


def _work(chunks, questions):
    items = [
        ("inc48213", "Work/Postmortem INC-48213", "2022-10-04",
         "Postmortem INC-48213: the payment queue stalled because the cache evicted the lock keys "
         "under memory pressure; fix: noeviction policy and a separate instance for locks.",
         "What caused INC-48213?", "rare"),
        ("qx17", "Home/Network", None,
         "Home network: the QX-17 router admin page is at 192.168.8.1, guest wifi is called Pombal, "
         "firmware updated in March.", "What is the admin address of the QX-17?", "rare"),
        ("zephyrine", "Projects/Zephyrine", "2021-08-30",
         "Project Zephyrine kickoff: a low-power weather station on a Raspberry Pi Pico with a LoRa "
         "radio, solar powered, sending data every ten minutes.", "What is Zephyrine about?", "rare"),
        ("survivalball", "Projects/Survival Ball", "2019-03-14",
         "Started the Survival Ball project today: an inflatable flood shelter sphere, first prototype "
         "glued together in the garage.", "When did I start the Survival Ball project?", "rare"),
        ("heroku", "Work/Billing migration", "2020-11-20",
         "We moved the billing service off Heroku onto our own cluster; cost went down 40% but on-call "
         "got noisier for a month.", "How did the move off Heroku go?", "name"),
        ("orbitrap", "Work/Dashboards", None,
         "The Orbitrap dashboard tracks p99 latency of the checkout API per region; alert when above "
         "800 ms for five minutes.", "What does the Orbitrap dashboard show?", "rare"),
    ]
    for fact, path, day, text, question, category in items:
        chunks.append(note(path, text, day, fact=fact, tags=["work"]))
        questions.append(Question(question, fact, category))
    # Look-alike postmortems and projects without the planted identifiers.
    for n, cause in enumerate(["a full disk on the database host", "an expired TLS certificate",
                               "a bad deploy of the search service", "DNS misconfiguration after a move"]):
        chunks.append(note(f"Work/Postmortem INC-{40000 + 977 * n}",
                           f"Postmortem INC-{40000 + 977 * n}: outage caused by {cause}; fixed and added an alert.",
                           f"2022-0{n + 2}-11"))
    for name, what in [("Project Nimbus", "a budget tracker app"), ("Project Tidepool", "a bird feeder camera"),
                       ("Project Gallo", "a sourdough starter monitor")]:
        chunks.append(note(f"Projects/{name}", f"{name} kickoff: {what}, first sketch on paper.", "2021-04-02"))


WEEKEND_PLANS = [
    "go hiking at the waterfall", "try the new ramen place", "see the photography exhibition",
    "go to the flea market", "paddle board on the lake", "visit her parents in the countryside",
    "watch the football final at Pedro's", "bake bread together", "go to the jazz festival",
    "repaint the balcony", "take the train to the coast", "go to the climbing gym",
]


def _saturdays(year: int, month: int) -> list[datetime]:
    day = datetime(year, month, 1, tzinfo=UTC)
    return [day + timedelta(days=d) for d in range(31)
            if (day + timedelta(days=d)).month == month and (day + timedelta(days=d)).weekday() == 5]


def _maria(chunks, questions, rng):
    # One "plans for Saturday" exchange with Maria every month for three years: only the date
    # tells them apart.
    asked = {(2021, 6), (2020, 3), (2022, 11), (2021, 12), (2022, 4), (2020, 9)}
    for year in (2020, 2021, 2022):
        for month in range(1, 13):
            saturday = _saturdays(year, month)[-1]
            thursday = saturday - timedelta(days=2)
            plan = WEEKEND_PLANS[(year * 12 + month) % len(WEEKEND_PLANS)]
            fact = f"maria-{year}-{month:02d}" if (year, month) in asked else None
            chunks.append(chat("Maria Silva", [
                ("Maria Silva", f"what about this Saturday? I was thinking we could {plan}"),
                (ME, "sounds good, let's leave around ten"),
                ("Maria Silva", "perfect, I'll bring snacks"),
            ], thursday.date().isoformat(), fact=fact))
            if fact:
                week = (saturday - timedelta(days=6)).date().isoformat(), saturday.date().isoformat()
                questions.append(Question(
                    f"What did Maria and I plan for Saturday {saturday:%B} {saturday.day}, {year}?", fact, "date",
                    {"since": week[0], "until": week[1], "people": ["Maria"]}))
    for i in range(20):
        day = datetime(2020, 1, 5, tzinfo=UTC) + timedelta(days=rng.randrange(0, 3 * 365))
        chunks.append(chat("Maria Silva", [("Maria Silva", rng.choice(SMALL_TALK)), (ME, rng.choice(SMALL_TALK))],
                           day.date().isoformat(), hour=rng.randrange(8, 22)))


BOOKS = [
    "The Overstory", "Piranesi", "Grande Sertão: Veredas", "The Left Hand of Darkness", "Middlemarch",
    "Dom Casmurro", "The Remains of the Day", "Stoner", "Ensaio sobre a Cegueira", "Klara and the Sun",
    "The Name of the Rose", "Pachinko", "A Hora da Estrela", "Gilead", "The Dispossessed", "Beloved",
    "Memórias Póstumas de Brás Cubas", "Never Let Me Go", "Cien años de soledad", "The Road",
    "Station Eleven", "Invisible Cities", "O Alienista", "Lonesome Dove", "Wolf Hall", "Shōgun",
    "The Master and Margarita", "Vidas Secas", "Anna Karenina", "The Hobbit", "Moby-Dick",
    "Capitães da Areia", "Dune", "Persuasion", "Os Sertões", "Solaris",
]


def _reading(chunks, questions):
    # A "finished reading" daily note every month: the month is the only way to pick one.
    asked = {(2021, 3), (2020, 7), (2022, 10), (2021, 6), (2022, 1), (2020, 12)}
    for i, (year, month) in enumerate((y, m) for y in (2020, 2021, 2022) for m in range(1, 13)):
        day = f"{year}-{month:02d}-{(7 * i) % 25 + 2:02d}"
        book = BOOKS[i % len(BOOKS)]
        fact = f"book-{year}-{month:02d}" if (year, month) in asked else None
        chunks.append(note(f"Daily/{day}", f"Finished reading {book} tonight. Slow start, strong ending; "
                                           f"started a new one right away.", day, fact=fact))
        if fact:
            last = (datetime(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)).date().isoformat()
            month_name = datetime(year, month, 1).strftime("%B")
            questions.append(Question(f"Which book did I finish in {month_name} {year}?", fact, "date",
                                      {"since": f"{year}-{month:02d}-01", "until": last, "source_kind": NOTES}))


TRIPS = [
    (2018, "Lisbon and Sintra", "custard tarts every morning and the palace in the fog"),
    (2019, "the Scottish Highlands", "rain every day, midges, and the most beautiful lochs"),
    (2020, "a cabin in Serra da Mantiqueira", "wood stove, no signal, long walks to the waterfall"),
    (2021, "Kyoto", "bamboo forest at dawn and a thousand orange gates"),
    (2022, "Patagonia", "wind that knocked us over and the blue glacier"),
    (2023, "the Amalfi coast", "lemon everything and scary bus rides on cliffs"),
]


def _trips(chunks, questions):
    for year, place, detail in TRIPS:
        day = f"{year}-07-{10 + year % 10:02d}"
        fact = f"trip-{year}"
        chunks.append(note(f"Travel/Summer {year}", f"Summer holiday in {place}: {detail}.", day, fact=fact))
    for year in (2019, 2021, 2023):
        questions.append(Question(f"Where did I go on holiday in the summer of {year}?", f"trip-{year}", "date",
                                  {"since": f"{year}-06-21", "until": f"{year}-09-22"}))
    questions.append(Question("O que eu achei da viagem de férias de 2022?", "trip-2022", "date",
                              {"since": "2022-01-01", "until": "2022-12-31"}))


def _family(chunks, questions):
    group = ["Mãe", "Pai", "Tia Lúcia", ME]
    items = [
        ("churrasco", [("Tia Lúcia", "o churrasco do aniversário do vô vai ser no sítio em Atibaia, dia 14"),
                       ("Mãe", "levem cadeiras de praia que lá não tem"), (ME, "combinado")], "2022-08-02",
         "Onde vai ser o churrasco do aniversário do vô?", "pt"),
        ("bolacha", [("Mãe", "o Bolacha fugiu de novo, achamos ele no telhado do vizinho"),
                     ("Pai", "esse gato ainda vai cair de lá")], "2021-11-20",
         "What happened to the cat Bolacha?", "crosslingual"),
        ("valdir", [("Pai", "troquei o óleo do carro, a oficina do Seu Valdir cobrou 180 reais"),
                    (ME, "caro, hein")], "2022-03-09",
         "Quanto o Seu Valdir cobrou pela troca de óleo?", "name"),
        ("fuba", [("Tia Lúcia", "receita do bolo de fubá: 3 ovos, 2 xícaras de fubá, 1 de açúcar, "
                                "1 de leite, erva-doce a gosto, forno médio 40 minutos")], "2020-06-13",
         "How do you make the cornmeal cake?", "crosslingual"),
        ("formatura", [("Mãe", "a formatura da Júlia foi linda, ela chorou no discurso"),
                       ("Tia Lúcia", "mandem as fotos!")], "2023-12-15",
         "como foi a formatura da Júlia?", "pt"),
    ]
    for fact, lines, day, question, category in items:
        chunks.append(chat("Família Souza", lines, day, group=group, fact=fact))
        questions.append(Question(question, fact, category))


def _paraphrases(chunks, questions):
    items = [
        ("contoso", "Journal/Leaving Contoso", "2020-02-28",
         "I handed in my notice at Contoso. The commute was killing me and my manager kept moving "
         "deadlines; I want to work somewhere smaller.", "Why did I quit my previous job?"),
        ("screens", "Ideas/Sleep experiment", "2021-01-15",
         "Experiment: no screens after 10pm for two weeks. Fell asleep faster and woke up less groggy.",
         "Did avoiding my phone at night help me rest?"),
        ("budget", "Finance/Budget 2022", "2022-01-03",
         "Monthly budget: rent 1,450, groceries 420, savings goal 600; cancel two streaming subscriptions.",
         "How much was I spending on food each month?"),
        ("quince", "Garden/Backyard", "2021-04-18",
         "Planted a quince tree by the fence, and the tomatoes finally turned red.",
         "What fruit tree did I put in the garden?"),
        ("piano", "Ideas/Learning piano", "2022-09-01",
         "Thirty minutes of scales each morning; Hanon exercises are boring but my left hand is catching up.",
         "How is my practice on the keyboard instrument going?"),
        ("marathon", "Journal/Marathon", "2019-10-13",
         "Crossed the finish line in 4:12, legs destroyed, cried a little at kilometre 40.",
         "What was my time in the long race?"),
        ("lease", "Home/Moving", "2023-01-22",
         "Signed the lease for the flat on Rua das Flores; the moving truck is booked for the 3rd.",
         "When is the move to the new apartment happening?"),
        ("nuvem", "Pets/Adoption", "2022-05-07",
         "We adopted a grey rescue dog and named her Nuvem; she is terrified of the vacuum cleaner.",
         "What is the new puppy afraid of?"),
    ]
    for fact, path, day, text, question in items:
        chunks.append(note(path, text, day, fact=fact))
        questions.append(Question(question, fact, "paraphrase"))


def _people(chunks, questions):
    # The same topic with different people: only the person picks the answer.
    pairs = [
        ("João Pereira", "joao-tickets", "consegui os ingressos do show do Caetano, fila B, dois pra sexta",
         "Bob Smith", "got the tickets for the Coldplay gig, row F, two for Friday",
         "What did João get for the concert?", ["João"]),
        ("Ana Costa", "ana-tart", "the lemon tart recipe is on my blog, use really cold butter for the crust",
         "Priya Nair", "my lemon cake recipe needs buttermilk, otherwise it gets dry",
         "What did Ana say about the lemon dessert?", ["Ana"]),
        ("Bob Smith", "bob-bike", "sold the old bike for 200 bucks, the guy didn't even haggle",
         "João Pereira", "vendi a bicicleta velha por 300 reais",
         "How much did Bob get for his bike?", ["Bob"]),
        ("Priya Nair", "priya-flight", "my flight to Bangalore lands at 6am, can you pick me up?",
         "Ana Costa", "my flight to Lisbon lands at 7pm on Sunday",
         "When does Priya's flight land?", ["Priya"]),
    ]
    for i, (who, fact, text, other, other_text, question, people) in enumerate(pairs):
        chunks.append(chat(who, [(who, text), (ME, "nice!")], f"2022-0{i + 3}-1{i}", fact=fact))
        chunks.append(chat(other, [(other, other_text), (ME, "great")], f"2022-0{i + 3}-2{i}"))
        questions.append(Question(question, fact, "person", {"people": people}))


def _sources(chunks, questions):
    items = [
        ("podcast-note", note("Ideas/Podcast", "Podcast idea: interviews with night-shift workers, working "
                              "title After Hours, one episode a month.", "2021-09-09", fact="podcast-note"),
         chat("Bob Smith", [("Bob Smith", "we should start a podcast about board games"), (ME, "haha maybe")],
              "2021-09-10"),
         "What podcast idea did I write down in my notes?", NOTES),
        ("beach-wifi", chat("Ana Costa", [("Ana Costa", "the wifi password at the beach house is gaivota2020"),
                                          (ME, "thanks!")], "2022-12-20", fact="beach-wifi"),
         note("Travel/Beach house", "Beach house checklist: key under the blue pot, wifi router in the "
                                    "kitchen, bring towels.", "2022-12-01"),
         "What did someone text me about the beach house wifi?", MESSAGES),
        ("sapiens-note", note("Books/Sapiens", "Sapiens highlights: the agricultural revolution as history's "
                              "biggest fraud; shared myths let strangers cooperate.", "2020-05-05", fact="sapiens-note"),
         chat("João Pereira", [("João Pereira", "terminei Sapiens, achei superestimado"), (ME, "sério?")],
              "2020-05-06"),
         "What did I note about the book Sapiens?", NOTES),
        ("rent-chat", chat("Bob Smith", [("Bob Smith", "heads up: the landlord is raising the rent by 8% in March"),
                                         (ME, "ugh")], "2023-01-10", fact="rent-chat"),
         note("Finance/Rent", "Rent history: 1,300 in 2021, 1,450 in 2022; ask about the increase.", "2023-01-05"),
         "What did I hear in a chat about the rent going up?", MESSAGES),
    ]
    for fact, target, decoy, question, kind in items:
        chunks.extend([target, decoy])
        questions.append(Question(question, fact, "source", {"source_kind": kind}))


# ---------------------------------------------------------------- filler


ROUTINE = [
    "Woke up late and answered emails until lunch.", "Went to the gym, legs day.",
    "Groceries: eggs, rice, coffee, bananas.", "Long call with the team about the roadmap.",
    "Cleaned the kitchen and did two loads of laundry.", "Watched a documentary about octopuses.",
    "Walked to the park after dinner, nice sunset.", "Headache in the afternoon, went to bed early.",
    "Cooked lentil soup for the week.", "Paid the electricity bill.", "Fixed the squeaky door hinge.",
    "Coffee with a colleague, talked about hiring.", "Rainy day, stayed inside reading.",
    "Tried a new running route along the river.", "Spent the evening sorting old photos.",
    "Acordei cedo e fui à feira comprar frutas.", "Dia cansativo de reuniões, nada de especial.",
    "Fiz faxina na casa e lavei o carro.", "Choveu o dia todo, fiquei vendo séries.",
    "Jantei com amigos num restaurante japonês.",
]
SMALL_TALK = [
    "good morning!", "did you see the game yesterday?", "running late, sorry", "haha that's great",
    "can you send me the photos?", "ok, see you tomorrow", "happy birthday!!", "traffic is terrible today",
    "bom dia!", "tá chovendo muito aí?", "manda foto", "kkkkk", "vou chegar atrasado", "boa noite",
    "what time is the meeting?", "I'm at the supermarket, need anything?", "let's talk later",
]
CONTACTS = ["Lucas Almeida", "Sofia Rossi", "Grupo do Trabalho", "Carlos Mendes", "Emma Clarke",
            "Rafael Lima", "Hannah Becker", "Condomínio Bloco B"]


def _filler(chunks, rng):
    day = datetime(2019, 1, 2, tzinfo=UTC)
    while day < datetime(2024, 1, 1, tzinfo=UTC):
        text = " ".join(rng.sample(ROUTINE, 3))
        chunks.append(note(f"Daily/{day:%Y-%m-%d}", text, day.date().isoformat()))
        day += timedelta(days=3)
    for i in range(300):
        name = CONTACTS[i % len(CONTACTS)]
        when = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(0, 5 * 365))
        group = ["Lucas Almeida", "Sofia Rossi", ME] if name.startswith(("Grupo", "Condomínio")) else None
        speaker = rng.choice(group[:-1]) if group else name
        lines = [(speaker, rng.choice(SMALL_TALK)), (ME, rng.choice(SMALL_TALK)), (speaker, rng.choice(SMALL_TALK))]
        chunks.append(chat(name, lines, when.date().isoformat(), hour=rng.randrange(7, 23), group=group))


def build(seed: int = 0) -> tuple[list[Chunk], list[Question]]:
    """The whole corpus (answers and look-alikes and filler) and the questions, deterministic per seed."""
    rng = random.Random(seed)
    chunks: list[Chunk] = []
    questions: list[Question] = []
    _doctors(chunks, questions)
    _restaurants(chunks, questions)
    _work(chunks, questions)
    _maria(chunks, questions, rng)
    _reading(chunks, questions)
    _trips(chunks, questions)
    _family(chunks, questions)
    _paraphrases(chunks, questions)
    _people(chunks, questions)
    _sources(chunks, questions)
    _filler(chunks, rng)
    facts = {c.metadata.get("fact") for c in chunks}
    missing = [q.fact for q in questions if q.fact not in facts]
    assert not missing, missing
    return chunks, questions
