"""Atomic saving: write to a temporary file beside the target, then rename.

A crash or Ctrl-C mid-write leaves the old file (or none), never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None, *, fsync: bool = False):
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    ``suffix`` keeps the extension for writers that insist on one (``np.save`` adds .npy).
    ``fsync=True`` flushes the file to disk before the rename, so a power cut or full disk
    cannot leave a renamed but incomplete file (used for resumable chunks).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp",
                               dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; saved files get the usual mode
    try:
        yield Path(tmp)
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fsync_file(path) -> None:
    """Flush ``path``'s data to disk (fsync on any descriptor flushes the file's pages)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(path, flag: str = "--output", *, kind: str = "any") -> None:
    """Fail before any work when ``path`` could not be written.

    Checks that the folder that will hold ``path`` exists (or could be created: no file
    stands where a folder is needed) and that a file can really be created there (a
    temporary file is made and removed: permission bits alone mislead, e.g. as root or on
    a read-only mount). ``kind="file"`` also refuses an existing folder at ``path`` and
    ``kind="folder"`` an existing file; the default ``"any"`` accepts either.

    Raises
    ------
    InputError
        One line naming ``flag`` and what to do.
    """
    from .errors import InputError

    path = Path(os.fspath(path))
    if kind == "file" and path.is_dir():
        raise InputError(f"{flag} '{path}' is a folder; give a file name.")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise InputError(f"{flag} '{path}' is a file; give a folder.")
    parent = path.absolute().parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{flag} '{path}' cannot be written: '{existing}' is a file, not a "
                         "folder; choose another path.")
    try:  # probe the nearest existing folder: the missing ones are made inside it
        if existing == parent:
            fd, probe = tempfile.mkstemp(prefix=".bertkit-write-check.", dir=existing)
            os.close(fd)
            os.remove(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".bertkit-write-check.", dir=existing))
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise InputError(f"{flag} '{path}' cannot be written in '{existing}' ({reason}); choose "
                         "another path or fix the folder's permissions.") from None


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name the same file (symlinks, ``./`` and hard links
    resolved); ``b`` need not exist."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(tmp, final) -> None:
    """Replace folder ``final`` with the complete folder ``tmp`` by renames (never a half state)."""
    tmp, final = Path(tmp), Path(final)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj, **kwargs) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable, **kwargs) + "\n",
                       encoding="utf-8")


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
