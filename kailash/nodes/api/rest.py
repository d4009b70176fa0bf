"""RESTClientNode: calls a REST resource with templated headers, auth, rate limit and retries.

Headers, the resource path and query values may hold ``{name}`` placeholders filled
from any input of that name (``{token}`` from a connected :class:`OAuth2Node`);
secret values stay :class:`~kailash.security.secrets.Secret` until the request is
sent. Authentication may also come from ``auth_headers``/``auth_params`` inputs (a
connected :class:`APIKeyNode`) or from ``auth_type`` + ``auth_config``. The exchange
itself (retries, backoff, rate limit) is :mod:`kailash.nodes.api._transport`'s.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
from typing import Any

from kailash.errors import NodeConfigurationError, Problem
from kailash.nodes.api._transport import where
from kailash.nodes.api.auth import APIKeyNode, OAuth2Node, _SecretConfig
from kailash.nodes.api.http import HTTPNodeBase, RequestPlan, common_parameters
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.base_async import AsyncNode
from kailash.security.secrets import Secret, as_secret, render_template, reveal, template_fields

__all__ = ["RESTClientNode"]

AUTH_TYPES = ("none", "bearer", "oauth2", "api_key", "basic")
_UNAUTHORISED = frozenset({401})
_AUTH_SECRET_KEYS = frozenset({"token", "api_key", "password", "client_secret"})


@register_node(category="api")
class RESTClientNode(_SecretConfig, HTTPNodeBase, AsyncNode):
    """Call ``base_url`` + ``resource`` and output the decoded response.

    * ``headers`` (and ``resource`` and ``params`` values) may use ``{name}``
      placeholders, filled from any input of that name: ``{"Authorization": "Bearer {token}"}``
      with a connected :class:`~kailash.nodes.api.auth.OAuth2Node`.
    * A ``token`` input with no placeholder using it becomes ``Authorization: Bearer <token>``.
    * ``auth_headers``/``auth_params`` inputs (from :class:`APIKeyNode` or OAuth2Node) are merged in.
    * ``auth_type`` ``bearer`` | ``oauth2`` | ``api_key`` | ``basic`` with ``auth_config``
      (``{"oauth2_node": node}``, ``{"api_key_node": node}``, ``{"token": ...}``,
      ``{"username": ..., "password": ...}``). With an OAuth2 node a 401 refreshes the token once.
    * ``rate_limit`` requests per minute (token bucket, in sync and async use);
      ``retry_count`` retries on connection errors, 5xx and 429 with exponential backoff
      honouring ``Retry-After``. A 4xx/5xx response fails the node unless
      ``raise_for_status=False``.

    Example:
        >>> api = RESTClientNode(base_url="https://api.example.com", resource="/users/{user_id}",
        ...                      headers={"Authorization": "Bearer {token}"}, rate_limit=100, retry_count=3)
        >>> sorted(api.placeholders())
        ['token', 'user_id']
    """

    capabilities = frozenset({"network"})

    extra_inputs = True  # any input may fill a {placeholder}
    primary_input = "data"
    secret_config_keys = _AUTH_SECRET_KEYS

    def get_parameters(self) -> dict[str, NodeParameter]:
        params = {
            "base_url": NodeParameter(type=str, required=True, format="uri", description="the API's base URL"),
            "resource": NodeParameter(type=str, default="", description="path below base_url, may use {placeholders}"),
            "endpoint": NodeParameter(type=str, default=None, description="alias of 'resource'"),
            "token": NodeParameter(
                type=(str, Secret), default=None, secret=True,
                description="bearer token for {token} placeholders (e.g. from OAuth2Node)",
            ),
            "auth_headers": NodeParameter(type=dict, default=None, description="headers from an auth node"),
            "auth_params": NodeParameter(type=dict, default=None, description="query parameters from an auth node"),
            "auth_type": NodeParameter(type=str, default=None, choices=AUTH_TYPES, description="how requests authenticate"),
            "auth_config": NodeParameter(type=dict, default=None, description="settings for auth_type"),
        }
        params.update(common_parameters())
        params["raise_for_status"] = NodeParameter(
            type=bool, default=True, description="fail the node on a 4xx/5xx response (after retries)"
        )
        return params

    def placeholders(self) -> set[str]:
        """Names used by ``{placeholders}`` in this node's configured headers, resource and params."""
        names: set[str] = set()
        for text in self._templates(self.config):
            names.update(template_fields(text))
        return names

    @staticmethod
    def _templates(v: dict[str, Any]) -> list[str]:
        texts = [x for x in (v.get("resource"), v.get("endpoint")) if isinstance(x, str)]
        for group in ("headers", "params", "query"):
            texts += [x for x in (v.get(group) or {}).values() if isinstance(x, str)]
        return texts

    def accepts(self, name: str) -> bool:
        """Declared parameters and the names of this node's ``{placeholders}``."""
        return name in self.parameters or name in self.placeholders()

    def check_inputs(self, values: dict[str, Any]) -> list[Problem]:
        problems = super().check_inputs(values)
        # extra inputs are for placeholders; a configured name nobody uses is a typo
        params, used = self.parameters, self.placeholders()
        for key in self.config:
            if key not in params and key not in used:
                close = difflib.get_close_matches(key, list(params), n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                problems.append(Problem(
                    node_id=self.name, parameter=key, expected="a parameter or a {placeholder}",
                    message=f"unknown parameter '{key}' (not a parameter of RESTClientNode and no {{{key}}} "
                            f"placeholder uses it){hint}",
                ))
        return problems

    # -- running -------------------------------------------------------------------------
    def run(self, **inputs: Any) -> dict[str, Any]:
        oauth = self._oauth_node(inputs)
        if oauth is None:
            return self.send_sync(self._plan(inputs, None, refresh=False))
        out = self.send_sync(self._plan(inputs, oauth, refresh=False), tolerate=_UNAUTHORISED)
        if out["status_code"] == 401:  # the token was revoked or expired early: fetch a new one, once
            out = self.send_sync(self._plan(inputs, oauth, refresh=True))
        return out

    async def async_run(self, **inputs: Any) -> dict[str, Any]:
        oauth = self._oauth_node(inputs)
        if oauth is None:
            return await self.send_async(self._plan(inputs, None, refresh=False))
        plan = await asyncio.to_thread(self._plan, inputs, oauth, False)  # a token fetch blocks
        out = await self.send_async(plan, tolerate=_UNAUTHORISED)
        if out["status_code"] == 401:
            out = await self.send_async(await asyncio.to_thread(self._plan, inputs, oauth, True))
        return out

    def _auth(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        auth_type = (inputs.get("auth_type") or "none").lower()
        if auth_type not in AUTH_TYPES:
            close = difflib.get_close_matches(auth_type, AUTH_TYPES, n=2)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise NodeConfigurationError(
                f"{where(self)}: parameter 'auth_type' must be one of {', '.join(AUTH_TYPES)}, got "
                f"{inputs.get('auth_type')!r}{hint}",
                node_id=self.name, parameter="auth_type", expected=" | ".join(AUTH_TYPES), got=auth_type,
            )
        return auth_type, dict(inputs.get("auth_config") or {})

    def _oauth_node(self, inputs: dict[str, Any]) -> OAuth2Node | None:
        auth_type, cfg = self._auth(inputs)
        node = cfg.get("oauth2_node")
        return node if auth_type == "oauth2" and isinstance(node, OAuth2Node) else None

    def _plan(self, inputs: dict[str, Any], oauth: OAuth2Node | None, refresh: bool) -> RequestPlan:
        params = self.parameters
        values = {k: v for k, v in inputs.items() if v is not None}
        if values.get("token") is not None:
            values["token"] = as_secret(values["token"])
        auth_type, cfg = self._auth(inputs)
        auth_headers: dict[str, Any] = dict(inputs.get("auth_headers") or {})
        auth_params: dict[str, Any] = dict(inputs.get("auth_params") or {})
        if auth_type in ("oauth2", "bearer") and (values.get("token") is None or refresh):
            values["token"] = self._token_from_config(auth_type, cfg, oauth, refresh)
        elif auth_type == "api_key":
            more_h, more_p = self._api_key_from_config(cfg)
            auth_headers.update(more_h)
            auth_params.update(more_p)
        elif auth_type == "basic":
            user, password = cfg.get("username"), cfg.get("password")
            if user is None or password is None:
                raise self._config_error("auth_type='basic' needs auth_config={'username': ..., 'password': ...}")
            raw = f"{reveal(user)}:{reveal(password)}".encode()
            auth_headers["Authorization"] = Secret("Basic " + base64.b64encode(raw).decode())

        resource = inputs.get("resource") or inputs.get("endpoint") or ""
        headers = {k: self._fill(v, values, f"header '{k}'") for k, v in (inputs.get("headers") or {}).items()}
        query = {k: self._fill(v, values, f"query parameter '{k}'")
                 for k, v in {**(inputs.get("query") or {}), **(inputs.get("params") or {})}.items()}
        path = self._fill(resource, values, "'resource'")
        used = {f for t in self._templates(inputs) for f in template_fields(t)}
        token = values.get("token")
        if token is not None and "token" not in used and not _has(headers, "authorization") \
                and not _has(auth_headers, "authorization"):
            auth_headers["Authorization"] = render_template("Bearer {token}", {"token": token})
        merged_headers = {**auth_headers, **headers}
        merged_query = {**auth_params, **query}
        url = _join(str(inputs["base_url"]), path)
        plan_inputs = {k: inputs.get(k) for k in params if k not in ("headers", "params", "query")}
        plan = self._base_plan(url, plan_inputs)
        plan.headers = {k: as_secret(v) if str(k).lower() in plan.secret_headers and isinstance(v, str) else v
                        for k, v in merged_headers.items()}
        plan.params = merged_query
        return plan

    def _fill(self, template: Any, values: dict[str, Any], what: str) -> Any:
        if not isinstance(template, str) or "{" not in template:
            return template
        try:
            return render_template(template, values)
        except KeyError as exc:
            name = exc.args[0]
            hint = ("connect a node that outputs 'token' (e.g. OAuth2Node) or pass token=..."
                    if name == "token" else f"connect a node that outputs '{name}' or pass {name}=...")
            raise NodeConfigurationError(
                f"{where(self)}: {what} uses {{{name}}} but no input named '{name}' was given; {hint}",
                node_id=self.name, parameter=name, expected=f"an input named '{name}'",
            ) from None
        except (ValueError, IndexError):
            raise self._config_error(
                f"{what} is not a valid template (use {{name}}; write {{{{ or }}}} for a literal brace)"
            ) from None

    def _token_from_config(self, auth_type: str, cfg: dict[str, Any], oauth: OAuth2Node | None,
                           refresh: bool) -> Any:
        if auth_type == "bearer":
            if cfg.get("token") is None:
                raise self._config_error("auth_type='bearer' needs a token input or auth_config={'token': ...}")
            return as_secret(cfg["token"])
        if oauth is not None:
            return oauth.get_token(force_refresh=refresh).token
        ref = cfg.get("oauth2_node")
        named = f" (node '{ref}')" if isinstance(ref, str) else ""
        raise self._config_error(
            f"auth_type='oauth2' needs auth_config={{'oauth2_node': <OAuth2Node>}} or a connected OAuth2Node "
            f"providing 'token'{named}"
        )

    def _api_key_from_config(self, cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        node = cfg.get("api_key_node")
        if isinstance(node, APIKeyNode):
            out = node.execute()
        elif cfg.get("api_key") is not None:
            keys = ("api_key", "placement", "key_name", "prefix")
            out = APIKeyNode(**{k: cfg[k] for k in keys if k in cfg}).execute()
        else:
            return {}, {}
        return out["auth_headers"], out["auth_params"]

    def _config_error(self, text: str) -> NodeConfigurationError:
        return NodeConfigurationError(f"{where(self)}: {text}", node_id=self.name, parameter="auth_config")

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Node.run`'s saved form; node objects in ``auth_config`` become their names."""
        d = super().to_dict()
        cfg = d["config"].get("auth_config")
        if isinstance(cfg, dict):
            d["config"]["auth_config"] = {
                k: (v.name or type(v).__name__) if isinstance(v, Node) else v for k, v in cfg.items()
            }
        return d


def _has(headers: dict[str, Any], name: str) -> bool:
    return any(k.lower() == name for k in headers)


def _join(base: str, path: str) -> str:
    if not path:
        return base
    if "://" in path:
        return path
    return base.rstrip("/") + "/" + path.lstrip("/")
