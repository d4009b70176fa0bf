"""Mixins for custom nodes: :class:`SecurityMixin` (input sanitising, security events).

The mixin holds no state and needs no ``__init__``; list it before :class:`Node` in
the bases (``class MyNode(SecurityMixin, Node)``). What it checks is tuned with class
attributes. It never logs input values, only which parameter was refused and why.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any, ClassVar

from kailash.errors import SecurityError

__all__ = ["SecurityMixin"]

logger = logging.getLogger("kailash.security")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MARKUP = re.compile(
    r"<\s*/?\s*(script|iframe|frame|object|embed|applet|svg|math|style|link|meta|base|form|img|body|video|audio)\b"
    r"|(java|vb)script\s*:|data\s*:\s*text/html|<[^>]*\bon[a-z]+\s*=", re.IGNORECASE)
_SQL = re.compile(
    r"""['"`]\s*\)?\s*(or|and)\s+(['"]?(\w+)['"]?\s*(=|like)\s*['"]?\3\b|true\b|not\s+false\b)"""
    r"|;\s*(drop|delete|truncate|alter|insert|update|create|exec|execute|grant|revoke|shutdown)\s"
    r"|\bunion\s+(all\s+)?select\b"
    r"""|['"]\s*;?\s*(--|\#|/\*)"""
    r"""|\b(pg_sleep|sleep|benchmark|waitfor\s+delay)\s*\(\s*['"\d]"""
    r"|\bxp_cmdshell\b", re.IGNORECASE)
_SHELL = re.compile(
    r"\$\([^)]*\)|`[^`]+`"
    r"|(;|&&|\|\|?)\s*(rm|curl|wget|nc|ncat|netcat|bash|sh|zsh|dash|python[\d.]*|perl|ruby|php|chmod|chown|"
    r"mkfifo|pkill|shutdown|reboot|sudo|base64|nohup)\b"
    r"|>\s*/(etc|dev|bin|sbin|usr|root|home|boot|proc|sys)/", re.IGNORECASE)


class SecurityMixin:
    """Input validation, sanitising and security-event logging for custom nodes.

    ``validate_and_sanitize_inputs(inputs)`` returns a sanitised copy of ``inputs``:

    * each declared parameter's value must match its declared type;
    * strings are capped at ``max_string_length`` and lose control characters (NUL...);
      collections are capped at ``max_collection_size`` items and ``max_nesting_depth``;
    * strings carrying HTML/script markup (``<script>``, ``javascript:``, ``onerror=``)
      are HTML-escaped, so they become inert text;
    * strings matching SQL-injection (``' OR '1'='1``, ``; DROP TABLE``, ``UNION SELECT``)
      or shell-injection signatures (``$(...)``, backticks, ``; rm -rf``) are refused
      with :class:`SecurityError` (set ``reject_injection = False`` to let them through).

    Every refusal is logged as a security event (without the value).

    Example:
        >>> from kailash.nodes.base import Node, NodeParameter
        >>> class CommentNode(SecurityMixin, Node):
        ...     def get_parameters(self):
        ...         return {"text": NodeParameter(type=str, required=True)}
        ...     def run(self, **kwargs):
        ...         return {"text": self.validate_and_sanitize_inputs(kwargs)["text"]}
        >>> CommentNode().execute(text="<script>alert(1)</script>hi")["text"]
        '&lt;script&gt;alert(1)&lt;/script&gt;hi'
    """

    max_string_length: ClassVar[int] = 1_000_000
    max_collection_size: ClassVar[int] = 100_000
    max_nesting_depth: ClassVar[int] = 32
    reject_injection: ClassVar[bool] = True
    escape_markup: ClassVar[bool] = True

    # -- validation ------------------------------------------------------------------------
    def validate_and_sanitize_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """A sanitised copy of ``inputs``; raises :class:`SecurityError` naming the parameter."""
        from kailash.nodes.base import check_type, type_name
        from kailash.security.secrets import Secret

        if not isinstance(inputs, dict):
            raise self._refuse("inputs", f"inputs must be a dict, got {type(inputs).__name__}", "type")
        params = getattr(self, "parameters", None) or {}
        clean: dict[str, Any] = {}
        for name, value in inputs.items():
            declared = params.get(name)
            if isinstance(value, Secret):
                clean[name] = value  # credentials are passed through untouched (never escaped or logged)
                continue
            if declared is not None and value is not None and not check_type(value, declared.type):
                raise self._refuse(name, f"expects {type_name(declared.type)}, got {type(value).__name__}", "type")
            if declared is not None and getattr(declared, "secret", False):
                clean[name] = value
                continue
            clean[name] = self._sanitize(value, name, 0)
        return clean

    def _sanitize(self, value: Any, where: str, depth: int) -> Any:
        if depth > self.max_nesting_depth:
            raise self._refuse(where, f"is nested more than {self.max_nesting_depth} levels deep", "size")
        if isinstance(value, str):
            return self.sanitize_string(value, where)
        if isinstance(value, bytes | bytearray):
            if len(value) > self.max_string_length:
                raise self._refuse(where, f"is {len(value)} bytes, over the limit of {self.max_string_length}", "size")
            return value
        if isinstance(value, dict):
            self._check_size(value, where)
            return {self._sanitize(k, where, depth + 1) if isinstance(k, str) else k:
                    self._sanitize(v, where, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            self._check_size(value, where)
            items = [self._sanitize(v, where, depth + 1) for v in value]
            return type(value)(items) if not isinstance(value, tuple) or type(value) is tuple else value
        return value

    def _check_size(self, value: Any, where: str) -> None:
        if len(value) > self.max_collection_size:
            raise self._refuse(where, f"has {len(value)} items, over the limit of {self.max_collection_size}", "size")

    def sanitize_string(self, text: str, where: str = "input") -> str:
        """One string, sanitised (see the class docstring); ``where`` names it in errors."""
        if len(text) > self.max_string_length:
            raise self._refuse(where, f"is {len(text)} characters long, over the limit of {self.max_string_length}",
                               "size")
        text = _CONTROL.sub("", text)
        if self.reject_injection:
            if _SQL.search(text):
                raise self._refuse(where, "looks like an SQL injection attempt", "sql_injection")
            if _SHELL.search(text):
                raise self._refuse(where, "looks like a shell injection attempt", "shell_injection")
        if self.escape_markup and _MARKUP.search(text):
            text = html.escape(text, quote=True)
            text = re.sub(r"(?i)((?:java|vb)script)\s*:", r"\1&#58;", text)
        return text

    def _refuse(self, parameter: str, problem: str, kind: str) -> SecurityError:
        node_id = getattr(self, "name", None)
        label = getattr(self, "label", type(self).__name__)
        self.log_security_event(f"input '{parameter}' refused: {problem}", level="WARNING",
                                event="input_rejected", parameter=parameter, reason=kind)
        return SecurityError(f"node {label} ({type(self).__name__}): input '{parameter}' {problem}; refused",
                             node_id=node_id, parameter=parameter, expected=f"input passing the {kind} check")

    # -- events ---------------------------------------------------------------------------------
    def log_security_event(self, message: str, level: str = "INFO", *, event: str = "node_security_event",
                           **fields: Any) -> dict[str, Any]:
        """Log a structured security event for this node; returns the record.

        It always goes to the ``kailash.security`` logger and, when the node's or the
        global :class:`SecurityConfig` enables audit logging, to the audit log too.
        Secret values (the node's :class:`Secret` config values and any other known
        secret) are redacted from the message and fields.
        """
        from kailash.security.audit import security_event
        from kailash.security.secrets import known_secret_values, plain_secret_values, redact

        config = getattr(self, "config", None) or {}
        secrets = known_secret_values() | plain_secret_values(*config.values())
        record = {"event": event, "node_id": getattr(self, "name", None), "node_type": type(self).__name__,
                  "message": redact(str(message), secrets), **redact(fields, secrets)}
        level_no = getattr(logging, level.upper(), logging.INFO)
        logger.log(level_no, "%s", record["message"], extra={"security_event": record})
        policy = config.get("security_config") if isinstance(config, dict) else None
        security_event(event, config=policy, level=level.upper(),
                       **{k: v for k, v in record.items() if k != "event"})
        return record
