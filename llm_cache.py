"""The LLM backends' prompt caches: one KV cache per system prompt (the keeper's and the
answer's), each trimmed to the part a new prompt shares with it, so a chat turn processes only
what is new; and `--prompt-cache`, the system prompts' caches kept on disk between runs.

    llm.stream(messages, 512)          # reuses the cache of messages[0], the system prompt
    llm.last_prompt_processed          # of llm.last_prompt_tokens
    restore_system_prompt_caches(llm, {"answer": [system_message]}, data_dir / "prompt_cache")

`PromptCaches` is mixed into llm_backend.ChatModel; each backend supplies the few operations on
its own cache (make, measure, trim, prefill, write, read).
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One KV cache per system prompt; two cover a chat turn (the keeper's pass and the answer's).
MAX_PROMPT_CACHES = 2
# What an unreadable cache file can raise while being read back (it is then made again).
_UNREADABLE = (OSError, ValueError, KeyError, IndexError, TypeError, RuntimeError)


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share: `[1, 2, 3]`, `[1, 2, 4]` -> 2."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class CacheSlot:
    """A backend KV cache and the token ids it holds, in order."""

    cache: Any
    tokens: list[int] = field(default_factory=list)


class PromptCaches:
    """Prompt caches keyed by system prompt, least recently used dropped first. The host class
    provides `name`, `backend` and `prefix_ids(messages)`, and calls `_init_caches()`."""

    prompt_cache_file = ""  # --prompt-cache's file suffix; '' where a backend cannot save its caches

    def _init_caches(self) -> None:
        self.use_prompt_cache = True  # False: every prompt from scratch (the benchmark's baseline)
        self._caches: OrderedDict[str, CacheSlot] = OrderedDict()  # system prompt -> slot, oldest first
        self.last_prompt_tokens = 0  # the last prompt's length...
        self.last_prompt_processed = 0  # ...and how many of its tokens the model had to process

    def reset_cache(self) -> None:
        """Forget every cached prompt (a new conversation or persona starts from nothing)."""
        self._caches.clear()

    def cached_tokens(self) -> list[list[int]]:
        """The token ids each prompt cache holds (what a test checks after /reset)."""
        return [list(slot.tokens) for slot in self._caches.values()]

    def _slot_for(self, messages: list[dict]) -> CacheSlot:
        """The cache for prompts with this system message (a fresh one when caching is off)."""
        if not self.use_prompt_cache:
            return CacheSlot(self._new_cache())
        key = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        slot = self._caches.pop(key, None)
        if slot is None:
            slot = CacheSlot(self._new_cache())
            while len(self._caches) >= MAX_PROMPT_CACHES:
                self._caches.popitem(last=False)  # the least recently used
        self._caches[key] = slot
        return slot

    def _forget(self, slot: CacheSlot) -> None:
        slot.cache, slot.tokens = self._new_cache(), []

    def _reuse(self, slot: CacheSlot, ids: list[int]) -> int:
        """Trim `slot` to the prefix it shares with `ids`; how many tokens of `ids` it holds.
        The last prompt token is always processed again: its logits pick the first answer token."""
        shared = min(common_prefix_length(slot.tokens, ids), len(ids) - 1)
        if shared < len(slot.tokens) and not self._trim_cache(slot.cache, shared):
            self._forget(slot)
            shared = 0
        slot.tokens = list(ids[:shared])
        return shared

    def _sync(self, slot: CacheSlot) -> None:
        """Make `slot.tokens` match what its cache holds (generation may stop mid-way)."""
        held = self._cache_length(slot.cache)
        if held < len(slot.tokens):
            del slot.tokens[held:]
        elif held > len(slot.tokens) and not self._trim_cache(slot.cache, len(slot.tokens)):
            self._forget(slot)

    # -- what each backend does with its own cache

    def _new_cache(self):
        """An empty KV cache of this backend."""
        return None

    def _cache_length(self, cache) -> int:
        """Tokens held by `cache`."""
        return 0

    def _trim_cache(self, cache, keep: int) -> bool:
        """Cut `cache` to its first `keep` tokens; False when this cache cannot be cut."""
        return keep == 0

    def _prefill(self, cache, ids: list[int]) -> None:
        """Run `ids` through the model into `cache` (no answer)."""
        raise NotImplementedError

    def _write_cache(self, path: Path, cache, metadata: dict[str, str]) -> None:
        """Save `cache` and `metadata` to `path`."""
        raise NotImplementedError

    def _read_cache(self, path: Path) -> tuple[Any, dict[str, str]]:
        """The cache and metadata saved at `path`; raises one of _UNREADABLE when it cannot."""
        raise NotImplementedError

    # -- the system prompt's cache on disk (--prompt-cache)

    def save_prompt_cache(self, path: Path, messages: list[dict]) -> int:
        """Process `messages` (the system prompt) and write their KV cache to `path`, as
        `mlx_lm.cache_prompt` does; returns the tokens stored."""
        ids = self.prefix_ids(messages)
        slot = self._slot_for(messages)
        reused = self._reuse(slot, ids + [-1])  # -1: nothing after the prefix is shared
        if reused < len(ids):
            self._prefill(slot.cache, ids[reused:])
            slot.tokens = list(ids)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_cache(path, slot.cache, self._cache_metadata(ids))
        return len(ids)

    def load_prompt_cache(self, path: Path, messages: list[dict]) -> int:
        """Put the cache saved at `path` in the slot of `messages`' system prompt when it was
        made by this model, backend and settings for this prompt; returns the tokens loaded
        (0: none usable)."""
        ids = self.prefix_ids(messages)
        try:
            cache, metadata = self._read_cache(path)
            tokens = json.loads(metadata.get("tokens", "[]"))
        except _UNREADABLE:
            return 0  # missing, damaged or from another library version: made again
        expected = self._cache_metadata(ids)
        if any(metadata.get(key) != value for key, value in expected.items() if key != "tokens") or tokens != ids:
            return 0
        if self._cache_length(cache) != len(tokens):
            return 0
        slot = self._slot_for(messages)
        slot.cache, slot.tokens = cache, tokens
        return len(tokens)

    def _cache_metadata(self, ids: list[int]) -> dict[str, str]:
        """What a saved cache must match to be used: the model, the backend, the prompt."""
        return {"model": self.name, "backend": self.backend, "tokens": json.dumps(ids)}


def restore_system_prompt_caches(llm, systems: dict[str, list[dict]], folder: Path) -> str:
    """--prompt-cache: load each system prompt's KV cache from `folder` (`answer.safetensors`...),
    or process the prompt and save it there when the file is missing or was made for another
    model or prompt. Returns a one-line note for the user."""
    suffix = getattr(llm, "prompt_cache_file", "")
    if not suffix:
        return f"--prompt-cache works with the MLX and transformers backends; the {llm.backend} backend ignores it"
    loaded, made = [], []
    for kind, messages in systems.items():
        path = folder / f"{kind}{suffix}"
        if llm.load_prompt_cache(path, messages):
            loaded.append(kind)
            continue
        try:
            llm.save_prompt_cache(path, messages)
        except (OSError, RuntimeError) as err:  # a full disk or a read-only folder: the chat goes on
            return f"could not save the system prompt cache in {folder} ({err}); the chat runs without it"
        made.append(kind)
    parts = ([f"{' and '.join(loaded)} loaded"] if loaded else []) + ([f"{' and '.join(made)} saved"] if made else [])
    return f"system prompt cache: {', '.join(parts)} in {folder}"
