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
from pathlib import Path

import numpy as np

import settings

DEFAULT_CPU_BATCH_SIZE = 16
DEFAULT_GPU_BATCH_SIZE = 64
# Special tokens the model adds around every text ([CLS]/[SEP], <s>/</s>).
SPECIAL_TOKEN_ALLOWANCE = 2


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


def pick_device(requested: str | None = None) -> str:
    """The requested device, else cuda, then mps, then cpu."""
    if requested:
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Embedder:
    """A loaded sentence-transformers model with the prefixes its family expects.

    `embed_passages(["x"])` embeds "passage: x" for E5 models and "x" for others.
    """

    def __init__(self, model_name: str, device: str | None = None, batch_size: int | None = None,
                 e5_prefixes: bool | None = None):
        (folder,) = settings.fetch_models([(model_name, "EMBEDDING_MODEL", "embedding model")])
        self.name = model_name
        self.folder = str(folder)  # the model's identity in the index: one model however it is spelt
        self.device = pick_device(device)
        self.batch_size = batch_size or (DEFAULT_CPU_BATCH_SIZE if self.device == "cpu" else DEFAULT_GPU_BATCH_SIZE)
        if e5_prefixes is None:
            e5_prefixes = is_e5_model(model_name) or declares_e5_prompts(folder)
        self.query_prefix = "query: " if e5_prefixes else ""
        self.passage_prefix = "passage: " if e5_prefixes else ""
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        settings.quiet_model_loading()
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(str(folder), device=self.device)
        except (OSError, ValueError) as err:
            raise settings.UserError(
                f"embedding model folder {folder} could not be loaded ({err.__class__.__name__}); "
                "set EMBEDDING_MODEL to a sentence-transformers folder or hub id"
            )
        dimension_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(dimension_of())
        self.max_seq_length = int(self.model.max_seq_length)
        # A private copy for counting: a fast tokenizer keeps per-call padding/truncation state,
        # so counting in a parsing thread while encode() runs in another corrupts its batches.
        self._tokenizer = copy.deepcopy(self.model.tokenizer)

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes, without special tokens or prefix."""
        return len(self._tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    @functools.cached_property
    def passage_token_budget(self) -> int:
        """Most tokens a passage may have so prefix + text + special tokens fit the model."""
        prefix = self.count_tokens(self.passage_prefix) if self.passage_prefix else 0
        return self.max_seq_length - prefix - SPECIAL_TOKEN_ALLOWANCE

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors, one row per text, with the passage prefix added."""
        return self._encode([self.passage_prefix + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        """One normalised float32 vector for a search query, with the query prefix added."""
        return self._encode([self.query_prefix + text])[0]

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
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
