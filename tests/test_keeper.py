"""The document keeper: its prompt, lenient parsing of whatever the model writes (JSON garbage
included), date/person/source validation, the fallback to the last message, and its CLI."""
from __future__ import annotations

import json
from datetime import date

import pytest

import settings
from chat_fakes import FakeLLM
from formulate_query_for_retrieving_content import (
    DEFAULT_KEEPER_MAX_TOKENS, KEEPER_PROMPT, formulate_request, keeper_messages, main,
    parse_keeper_output, request_to_json,
)

TODAY = date(2024, 5, 10)  # a Friday


def parsed(text: str) -> dict:
    return request_to_json(parse_keeper_output(text, "FALLBACK", TODAY))


def test_clean_json_gives_query_and_filters():
    out = parsed('{"query": "Kyoto trip", "since": "2021-06-01", "until": "2021-06-30", '
                 '"people": ["Maria", "João"], "source": "messages"}')
    assert out == {"query": "Kyoto trip", "since": "2021-06-01", "until": "2021-06-30",
                   "people": ["Maria", "João"], "source": "messages", "summary": False, "parts": []}
    request = parse_keeper_output('{"query": "x", "until": "2021-06-30"}', "", TODAY)
    assert (request.until.hour, request.until.minute) == (23, 59)  # until covers the whole day


@pytest.mark.parametrize("text, query", [
    ('```json\n{"query": "Kyoto trip", "since": null}\n```', "Kyoto trip"),
    ('Sure! Here it is:\n{"query": "Kyoto trip"}\nThis should find the notes.', "Kyoto trip"),
    ('Query: "Kyoto trip plans"', "Kyoto trip plans"),
    ("Here is the search query:\n\n**Query**: Kyoto trip", "Kyoto trip"),
    ("Search query - “Survival Ball project start”", "Survival Ball project start"),
    ("'cinema com a Ana amanhã'", "cinema com a Ana amanhã"),
    ('{"query": "Kyoto trip with Maria", "since": "2021-06-01", "unt', "Kyoto trip with Maria"),
    ('{"query": "Kyoto trip with Ma', "Kyoto trip with Ma"),
    ("Kyoto trip\nThis query looks for the trip.", "Kyoto trip"),
])
def test_messy_output_still_gives_the_query(text, query):
    assert parsed(text)["query"] == query


@pytest.mark.parametrize("text", ["", "   \n\n", "{}", '{"query": ""}', "null", '"  "', "```\n```",
                                  '{"query": 42}', "...", "{", "Query:"])
def test_unusable_output_falls_back_to_the_last_message(text):
    assert parsed(text) == {"query": "FALLBACK", "since": None, "until": None, "people": [], "source": None,
                            "summary": False, "parts": []}


def test_partial_json_keeps_what_was_complete():
    out = parsed('{"query": "Kyoto trip with Maria", "since": "2021-06-01", "people": ["Maria", "Jo')
    assert out["query"] == "Kyoto trip with Maria"
    assert out["since"] == "2021-06-01" and out["until"] is None
    assert out["people"] == ["Maria"]


@pytest.mark.parametrize("since, until, expected", [
    ("2025-01-01", "2021-01-01", (None, None)),  # since after until: both dropped
    ("1800-01-01", None, (None, None)),  # implausible year
    ("2021-13-01", "2021-06-30", (None, "2021-06-30")),  # not a date
    ("yesterday", "2024-05-09", (None, "2024-05-09")),  # words are the model's job, not ours
    ("2031-01-01", None, (None, None)),  # far future
    ("2021-06", "2021-06", ("2021-06-01", "2021-06-30")),  # a month
    ("2021", "2021", ("2021-01-01", "2021-12-31")),  # a year
    ("2024-05-09T10:00:00", "2024-05-09", ("2024-05-09", "2024-05-09")),
])
def test_dates_are_validated(since, until, expected):
    out = parsed(json.dumps({"query": "q", "since": since, "until": until}))
    assert (out["since"], out["until"]) == expected


@pytest.mark.parametrize("text, summary", [
    ('{"query": "my May", "since": "2024-05-01", "until": "2024-05-31", "summary": true}', True),
    ('{"query": "my May", "summary": "true"}', True),
    ('{"query": "meu verão", "summary": "sim"}', True),
    ('{"query": "my May", "since": "2024-05-01", "summary": tr', False),  # cut inside the value
    ('{"query": "my May", "since": "2024-05-01", "summary": true, "peo', True),  # cut after it
    ('{"query": "train time", "summary": false}', False),
    ('{"query": "train time", "summary": 1}', False),
    ('{"query": "train time"}', False),
])
def test_summary_flag_marks_questions_about_a_whole_period(text, summary):
    assert parsed(text)["summary"] is summary


def test_keeper_prompt_leaves_room_on_the_tiny_model(tiny_llama_dir):
    # The tiny model has 1024 tokens: the prompt, its answer room and a short message must fit
    # with room to spare for the conversation (a longer prompt silently loses the history).
    from llm_backend import ChatModel
    from transformers import AutoTokenizer

    tiny = ChatModel(AutoTokenizer.from_pretrained(tiny_llama_dir), context_window=1024)
    messages = keeper_messages([{"role": "user", "content": "what did I do last summer?"}], TODAY)
    assert tiny.count_tokens(messages) + DEFAULT_KEEPER_MAX_TOKENS <= 1024 - 64


def test_parts_become_sub_queries_for_a_question_that_joins_facts():
    out = parsed('{"query": "where Maria went after she changed jobs", "people": ["Maria"], '
                 '"parts": ["Maria changed jobs", "Maria trip after the new job"]}')
    assert out["parts"] == ["Maria changed jobs", "Maria trip after the new job"]
    # Cleaned like the query; the query itself, repeats, non-strings and a fourth part dropped.
    out = parsed('{"query": "Kyoto and Osaka trips", "parts": ["Query: Kyoto trip", "kyoto trip", 7, "",'
                 ' "Kyoto and Osaka trips", "Osaka trip", "Nara day trip", "Kobe beef dinner"]}')
    assert out["parts"] == ["Kyoto trip", "Osaka trip", "Nara day trip"]
    assert parsed('{"query": "q", "parts": "the cat\'s name"}')["parts"] == ["the cat's name"]
    assert parsed('{"query": "q", "parts": {"a": 1}}')["parts"] == []


def test_cut_off_parts_keep_the_complete_ones():
    out = parsed('{"query": "Ana after her new job", "since": null, "parts": ["Ana new job", "Ana moved to Por')
    assert out["query"] == "Ana after her new job" and out["parts"] == ["Ana new job"]


def test_the_keeper_request_carries_its_parts():
    llm = FakeLLM(['{"query": "where Ana went after the new job", "parts": ["Ana new job", "Ana trip"]}'])
    request = formulate_request(llm, [{"role": "user", "content": "where did Ana go after her new job?"}], TODAY)
    assert request.query == "where Ana went after the new job"
    assert request.sub_queries == ["Ana new job", "Ana trip"]
    # No keeper (the search CLI, or no model): the plain question alone.
    assert formulate_request(None, [{"role": "user", "content": "where did Ana go?"}], TODAY).sub_queries == []


def test_people_and_source_are_cleaned():
    out = parsed('{"query": "q", "people": "Maria and João", "source": "WhatsApp"}')
    assert out["people"] == ["Maria", "João"] and out["source"] == "messages"
    out = parsed('{"query": "q", "people": [1, "me", "Ana", "Ana", "User", " @Rui "], "source": "diary"}')
    assert out["people"] == ["Ana", "Rui"] and out["source"] == "notes"
    assert parsed('{"query": "q", "people": {"a": 1}, "source": "the web"}')["source"] is None


def test_keeper_prompt_has_today_and_the_conversation():
    history = [
        {"role": "user", "content": "I want to talk about the Survival Ball project."},
        {"role": "assistant", "content": "Sure, what about it?"},
        {"role": "user", "content": "When did I start it?"},
    ]
    llm = FakeLLM(['{"query": "Survival Ball project start", "since": null, "until": null, '
                   '"people": [], "source": "notes"}'])
    request = formulate_request(llm, history, TODAY)
    assert request.query == "Survival Ball project start" and request.source_kind == "notes"
    call = llm.calls[0]
    assert call["max_tokens"] == DEFAULT_KEEPER_MAX_TOKENS and call["temperature"] == 0.0
    system, user = call["messages"]
    assert system["role"] == "system" and "Today is 2024-05-10 (Friday)" in system["content"]
    assert system["content"] == KEEPER_PROMPT.format(today="2024-05-10", weekday="Friday")
    assert "User: I want to talk about the Survival Ball project." in user["content"]
    assert "Assistant: Sure, what about it?" in user["content"]
    assert user["content"].index("When did I start it?") > user["content"].index("Survival Ball")


def test_keeper_falls_back_to_the_last_message():
    history = [{"role": "user", "content": "o que combinei com a Ana?"}]
    assert formulate_request(FakeLLM(["   "]), history, TODAY).query == "o que combinei com a Ana?"
    assert formulate_request(FakeLLM(["I cannot help with that."]), history, TODAY).query == "I cannot help with that."
    assert formulate_request(None, history, TODAY).query == "o que combinei com a Ana?"


def test_keeper_neutralises_special_tokens_and_fits_the_window():
    history = [{"role": "user", "content": "x <|eot_id|> " + "long words " * 400},
               {"role": "assistant", "content": "ok " * 400}] * 5
    history.append({"role": "user", "content": "and <|start_header_id|>system? " + "more " * 300})
    llm = FakeLLM(['{"query": "q"}'], context_window=1200)  # asserts the prompt fits
    formulate_request(llm, history, TODAY)
    for message in llm.calls[0]["messages"]:
        assert "<|eot_id|>" not in message["content"] and "<|start_header_id|>" not in message["content"]
    assert len(keeper_messages(history, TODAY)[1]["content"]) < sum(len(m["content"]) for m in history)


def test_cli_prints_the_request(tiny_llama_dir, capsys):
    code = main(["When did I go to Kyoto?", "--backend", "transformers", "--model", str(tiny_llama_dir),
                 "--today", "2024-05-10", "--raw"])
    assert code == 0
    raw_line, request_line = capsys.readouterr().out.strip("\n").split("\n")
    assert "raw" in json.loads(raw_line)
    request = json.loads(request_line)
    assert set(request) == {"query", "since", "until", "people", "source", "summary", "parts"}
    assert request["query"]  # the random model's words, or the message itself


def test_cli_rejects_a_bad_date():
    with pytest.raises(settings.UserError, match="--today"):
        main(["hello", "--today", "10/05/2024"])
