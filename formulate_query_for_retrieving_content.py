"""The "document keeper": one short, greedy LLM pass that turns the conversation into a search
request - a self-contained query plus optional date, person and source filters, whether the
message is about a whole period ("what did I do last summer?": the chat then reads every passage),
and, for a question that joins several facts, up to three sub-queries ("parts"), which the
search ranks beside the query and fuses by reciprocal rank.

    python formulate_query_for_retrieving_content.py "what did Maria and I plan last weekend?"
    {"query": "plans with Maria for the weekend", "since": "2024-05-04", "until": "2024-05-05", ..., "summary": false}

The model is asked for a small JSON object; whatever it writes is parsed leniently (code fences,
labels, trailing prose, cut-off JSON) and anything unusable degrades to the plain query with no
filters, or to the user's last message, so weak models still work.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import date, datetime
from typing import TYPE_CHECKING

import settings
from chunking import MESSAGES, NOTES
from search_results import SearchRequest, parse_date

if TYPE_CHECKING:
    from llm_backend import ChatModel

DEFAULT_KEEPER_MAX_TOKENS = 96  # a JSON object with a one-line query fits easily
# Every token of KEEPER_PROMPT counts on small models: with the tiny test model's 1024-token
# context the prompt, a short message and the answer room leave ~100 tokens (tests/test_keeper.py).
DEFAULT_KEEPER_MESSAGES = 6  # the last turns that can hold what "that" refers to
DEFAULT_MESSAGE_CHARS = 1200  # each earlier message is cut to this for the keeper
DEFAULT_MAX_QUERY_CHARS = 500
DEFAULT_MAX_PEOPLE = 5
MAX_SUB_QUERIES = 3  # "parts": one query per fact a question joins
EARLIEST_YEAR = 1970  # dates before this are the model's mistakes, not the user's archive

KEEPER_PROMPT = """You are the document keeper of a personal archive of notes and chats. Do not answer. Write the search request for the passages the user's LAST message needs.

Today is {today} ({weekday}).

Fields:
- "query": one self-contained search query: replace "it", "she", "there" with what they mean; keep names and rare words; use the conversation's language.
- "since", "until": a time the message names ("yesterday", "last summer", "in 2021") as its first and last day, YYYY-MM-DD; else null.
- "people": other people it is about; [] if none.
- "source": "messages" for chats, "notes" for notes or diary; else null.
- "summary": true when it asks about a whole period ("what did I do in May?", "como foi minha semana com a Maria?"), else false.
- "parts": if it joins facts ("where did Ana go after her new job?"), a short query per fact (at most 3); else [].

Reply with the JSON object only, for example:
{{"query": "plans with Maria for Saturday", "since": null, "until": null, "people": ["Maria"], "source": "messages", "summary": false, "parts": []}}"""

KEEPER_REQUEST = "Conversation:\n{conversation}\n\nThe search request for the user's last message, as JSON:"

ROLE_NAMES = {"user": "User", "assistant": "Assistant"}
# Leading labels weak models put before the query: "Query:", "Search query -", "**Query**:".
_LABEL = re.compile(
    r"^\s*(?:[-*#>\d.)\s]*)(?:\*\*)?(?:here(?:'s| is)(?: the| a| my)?\s+)?(?:(?:search|optimi[sz]ed|rewritten|final)\s+)?"
    r"(?:query|search|consulta|pesquisa|request)(?:\*\*)?\s*[:=\-–]\s*(?:\*\*)?",
    re.IGNORECASE,
)
_FENCE = re.compile(r"```[a-zA-Z]*")
_NOT_A_QUERY = {"", "null", "none", "n/a", "...", "query", "json", "{", "}", "[]", "{}"}
_SOURCE_WORDS = {
    NOTES: ("note", "notes", "diary", "journal", "vault", "obsidian", "notas", "nota", "diário", "diario"),
    MESSAGES: ("message", "messages", "chat", "chats", "whatsapp", "conversation", "mensagens", "mensagem", "conversa"),
}
_NOT_PEOPLE = {"user", "me", "i", "myself", "assistant", "eu", "you", "none", "null"}


# ---------------------------------------------------------------- prompt


def keeper_messages(history: list[dict], today: date, neutralise=lambda text: text,
                    max_messages: int = DEFAULT_KEEPER_MESSAGES,
                    message_chars: int = DEFAULT_MESSAGE_CHARS) -> list[dict]:
    """The keeper's chat: KEEPER_PROMPT as system, the recent conversation as one user message.

    Earlier messages are cut to `message_chars`; the last user message is kept whole."""
    recent = [m for m in history if m["role"] in ROLE_NAMES][-max_messages:]
    lines = []
    for i, message in enumerate(recent):
        text = message["content"].strip()
        if i < len(recent) - 1 and len(text) > message_chars:
            text = text[:message_chars] + " ..."
        lines.append(f"{ROLE_NAMES[message['role']]}: {neutralise(text)}")
    system = KEEPER_PROMPT.format(today=today.isoformat(), weekday=today.strftime("%A"))
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": KEEPER_REQUEST.format(conversation="\n".join(lines))},
    ]


def _fit(llm: "ChatModel", history: list[dict], today: date, max_tokens: int) -> list[dict]:
    """Keeper messages that leave `max_tokens` of room: fewer turns first, then a shorter
    last message."""
    count = min(DEFAULT_KEEPER_MESSAGES, len(history))
    while True:
        messages = keeper_messages(history[-count:] if count else history[-1:], today, llm.neutralise)
        if llm.count_tokens(messages) + max_tokens <= llm.context_window or count <= 1:
            break
        count -= 1
    last = dict(history[-1])
    while llm.count_tokens(messages) + max_tokens > llm.context_window and len(last["content"]) > 20:
        last["content"] = last["content"][: len(last["content"]) * 3 // 4]
        messages = keeper_messages([last], today, llm.neutralise)
    return messages


def last_user_message(history: list[dict]) -> str:
    """The text of the latest user message ('' when there is none)."""
    for message in reversed(history):
        if message["role"] == "user":
            return message["content"].strip()
    return ""


def formulate_request(llm: "ChatModel | None", history: list[dict], today: date | None = None,
                      max_tokens: int = DEFAULT_KEEPER_MAX_TOKENS) -> SearchRequest:
    """Ask the model (greedy, at most `max_tokens`) for the search request behind the last
    user message of `history` (role/content dicts). Without a model, or when its output is
    unusable, the request is the last user message with no filters."""
    today = today or date.today()
    fallback = last_user_message(history)
    if llm is None or not fallback:
        return SearchRequest(query=fallback)
    messages = _fit(llm, history, today, max_tokens)
    if llm.count_tokens(messages) + max_tokens > llm.context_window:
        # A small model: the keeper's own instructions leave no room. Search with the message.
        return SearchRequest(query=fallback, note=(
            f"the document keeper's instructions do not fit the model's context of {llm.context_window} "
            "tokens; searched with your message as written (no date, person or source filters)"))
    output = llm.complete(messages, max_tokens=max_tokens, temperature=0.0)
    return parse_keeper_output(output, fallback, today)


# ---------------------------------------------------------------- parsing


def parse_keeper_output(text: str, fallback: str, today: date | None = None) -> SearchRequest:
    """Turn whatever the keeper wrote into a SearchRequest.

    `'{"query": "Kyoto trip", "since": "2021-06-01", "until": "2021-06-30"}'` -> query plus
    dates; `'Query: "Kyoto trip"'` -> query only; `''` -> `fallback` with no filters.
    Bad filters (unparsable or implausible dates, since after until, unknown source) are
    dropped, never the query."""
    today = today or date.today()
    fields = _json_fields(text)
    if fields is None:
        query = _first_meaningful_line(text)
        return SearchRequest(query=_usable(query) or fallback)
    query = _usable(fields.get("query")) or fallback
    since = _date_field(fields.get("since"), today, end=False)
    until = _date_field(fields.get("until"), today, end=True)
    if since and until and since > until:
        since = until = None
    return SearchRequest(query=query, since=since, until=until, people=_people(fields.get("people")),
                         source_kind=_source(fields.get("source")), summary=_flag(fields.get("summary")),
                         sub_queries=_parts(fields.get("parts"), query))


def _json_fields(text: str) -> dict | None:
    """The keeper's object: a JSON object anywhere in `text`, else the fields of a cut-off one
    (found by pattern), else None."""
    text = _FENCE.sub("", text or "")
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
        if isinstance(value, dict):
            return value
    except ValueError:
        pass
    # Cut at the token limit or sloppy: pick out the fields one by one.
    fields: dict = {}
    for key in ("query", "since", "until", "source"):
        match = re.search(rf'["\']?{key}["\']?\s*:\s*"((?:[^"\\]|\\.)*)"?', text[start:])
        if match:
            try:
                fields[key] = json.loads(f'"{match[1]}"')
            except ValueError:
                fields[key] = match[1]
    flag = re.search(r'["\']?summary["\']?\s*:\s*(true|false)', text[start:], re.IGNORECASE)
    if flag:
        fields["summary"] = flag[1].lower() == "true"
    for key in ("people", "parts"):  # the complete strings of a list, cut off or not
        items = re.search(rf'["\']?{key}["\']?\s*:\s*\[([^\]]*)', text[start:])
        if items:
            fields[key] = re.findall(r'"((?:[^"\\]|\\.)+)"', items[1])
    return fields or None


def _first_meaningful_line(text: str) -> str:
    """The first line that is not a bare label, fence or brace, with its label removed."""
    for line in _FENCE.sub("", text or "").splitlines():
        line = _LABEL.sub("", line.strip(), count=1).strip()
        if line.endswith(":") and len(line.split()) <= 6:  # "Here is the search query:"
            continue
        if line.lower() not in _NOT_A_QUERY:
            return line
    return ""


def _usable(query) -> str:
    """A cleaned query string, or '' when it is not one."""
    if not isinstance(query, str):
        return ""
    query = _LABEL.sub("", query.strip(), count=1).strip()
    query = query.strip("*`").strip()
    # Quotes around the whole query, straight or typographic.
    while len(query) >= 2 and query[0] in "\"'“‘«" and query[-1] in "\"'”’»":
        query = query[1:-1].strip()
    query = " ".join(query.split())[:DEFAULT_MAX_QUERY_CHARS]
    if query.lower() in _NOT_A_QUERY or not any(c.isalnum() for c in query):
        return ""
    return query


def _date_field(value, today: date, end: bool) -> datetime | None:
    """A YYYY[-MM[-DD]] string -> a local datetime bound, None when absent or implausible."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = parse_date(value.strip()[:10], end=end)
    except ValueError:
        return None
    if not EARLIEST_YEAR <= moment.year <= today.year + 1:
        return None
    return moment


def _people(value) -> list[str]:
    if isinstance(value, str):
        value = re.split(r"\s*(?:,|;| and | e )\s*", value)
    if not isinstance(value, list):
        return []
    people: list[str] = []
    for name in value:
        if not isinstance(name, str):
            continue
        name = " ".join(name.strip(" \"'@").split())
        if name and name.lower() not in _NOT_PEOPLE and name not in people and len(name) <= 60:
            people.append(name)
    return people[:DEFAULT_MAX_PEOPLE]


def _parts(value, query: str) -> list[str]:
    """The sub-queries: cleaned like the query, each once, none equal to the query itself, at
    most MAX_SUB_QUERIES."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    parts: list[str] = []
    seen = {query.casefold()}
    for item in value:
        part = _usable(item)
        if part and part.casefold() not in seen:
            seen.add(part.casefold())
            parts.append(part)
    return parts[:MAX_SUB_QUERIES]


def _flag(value) -> bool:
    """The summary flag: JSON true, or the words weak models write for it."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "sim")
    return value is True


def _source(value) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    for kind, words in _SOURCE_WORDS.items():
        if value in words:
            return kind
    return None


def request_to_json(request: SearchRequest) -> dict:
    """The request as a JSON-safe dict (dates as YYYY-MM-DD)."""
    return {
        "query": request.query,
        "since": request.since.date().isoformat() if request.since else None,
        "until": request.until.date().isoformat() if request.until else None,
        "people": list(request.people),
        "source": request.source_kind,
        "summary": request.summary,
        "parts": list(request.sub_queries),
    }


# ---------------------------------------------------------------- CLI


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Show the search request the document keeper writes for a message (loads the LLM).")
    parser.add_argument("message", nargs="+", help="the user's message; several arguments are earlier turns, "
                                                    "alternating user/assistant, ending with the user's")
    parser.add_argument("--today", help="today's date as YYYY-MM-DD (default: the real date)")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_KEEPER_MAX_TOKENS, help="keeper output cap")
    parser.add_argument("--backend", help="mlx or transformers (LLM_BACKEND)")
    parser.add_argument("--model", help="hub id or folder (LLM_MODEL)")
    parser.add_argument("--raw", action="store_true", help="also print the model's raw output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    try:
        today = date.fromisoformat(args.today) if args.today else date.today()
    except ValueError:
        raise settings.UserError(f"--today {args.today!r} is not a date; use YYYY-MM-DD")
    # The arguments alternate user/assistant and end with the user's message.
    roles = ["user" if (len(args.message) - i) % 2 == 1 else "assistant" for i in range(len(args.message))]
    history = [{"role": role, "content": text} for role, text in zip(roles, args.message)]
    from llm_backend import load_llm

    llm = load_llm(args.backend, args.model)
    if args.raw:
        raw = llm.complete(_fit(llm, history, today, args.max_tokens), max_tokens=args.max_tokens)
        print(json.dumps({"raw": raw}, ensure_ascii=False))
        request = parse_keeper_output(raw, last_user_message(history), today)
    else:
        request = formulate_request(llm, history, today, args.max_tokens)
    if request.note:
        print(f"note: {request.note}", file=sys.stderr)
    print(json.dumps(request_to_json(request), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    settings.run_cli(main)
