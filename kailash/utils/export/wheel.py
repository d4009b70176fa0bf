"""The Kailash wheel a Docker export bundles: built from the source that is running now.

Used by :mod:`kailash.utils.export.docker`. The name ``kailash`` on the public index
belongs to another project, so an image must never ``pip install kailash==VERSION``:
the export copies a wheel of *this* SDK into the build context instead. It comes from,
first found:

- a source checkout (``pyproject.toml`` of the project beside the ``kailash`` package,
  as in an editable install or ``PYTHONPATH``): its files are copied to a temporary
  directory and ``pip wheel`` builds there (no build directory is left in the checkout);
- an installed (non-editable) distribution: its recorded files are packed back into a
  wheel, byte for byte as installed.

Wheels are cached (``$XDG_CACHE_HOME/kailash/wheels``; older source states go after a day) by
the digest of their sources, so exporting many workflows builds once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = ["SdkWheel", "sdk_wheel", "build_wheel"]

_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in")


@dataclass(frozen=True)
class SdkWheel:
    """A wheel of this SDK and a sentence saying where it was built from."""

    path: Path
    origin: str


def sdk_wheel() -> SdkWheel:
    """A wheel of the running Kailash SDK (built once per source state, then cached)."""
    import kailash

    package = Path(kailash.__file__).resolve().parent
    root = package.parent
    if _is_kailash_project(root):
        return build_wheel(root)
    return _repack_installed()


def build_wheel(root: str | os.PathLike[str]) -> SdkWheel:
    """Build a wheel of the Kailash project checked out at ``root`` (cached by content)."""
    root = Path(root).resolve()
    if not _is_kailash_project(root):
        raise ValueError(f"'{root}' is not a Kailash source checkout (no pyproject.toml naming the kailash project)")
    files = _source_files(root)
    digest = hashlib.sha256()
    for rel, path in files:
        st = path.stat()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    cache = _cache_dir() / f"src-{digest.hexdigest()[:20]}"
    found = sorted(cache.glob("kailash-*.whl")) if cache.is_dir() else []
    if found:
        try:
            os.utime(cache)  # in use: spared by _prune
        except OSError:
            pass
        return SdkWheel(found[0], f"built from the source checkout at {root}")
    with tempfile.TemporaryDirectory(prefix="kailash-wheel-") as tmp:
        src = Path(tmp) / "src"
        for rel, path in files:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / rel)
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
        if _has_setuptools():
            cmd.insert(5, "--no-build-isolation")  # offline: the setuptools installed here builds it
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = sorted(out.glob("kailash-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"building the kailash wheel from {root} failed: {' / '.join(tail)}")
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / wheels[0].name
        shutil.copy2(wheels[0], target.with_suffix(".part"))
        os.replace(target.with_suffix(".part"), target)  # atomic: a concurrent export sees all or nothing
    _prune(cache.parent, keep=5)
    return SdkWheel(target, f"built from the source checkout at {root}")


def _prune(cache: Path, keep: int) -> None:
    """Remove wheels of older source states: beyond the ``keep`` newest, those unused for a day.

    The day spares an export in another process (another checkout) that has just picked
    its wheel and is about to copy it.
    """
    import time

    try:
        built = sorted(cache.glob("src-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in built[keep:]:
            if time.time() - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
    except OSError:  # another process pruned it first
        pass


def _is_kailash_project(root: Path) -> bool:
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or not (root / "kailash" / "__init__.py").is_file():
        return False
    import tomllib

    try:
        return tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name") == "kailash"
    except (OSError, tomllib.TOMLDecodeError):
        return False


def _source_files(root: Path) -> list[tuple[str, Path]]:
    out = [(name, root / name) for name in _SOURCE_FILES if (root / name).is_file()]
    for path in sorted((root / "kailash").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            out.append((path.relative_to(root).as_posix(), path))
    return out


def _has_setuptools() -> bool:
    try:
        version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        return False
    return int(version.split(".")[0]) >= 77


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "kailash" / "wheels"
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path
    except OSError:  # a read-only home: the temp dir, per user
        path = Path(tempfile.gettempdir()) / f"kailash-wheels-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        path.mkdir(parents=True, exist_ok=True)
        return path


def _repack_installed() -> SdkWheel:
    """Pack the installed distribution's recorded files back into a wheel."""
    try:
        dist = metadata.distribution("kailash")
    except metadata.PackageNotFoundError:
        raise ValueError(
            "cannot bundle Kailash: it runs neither from a source checkout nor from an installed distribution; "
            "pass sdk=PATH (a kailash wheel or source checkout)"
        ) from None
    files = [f for f in dist.files or () if f.parts and (f.parts[0] == "kailash" or f.parts[0].endswith(".dist-info"))]
    if not any(f.parts[0] == "kailash" for f in files):
        raise ValueError("cannot bundle Kailash: the installed distribution records no package files; pass sdk=PATH")
    version = dist.version
    name = f"kailash-{version}-py3-none-any.whl"
    cache = _cache_dir() / f"installed-{hashlib.sha256(str(dist.locate_file('')).encode()).hexdigest()[:12]}-{version}"
    target = cache / name
    if target.is_file():
        return SdkWheel(target, f"packed from the installed distribution kailash {version}")
    cache.mkdir(parents=True, exist_ok=True)
    info = f"kailash-{version}.dist-info"
    record: list[str] = []
    part = target.with_suffix(".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            if "__pycache__" in f.parts or f.name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
                continue
            data = Path(str(dist.locate_file(f))).read_bytes()
            arc = "/".join((info, *f.parts[1:])) if f.parts[0].endswith(".dist-info") else f.as_posix()
            zf.writestr(arc, data)
            sha = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={sha},{len(data)}")
        if not any(r.startswith(f"{info}/WHEEL,") for r in record):
            wheel_meta = "Wheel-Version: 1.0\nGenerator: kailash-export\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            zf.writestr(f"{info}/WHEEL", wheel_meta)
            sha = base64.urlsafe_b64encode(hashlib.sha256(wheel_meta.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{info}/WHEEL,sha256={sha},{len(wheel_meta)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    os.replace(part, target)
    return SdkWheel(target, f"packed from the installed distribution kailash {version}")
