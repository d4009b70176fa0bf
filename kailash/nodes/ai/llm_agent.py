"""LLMAgentNode: one agent call — a prompt in, an answer out, MCP tools used on the way.

The provider is chosen by parameters (``provider``, ``model``, ``base_url``,
``api_key``) or the environment (see :mod:`kailash.nodes.ai.providers`); the default is
the deterministic offline provider. When ``mcp_servers`` are given, their tools are
offered to the model and called through :class:`~kailash.nodes.ai._agent_loop.ToolBox`.
"""

from __future__ import annotations

import threading
from typing import Any

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai._agent_loop import ToolBox, run_agent
from kailash.nodes.ai.providers import ChatMessage, answer_metadata, get_provider
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.security.secrets import Secret

__all__ = ["LLMAgentNode", "ModelNode", "provider_parameters", "provider_from", "resolve_shared", "shared_node"]


def provider_parameters() -> dict[str, NodeParameter]:
    """The parameters every model-using node declares."""
    return {
        "provider": NodeParameter(type=Any, default=None,
                                  description="offline (default) | local | openai | ollama | anthropic (or a ModelProvider)"),
        "model": NodeParameter(type=str, description="model name, or a .gguf file for local (default per provider / "
                                                     "environment)"),
        "base_url": NodeParameter(type=str, format="uri", description="provider endpoint (default from the environment)"),
        "api_key": NodeParameter(type=Any, secret=True, description="provider API key (default from the environment)"),
        "timeout": NodeParameter(type=(int, float), default=60, minimum=0, description="seconds per model call"),
        "temperature": NodeParameter(type=float, minimum=0, maximum=2, description="sampling temperature"),
        "max_tokens": NodeParameter(type=int, minimum=1, description="most tokens in one answer"),
        "max_response_bytes": NodeParameter(
            type=int, description="largest provider answer accepted, in bytes received and decompressed (10 MiB)"
        ),
        "retries": NodeParameter(type=int, minimum=0,
                                 description="resend a model call after a connection error, 429 or 5xx (default 2)"),
    }


def provider_from(node: Node, opt: dict[str, Any]) -> Any:
    """Build the provider a node's resolved options ask for."""
    return get_provider(opt.get("provider"), model=opt.get("model"), base_url=opt.get("base_url"),
                        api_key=opt.get("api_key"), timeout=opt.get("timeout"),
                        owner=f"node {node.label} ({type(node).__name__})",
                        max_response_bytes=opt.get("max_response_bytes"), retries=opt.get("retries"))


class ModelNode(Node):
    """Base of nodes that call a model: an ``api_key`` given as text is kept as a Secret.

    Capabilities: ``network`` for a provider other than offline and local, ``host_env`` for
    ``provider="local"`` (the operator's in-process model), ``host_process`` for an MCP server
    started as a local command (``network`` for one over HTTP).
    """

    capabilities = frozenset({"network", "host_process", "host_env"})

    _abstract_node = True

    def __init__(self, config: dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        key = self.config.get("api_key")
        if key is not None and not isinstance(key, Secret):
            self.config["api_key"] = Secret(key)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_abstract_node" not in cls.__dict__:
            cls._abstract_node = False

    def required_capabilities(self) -> frozenset[str]:
        """What this node's configuration needs (values arriving at run time are checked when used)."""
        from kailash.nodes.ai.providers import provider_kind
        from kailash.nodes.mcp.servers import server_capabilities

        cfg = self.config
        provider = cfg.get("provider")
        kind = "offline" if provider is None else provider_kind(str(provider))
        needs = set() if kind == "offline" else {"host_env"} if kind == "local" else {"network"}
        specs = ([cfg["mcp_server"]] if cfg.get("mcp_server") else []) + list(cfg.get("mcp_servers") or [])
        if isinstance(cfg.get("mcp_config"), dict):
            specs += list(cfg["mcp_config"].values())
        for spec in specs:
            needs |= server_capabilities(spec)
        return frozenset(needs) & type(self).capabilities


@register_node()
class LLMAgentNode(ModelNode):
    """Ask a model once (with tool use), and return its answer.

    Example:
        >>> out = LLMAgentNode(name="agent").execute(prompt="Summarise: sales rose 5% in Q3.")
        >>> out["provider"], out["response"].splitlines()[0]
        ('offline', 'Summary for: Summarise: sales rose 5% in Q3.')
    """

    primary_input = "prompt"
    primary_output = "response"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "prompt": NodeParameter(type=str, description="the user's request"),
            "messages": NodeParameter(type=list, description="a whole conversation instead of a prompt"),
            "system_prompt": NodeParameter(type=str, description="instructions placed first"),
            "context": NodeParameter(type=Any, description="extra material for the model (text or JSON-able data)"),
            "mcp_servers": NodeParameter(type=list, description="MCP servers whose tools the model may call"),
            "shared_cache": NodeParameter(type=Any, description="an IntelligentCacheNode to reuse tool results"),
            "max_tool_rounds": NodeParameter(type=int, default=4, minimum=0, description="most model turns with tool calls"),
            **provider_parameters(),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = resolve_shared({**self.config, **{k: v for k, v in kw.items() if v is not None}})
        owner = f"node {self.label} (LLMAgentNode)"
        messages = [ChatMessage.from_any(m) for m in opt.get("messages") or []]
        if opt.get("system_prompt"):
            messages.insert(0, ChatMessage(role="system", content=str(opt["system_prompt"])))
        if opt.get("context") is not None:
            import json

            ctx = opt["context"] if isinstance(opt["context"], str) else json.dumps(opt["context"], default=str)
            messages.insert(1 if opt.get("system_prompt") else 0, ChatMessage(role="system", content=f"Context: {ctx}"))
        if opt.get("prompt"):
            messages.append(ChatMessage(role="user", content=str(opt["prompt"])))
        if not any(m.role == "user" for m in messages):
            raise NodeConfigurationError(
                f"{owner}: give parameter 'prompt' or 'messages' with at least one user message",
                node_id=self.name, parameter="prompt", expected="a prompt string",
            )
        provider = provider_from(self, opt)
        toolbox = None
        if opt.get("mcp_servers"):
            toolbox = ToolBox(opt["mcp_servers"], cache=opt.get("shared_cache"), owner=owner,
                              timeout=float(opt.get("timeout") or 60))
        result = run_agent(provider, messages, toolbox=toolbox, max_rounds=int(opt.get("max_tool_rounds") or 4),
                           temperature=opt.get("temperature"), max_tokens=opt.get("max_tokens"), owner=owner)
        return {
            "response": result.content,
            "tool_calls": [r.to_dict() for r in result.tool_records],
            "messages": [m.to_dict() for m in result.messages],
            "usage": result.usage,
            "provider": result.provider,
            "model": result.model,
            "errors": list(toolbox.errors) if toolbox else [],
            "metadata": answer_metadata(provider),  # model_called: false when the offline heuristics answered
        }

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if "shared_cache" in out["config"]:
            out["config"]["shared_cache"] = _node_ref(self.config["shared_cache"])
        return out


def _node_ref(value: Any) -> Any:
    """A saved reference to a node held in config (its id), not the node itself."""
    return {"node": value.name} if isinstance(value, Node) else value


_shared: dict[tuple[str | None, str, str], Any] = {}
_shared_lock = threading.Lock()


def shared_node(value: Any, kind: Any) -> Any:
    """The node a config value means: itself, or for a saved ``{"node": id}`` reference the
    process-wide ``kind`` instance of that id, so agents loaded from a file still share it.

    Each gateway tenant has its own instances (and the gateway's own runs theirs): a
    reference never reaches another tenant's memory pool or cache."""
    if isinstance(value, dict) and set(value) == {"node"}:
        from kailash.nodes.capabilities import current_tenant

        scope = current_tenant()
        key = (scope.tenant_id if scope is not None else None, kind.__name__, str(value["node"]))
        with _shared_lock:
            if key not in _shared:
                _shared[key] = kind(name=str(value["node"]))
            return _shared[key]
    return value


def resolve_shared(opt: dict[str, Any]) -> dict[str, Any]:
    """``opt`` with saved node references in ``shared_cache``/``shared_memory``/``memory_pool`` resolved."""
    from kailash.nodes.ai.cache import IntelligentCacheNode
    from kailash.nodes.ai.memory import SharedMemoryPoolNode

    kinds = {"shared_cache": IntelligentCacheNode, "shared_memory": SharedMemoryPoolNode,
             "memory_pool": SharedMemoryPoolNode}
    return {k: shared_node(v, kinds[k]) if k in kinds else v for k, v in opt.items()}
