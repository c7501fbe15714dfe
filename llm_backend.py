"""One small interface over the two LLM backends: MLX (mlx-lm, Apple silicon) and transformers
(torch: CUDA when available, else CPU).

    llm = load_llm()                       # LLM_BACKEND / LLM_MODEL from flags, env or .env
    for piece in llm.stream(messages, max_tokens=512):
        print(piece, end="", flush=True)
    llm.last_finish_reason                 # "stop", "length" or "interrupted"

Prompts are rendered only by the tokenizer's chat template from role/content messages, so any
chat model works (Llama 3, Qwen, Gemma, Mistral...). Text that the user or the archive supplies
goes through `neutralise` first, so a note containing `<|eot_id|>` cannot end a turn.

Prompt caches: each backend keeps the KV cache of its last prompts, one per system prompt (the
keeper's and the answer's), and a new prompt re-processes only the tokens after the part it
shares with the cached one (`llm.last_prompt_tokens`, `llm.last_prompt_processed`).
`llm.reset_cache()` forgets them (the chat's /reset and /persona). The cache logic and
`--prompt-cache`'s files are in llm_cache.py; each backend here supplies its cache's operations.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import settings
from llm_cache import CacheSlot, PromptCaches, common_prefix_length
from llm_tokens import IncrementalDecoder, neutralise, read_context_window, special_token_pattern

DTYPES = ("auto", "float32", "bfloat16", "float16")


# ---------------------------------------------------------------- the interface


class ChatModel(PromptCaches):
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
        self._init_caches()

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

    def prefix_ids(self, messages: list[dict]) -> list[int]:
        """The tokens that every prompt starting with `messages` (e.g. the system message)
        begins with: what two prompts differing only in a next user message share."""
        first = self.encode(messages + [{"role": "user", "content": "A"}])
        second = self.encode(messages + [{"role": "user", "content": "B"}])
        return first[:common_prefix_length(first, second)]

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
        slot = self._slot_for(messages)
        reused = self._reuse(slot, ids)
        self.last_prompt_tokens, self.last_prompt_processed = len(ids), len(ids) - reused
        self.last_finish_reason = "interrupted"
        at_yield = False
        pieces = self._stream_pieces(slot, ids[reused:], max(1, min(max_tokens, room)), temperature, top_p)
        try:
            while True:
                try:
                    piece = next(pieces)
                except StopIteration as stop:
                    self.last_finish_reason = stop.value
                    break
                at_yield = True
                yield piece
                at_yield = False
        except BaseException:
            # Ctrl-C inside a forward pass can leave the layers' caches uneven: drop that cache.
            # A close() at a yield leaves it whole (every fed token is in every layer).
            if not at_yield:
                self._forget(slot)
            raise
        finally:
            pieces.close()  # ends the backend's generation now, not whenever it is collected
            self._sync(slot)

    def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0) -> str:
        """The whole answer as one string (greedy by default)."""
        return "".join(self.stream(messages, max_tokens, temperature))

    def add_stop_token(self, token_id: int) -> None:
        """Also end generation at `token_id`."""
        raise NotImplementedError

    def _stream_pieces(self, slot: CacheSlot, new_ids: list[int], max_tokens: int, temperature: float,
                       top_p: float) -> Iterator[str]:
        """Feed `new_ids` (the prompt after what `slot` holds) and generate, appending every
        token the model processes to `slot.tokens`; yield text pieces; return the finish
        reason ("stop" or "length")."""
        raise NotImplementedError


# ---------------------------------------------------------------- transformers


class TransformersChatModel(ChatModel):
    """transformers + torch, with a plain token loop over the KV cache: each step is one short
    forward pass, so stopping the iteration (Ctrl-C) stops generation at once."""

    backend = "transformers"

    def __init__(self, folder: Path, name: str, device: str | None = None, dtype: str = "auto",
                 seed: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = settings.pick_device(device)
        self.dtype = torch_dtype(self.device, dtype, checkpoint_dtype(folder))
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=self.dtype)
        except (OSError, ValueError) as err:
            raise settings.UserError(
                f"model folder {folder} could not be loaded by transformers ({err.__class__.__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); set LLM_MODEL to a chat model folder or hub id"
            )
        self.model.to(self.device).eval()
        super().__init__(tokenizer, read_context_window(folder, tokenizer), name)
        self.eos_token_ids = _eos_ids(self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id)
        # Sampling draws from a generator of our own: LLM_SEED makes answers repeatable.
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        import inspect

        parameters = inspect.signature(self.model.forward).parameters
        # Only the last position's logits are needed: a long prompt's full logits are gigabytes.
        self._keep_arg = next((a for a in ("logits_to_keep", "num_logits_to_keep") if a in parameters), None)
        # transformers 5.x names the KV cache `cache`; 4.x `past_key_values`.
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"

    def add_stop_token(self, token_id: int) -> None:
        self.eos_token_ids.add(int(token_id))

    def _new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _cache_length(self, cache) -> int:
        return int(cache.get_seq_length())

    def _trim_cache(self, cache, keep: int) -> bool:
        excess = self._cache_length(cache) - keep
        if excess <= 0:
            return True
        if not getattr(cache, "is_croppable", True):  # sliding-window or recurrent layers cannot go back
            return False
        cache.crop(-excess)  # a negative count removes that many from the end (transformers 4.x and 5.x)
        return True

    def _next_tokens(self, slot: CacheSlot, new_ids: list[int], max_tokens: int, temperature: float,
                     top_p: float):
        import torch

        inputs = new_ids
        extra = {self._keep_arg: 1} if self._keep_arg else {}
        extra[self._cache_arg] = slot.cache
        for _ in range(max_tokens):
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([inputs], device=self.device), use_cache=True, **extra)
                slot.tokens.extend(inputs)  # now in the cache
                # Sampling on the CPU: one generator for every device (MPS generators are patchy).
                token = _pick(out.logits[0, -1].float().cpu(), temperature, top_p, self.generator)
            yield token
            inputs = [token]

    def _stream_pieces(self, slot, new_ids, max_tokens, temperature, top_p):
        decoder = IncrementalDecoder(self.tokenizer)
        for token in self._next_tokens(slot, new_ids, max_tokens, temperature, top_p):
            if token in self.eos_token_ids:
                return "stop"
            piece = decoder.add(token)
            if piece:
                yield piece
        rest = decoder.flush()
        if rest:
            yield rest
        return "length"

    # -- --prompt-cache: each layer's keys and values in a safetensors file

    prompt_cache_file = ".transformers.safetensors"

    def _prefill(self, cache, ids: list[int]) -> None:
        import torch

        extra = {self._keep_arg: 1} if self._keep_arg else {}
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True,
                       **{self._cache_arg: cache}, **extra)

    def _write_cache(self, path: Path, cache, metadata: dict[str, str]) -> None:
        from safetensors.torch import save_file

        tensors = {}
        for i, layer in enumerate(cache.layers):
            tensors[f"{i}.keys"], tensors[f"{i}.values"] = layer.keys.contiguous(), layer.values.contiguous()
        save_file(tensors, str(path), metadata=metadata)

    def _read_cache(self, path: Path):
        from safetensors import SafetensorError, safe_open

        cache = self._new_cache()
        try:
            with safe_open(str(path), framework="pt", device=str(self.device)) as saved:
                for i in range(len(cache.layers)):
                    cache.update(saved.get_tensor(f"{i}.keys"), saved.get_tensor(f"{i}.values"), i)
                return cache, saved.metadata() or {}
        except SafetensorError as err:  # not a safetensors file, or a tensor missing
            raise ValueError(str(err)) from None

    def _cache_metadata(self, ids: list[int]) -> dict[str, str]:
        # Keys and values of another dtype or device would not match this model's.
        return {**super()._cache_metadata(ids), "dtype": str(self.dtype), "device": str(self.device)}


def checkpoint_dtype(folder: Path) -> str | None:
    """The dtype a checkpoint was saved in, from its config.json ("bfloat16" for Llama 3)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        value = section.get("torch_dtype") or section.get("dtype")
        if isinstance(value, str):
            return value
    return None


def cpu_supports_bfloat16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 / AMX on x86, BF16 on Arm);
    without it bfloat16 matmuls are emulated and slower than float32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def torch_dtype(device: str, setting: str = "auto", saved: str | None = None):
    """The dtype to load in. `auto`: the checkpoint's own dtype (`saved`), with what each device
    lacks replaced: on a CPU a half-precision checkpoint (Llama 3 is bfloat16) loads as bfloat16
    where the CPU has it (8B: 16 GB, not 32 GB) and float32 elsewhere, a float32 one stays float32;
    on a GPU without bfloat16 it becomes float16; Apple's MPS gets float16."""
    import torch

    if setting != "auto":
        return getattr(torch, setting)
    own = getattr(torch, saved) if saved in DTYPES[1:] else None
    if device == "cpu":
        half = own in (torch.bfloat16, torch.float16)
        return torch.bfloat16 if half and cpu_supports_bfloat16() else torch.float32
    if device == "mps":
        return torch.float16
    if own is None or own == torch.bfloat16:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return own


def _eos_ids(*values) -> set[int]:
    ids: set[int] = set()
    for value in values:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _pick(logits, temperature: float, top_p: float, generator=None) -> int:
    """Greedy at temperature 0, else temperature + nucleus (top-p) sampling drawn from `generator`."""
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if 0 < top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p
        sorted_probs[outside] = 0
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))


# ---------------------------------------------------------------- MLX


class MLXChatModel(ChatModel):
    """mlx-lm: `load`, `stream_generate` and `make_sampler`."""

    backend = "mlx"

    def __init__(self, folder: Path, name: str, seed: int | None = None):
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
        if seed is not None:
            import mlx.core as mx

            mx.random.seed(seed)  # make_sampler draws from MLX's global generator
        # mlx-lm wraps the Hugging Face tokenizer; rendering and counting use the inner one.
        hf_tokenizer = self.mlx_tokenizer._tokenizer
        super().__init__(hf_tokenizer, read_context_window(folder, hf_tokenizer), name)

    def add_stop_token(self, token_id: int) -> None:
        self.mlx_tokenizer.add_eos_token(int(token_id))

    def _new_cache(self):
        from mlx_lm.models.cache import make_prompt_cache

        return make_prompt_cache(self.model)

    def _cache_length(self, cache) -> int:
        return int(cache[0].offset) if cache else 0

    def _trim_cache(self, cache, keep: int) -> bool:
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        excess = self._cache_length(cache) - keep
        if excess <= 0:
            return True
        if not can_trim_prompt_cache(cache):  # e.g. a rotating (sliding-window) cache
            return False
        trim_prompt_cache(cache, excess)
        return True

    def _stream_pieces(self, slot, new_ids, max_tokens, temperature, top_p):
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        sampler = make_sampler(temp=temperature, top_p=top_p if 0 < top_p < 1 else 0.0)
        finish = "length"
        slot.tokens.extend(new_ids)  # mlx-lm prefills them all before the first token
        for response in stream_generate(self.model, self.mlx_tokenizer, new_ids, max_tokens=max_tokens,
                                        sampler=sampler, prompt_cache=slot.cache):
            # mlx-lm feeds each token to the cache before handing it out (the end-of-turn too).
            slot.tokens.append(int(response.token))
            if response.text:
                yield response.text
            if response.finish_reason:
                finish = response.finish_reason
        return finish

    # -- --prompt-cache: the files mlx_lm.cache_prompt writes

    prompt_cache_file = ".safetensors"

    def _prefill(self, cache, ids: list[int]) -> None:
        import mlx.core as mx

        self.model(mx.array([ids]), cache=cache)
        mx.eval([c.state for c in cache])

    def _write_cache(self, path: Path, cache, metadata: dict[str, str]) -> None:
        from mlx_lm.models.cache import save_prompt_cache

        save_prompt_cache(str(path), cache, metadata)

    def _read_cache(self, path: Path):
        from mlx_lm.models.cache import load_prompt_cache

        return load_prompt_cache(str(path), return_metadata=True)

# ---------------------------------------------------------------- loading


def load_llm(backend: str | None = None, model: str | None = None) -> ChatModel:
    """Load the chat model named by flag/LLM_MODEL on the flag/LLM_BACKEND backend.

    A model that is neither a folder nor in the Hugging Face cache while offline is a
    UserError that says why and what to do (see settings.download_failure).
    """
    backend = settings.llm_backend_name(backend)
    name = settings.llm_model_name(backend, model)
    seed = settings.get_int("LLM_SEED")
    dtype = (settings.get("LLM_DTYPE") or "auto").lower()
    if dtype not in DTYPES:
        raise settings.UserError(f"LLM_DTYPE={dtype!r} is not one of {', '.join(DTYPES)}; fix it in your environment or .env")
    (folder,) = settings.fetch_models([(name, "LLM_MODEL", "model")])
    settings.quiet_model_loading()
    if backend == "mlx":
        return MLXChatModel(folder, name, seed=seed)
    return TransformersChatModel(folder, name, dtype=dtype, seed=seed)
