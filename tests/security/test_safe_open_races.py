"""safe_open against check/use races: a directory swapped for a symlink mid-open.

A racing thread flips ``allowed/sub`` between a real directory and a symlink to a
directory outside the policy, thousands of times, while the main thread opens
``allowed/sub/secret.txt`` through :func:`safe_open`. Whatever the interleaving, the
content read is never the outside file's, and a write never lands outside.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from kailash.errors import SecurityError
from kailash.security import SecurityConfig, safe_open
from kailash.security import paths as paths_mod

ATTEMPTS = 3000


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    """Run each test with the kernel's openat2 and with the portable component walk."""
    if request.param == "walk":
        monkeypatch.setattr(paths_mod, "_openat2_available", lambda: False, raising=False)
    elif not getattr(paths_mod, "_openat2_available", lambda: True)():
        pytest.skip("this kernel has no openat2")
    return request.param


@pytest.fixture
def layout(tmp_path):
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("OUTSIDE")
    sub = allowed / "sub"
    sub.mkdir()
    (sub / "secret.txt").write_text("inside")
    return allowed, outside, sub


def _flipper(sub, outside, stop: threading.Event) -> threading.Thread:
    real = sub.with_name("sub.real")
    link = sub.with_name("sub.link")
    os.symlink(outside, link)

    def flip() -> None:
        while not stop.is_set():
            os.rename(sub, real)   # sub is gone ...
            os.rename(link, sub)   # ... and now is a symlink to outside
            os.rename(sub, link)
            os.rename(real, sub)   # and a real directory again

    t = threading.Thread(target=flip, daemon=True)
    t.start()
    return t


def test_a_directory_swapped_for_a_symlink_never_reads_outside(layout, resolver):
    allowed, outside, sub = layout
    cfg = SecurityConfig(allowed_directories=[str(allowed)])
    stop = threading.Event()
    t = _flipper(sub, outside, stop)
    seen: dict[str, int] = {}
    try:
        for _ in range(ATTEMPTS):
            try:
                with safe_open(sub / "secret.txt", config=cfg) as f:
                    text = f.read()
            except (SecurityError, FileNotFoundError):
                text = "refused"
            seen[text] = seen.get(text, 0) + 1
    finally:
        stop.set()
        t.join(timeout=10)
    assert "OUTSIDE" not in seen, seen
    assert seen.get("inside", 0) > 0, seen  # the race really interleaved with successful opens


def test_a_write_through_a_swapped_directory_never_lands_outside(layout, resolver):
    allowed, outside, sub = layout
    cfg = SecurityConfig(allowed_directories=[str(allowed)])
    stop = threading.Event()
    t = _flipper(sub, outside, stop)
    try:
        for i in range(ATTEMPTS // 3):
            try:
                with safe_open(sub / f"w{i}.txt", "w", config=cfg) as f:
                    f.write("x")
            except (SecurityError, FileNotFoundError):
                pass
    finally:
        stop.set()
        t.join(timeout=10)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_a_planted_final_symlink_is_not_followed_on_write(layout, resolver, tmp_path):
    allowed, outside, _ = layout
    cfg = SecurityConfig(allowed_directories=[str(allowed)])
    target = outside / "victim.txt"
    target.write_text("keep")
    os.symlink(target, allowed / "out.txt")
    # the check resolves the link (outside: refused); a link planted after the check
    # is refused at open time because the final component is opened with O_NOFOLLOW
    with pytest.raises(SecurityError, match="outside the allowed directories"):
        safe_open(allowed / "out.txt", "w", config=cfg)
    real = allowed / "real.txt"
    fd = paths_mod._open_beneath(allowed, os.path.relpath(real, allowed), os.O_WRONLY | os.O_CREAT, 0o666)
    os.close(fd)
    os.unlink(real)
    os.symlink(target, real)
    with pytest.raises(SecurityError, match="symbolic link"):
        paths_mod._open_beneath(allowed, "real.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    assert target.read_text() == "keep"


def test_a_symlink_inside_the_allowed_directory_still_works(layout, resolver):
    allowed, _, sub = layout
    cfg = SecurityConfig(allowed_directories=[str(allowed)])
    os.symlink(sub / "secret.txt", allowed / "alias.txt")
    with safe_open(allowed / "alias.txt", config=cfg) as f:
        assert f.read() == "inside"


def test_make_parents_creates_directories_beneath_only(layout, resolver):
    allowed, outside, _ = layout
    cfg = SecurityConfig(allowed_directories=[str(allowed)])
    with safe_open(allowed / "a" / "b" / "c.txt", "w", config=cfg, make_parents=True) as f:
        f.write("deep")
    assert (allowed / "a" / "b" / "c.txt").read_text() == "deep"
    with pytest.raises(SecurityError):
        safe_open(allowed / ".." / "outside" / "new" / "x.txt", "w", config=cfg, make_parents=True)
    assert not (outside / "new").exists()


def test_a_fifo_is_refused_instead_of_blocking(layout, resolver):
    allowed, _, _ = layout
    cfg = SecurityConfig(allowed_directories=[str(allowed)])
    os.mkfifo(allowed / "pipe")
    t0 = time.monotonic()
    with pytest.raises(SecurityError, match="not a regular file"):
        safe_open(allowed / "pipe", config=cfg)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("mode", ["r", "rb", "w", "a", "x", "r+", "w+", "ab"])
def test_every_mode_opens_beneath(layout, resolver, mode):
    allowed, _, _ = layout
    cfg = SecurityConfig(allowed_directories=[str(allowed)])
    path = allowed / f"m-{mode.replace('+', 'p')}.txt"
    if "r" in mode:
        path.write_text("seed")
    with safe_open(path, mode, config=cfg) as f:
        if "r" in mode:
            assert f.read() in ("seed", b"seed")
        if mode != "r" and mode != "rb":
            f.write(b"z" if "b" in mode else "z")
    with pytest.raises(FileExistsError):
        safe_open(path, "x", config=cfg)


def test_a_hostile_str_subclass_path_is_judged_by_its_real_value(layout, resolver, tmp_path):
    allowed, outside, _ = layout
    cfg = SecurityConfig(allowed_directories=[str(allowed)])

    class Sly(str):
        def __contains__(self, item):
            return False

        def startswith(self, *a):
            return True

        def __fspath__(self):
            return self

    with pytest.raises(SecurityError, match="outside the allowed directories"):
        safe_open(Sly(str(outside / "secret.txt")), config=cfg)
    with pytest.raises(SecurityError, match="NUL byte"):
        safe_open(Sly(str(allowed / "a\x00b")), config=cfg)
