"""The sentence-transformers embedder: E5 query/passage prefixes, normalised float32 vectors,
and the token counting the chunkers budget with.

    python embedding_generator_multilingual.py "some text"   # prints dimension and first values
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import settings

DEFAULT_CPU_BATCH_SIZE = 16
DEFAULT_GPU_BATCH_SIZE = 64
# Special tokens the model adds around every text ([CLS]/[SEP], <s>/</s>).
SPECIAL_TOKEN_ALLOWANCE = 2
# The cosine under which no passage counts as close to a question (the search then says so).
# Similarities depend on the family: E5 puts unrelated texts high, MiniLM-like models near 0
# (measured in bench/bench_retrieval.py --throughput, which prints both distributions). MiniLM
# on bench_memory: real questions' best similarity p1 0.204, p5 0.242; off-topic questions' p50
# 0.178, p95 0.279. 0.22 flags 1-5% of real questions and half the off-topic ones (0.30 flagged
# over 5% of real ones). multilingual-e5-small on bench_quality (bench/bench_quality.py prints it):
# real questions' best p1 0.815, p50 0.859 (lowest 0.809); off-topic p50 0.822, max 0.836. E5's
# similarities are compressed and the two overlap, so 0.80 flags none of the real questions and
# a fifth of the off-topic ones; a higher threshold would start flagging real ones.
CLOSE_SCORE_E5 = 0.80
CLOSE_SCORE = 0.22


def is_e5_model(name: str) -> bool:
    """E5-family models (intfloat/e5-*, multilingual-e5-*) were trained with `query: `/`passage: `."""
    return re.search(r"(^|[-_/.])e5([-_/.]|$)", name.lower()) is not None


def declares_e5_prompts(folder: Path) -> bool:
    """A sentence-transformers folder whose config declares the E5 `query: ` prompt."""
    try:
        config = json.loads((folder / "config_sentence_transformers.json").read_text())
    except (OSError, ValueError):
        return False
    return (config.get("prompts") or {}).get("query") == "query: "


@dataclass(frozen=True)
class FolderFacts:
    """What a sentence-transformers folder's small JSON files say, read without loading it.

    `max_seq_length` is None where the folder does not declare it (then only the loaded model
    knows); `tokenizer_file` is the fast tokenizer's tokenizer.json, when there is one.
    """

    transformer_folder: Path  # where the Transformer module (and its tokenizer) lives
    max_seq_length: int | None
    tokenizer_file: Path | None
    do_lower_case: bool


def read_folder_facts(folder: Path) -> FolderFacts:
    """The Transformer module's folder, sequence limit and tokenizer file, from modules.json and
    sentence_bert_config.json (what sentence-transformers itself reads them from)."""
    modules = []
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    sub = ""
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Transformer"):
            sub = str(module.get("path") or "")
            break
    transformer = folder / sub
    config = settings.read_json_object(transformer / "sentence_bert_config.json")
    limit = config.get("max_seq_length")
    tokenizer = transformer / "tokenizer.json"
    return FolderFacts(transformer, limit if isinstance(limit, int) and limit > 0 else None,
                       tokenizer if tokenizer.is_file() else None, bool(config.get("do_lower_case")))


class Embedder:
    """A sentence-transformers model with the prefixes its family expects, loaded when first needed.

    `embed_passages(["x"])` embeds "passage: x" for E5 models and "x" for others. Building one
    reads only the folder's small files: the tokenizer loads on the first `count_tokens` and
    the model on the first embedding, so a run with nothing to chunk or embed never imports
    torch (an unchanged re-run costs what reading the sources costs).
    """

    def __init__(self, model_name: str, device: str | None = None, batch_size: int | None = None,
                 e5_prefixes: bool | None = None):
        (folder,) = settings.fetch_models([(model_name, "EMBEDDING_MODEL", "embedding model")])
        self.name = model_name
        self.folder = str(folder)  # the model's identity in the index: one model however it is spelt
        self._requested_device = device
        self._requested_batch_size = batch_size
        if e5_prefixes is None:
            e5_prefixes = is_e5_model(model_name) or declares_e5_prompts(folder)
        self.query_prefix = "query: " if e5_prefixes else ""
        self.passage_prefix = "passage: " if e5_prefixes else ""
        self._facts = read_folder_facts(folder)
        # The dimension an existing index holds (see expect_dimension): checked when the model loads.
        self.expected_dimension: int | None = None
        self._model = None
        self._tokenizer = None
        self._model_lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()

    # -- loading, on first use

    @property
    def model(self):
        """The loaded SentenceTransformer (loaded here on first use, once, whichever thread asks)."""
        return self.load()

    def load(self):
        """Load the model now unless it is loaded (a chat does this in a background thread)."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    self._model = self._load_model()
        return self._model

    def _load_model(self):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        settings.quiet_model_loading()
        from sentence_transformers import SentenceTransformer

        device = settings.pick_device(self._requested_device)
        self._batch_size = self._requested_batch_size or (
            DEFAULT_CPU_BATCH_SIZE if device == "cpu" else DEFAULT_GPU_BATCH_SIZE)
        try:
            model = SentenceTransformer(self.folder, device=device)
        except (OSError, ValueError) as err:
            raise settings.UserError(
                f"embedding model folder {self.folder} could not be loaded ({err.__class__.__name__}); "
                "set EMBEDDING_MODEL to a sentence-transformers folder or hub id"
            )
        dimension_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self._dimension = int(dimension_of())
        self._device = device
        self._check_dimension()
        return model

    def _check_dimension(self) -> None:
        if self.expected_dimension is not None and self._dimension != self.expected_dimension:
            # Same name or folder as the index's model, other vectors: the folder's files changed.
            raise settings.UserError(
                f"the index holds {self.expected_dimension}-dim vectors but the model in {self.folder} "
                f"gives {self._dimension}; re-run ingestion with --rebuild (or set EMBEDDING_MODEL back)"
            )

    def _load_tokenizer(self):
        if self._model is not None or self._facts.do_lower_case:
            # Lower-casing models change their tokenizer at load: count with the loaded one's copy.
            # A private copy: a fast tokenizer keeps per-call padding/truncation state, so counting
            # in a parsing thread while encode() runs in another would corrupt its batches.
            return copy.deepcopy(self.model.tokenizer)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        settings.quiet_model_loading()
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(self._facts.transformer_folder))
        except (OSError, ValueError) as err:
            raise settings.UserError(
                f"the tokenizer in {self._facts.transformer_folder} could not be loaded ({err.__class__.__name__}); "
                "set EMBEDDING_MODEL to a sentence-transformers folder or hub id"
            )

    def expect_dimension(self, dimension: int) -> None:
        """Vectors must have `dimension` values (the index's): a model that loads with another
        size is a one-line error before anything is written."""
        self.expected_dimension = dimension
        if self._model is not None:
            self._check_dimension()

    # -- what the model is

    @property
    def dimension(self) -> int:
        """Values per vector (loads the model)."""
        self.load()
        return self._dimension

    @property
    def device(self) -> str:
        """Where the model runs: the requested device, else the best available (loads the model)."""
        self.load()
        return self._device

    @property
    def batch_size(self) -> int:
        """Texts per encode batch: the requested size, else one that suits the device."""
        self.load()
        return self._batch_size

    @property
    def close_score(self) -> float:
        """The cosine under which a passage is not close to a query, for this model's family."""
        return CLOSE_SCORE_E5 if self.query_prefix else CLOSE_SCORE

    @property
    def max_seq_length(self) -> int:
        """Most tokens the model reads, special tokens included (from its folder, else the model)."""
        if self._facts.max_seq_length is not None:
            return self._facts.max_seq_length
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes, without special tokens or prefix (loads the tokenizer)."""
        if self._tokenizer is None:
            with self._tokenizer_lock:
                if self._tokenizer is None:
                    self._tokenizer = self._load_tokenizer()
        return len(self._tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    @functools.cached_property
    def passage_token_budget(self) -> int:
        """Most tokens a passage may have so prefix + text + special tokens fit the model.

        Part of every document's fingerprint, so it is read without loading anything where the
        folder allows: the limit from sentence_bert_config.json, the prefix through tokenizer.json.
        """
        return self.max_seq_length - self._prefix_tokens(self.passage_prefix) - SPECIAL_TOKEN_ALLOWANCE

    @functools.cached_property
    def query_token_budget(self) -> int:
        """Most tokens a search query may have so prefix + text + special tokens fit the model
        (the model would silently drop the rest; the search cuts a longer question and says so)."""
        return self.max_seq_length - self._prefix_tokens(self.query_prefix) - SPECIAL_TOKEN_ALLOWANCE

    def _prefix_tokens(self, prefix: str) -> int:
        if not prefix:
            return 0
        if self._tokenizer is None and self._model is None and self._facts.tokenizer_file is not None \
                and not self._facts.do_lower_case:
            from tokenizers import Tokenizer  # the Rust tokenizer alone: no torch, milliseconds

            try:
                tokenizer = Tokenizer.from_file(str(self._facts.tokenizer_file))
                return len(tokenizer.encode(prefix, add_special_tokens=False).ids)
            except Exception:  # a tokenizer.json this version cannot read: ask the real one
                pass
        return self.count_tokens(prefix)

    # -- embedding

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors, one row per text, with the passage prefix added."""
        return self._encode([self.passage_prefix + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        """One normalised float32 vector for a search query, with the query prefix added."""
        return self._encode([self.query_prefix + text])[0]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """`embed_query` for many queries in one batch (the search CLI's stdin, sub-queries)."""
        return self._encode([self.query_prefix + t for t in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self.model
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def load_embedder(model: str | None = None, device: str | None = None, batch_size: int | None = None) -> Embedder:
    """Build the Embedder from flags/settings (EMBEDDING_MODEL, EMBEDDING_DEVICE, EMBEDDING_BATCH_SIZE)."""
    return Embedder(
        settings.get("EMBEDDING_MODEL", model),
        device=settings.get("EMBEDDING_DEVICE", device),
        batch_size=settings.get_int("EMBEDDING_BATCH_SIZE", batch_size),
    )


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Embed a text with the configured model (a quick check).")
    parser.add_argument("text", help="text to embed")
    parser.add_argument("--query", action="store_true", help="embed as a search query instead of a passage")
    parser.add_argument("--embedding-model", help="hub id or folder (EMBEDDING_MODEL)")
    parser.add_argument("--device", help="cpu, cuda or mps (EMBEDDING_DEVICE)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    embedder = load_embedder(args.embedding_model, args.device)
    vector = embedder.embed_query(args.text) if args.query else embedder.embed_passages([args.text])[0]
    print(f"{embedder.name}: {embedder.dimension} dims, {embedder.count_tokens(args.text)} tokens, "
          f"max {embedder.max_seq_length}; first values {np.round(vector[:5], 4).tolist()}")
    return 0


if __name__ == "__main__":
    settings.run_cli(main)
