"""The embedder with the real packaged model (and the multilingual E5 where ../shared exists)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import settings
from embedding_generator_multilingual import Embedder, is_e5_model


def test_non_e5_model_gets_no_prefix_and_unit_float32_vectors(embedder):
    vectors = embedder.embed_passages(["a note about Kyoto", "a message from Maria"])
    assert embedder.passage_prefix == embedder.query_prefix == ""
    assert vectors.dtype == np.float32 and vectors.shape == (2, embedder.dimension) == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = embedder.embed_query("a note about Kyoto")
    assert query.shape == (384,)
    assert float(query @ vectors[0]) == pytest.approx(1.0, abs=1e-4)


def test_token_counting_and_budget(embedder):
    assert embedder.count_tokens("hello world") == 2
    assert embedder.count_tokens("hello " * 300) == 300
    assert embedder.max_seq_length == 256
    assert embedder.passage_token_budget == 254


def test_e5_names_are_recognised():
    assert is_e5_model("intfloat/multilingual-e5-large")
    assert is_e5_model("intfloat/e5-small-v2")
    assert not is_e5_model("sentence-transformers/all-MiniLM-L6-v2")
    assert not is_e5_model("/models/e5x-not-really")


def test_e5_model_embeds_with_prefixes(multilingual_model_path):
    e5 = Embedder(multilingual_model_path, device="cpu")
    assert (e5.query_prefix, e5.passage_prefix) == ("query: ", "passage: ")
    assert e5.passage_token_budget == e5.max_seq_length - e5.count_tokens("passage: ") - 2
    raw = e5.model.encode(["passage: Vamos ao cinema amanhã"], normalize_embeddings=True)[0]
    assert np.allclose(e5.embed_passages(["Vamos ao cinema amanhã"])[0], raw, atol=1e-5)
    query = e5.embed_query("when are we going to the cinema?")
    passages = e5.embed_passages(["Vamos ao cinema amanhã às 20h", "A receita de bolo de cenoura"])
    assert query @ passages[0] > query @ passages[1]


def test_missing_model_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(settings.UserError) as err:
        Embedder("nobody/no-such-model-anywhere")
    assert str(err.value) == (
        "embedding model nobody/no-such-model-anywhere is not on this machine and the hub is switched off "
        "(HF_HUB_OFFLINE); unset HF_HUB_OFFLINE once to download it, or set EMBEDDING_MODEL to a local folder"
    )


def test_counting_tokens_while_the_model_encodes_in_another_thread(embedder):
    count = embedder.count_tokens
    texts = [f"Sentence {i} " + "word " * (i % 40) for i in range(200)]
    # Counting in one thread while the model encodes padded batches in another: with the model's own
    # tokenizer this fails ("Unable to create tensor") within a few batches.
    stop, errors = threading.Event(), []

    def keep_counting():
        while not stop.is_set():
            for text in texts:
                count(text)

    counter = threading.Thread(target=keep_counting)
    counter.start()
    try:
        for _ in range(5):
            assert embedder.embed_passages(texts[:64]).shape == (64, embedder.dimension)
    except BaseException as err:
        errors.append(err)
    finally:
        stop.set()
        counter.join()
    assert not errors
