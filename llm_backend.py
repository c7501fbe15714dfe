"""One small interface over the two LLM backends: MLX (mlx-lm, Apple silicon) and transformers
(torch: CUDA when available, else CPU).

    llm = load_llm()                       # LLM_BACKEND / LLM_MODEL from flags, env or .env
    for piece in llm.stream(messages, max_tokens=512):
        print(piece, end="", flush=True)
    llm.last_finish_reason                 # "stop", "length" or "interrupted"

Prompts are rendered only by the tokenizer's chat template from role/content messages, so any
chat model works (Llama 3, Qwen, Gemma, Mistral...). Text that the user or the archive supplies
goes through `neutralise` first, so a note containing `<|eot_id|>` cannot end a turn.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import settings

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


# ---------------------------------------------------------------- the interface


class ChatModel:
    """A loaded chat model: template rendering, token counting and streamed generation.

    Subclasses implement `_stream_pieces`. This base class alone (a tokenizer, no weights)
    renders and counts, which is what the tests of templates need.
    """

    backend = "none"

    def __init__(self, tokenizer, context_window: int, name: str = "model"):
        self.tokenizer = tokenizer  # a Hugging Face tokenizer
        self.context_window = context_window
        self.name = name
        self.last_finish_reason: str | None = None
        self._special_pattern = special_token_pattern(self.tokenizer)
        self.supports_system_role = self._probe_system_role()

    # -- prompts

    def neutralise(self, text: str) -> str:
        """`text` with this tokenizer's special-token strings defused (see `neutralise`)."""
        return neutralise(text, self._special_pattern)

    def _probe_system_role(self) -> bool:
        # Gemma-style templates raise on a system message, a few drop it silently.
        marker = "SYSTEM-ROLE-PROBE"
        try:
            text = self.tokenizer.apply_chat_template(
                [{"role": "system", "content": marker}, {"role": "user", "content": "hi"}],
                tokenize=False, add_generation_prompt=True,
            )
        except Exception:
            return False
        return marker in text

    def prepare(self, messages: list[dict]) -> list[dict]:
        """Messages as this template accepts them: a system message is folded into the first
        user message when the template has no system role."""
        if self.supports_system_role or not messages or messages[0]["role"] != "system":
            return messages
        system, rest = messages[0]["content"], list(messages[1:])
        if rest and rest[0]["role"] == "user":
            rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
        else:
            rest.insert(0, {"role": "user", "content": system})
        return rest

    def render(self, messages: list[dict]) -> str:
        """The prompt text for `messages`, ending where the assistant's answer begins."""
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise settings.UserError(
                f"model {self.name} has no chat template; set LLM_MODEL to an instruct/chat model"
            )
        return self.tokenizer.apply_chat_template(
            self.prepare(messages), tokenize=False, add_generation_prompt=True
        )

    def encode(self, messages: list[dict]) -> list[int]:
        """Token ids of the rendered prompt (the template already holds BOS and headers)."""
        # verbose=False: counting an over-long draft is normal here, not worth a warning.
        return list(self.tokenizer(self.render(messages), add_special_tokens=False, verbose=False)["input_ids"])

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt tokens `messages` take once rendered through the chat template."""
        return len(self.encode(messages))

    def count_text_tokens(self, text: str) -> int:
        """Tokens of plain text (no template), for quick budget estimates."""
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    # -- generation

    def stream(self, messages: list[dict], max_tokens: int, temperature: float = 0.0,
               top_p: float = 1.0) -> Iterator[str]:
        """Yield the answer as text pieces; afterwards `last_finish_reason` is "stop" (end of
        turn), "length" (cut at `max_tokens` or the context window) or "interrupted" (the caller
        stopped iterating, e.g. on Ctrl-C; the model stays usable)."""
        ids = self.encode(messages)
        room = self.context_window - len(ids)
        if room <= 0:
            raise settings.UserError(
                f"the prompt takes {len(ids)} tokens, more than the model's context window of "
                f"{self.context_window}; shorten the message"
            )
        self.last_finish_reason = "interrupted"
        finish = yield from self._stream_pieces(ids, max(1, min(max_tokens, room)), temperature, top_p)
        self.last_finish_reason = finish

    def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0) -> str:
        """The whole answer as one string (greedy by default)."""
        return "".join(self.stream(messages, max_tokens, temperature))

    def add_stop_token(self, token_id: int) -> None:
        """Also end generation at `token_id`."""
        raise NotImplementedError

    def _stream_pieces(self, ids: list[int], max_tokens: int, temperature: float,
                       top_p: float) -> Iterator[str]:
        """Yield text pieces; return the finish reason ("stop" or "length")."""
        raise NotImplementedError


# ---------------------------------------------------------------- transformers


class TransformersChatModel(ChatModel):
    """transformers + torch, with a plain token loop over the KV cache: each step is one short
    forward pass, so stopping the iteration (Ctrl-C) stops generation at once."""

    backend = "transformers"

    def __init__(self, folder: Path, name: str, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or _torch_device()
        dtype = torch.float32
        if self.device == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif self.device == "mps":
            dtype = torch.float16
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        except (OSError, ValueError) as err:
            raise settings.UserError(
                f"model folder {folder} could not be loaded by transformers ({err.__class__.__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); set LLM_MODEL to a chat model folder or hub id"
            )
        self.model.to(self.device).eval()
        super().__init__(tokenizer, read_context_window(folder, tokenizer), name)
        self.eos_token_ids = _eos_ids(self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id)
        import inspect

        parameters = inspect.signature(self.model.forward).parameters
        # Only the last position's logits are needed: a long prompt's full logits are gigabytes.
        self._keep_arg = next((a for a in ("logits_to_keep", "num_logits_to_keep") if a in parameters), None)
        # transformers 5.x names the KV cache `cache`; 4.x `past_key_values`.
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"

    def add_stop_token(self, token_id: int) -> None:
        self.eos_token_ids.add(int(token_id))

    def _next_tokens(self, ids: list[int], max_tokens: int, temperature: float, top_p: float):
        import torch

        inputs = torch.tensor([ids], device=self.device)
        extra = {self._keep_arg: 1} if self._keep_arg else {}
        for _ in range(max_tokens):
            with torch.inference_mode():
                out = self.model(input_ids=inputs, use_cache=True, **extra)
                extra[self._cache_arg] = getattr(out, self._cache_arg)
                token = _pick(out.logits[0, -1].float(), temperature, top_p)
            yield token
            inputs = torch.tensor([[token]], device=self.device)

    def _stream_pieces(self, ids, max_tokens, temperature, top_p):
        generated: list[int] = []
        shown = 0
        for token in self._next_tokens(ids, max_tokens, temperature, top_p):
            if token in self.eos_token_ids:
                return "stop"
            generated.append(token)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            # An incomplete UTF-8 sequence decodes to U+FFFD: wait for the next token.
            if len(text) > shown and not text.endswith("\ufffd"):
                yield text[shown:]
                shown = len(text)
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        if len(text) > shown:
            yield text[shown:]
        return "length"


def _torch_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _eos_ids(*values) -> set[int]:
    ids: set[int] = set()
    for value in values:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _pick(logits, temperature: float, top_p: float) -> int:
    """Greedy at temperature 0, else temperature + nucleus (top-p) sampling."""
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if 0 < top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p
        sorted_probs[outside] = 0
        return int(order[torch.multinomial(sorted_probs, 1)])
    return int(torch.multinomial(probs, 1))


# ---------------------------------------------------------------- MLX


class MLXChatModel(ChatModel):
    """mlx-lm: `load`, `stream_generate` and `make_sampler`."""

    backend = "mlx"

    def __init__(self, folder: Path, name: str):
        try:
            import mlx_lm
        except ImportError:
            raise settings.UserError(
                "LLM_BACKEND=mlx needs mlx-lm (pip install mlx-lm; on Linux mlx-lm[cpu]); "
                "or set LLM_BACKEND=transformers"
            )
        try:
            self.model, self.mlx_tokenizer = mlx_lm.load(str(folder))
        except (OSError, ValueError, FileNotFoundError) as err:
            raise settings.UserError(
                f"model folder {folder} could not be loaded by mlx-lm ({err.__class__.__name__}); "
                "set LLM_MODEL to an MLX or Hugging Face chat model folder"
            )
        # mlx-lm wraps the Hugging Face tokenizer; rendering and counting use the inner one.
        hf_tokenizer = self.mlx_tokenizer._tokenizer
        super().__init__(hf_tokenizer, read_context_window(folder, hf_tokenizer), name)

    def add_stop_token(self, token_id: int) -> None:
        self.mlx_tokenizer.add_eos_token(int(token_id))

    def _stream_pieces(self, ids, max_tokens, temperature, top_p):
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        sampler = make_sampler(temp=temperature, top_p=top_p if 0 < top_p < 1 else 0.0)
        finish = "length"
        for response in stream_generate(self.model, self.mlx_tokenizer, ids, max_tokens=max_tokens,
                                        sampler=sampler):
            if response.text:
                yield response.text
            if response.finish_reason:
                finish = response.finish_reason
        return finish


# ---------------------------------------------------------------- loading


def load_llm(backend: str | None = None, model: str | None = None) -> ChatModel:
    """Load the chat model named by flag/LLM_MODEL on the flag/LLM_BACKEND backend.

    A model that is neither a folder nor in the Hugging Face cache while offline is a
    UserError that says why and what to do (see settings.download_failure).
    """
    backend = settings.llm_backend_name(backend)
    name = settings.llm_model_name(backend, model)
    (folder,) = settings.fetch_models([(name, "LLM_MODEL", "model")])
    settings.quiet_model_loading()
    if backend == "mlx":
        return MLXChatModel(folder, name)
    return TransformersChatModel(folder, name)
