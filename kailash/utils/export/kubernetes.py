"""Kubernetes manifests for an exported workflow, and their check against the API schemas.

Used by :meth:`kailash.utils.export.WorkflowExporter.to_kubernetes`. A ConfigMap holds
the workflow (and default parameters); a Job runs it once; a served workflow gets a
Deployment and a Service running ``kailash serve``. Pods run the image written by
``to_docker`` as a non-root user on a read-only root filesystem, with resource requests
and limits; every ``${NAME}`` the workflow refers to comes from a Kubernetes Secret
through ``secretKeyRef``, so no secret value is ever written into a manifest.

:func:`validate_manifest` checks a manifest against the Kubernetes JSON schemas that
``kubernetes-validate`` ships (unknown fields, wrong types and missing required fields
fail; no network) plus the name rules the API server enforces; it is imported only there.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from kailash.utils.export.docker import HOME_DIR, USER_ID, WORK_DIR

if TYPE_CHECKING:
    from kailash.utils.export.dependencies import Dependencies

__all__ = ["slugify", "kubernetes_manifests", "validate_manifest", "MOUNT_DIR", "QUANTITY"]

MOUNT_DIR = "/etc/kailash"
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


def slugify(name: str, limit: int = 40) -> str:
    """A DNS-1035 label from a workflow name (``Customer ETL v2`` -> ``customer-etl-v2``)."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:limit].strip("-")
    if not s or not s[0].isalpha():
        s = ("wf-" + s).strip("-")[:limit].strip("-")
    return s or "workflow"


def _label_value(value: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63].strip("-_.")
    return s


def kubernetes_manifests(
    *,
    slug: str,
    document_text: str,
    workflow_file: str,
    env_names: list[str],
    deps: Dependencies,
    cfg: dict[str, Any],
) -> dict[str, Any]:
    """``{file name: manifest dict or text}`` for the workflow (see the module docstring)."""
    version = str(cfg.get("version") or "latest")
    image = cfg.get("image") or f"{slug}:{re.sub(r'[^A-Za-z0-9_.-]', '-', version)[:128]}"
    namespace = cfg.get("namespace")
    serve = bool(cfg.get("serve"))
    with_job = cfg.get("job", not serve)
    secret_name = cfg.get("secret_name") or f"{slug}-secrets"
    config_name = f"{slug}-workflow"
    digest = hashlib.sha256(document_text.encode()).hexdigest()
    params = cfg.get("parameters")

    def meta(name: str, component: str) -> dict[str, Any]:
        m: dict[str, Any] = {"name": name, "labels": labels(component)}
        if namespace:
            m["namespace"] = namespace
        return m

    def labels(component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": slug,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/version": _label_value(version),
            "app.kubernetes.io/managed-by": "kailash",
        }

    def pod(component: str, args: list[str], extra: dict[str, Any]) -> dict[str, Any]:
        env: list[dict[str, Any]] = [
            {"name": "KAILASH_WORKFLOW", "value": f"{MOUNT_DIR}/{workflow_file}"},
            {"name": "KAILASH_PARAMS_FILE", "value": f"{MOUNT_DIR}/params.json"},
            {"name": "KAILASH_HOME", "value": HOME_DIR},
            {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        ]
        if env_names:
            env.append({"name": "KAILASH_REQUIRED_ENV", "value": " ".join(env_names)})
        env += [{"name": n, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": n}}} for n in env_names]
        container: dict[str, Any] = {
            "name": "workflow",
            "image": image,
            "imagePullPolicy": cfg.get("image_pull_policy", "IfNotPresent"),
            "args": args,
            "env": env,
            "resources": cfg.get("resources") or DEFAULT_RESOURCES,
            "volumeMounts": [
                {"name": "workflow", "mountPath": MOUNT_DIR, "readOnly": True},
                {"name": "kailash-home", "mountPath": HOME_DIR},
                {"name": "work", "mountPath": WORK_DIR},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
            **extra,
        }
        return {
            "metadata": {"labels": labels(component), "annotations": {"kailash.dev/workflow-sha256": digest}},
            "spec": {
                **({"restartPolicy": "Never"} if component == "job" else {}),
                "securityContext": {
                    "runAsUser": USER_ID,
                    "runAsGroup": USER_ID,
                    "fsGroup": USER_ID,
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": [
                    {"name": "workflow", "configMap": {"name": config_name}},
                    {"name": "kailash-home", "emptyDir": {}},
                    {"name": "work", "emptyDir": {}},
                    {"name": "tmp", "emptyDir": {}},
                ],
            },
        }

    out: dict[str, Any] = {}
    out["configmap.yaml"] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(config_name, "workflow"),
        "data": {workflow_file: document_text, "params.json": json.dumps(params or {}, indent=2) + "\n"},
    }
    if with_job:
        spec: dict[str, Any] = {
            "backoffLimit": int(cfg.get("backoff_limit", 0)),
            "ttlSecondsAfterFinished": int(cfg.get("ttl_seconds_after_finished", 86400)),
            "template": pod("job", ["run"], {}),
        }
        if cfg.get("active_deadline_seconds"):
            spec["activeDeadlineSeconds"] = int(cfg["active_deadline_seconds"])
        out["job.yaml"] = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta(f"{slug}-run", "job"),
            "spec": spec,
        }
    if serve:
        port = int(cfg.get("port", 8000))
        probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5}
        server = pod(
            "server",
            ["serve"],
            {
                "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                "readinessProbe": {**probe, "initialDelaySeconds": 3},
                "livenessProbe": {**probe, "initialDelaySeconds": 15, "failureThreshold": 3},
            },
        )
        server["spec"]["containers"][0]["env"] += [
            {"name": "KAILASH_PORT", "value": str(port)},
            # every replica must accept the same keys, so they come from the Secret, not generated per pod
            {
                "name": "KAILASH_API_KEYS",
                "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "KAILASH_API_KEYS"}},
            },
        ]
        database_secret = cfg.get("database_url_secret")
        if database_secret:  # replicas share runs and the run queue through one PostgreSQL database
            server["spec"]["containers"][0]["env"].append(
                {
                    "name": "KAILASH_DATABASE_URL",
                    "valueFrom": {"secretKeyRef": {"name": database_secret, "key": "KAILASH_DATABASE_URL"}},
                }
            )
        for key, var in (("on_interrupted", "KAILASH_ON_INTERRUPTED"), ("queue_lease", "KAILASH_QUEUE_LEASE")):
            if cfg.get(key) is not None:
                server["spec"]["containers"][0]["env"].append({"name": var, "value": str(cfg[key])})
        # a stopping pod lets its queued runs finish (kailash serve waits up to 10 s for them)
        server["spec"]["terminationGracePeriodSeconds"] = 30
        selector = {"app.kubernetes.io/name": slug, "app.kubernetes.io/component": "server"}
        out["deployment.yaml"] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(slug, "server"),
            "spec": {
                "replicas": int(cfg.get("replicas", 1)),
                "selector": {"matchLabels": selector},
                "template": server,
            },
        }
        out["service.yaml"] = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(slug, "server"),
            "spec": {
                "type": cfg.get("service_type", "ClusterIP"),
                "selector": selector,
                "ports": [
                    {"name": "http", "port": int(cfg.get("service_port", 80)), "targetPort": "http", "protocol": "TCP"}
                ],
            },
        }
    dask_workers = int(cfg.get("dask_workers") or 0)
    if dask_workers:
        out.update(_dask_manifests(slug, dask_workers, pod, meta, cfg))
        address = {"name": "KAILASH_DASK_ADDRESS", "value": f"tcp://{slug}-dask-scheduler:{DASK_PORT}"}
        for name in ("job.yaml", "deployment.yaml"):
            if name in out:
                spec = out[name]["spec"]["template"]["spec"]
                spec["containers"][0]["env"].append(address)
    kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace:
        kustomization["namespace"] = namespace
    kustomization["resources"] = list(out)
    out["kustomization.yaml"] = kustomization
    out["README.md"] = _readme(slug, image, secret_name, env_names, namespace, serve, list(out))
    if serve and cfg.get("database_url_secret"):
        ns = f" -n {namespace}" if namespace else ""
        out["README.md"] += (
            f"\nThe {int(cfg.get('replicas', 1))} gateway replica(s) share one PostgreSQL database: "
            f"`kubectl{ns} create secret generic {cfg['database_url_secret']} "
            "--from-literal=KAILASH_DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/DB`. Async runs are queued "
            "there and run by whichever replica has a free slot; a run of a pod that dies is taken over by another "
            "replica once its lease expires (see docs/deploy.md).\n")
    return out


DASK_PORT = 8786


def _dask_manifests(slug: str, workers: int, pod: Any, meta: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """A Dask scheduler (Deployment + Service) and ``workers`` worker pods on the workflow's image.

    The scheduler drops a worker whose heartbeats stop after 30 s (``worker-ttl``; the Dask
    default is 5 minutes), so a lost node is rescheduled promptly. Workers keep their
    scratch space in the pod's ``/tmp`` (the root file system is read-only).
    """
    scheduler_name = f"{slug}-dask-scheduler"
    address = f"tcp://{scheduler_name}:{DASK_PORT}"
    scheduler = pod("dask-scheduler", ["scheduler", "--port", str(DASK_PORT), "--no-dashboard"], {
        "command": ["dask"],
        "ports": [{"name": "dask", "containerPort": DASK_PORT, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "dask"}, "periodSeconds": 10, "initialDelaySeconds": 3},
    })
    scheduler["spec"]["containers"][0]["env"].append(
        {"name": "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL", "value": "30s"})
    worker = pod("dask-worker", ["worker", address, "--nthreads", "1", "--no-dashboard",
                                 "--local-directory", "/tmp/dask-worker"], {"command": ["dask"]})
    out: dict[str, Any] = {}
    for file, component, template, replicas in (("dask-scheduler.yaml", "dask-scheduler", scheduler, 1),
                                                 ("dask-workers.yaml", "dask-worker", worker, workers)):
        selector = {"app.kubernetes.io/name": slug, "app.kubernetes.io/component": component}
        out[file] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(scheduler_name if component == "dask-scheduler" else f"{slug}-dask-worker", component),
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template},
        }
    out["dask-scheduler-service.yaml"] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(scheduler_name, "dask-scheduler"),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": slug, "app.kubernetes.io/component": "dask-scheduler"},
            "ports": [{"name": "dask", "port": DASK_PORT, "targetPort": "dask", "protocol": "TCP"}],
        },
    }
    return out


def _readme(
    slug: str, image: str, secret_name: str, env_names: list[str], namespace: str | None, serve: bool, files: list[str]
) -> str:
    ns = f" -n {namespace}" if namespace else ""
    lines = [
        f"# {slug} on Kubernetes",
        "",
        f"Manifests: {', '.join(f'`{f}`' for f in files if f.endswith('.yaml'))}.",
        f"The pods run the image `{image}`; build it from `kailash export FILE --to docker --out DIR`",
        "(or set `image` in the export config to an image you already publish).",
        "",
        "```sh",
        f"docker build -t {image} DOCKER_EXPORT_DIR",
    ]
    keys = env_names + (["KAILASH_API_KEYS"] if serve else [])
    if keys:
        lits = " ".join(f"--from-literal={n}=..." for n in keys)
        lines.append(f"kubectl{ns} create secret generic {secret_name} {lits}")
    lines += ["kubectl apply -k .", "```", ""]
    if env_names:
        lines += [
            f"The workflow refers to {', '.join(f'`{n}`' for n in env_names)}; the pods read them from the",
            f"Secret `{secret_name}` (not created here: secret values are never exported).",
            "",
        ]
    if serve:
        lines += [
            "The gateway accepts the API keys in `KAILASH_API_KEYS` (comma-separated) of that Secret.",
            f"`kubectl{ns} port-forward service/{slug} 8080:80` then open http://127.0.0.1:8080/health.",
            "",
        ]
    lines.append(f"Parameters for the Job: edit `params.json` in the ConfigMap `{slug}-workflow`.")
    return "\n".join(lines) + "\n"


# -- checking against the Kubernetes API schemas ---------------------------------------

def validate_manifest(manifest: Any, kubernetes_version: str | None = None) -> list[str]:
    """Every problem with ``manifest`` against the Kubernetes API schemas (empty when valid).

    Checks with ``kubernetes-validate`` (the ``[k8s]`` extra), which ships the JSON
    schemas of every Kubernetes release, so it works offline: fields a kind does not
    have, values of the wrong type and missing required fields are problems (the
    schema's first problem per manifest), as are names, label values, environment
    variable names and quantities the API server would refuse. ``kubernetes_version``
    (e.g. ``"1.30"``) picks the schemas; the newest the package ships by default.
    """
    try:
        import kubernetes_validate
    except ImportError as exc:
        raise ImportError(
            "checking Kubernetes manifests needs kubernetes-validate: pip install 'kailash[k8s]'"
        ) from exc
    if not isinstance(manifest, dict):
        return [f"a manifest must be a mapping, got {type(manifest).__name__}"]
    kind = manifest.get("kind")
    if not isinstance(kind, str) or not isinstance(manifest.get("apiVersion"), str):
        return ["a manifest needs 'apiVersion' and 'kind' strings"]
    version = kubernetes_version or kubernetes_validate.latest_version()
    problems: list[str] = []
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.utils.VersionNotSupportedError as exc:
        raise ValueError(
            f"no Kubernetes {exc.version} schemas in kubernetes-validate (newest: {kubernetes_validate.latest_version()})"
        ) from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"unsupported apiVersion/kind {manifest['apiVersion']}/{kind}: {exc.message}"]
    except kubernetes_validate.ValidationError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        problems.append(f"{kind}{where}: {_schema_message(exc)}")
    problems.extend(_api_server_rules(manifest))
    return problems


def _schema_message(exc: Any) -> str:
    message = str(exc.message)
    if exc.validator == "additionalProperties":
        m = re.search(r"\('?([^']*)'? (?:was|were) unexpected\)", message)
        return f"unknown field {m.group(1)!r}" if m else message
    if exc.validator == "required":
        m = re.match(r"'([^']*)' is a required property", message)
        return f"required field {m.group(1)!r} is missing" if m else message
    if exc.validator == "type":
        want = exc.validator_value if isinstance(exc.validator_value, list) else [exc.validator_value]
        return f"expected {' or '.join(str(w) for w in want if w != 'null')}, got {type(exc.instance).__name__} {exc.instance!r}"
    return message


def _api_server_rules(m: dict[str, Any]) -> list[str]:
    kind = m.get("kind")
    problems = []
    name = (m.get("metadata") or {}).get("name") or ""
    rule = _DNS_1035 if kind == "Service" else _DNS_SUBDOMAIN
    if not rule.match(name) or len(name) > (63 if kind == "Service" else 253):
        problems.append(
            f"{kind}: metadata.name '{name}' is not a valid {'DNS-1035 label' if kind == 'Service' else 'DNS-1123 subdomain'}"
        )
    for where, labels in _all_labels(m):
        for k, v in labels.items():
            if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v):
                problems.append(f"{kind}: {where} label '{k}' has an invalid value {v!r}")
    for k in (m.get("data") or {}) if kind == "ConfigMap" else ():
        if not _CONFIG_KEY.match(k):
            problems.append(f"ConfigMap: data key '{k}' is not a valid key")
    if kind == "ConfigMap" and len(json.dumps(m.get("data") or {})) > 1024 * 1024:
        problems.append("ConfigMap: data is over the 1 MiB limit")
    for c in _containers(m):
        if not _DNS_LABEL.match(c.get("name") or ""):
            problems.append(f"{kind}: container name {c.get('name')!r} is not a DNS-1123 label")
        for e in c.get("env") or []:
            if not _ENV_NAME.match(e.get("name") or ""):
                problems.append(f"{kind}: container env name {e.get('name')!r} is not a valid variable name")
        for section in ("requests", "limits"):
            for res, q in ((c.get("resources") or {}).get(section) or {}).items():
                if not QUANTITY.match(str(q)):
                    problems.append(f"{kind}: resources.{section}.{res} {q!r} is not a Kubernetes quantity")
    return problems


def _all_labels(m: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = [("metadata", (m.get("metadata") or {}).get("labels") or {})]
    template = (m.get("spec") or {}).get("template")
    if isinstance(template, dict):
        out.append(("template", (template.get("metadata") or {}).get("labels") or {}))
    return out


def _containers(m: dict[str, Any]) -> list[dict[str, Any]]:
    template = (m.get("spec") or {}).get("template")
    if not isinstance(template, dict):
        return []
    return [c for c in (template.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
