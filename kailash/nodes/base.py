"""The node contract: :class:`NodeParameter`, :class:`Node`, and direct execution.

A node declares its parameters (``get_parameters()``), its primary input and output,
and implements ``run(**inputs) -> dict``. Configuration and inputs share one
namespace: a node's config supplies parameter values that connected upstream outputs
and runtime parameters may override. This module must not import a runtime or the
workflow package; the runtime hands nodes what they need when it calls them.
"""

from __future__ import annotations

import dataclasses
import difflib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from kailash.errors import KailashError, NodeConfigurationError, NodeExecutionError, Problem
from kailash.nodes.registry import _auto_register, register_node
from kailash.nodes.standalone import WorkflowLoader
from kailash.nodes.types import Constraints, TypeCheck, compile_parameter_check, fits, json_schema, type_name

__all__ = ["Node", "NodeParameter", "register_node", "check_type", "type_name"]


@dataclass(frozen=True)
class NodeParameter:
    """One parameter of a node.

    Attributes:
        name: the parameter's name (filled from the ``get_parameters()`` key if empty).
        type: the expected Python type (``Any`` accepts everything; ``Literal[...]`` lists the values).
        required: whether a value must be supplied (by config, a connection or the runtime).
        default: the value used when none is supplied.
        description: one line for the catalog, the CLI and the Studio.
        secret: the value is a credential, redacted everywhere it could be shown.
        choices: every allowed value (JSON Schema ``enum``), or ``None``.
        minimum: the smallest allowed number (inclusive), or ``None``.
        maximum: the largest allowed number (inclusive), or ``None``.
        format: what a string holds: ``uri``, ``email``, ``date``, ``date-time`` and ``regex``
            are checked; other names (``path``, ``python``, ``sql``) only describe it.

    Constraints are checked wherever the type is (``Workflow.validate``, ``execute()``,
    runtime parameters and values arriving over connections) and published in
    :meth:`json_schema`.

    Example:
        >>> NodeParameter(type=int, minimum=1).json_schema()
        {'type': 'integer', 'minimum': 1}
    """

    name: str = ""
    type: Any = Any
    required: bool = False
    default: Any = None
    description: str = ""
    secret: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    format: str | None = None

    def __post_init__(self) -> None:
        if self.choices is not None and not isinstance(self.choices, tuple):
            if isinstance(self.choices, (str, bytes)) or not isinstance(self.choices, Iterable):
                raise NodeConfigurationError(
                    f"NodeParameter '{self.name}': choices must be a list or tuple of values, "
                    f"got {type(self.choices).__name__}", parameter="choices", expected="list | tuple")
            object.__setattr__(self, "choices", tuple(self.choices))
        for bound in ("minimum", "maximum"):
            value = getattr(self, bound)
            if value is not None and (type(value) is bool or not isinstance(value, (int, float))):
                raise NodeConfigurationError(
                    f"NodeParameter '{self.name}': {bound} must be a number, got {type(value).__name__}",
                    parameter=bound, expected="int | float", got=type(value).__name__)

    @property
    def constraints(self) -> Constraints | None:
        """The constraints beyond the type, or ``None`` when there are none."""
        if self.choices is None and self.minimum is None and self.maximum is None and self.format is None:
            return None
        return Constraints(choices=self.choices, minimum=self.minimum, maximum=self.maximum,
                           format=self.format, secret=self.secret)

    def check(self) -> TypeCheck | None:
        """The compiled check of type and constraints (``None``: every value fits)."""
        return compile_parameter_check(self.type, self.constraints)

    def json_schema(self) -> dict[str, Any]:
        """This parameter as JSON Schema (type, enum, range, format, default, description)."""
        schema = json_schema(self.type, self.constraints)
        if self.secret:
            schema["writeOnly"] = True
        if self.description:
            schema["description"] = self.description
        default = self.public_default()
        if default is not None and _is_json(default):
            schema["default"] = default
        return schema

    def public_default(self) -> Any:
        """The default as the catalog and schemas publish it (they are readable without a key).

        ``None`` for a secret parameter, a :class:`~kailash.security.Secret` default, and a
        string default of a parameter named like a credential (``api_key``, ``token``,
        ``client_secret``, ``password``...), which an undeclared ``@node`` function
        parameter may hold; a URL's password or credential query values are masked.
        """
        default = self.default
        if default is None or self.secret:
            return None
        from kailash.security.secrets import Secret, redact

        if isinstance(default, Secret):
            return None
        if isinstance(default, str) and default and _credential_name(self.name):
            return None
        if isinstance(default, (str, list, dict, tuple)):
            return redact(default, urls=True)
        return default

    def to_dict(self) -> dict[str, Any]:
        default = self.public_default()
        if not isinstance(default, (str, int, float, bool, type(None), list, dict)):
            default = repr(default)
        out = {
            "name": self.name,
            "type": type_name(self.type),
            "required": self.required,
            "default": default,
            "description": self.description,
            "secret": self.secret,
            "schema": self.json_schema(),
        }
        for key in ("choices", "minimum", "maximum", "format"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "choices" else value
        return out


_CREDENTIAL_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "apikey", "credential",
                               "credentials", "passphrase"})
_CREDENTIAL_PAIRS = ("api_key", "access_key", "private_key", "secret_key", "signing_key", "auth_key")


def _credential_name(name: Any) -> bool:
    """Whether a parameter name says it holds a credential (``api_key``, ``bearer_token``, ``db_password``)."""
    if type(name) is not str:
        return False
    low = name.lower().replace("-", "_")
    return bool(_CREDENTIAL_WORDS.intersection(low.split("_"))) or any(p in low for p in _CREDENTIAL_PAIRS)


def _is_json(value: Any, depth: int = 0) -> bool:
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if depth > 20:
        return False
    if isinstance(value, list):
        return all(_is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


def check_type(value: Any, tp: Any) -> bool:
    """Whether ``value`` fits the declared parameter type ``tp`` (None always fits).

    The rule lives in :mod:`kailash.nodes.types`; this is its one-off form.
    """
    return fits(value, tp)


class _State:
    """Per-node state object exposed as ``self`` to code nodes; persists between runs."""

    def __repr__(self) -> str:
        return f"NodeState({', '.join(sorted(vars(self)))})"


class Node(ABC):  # noqa: B024 - run() is abstract at run time; type checkers see a callable (below)
    """Base class of every node.

    Subclasses implement :meth:`run` and usually :meth:`get_parameters`. All three
    construction forms are equivalent::

        CSVReaderNode(config={"file_path": "in.csv"})
        CSVReaderNode(file_path="in.csv")
        CSVReaderNode(name="reader", file_path="in.csv")

    Class attributes tune how the engine connects the node:

    * ``primary_input`` / ``primary_output``: the input that a plain ``connect(a, b)``
      feeds and the output it takes. When unset, the primary input is ``data`` if the
      node has such a parameter, else its single required parameter; the primary output
      is the node's only output (or ``result``/``data``).
    * ``extra_inputs``: the node accepts inputs it did not declare (code nodes).
    * ``conditional_outputs``: a missing output port means "branch not taken".
    * ``collects_inputs``: the primary input gathers every arriving value (merge nodes).
    * ``capabilities``: what the node type may touch on the host, as names from
      :data:`kailash.nodes.capabilities.CAPABILITIES` (``None``: undeclared, so tenants
      of a gateway cannot use it).
    """

    primary_input: ClassVar[str | None] = None
    primary_output: ClassVar[str | None] = None
    extra_inputs: ClassVar[bool] = False
    conditional_outputs: ClassVar[bool] = False
    collects_inputs: ClassVar[bool] = False
    needs_context: ClassVar[bool] = False
    is_async: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _auto_register(cls)

    def __init__(self, config: dict[str, Any] | None = None, *, name: str | None = None, **params: Any) -> None:
        if config is not None and not isinstance(config, dict):
            raise NodeConfigurationError(
                f"{type(self).__name__}: 'config' must be a dict of parameter values, got {type(config).__name__}",
                parameter="config",
                expected="dict",
                got=type(config).__name__,
            )
        merged = dict(config or {})
        merged.update(params)
        config_name = None
        if name is None:
            name = config_name = merged.pop("name", None) if "name" not in self._declared_names() else None
        self.name: str | None = name
        self.config: dict[str, Any] = merged
        self.state = _State()
        self._parameters: dict[str, NodeParameter] | None = None
        self._type_checks: dict[str, TypeCheck | None] | None = None
        # config={"name": ...} names the node, unless the node declares a parameter
        # "name": then it is that parameter's value (restored once parameters are known).
        self._config_name = config_name

    # -- declaration -------------------------------------------------------------------
    def get_parameters(self) -> dict[str, NodeParameter]:
        """The node's parameters by name. Override in subclasses."""
        return {}

    def get_outputs(self) -> dict[str, NodeParameter] | None:
        """The node's outputs by name, or ``None`` when they depend on what runs."""
        return None

    def validate_config(self) -> list[str | Problem]:
        """Problems with the node's own configuration (checked by ``Workflow.validate``).

        Each is a sentence, or a :class:`~kailash.errors.Problem` naming the parameter
        (the node id is filled in by the validation).
        """
        return []

    def validate_with(self, loader: WorkflowLoader) -> list[str | Problem]:
        """:meth:`validate_config`, for nodes that contain workflows: ``loader`` loads them.

        ``Workflow.validate`` calls this; override it (not ``validate_config``) when checking
        the configuration means loading an inner workflow.
        """
        return self.validate_config()

    if TYPE_CHECKING:
        # Each node implements run() with its own keyword parameters (``def run(self, x: int)``);
        # declared as "any keywords" for type checkers, so no user node needs ``# type: ignore[override]``.
        run: Callable[..., dict[str, Any]]
    else:

        @abstractmethod
        def run(self, **inputs: Any) -> dict[str, Any]:
            """Do the node's work and return a dict of named outputs."""

    @classmethod
    def _declared_names(cls) -> frozenset[str]:
        return frozenset()

    @property
    def parameters(self) -> dict[str, NodeParameter]:
        """``get_parameters()`` with names filled in, computed once per node."""
        params = self._parameters
        if params is None:
            raw = self.get_parameters() or {}
            params = {}
            for key, p in raw.items():
                if not isinstance(p, NodeParameter):
                    raise NodeConfigurationError(
                        f"{type(self).__name__}.get_parameters() must map names to NodeParameter, "
                        f"got {type(p).__name__} for '{key}'",
                        parameter=key,
                        expected="NodeParameter",
                    )
                params[key] = p if p.name == key else dataclasses.replace(p, name=key)
            self._parameters = params
            self._type_checks = None
            config_name = getattr(self, "_config_name", None)
            if config_name is not None and "name" in params:
                self.config.setdefault("name", config_name)
        return params

    def input_name(self) -> str | None:
        """The primary input's name."""
        if self.primary_input is not None:
            return self.primary_input
        params = self.parameters
        if "data" in params or self.extra_inputs:
            return "data"
        required = [n for n, p in params.items() if p.required]
        if len(required) == 1:
            return required[0]
        if len(params) == 1:
            return next(iter(params))
        return None

    def output_name(self, outputs: dict[str, Any] | None = None) -> str | None:
        """The primary output's name (from a produced output dict when not declared)."""
        if self.primary_output is not None:
            return self.primary_output
        declared = self.get_outputs()
        names = list(declared) if declared else (list(outputs) if outputs else [])
        if len(names) == 1:
            return names[0]
        for candidate in ("result", "data"):
            if candidate in names:
                return candidate
        return None

    def accepts(self, name: str) -> bool:
        return self.extra_inputs or name in self.parameters

    @property
    def label(self) -> str:
        """How errors name this node: its id in quotes, or ``<unnamed>`` (messages add the type)."""
        return f"'{self.name}'" if self.name else "<unnamed>"  # messages read "node <unnamed> (CSVReaderNode)"

    # -- direct execution --------------------------------------------------------------
    def resolve_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Defaults, then config, then ``inputs``; validated. Raises NodeConfigurationError."""
        params = self.parameters
        values: dict[str, Any] = {n: p.default for n, p in params.items()}
        values.update(self.config)
        values.update(inputs)
        problems = [p if isinstance(p, Problem) else Problem(node_id=self.name, message=str(p))
                    for p in self.check_inputs(values)]
        if problems:
            first = problems[0]
            raise NodeConfigurationError(
                f"node {self.label} ({type(self).__name__}) has invalid inputs:\n  - "
                + "\n  - ".join(p.message for p in problems),
                node_id=self.name, parameter=first.parameter, expected=first.expected, got=first.got,
            )
        return values

    def check_inputs(self, values: dict[str, Any]) -> list[Problem]:
        """Every problem with ``values`` (empty when all is well).

        Subclasses may extend the list; a plain string in it is taken as a problem's message.
        """
        params = self.parameters
        problems = []
        node_id = self.name
        if not self.extra_inputs:
            for key in values:
                if key not in params:
                    problems.append(Problem(node_id=node_id, parameter=key, expected="a declared parameter",
                                            message=unknown_parameter_message(key, params)))
        checks = getattr(self, "_type_checks", None)
        if checks is None or checks.keys() != params.keys():
            checks = self._type_checks = {n: p.check() for n, p in params.items()}
        for name, p in params.items():
            value = values.get(name)
            if value is None:
                if p.required:
                    problems.append(Problem(
                        node_id=node_id, parameter=name, expected=type_name(p.type),
                        message=f"parameter '{name}' is required ({type_name(p.type)}: "
                                f"{p.description or 'no description'})",
                    ))
            elif (check := checks[name]) is not None and not check(value):
                problems.append(Problem(
                    node_id=node_id, parameter=name, expected=check.expected, got=check.got(value),
                    message=f"parameter '{name}' expects {check.expected}, {check.misfit(value)}",
                ))
        return problems

    def execute(self, **inputs: Any) -> dict[str, Any]:
        """Run this node on its own: validate inputs against ``get_parameters()``, run, check.

        Example:
            >>> from kailash.nodes.code.python import PythonCodeNode
            >>> PythonCodeNode(code="result = x * 2").execute(x=21)
            {'result': 42}
        """
        values = self.resolve_inputs(inputs)
        return self.call(values, None)

    def call(self, values: dict[str, Any], context: Any) -> dict[str, Any]:
        """Run with already-resolved ``values``; wraps foreign errors in NodeExecutionError."""
        try:
            out = self.run_in_context(context, **values) if self.needs_context else self.run(**values)
        except KailashError as exc:
            if exc.node_id is None:
                exc.node_id = self.name
            raise
        except Exception as exc:
            raise NodeExecutionError(
                f"node {self.label} ({type(self).__name__}) failed: {type(exc).__name__}: {exc}",
                node_id=self.name,
            ) from exc
        return ensure_output_dict(self, out)

    def run_in_context(self, context: Any, /, **inputs: Any) -> dict[str, Any]:
        """Run with the runtime's execution context (nodes with ``needs_context``)."""
        return self.run(**inputs)

    # -- description -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The node as ``{"type", "config"}`` for saving (secrets as references)."""
        from kailash.security.secrets import redact

        return {"type": type(self).__name__, "config": redact(dict(self.config))}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def ensure_output_dict(node: Node, out: Any) -> dict[str, Any]:
    if type(out) is dict:
        return out
    if isinstance(out, dict):
        return dict(out)
    raise NodeExecutionError(
        f"node {node.label} ({type(node).__name__}) returned {type(out).__name__}; "
        "run() must return a dict of named outputs, e.g. {'result': value}",
        node_id=node.name,
        expected="dict",
        got=type(out).__name__,
    )


def unknown_parameter_message(key: str, params: dict[str, NodeParameter]) -> str:
    close = difflib.get_close_matches(key, list(params), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    known = ", ".join(sorted(params)) or "none"
    return f"unknown parameter '{key}' (known parameters: {known}){hint}"
