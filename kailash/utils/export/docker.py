"""The Docker build context of an exported workflow: Dockerfile, entrypoint, requirements.

Used by :meth:`kailash.utils.export.WorkflowExporter.to_docker`. Everything here is
text built from the export document and its dependencies; the exporter writes it. The
image installs this SDK from a wheel bundled in the context (built from the running
source: the name ``kailash`` on the public index is another project; see
:mod:`kailash.utils.export.wheel`) with the extras the workflow needs, and the other
packages from the index; it holds the workflow file,
and its entrypoint runs ``kailash run`` (or ``kailash serve``) with parameters from
``$KAILASH_PARAMS`` (JSON) or a mounted file. Secrets stay out of the image: the
workflow refers to environment variables, which the entrypoint insists on at start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kailash.utils.export.dependencies import Dependencies

__all__ = ["docker_context", "ENTRYPOINT", "APP_DIR", "WORK_DIR", "HOME_DIR", "USER_ID"]

APP_DIR = "/app"
WORK_DIR = "/work"
HOME_DIR = "/var/lib/kailash"
USER_ID = 10001

# POSIX sh, so it runs on slim images and on this machine alike (tests run it directly).
ENTRYPOINT = r"""#!/bin/sh
# Entrypoint of a Kailash workflow image (written by `kailash export --to docker`).
#
#   run       (default) run the workflow once with `kailash run` and print the results as JSON.
#             Parameters ({"node_id": {"param": value}}) come from, first found:
#               $KAILASH_PARAMS             a JSON document
#               $KAILASH_PARAMS_FILE        a mounted JSON/YAML file (default /params/params.json)
#               $KAILASH_DEFAULT_PARAMS_FILE  the defaults baked into the image, if any
#   serve     serve the workflow over HTTP with `kailash serve` on $KAILASH_HOST:$KAILASH_PORT.
#   validate  check the workflow without running it.
# Further arguments go to the kailash command (e.g. `run -p node.param=1`).
# $KAILASH_OUTPUT=text prints a summary instead of JSON.
set -eu

WORKFLOW="${KAILASH_WORKFLOW:-/app/workflow.yaml}"
MODE="${1:-run}"
if [ "$#" -gt 0 ]; then shift; fi

fail() {
    echo "kailash-entrypoint: error: $*" >&2
    exit 2
}

kailash_cmd() {
    if [ -n "${KAILASH_NODE_MODULES:-}" ]; then
        # Custom node types register when their module is imported, so import them first.
        exec python -c 'import importlib, os, sys
for name in os.environ["KAILASH_NODE_MODULES"].split(","):
    if name.strip():
        importlib.import_module(name.strip())
from kailash.cli.main import main
sys.exit(main(sys.argv[1:]))' "$@"
    fi
    if command -v kailash >/dev/null 2>&1; then
        exec kailash "$@"
    fi
    exec python -m kailash.cli "$@"
}

require_env() {
    # The workflow refers to these variables (${NAME}) instead of holding secret values.
    for name in ${KAILASH_REQUIRED_ENV:-}; do
        if ! printenv "$name" >/dev/null 2>&1; then
            fail "environment variable $name is not set; the workflow refers to \${$name} (docker run -e $name=..., or a Kubernetes Secret)"
        fi
    done
}

[ -f "$WORKFLOW" ] || fail "workflow file '$WORKFLOW' not found (set KAILASH_WORKFLOW or mount the file)"

case "$MODE" in
    run)
        require_env
        if [ -n "${KAILASH_PARAMS:-}" ]; then
            PARAMS_FILE="${TMPDIR:-/tmp}/kailash-params-$$.json"
            (umask 077 && printf '%s' "$KAILASH_PARAMS" > "$PARAMS_FILE") || fail "cannot write $PARAMS_FILE"
        elif [ -n "${KAILASH_PARAMS_FILE+set}" ]; then
            PARAMS_FILE="$KAILASH_PARAMS_FILE"
            [ -f "$PARAMS_FILE" ] || fail "KAILASH_PARAMS_FILE '$PARAMS_FILE' does not exist"
        elif [ -f /params/params.json ]; then
            PARAMS_FILE=/params/params.json
        elif [ -n "${KAILASH_DEFAULT_PARAMS_FILE:-}" ] && [ -f "$KAILASH_DEFAULT_PARAMS_FILE" ]; then
            PARAMS_FILE="$KAILASH_DEFAULT_PARAMS_FILE"
        else
            PARAMS_FILE=""
        fi
        if [ "${KAILASH_OUTPUT:-json}" = "json" ]; then
            set -- --json "$@"
        fi
        if [ -n "$PARAMS_FILE" ]; then
            set -- --params-file "$PARAMS_FILE" "$@"
        fi
        kailash_cmd run "$WORKFLOW" "$@"
        ;;
    serve)
        require_env
        kailash_cmd serve "$WORKFLOW" --host "${KAILASH_HOST:-0.0.0.0}" --port "${KAILASH_PORT:-8000}" "$@"
        ;;
    validate)
        kailash_cmd validate "$WORKFLOW" "$@"
        ;;
    *)
        fail "unknown mode '$MODE'; use run, serve or validate"
        ;;
esac
"""

_DOCKERIGNORE = "**/__pycache__\n**/*.pyc\n.git\n*.env\nsecrets*\n"


def docker_context(
    *,
    document_text: str,
    workflow_file: str,
    deps: Dependencies,
    env_names: list[str],
    slug: str,
    cfg: dict[str, Any],
) -> dict[str, tuple[str | bytes | Path, int]]:
    """Files of the build context: ``{relative path: (content or a file to copy, mode)}``."""
    files: dict[str, tuple[str | bytes | Path, int]] = {}
    files[workflow_file] = (document_text, 0o644)
    files["entrypoint.sh"] = (ENTRYPOINT, 0o755)
    files[".dockerignore"] = (_DOCKERIGNORE, 0o644)

    sdk = cfg.get("sdk")
    requirements: list[str] = []
    wheel_copy: list[str] = []
    extras = f"[{','.join(deps.extras)}]" if deps.extras else ""
    if sdk is None or str(sdk).endswith(".whl") or Path(str(sdk)).is_dir():
        # The name `kailash` on the public index is another project: bundle this SDK as a wheel.
        from kailash.utils.export.wheel import SdkWheel, build_wheel, sdk_wheel

        if sdk is None:
            bundled = sdk_wheel()
        elif str(sdk).endswith(".whl"):
            bundled = SdkWheel(Path(str(sdk)), f"copied from {Path(str(sdk)).resolve()}")
        else:
            bundled = build_wheel(str(sdk))
        wheel = bundled.path
        files[f"wheels/{wheel.name}"] = (wheel, 0o644)
        requirements.append(f"# Kailash is bundled as wheels/{wheel.name}, {bundled.origin}")
        requirements.append("# (the name 'kailash' on the public package index belongs to another project).")
        requirements.append(f"./wheels/{wheel.name}{extras}")
        wheel_copy.append(f"COPY wheels/ {APP_DIR}/wheels/")
        sdk_text = f"the Kailash wheel `wheels/{wheel.name}` ({bundled.origin})"
    else:
        requirements.append(f"# Kailash from the index as given by the export's sdk option: {sdk}")
        requirements.append(str(sdk))
        sdk_text = f"`{sdk}` from the package index"
    requirements.extend(deps.packages)
    requirements.extend(str(p) for p in cfg.get("packages") or ())
    files["requirements.txt"] = ("\n".join(requirements) + "\n", 0o644)

    node_paths = []
    for c in deps.custom_nodes:
        if c.distribution or c.source is None:
            continue
        src = c.source
        if src.is_dir():
            for f in sorted(src.rglob("*.py")):
                if "__pycache__" not in f.parts:
                    files[f"nodes/{src.name}/{f.relative_to(src).as_posix()}"] = (f, 0o644)
        else:
            files[f"nodes/{src.name}"] = (src, 0o644)
        node_paths.append(src.name)
    nodes_copy = [f"COPY nodes/ {APP_DIR}/nodes/"] if node_paths else []

    params = cfg.get("parameters")
    if params is not None:
        files["params.json"] = (json.dumps(params, indent=2) + "\n", 0o644)

    env = {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "KAILASH_HOME": HOME_DIR,
        "KAILASH_WORKFLOW": f"{APP_DIR}/{workflow_file}",
        "KAILASH_PORT": str(cfg.get("port", 8000)),
    }
    if params is not None:
        env["KAILASH_DEFAULT_PARAMS_FILE"] = f"{APP_DIR}/params.json"
    if env_names:
        env["KAILASH_REQUIRED_ENV"] = " ".join(env_names)
    if deps.node_modules:
        env["KAILASH_NODE_MODULES"] = ",".join(deps.node_modules)
        if node_paths:
            env["PYTHONPATH"] = f"{APP_DIR}/nodes"
    env_lines = " \\\n    ".join(f"{k}={_quote(v)}" for k, v in env.items())

    base = cfg.get("base_image") or "python:3.11-slim"
    app_files = [workflow_file, "entrypoint.sh"] + (["params.json"] if params is not None else [])
    lines = [
        "# syntax=docker/dockerfile:1",
        f"# Workflow '{slug}' exported by Kailash {_version()}.",
        "# Build: docker build -t IMAGE .   Run: docker run --rm -e KAILASH_PARAMS='{...}' IMAGE",
        f"FROM {base}",
        "",
        f"ENV {env_lines}",
        "",
        f"WORKDIR {APP_DIR}",
        *wheel_copy,
        f"COPY requirements.txt {APP_DIR}/requirements.txt",
        "RUN pip install -r requirements.txt",
        "",
        f"RUN useradd --uid {USER_ID} --user-group --no-create-home --home-dir {WORK_DIR} kailash \\",
        f"    && mkdir -p {HOME_DIR} {WORK_DIR} \\",
        f"    && chown kailash:kailash {HOME_DIR} {WORK_DIR}",
        *nodes_copy,
        f"COPY {' '.join(app_files)} {APP_DIR}/",
        f"RUN chmod 0755 {APP_DIR}/entrypoint.sh && {APP_DIR}/entrypoint.sh validate",
        "",
        f"USER {USER_ID}",
        f"WORKDIR {WORK_DIR}",
        f"EXPOSE {cfg.get('port', 8000)}",
        f'ENTRYPOINT ["{APP_DIR}/entrypoint.sh"]',
        'CMD ["run"]',
        "",
    ]
    files["Dockerfile"] = ("\n".join(lines), 0o644)
    files["README.md"] = (_readme(slug, workflow_file, deps, env_names, cfg, sdk_text), 0o644)
    return files


def _quote(value: str) -> str:
    if value and all(c.isalnum() or c in "/._-:,=" for c in value):
        return value
    return json.dumps(value)


def _version() -> str:
    from kailash.utils.export.dependencies import sdk_version

    return sdk_version()


def _readme(
    slug: str, workflow_file: str, deps: Dependencies, env_names: list[str], cfg: dict[str, Any], sdk_text: str
) -> str:
    port = cfg.get("port", 8000)
    secrets = "".join(f" -e {n}" for n in env_names)
    out = [
        f"# {slug}: a Kailash workflow image",
        "",
        f"Built from `{workflow_file}` with {sdk_text}"
        + (f", extras {', '.join(deps.extras)}" if deps.extras else "")
        + (f" and {', '.join(deps.packages)}" if deps.packages else "")
        + ".",
        "",
        "```sh",
        f"docker build -t {slug} .",
        f'docker run --rm{secrets} -e KAILASH_PARAMS=\'{{"node_id": {{"param": 1}}}}\' {slug}',
        f'docker run --rm{secrets} -v "$PWD/params.json:/params/params.json:ro" {slug}',
        f"docker run --rm{secrets} -e KAILASH_API_KEYS=choose-a-key -p {port}:{port} {slug} serve",
        "```",
        "",
        f"The container runs in `{WORK_DIR}`: relative file paths in the workflow resolve there, so mount",
        f'your data at `{WORK_DIR}` (e.g. `-v "$PWD/data:{WORK_DIR}/data"`). Run records go to `{HOME_DIR}`.',
    ]
    if env_names:
        out += [
            "",
            "## Secrets",
            "",
            "The workflow refers to these environment variables instead of holding their values; the",
            "container refuses to start without them:",
            "",
            *[f"- `{n}`" for n in env_names],
        ]
    return "\n".join(out) + "\n"
