"""WorkflowExporter.to_kubernetes: manifests checked against the official Kubernetes client's models."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from kailash.errors import SerializationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import LocalRuntime
from kailash.security.secrets import Secret
from kailash.utils.export import WorkflowExporter, validate_kubernetes_manifests
from kailash.utils.export.kubernetes import slugify, validate_manifest
from kailash.workflow import Workflow


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


class _Obj(SimpleNamespace):
    def __getattr__(self, name):  # an absent field reads as None, like the client's models
        return None

    def __eq__(self, other):  # a free-form mapping (limits, labels) compares with a dict
        return vars(self) == (other if isinstance(other, dict) else vars(other))

    def __getitem__(self, key):
        return vars(self)[key]


def model(manifest):
    """The manifest with attribute access and snake_case names (``job.spec.template.spec``).

    Keys of label, annotation and data mappings stay as they are (read them with ``[]``).
    """
    if isinstance(manifest, list):
        return [model(m) for m in manifest]
    if not isinstance(manifest, dict):
        return manifest
    if not all(isinstance(k, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", k) for k in manifest):
        return {k: model(v) for k, v in manifest.items()}
    return _Obj(**{re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): model(v) for k, v in manifest.items()})


def totals_workflow(name: str = "Daily Totals_2024") -> Workflow:
    wf = Workflow(name)
    wf.add_node("make", PythonCodeNode(code="result = list(range(n))"))
    wf.add_node("total", PythonCodeNode(code="result = sum(data)"))
    wf.connect("make", "total")
    return wf


def test_job_manifests_are_valid_and_complete(tmp_path):
    out = tmp_path / "k8s"
    written = WorkflowExporter(totals_workflow()).to_kubernetes(out, config={"parameters": {"make": {"n": 5}}})
    assert sorted(p.name for p in written) == ["README.md", "configmap.yaml", "job.yaml", "kustomization.yaml"]
    assert validate_kubernetes_manifests(out) == {}

    cm = model(load(out / "configmap.yaml"))
    job = model(load(out / "job.yaml"))
    assert cm.metadata.name == "daily-totals-2024-workflow"
    assert json.loads(cm.data["params.json"]) == {"make": {"n": 5}}
    assert job.spec.backoff_limit == 0
    pod = job.spec.template.spec
    assert pod.restart_policy == "Never"
    (container,) = pod.containers
    assert container.args == ["run"]
    assert container.image == "daily-totals-2024:1.0.0"
    assert container.resources.limits == {"cpu": "1", "memory": "1Gi"}
    assert container.resources.requests == {"cpu": "100m", "memory": "256Mi"}
    assert container.security_context.run_as_non_root and container.security_context.read_only_root_filesystem
    env = {e.name: e.value for e in container.env}
    assert env["KAILASH_WORKFLOW"] == "/etc/kailash/workflow.yaml"
    assert env["KAILASH_PARAMS_FILE"] == "/etc/kailash/params.json"
    mounts = {m.mount_path: m.name for m in container.volume_mounts}
    volumes = {v.name: v for v in pod.volumes}
    assert volumes[mounts["/etc/kailash"]].config_map.name == cm.metadata.name

    # the workflow in the ConfigMap is the exported workflow: it loads and runs
    wf_path = tmp_path / "from-configmap.yaml"
    wf_path.write_text(cm.data["workflow.yaml"])
    results, _ = LocalRuntime(store=None).execute(Workflow.load(wf_path), parameters=json.loads(cm.data["params.json"]))
    assert results["total"] == {"result": 10}

    kustomization = load(out / "kustomization.yaml")
    assert kustomization["resources"] == ["configmap.yaml", "job.yaml"]


def test_served_workflow_gets_deployment_and_service(tmp_path):
    out = tmp_path / "k8s"
    WorkflowExporter(totals_workflow()).to_kubernetes(
        out,
        serve=True,
        config={
            "replicas": 3,
            "database_url_secret": "analytics-db",
            "namespace": "analytics",
            "port": 9000,
            "image": "registry.local/totals:7",
            "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        },
    )
    assert validate_kubernetes_manifests(out) == {}
    assert not (out / "job.yaml").exists()
    dep = model(load(out / "deployment.yaml"))
    svc = model(load(out / "service.yaml"))
    assert dep.spec.replicas == 3 and dep.metadata.namespace == "analytics"
    container = dep.spec.template.spec.containers[0]
    assert container.args == ["serve"] and container.image == "registry.local/totals:7"
    assert container.ports[0].container_port == 9000
    assert container.readiness_probe.http_get.path == "/health"
    assert {e.name: e.value for e in container.env}["KAILASH_PORT"] == "9000"
    assert container.resources.limits == {"memory": "512Mi"}
    assert dep.spec.selector.match_labels.items() <= dep.spec.template.metadata.labels.items()
    assert svc.spec.selector == dep.spec.selector.match_labels
    assert svc.spec.ports[0].target_port == "http" and svc.spec.ports[0].port == 80
    assert load(out / "kustomization.yaml")["namespace"] == "analytics"
    db = next(e for e in container.env if e.name == "KAILASH_DATABASE_URL")  # the replicas share one PostgreSQL
    assert (db.value_from.secret_key_ref.name, db.value_from.secret_key_ref.key) == ("analytics-db",
                                                                                      "KAILASH_DATABASE_URL")
    assert "--from-literal=KAILASH_DATABASE_URL=" in (out / "README.md").read_text()

    both = tmp_path / "both"
    WorkflowExporter(totals_workflow()).to_kubernetes(both, config={"serve": True, "job": True})
    assert {p.name for p in both.glob("*.yaml")} >= {"job.yaml", "deployment.yaml", "service.yaml"}


def test_secrets_come_from_a_kubernetes_secret_never_inlined(tmp_path, custom_nodes, monkeypatch):
    monkeypatch.setenv("PAYMENTS_KEY", "pk-live-0123456789")
    wf = Workflow("payments")
    wf.add_node("a", custom_nodes.TokenDigestNode(token=Secret("pk-live-0123456789", env="PAYMENTS_KEY")))
    wf.add_node("b", custom_nodes.TokenDigestNode(token=Secret("unnamed-secret-value-42")))
    out = tmp_path / "k8s"
    WorkflowExporter(wf).to_kubernetes(out, config={"secret_name": "payments-creds", "serve": True, "job": True})
    assert validate_kubernetes_manifests(out) == {}
    for path in out.iterdir():
        text = path.read_text()
        assert "pk-live-0123456789" not in text and "unnamed-secret-value-42" not in text, path.name
    assert not [p for p in out.glob("*.yaml") if load(p).get("kind") == "Secret"]
    for name, extra in (("job.yaml", set()), ("deployment.yaml", {"KAILASH_API_KEYS"})):
        container = model(load(out / name)).spec.template.spec.containers[0]
        refs = {e.name: e.value_from.secret_key_ref for e in container.env if e.value_from}
        assert set(refs) == {"PAYMENTS_KEY", "B_TOKEN"} | extra
        assert {(r.name, r.key) for r in refs.values()} == {("payments-creds", k) for k in refs}
        plain = {e.name: e.value for e in container.env if not e.value_from}
        assert plain["KAILASH_REQUIRED_ENV"] == "B_TOKEN PAYMENTS_KEY"
    readme = (out / "README.md").read_text()
    assert "kubectl create secret generic payments-creds" in readme
    assert "--from-literal=B_TOKEN=..." in readme and "--from-literal=KAILASH_API_KEYS=..." in readme


def test_bad_kubernetes_options_are_refused(tmp_path):
    exporter = WorkflowExporter(totals_workflow())
    with pytest.raises(SerializationError) as info:
        exporter.to_kubernetes(
            tmp_path / "k",
            config={
                "resources": {"limits": {"cpu": "lots"}, "request": {}},
                "namespace": "Bad_NS",
                "replicas": -1,
                "service_type": "Ingress",
            },
        )
    msg = str(info.value)
    for part in (
        "'lots' is not a Kubernetes quantity",
        "unknown section 'request'",
        "'Bad_NS' is not a valid",
        "'replicas' must be >= 0",
        "'service_type' must be one of",
    ):
        assert part in msg
    assert not (tmp_path / "k").exists()


def test_names_are_made_valid():
    assert slugify("Daily Totals_2024") == "daily-totals-2024"
    assert slugify("2024 report") == "wf-2024-report"
    assert slugify("---") == "wf"
    assert len(slugify("x" * 200)) <= 40


# -- the schema check itself ---------------------------------------------------------------------


@pytest.fixture
def job(tmp_path):
    WorkflowExporter(totals_workflow()).to_kubernetes(tmp_path / "k")
    return load(tmp_path / "k" / "job.yaml")


def test_validator_rejects_unknown_fields(job):
    bad = copy.deepcopy(job)
    bad["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    assert validate_manifest(bad) == ["Job.spec.template.spec.containers[0]: unknown field 'resource'"]


def test_validator_rejects_missing_required_fields(job):
    bad = copy.deepcopy(job)
    del bad["spec"]["template"]["spec"]["containers"][0]["name"]
    assert "Job.spec.template.spec.containers[0]: required field 'name' is missing" in validate_manifest(bad)
    no_template = copy.deepcopy(job)
    del no_template["spec"]["template"]
    assert validate_manifest(no_template) == ["Job.spec: required field 'template' is missing"]


def test_validator_uses_the_schemas_of_a_chosen_release_offline(job):
    # the schemas ship inside kubernetes-validate: no network, any release it knows
    assert validate_manifest(job, kubernetes_version="1.29") == []
    with pytest.raises(ValueError, match="no Kubernetes 9.99 schemas"):
        validate_manifest(job, kubernetes_version="9.99")


def test_validator_rejects_wrong_types_names_and_kinds(job):
    bad = copy.deepcopy(job)
    bad["spec"]["backoffLimit"] = "zero"
    assert validate_manifest(bad) == ["Job.spec.backoffLimit: expected integer, got str 'zero'"]
    bad = copy.deepcopy(job)
    bad["metadata"]["name"] = "Has_Underscore"
    assert validate_manifest(bad) == ["Job: metadata.name 'Has_Underscore' is not a valid DNS-1123 subdomain"]
    bad = copy.deepcopy(job)
    bad["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1 core"
    assert validate_manifest(bad) == ["Job: resources.limits.cpu '1 core' is not a Kubernetes quantity"]
    bad = copy.deepcopy(job)
    bad["apiVersion"] = "batch/v2"
    assert "unsupported apiVersion/kind batch/v2/Job" in validate_manifest(bad)[0]
    assert validate_manifest(["not", "a", "mapping"]) == ["a manifest must be a mapping, got list"]


def test_gateway_replicas_need_a_shared_postgres(tmp_path):
    exporter = WorkflowExporter(totals_workflow())
    with pytest.raises(SerializationError) as info:
        exporter.to_kubernetes(tmp_path / "k", serve=True, config={"replicas": 2})
    assert "'replicas' is 2" in str(info.value) and "database_url_secret" in str(info.value)
    assert not (tmp_path / "k").exists()
    one = tmp_path / "one"  # one replica keeps its own SQLite store, as before
    exporter.to_kubernetes(one, serve=True, config={"replicas": 1})
    env = {e["name"] for e in load(one / "deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KAILASH_DATABASE_URL" not in env
    out = tmp_path / "many"
    exporter.to_kubernetes(out, serve=True, config={"replicas": 4, "database_url_secret": "gw-db",
                                                    "on_interrupted": "mark", "queue_lease": 15})
    assert validate_kubernetes_manifests(out) == {}
    dep = load(out / "deployment.yaml")
    assert dep["spec"]["replicas"] == 4
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KAILASH_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "gw-db", "key": "KAILASH_DATABASE_URL"}
    assert env["KAILASH_ON_INTERRUPTED"]["value"] == "mark" and env["KAILASH_QUEUE_LEASE"]["value"] == "15"
    with pytest.raises(SerializationError, match="'on_interrupted' must be one of resume, mark"):
        exporter.to_kubernetes(tmp_path / "bad", serve=True, config={"on_interrupted": "retry"})
