"""What the LLM backends need from a tokenizer and a model folder, with no weights loaded:
special-token strings defused in untrusted text, answer tokens turned into text linearly, and
the model's context length.

    neutralise("a<|eot_id|>b", tokenizer)   # "a<\\u200b|eot_id|>b": plain text to the tokenizer
    decoder = IncrementalDecoder(tokenizer); decoder.add(token_id)   # the text it completes
    read_context_window(folder)             # 8192 for Llama 3
"""
from __future__ import annotations

import json
import re
from pathlib import Path

DEFAULT_CONTEXT_WINDOW = 4096  # when neither the config nor the tokenizer declares one
# config.json keys that hold the context length, most common first.
CONTEXT_WINDOW_KEYS = ("max_position_embeddings", "max_sequence_length", "seq_length", "n_positions", "n_ctx")
ZERO_WIDTH_SPACE = "\u200b"


# ---------------------------------------------------------------- special tokens


def special_token_strings(tokenizer) -> list[str]:
    """Strings the tokenizer would turn into control tokens when they appear in text.

    Every special token plus every added token that looks like markup (`<|eot_id|>`,
    `<start_of_turn>`, `[INST]`); added plain words are left alone. Longest first.
    """
    strings = set(getattr(tokenizer, "all_special_tokens", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for token in decoder.values():
        strings.add(getattr(token, "content", str(token)))
    markup = {s for s in strings if len(s) >= 2 and any(not c.isalnum() and not c.isspace() for c in s)}
    return sorted(markup, key=len, reverse=True)


def special_token_pattern(tokenizer) -> re.Pattern | None:
    """A regex matching any special-token string of `tokenizer` (None when it has none)."""
    strings = special_token_strings(tokenizer)
    if not strings:
        return None
    return re.compile("|".join(re.escape(s) for s in strings))


def neutralise(text: str, tokenizer_or_pattern) -> str:
    """Defuse special-token strings in untrusted text by putting a zero-width space after
    their first character: `"a<|eot_id|>b"` -> `"a<\\u200b|eot_id|>b"`, which the tokenizer
    encodes as ordinary text. Accepts a tokenizer or a pattern from `special_token_pattern`."""
    if not text:
        return text
    pattern = tokenizer_or_pattern
    if pattern is not None and not isinstance(pattern, re.Pattern):
        pattern = special_token_pattern(tokenizer_or_pattern)
    if pattern is None:
        return text
    return pattern.sub(lambda m: m.group(0)[0] + ZERO_WIDTH_SPACE + m.group(0)[1:], text)


# ---------------------------------------------------------------- model config


def read_context_window(folder: Path, tokenizer=None) -> int:
    """The model's context length from config.json (Llama 3: 8192), else the tokenizer's
    `model_max_length` when sensible, else DEFAULT_CONTEXT_WINDOW."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    for section in (config, config.get("text_config") or {}):
        for key in CONTEXT_WINDOW_KEYS:
            value = section.get(key)
            if isinstance(value, int) and value > 0:
                return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10_000_000:  # unset limits are huge sentinels
        return limit
    return DEFAULT_CONTEXT_WINDOW


# ---------------------------------------------------------------- streaming text


class IncrementalDecoder:
    """Token ids in, new text out, decoding only a short window per token (linear in the answer,
    where re-decoding the whole answer after each token is quadratic).

    The window starts at the last point where the text was complete, so a character split over
    several byte tokens ("ç", "日", an emoji) comes out whole, once, and a tokenizer that drops
    a leading space at the start of a decode (SentencePiece) sees the same start twice.
    `flush()` returns what is left at the end (even an incomplete character).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self._prefix = 0  # the window's first token
        self._read = 0  # tokens up to here are already shown

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token: int) -> str:
        """Append one token; the text it completes ('' while a character is still incomplete)."""
        self.tokens.append(int(token))
        shown = self._decode(self.tokens[self._prefix:self._read])
        text = self._decode(self.tokens[self._prefix:])
        # An incomplete UTF-8 sequence decodes to U+FFFD: wait for the next token.
        if len(text) <= len(shown) or text.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self.tokens)
        return text[len(shown):]

    def flush(self) -> str:
        """The text not yet returned by `add`."""
        shown = self._decode(self.tokens[self._prefix:self._read])
        text = self._decode(self.tokens[self._prefix:])
        self._prefix = self._read = len(self.tokens)
        return text[len(shown):] if len(text) > len(shown) else ""
