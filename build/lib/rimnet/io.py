"""Safe writing shared by every stage: nothing half-written after a crash, nothing of the user's
lost.

Rules (the README's "Safety" section):

- Folders the tool writes as a whole (cache, synthetic cohort, run folders, predict outputs) carry
  an ownership marker, :data:`OWNER_MARKER`. A folder is replaced only if it carries the marker (or
  is empty); a file is overwritten only inside a marked folder. Anything else is an
  :class:`~rimnet.errors.OwnershipError` naming the path.
- Writes go to a temporary sibling ``.<name>.<host>-<pid>.<random>.tmp`` that is renamed into place
  when complete. Siblings left by a process of this host that no longer runs (kill -9) are removed
  on the next write to the same path.
- Symbolic links are never followed into a delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rimnet.errors import OwnershipError, UnsafeFileError

OWNER_MARKER = ".rimnet-owned"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def is_owned(folder: str | Path) -> bool:
    """Whether ``folder`` is a real directory carrying the ownership marker."""
    folder = Path(folder)
    return folder.is_dir() and not folder.is_symlink() and (folder / OWNER_MARKER).is_file()


def inside_owned(path: str | Path) -> bool:
    """Whether ``path`` lies inside a folder that carries the ownership marker."""
    return any(is_owned(p) for p in Path(path).absolute().parents)


def mark_owned(folder: str | Path, kind: str) -> None:
    """Write the ownership marker (what wrote the folder) into ``folder``."""
    from rimnet import __version__

    (Path(folder) / OWNER_MARKER).write_text(
        json.dumps({"tool": "rimnet", "kind": kind, "version": __version__}) + "\n"
    )


def _foreign_entries(folder: Path, ignore: frozenset[str]) -> list[str]:
    return sorted(
        e.name for e in folder.iterdir() if e.name not in ignore and not _is_temp_name(e.name)
    )


def check_replaceable(
    path: str | Path, what: str = "folder", ignore: frozenset[str] = frozenset()
) -> None:
    """Raise :class:`OwnershipError` unless ``path`` is absent, empty, or a folder the tool marked.

    ``ignore`` names entries that do not count (what Hydra wrote into a run folder just before).
    """
    path = Path(path)
    if path.is_symlink():
        raise OwnershipError(
            f"{what} {path} is a symbolic link; rimnet does not write through links: choose a "
            f"real folder"
        )
    if not path.exists() or is_owned(path):
        return
    if not path.is_dir():
        raise OwnershipError(
            f"{what} {path} exists and is a file, not a folder; choose an empty or new folder"
        )
    foreign = _foreign_entries(path, ignore)
    if foreign:
        raise OwnershipError(
            f"{what} {path} exists and was not written by rimnet (it holds {', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); choose an empty or new folder"
        )


def claim_folder(
    path: str | Path, kind: str, what: str = "output folder", ignore: frozenset[str] = frozenset()
) -> Path:
    """Create ``path`` (or accept it if empty or already ours) and mark it as the tool's.

    ``ignore`` names entries that may already be there (see :func:`check_replaceable`).

    Example:
        >>> out = claim_folder("results", "predictions")  # doctest: +SKIP
    """
    path = Path(path)
    check_replaceable(path, what, ignore)
    path.mkdir(parents=True, exist_ok=True)
    if not is_owned(path):
        mark_owned(path, kind)
    return path


_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+(\.old)?\.tmp$")


def _is_temp_name(name: str) -> bool:
    return bool(_TEMP.match(name))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove temporary siblings of ``path`` left by dead processes of this host; returns them.

    Only names of the tool's own pattern are touched, folders only if they carry the marker, and
    never those of a live process or of another host (a shared cluster filesystem).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed, host, prefix = [], _host(), f".{path.name}."
    for entry in path.parent.iterdir():
        m = _TEMP.match(entry.name)
        if (
            not entry.name.startswith(prefix)
            or not m
            or m["host"] != host
            or _pid_alive(int(m["pid"]))
        ):
            continue
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
        elif is_owned(entry):
            shutil.rmtree(entry)
        else:
            continue
        removed.append(entry)
    return removed


def _temp_sibling(path: Path, directory: bool) -> Path:
    prefix, suffix = f".{path.name}.{_host()}-{os.getpid()}.", ".tmp"
    if directory:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    os.unlink(name)
    return Path(name)


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: str, what: str = "folder") -> Iterator[Path]:
    """Yield a fresh marked temporary folder that replaces ``path`` as a whole on success.

    ``path`` must be absent, empty or marked by the tool (checked before and after the work);
    on failure the temporary folder is removed and ``path`` is left as it was.

    Example:
        >>> with atomic_dir("cache/smoke", "patch-cache") as tmp:  # doctest: +SKIP
        ...     (tmp / "meta.json").write_text("{}")
    """
    path = Path(path)
    check_replaceable(path, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = _temp_sibling(path, directory=True)
    mark_owned(tmp, kind)
    try:
        yield tmp
        check_replaceable(path, what)
        if path.exists():
            old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old.tmp")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old)
        else:
            os.rename(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling file path; on success it replaces ``path`` atomically.

    An existing ``path`` is overwritten only inside a folder the tool marked, or with ``replace``
    when the caller has checked that the file is its own (else :class:`OwnershipError`); a folder
    at ``path`` is never replaced (use :func:`atomic_dir`).

    Example:
        >>> with atomic_path("out/predictions.csv") as tmp:  # doctest: +SKIP
        ...     df.to_csv(tmp)
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise OwnershipError(
            f"{path} is a folder; rimnet writes a file there and will not replace a folder"
        )
    if path.exists() or path.is_symlink():
        if not replace and not inside_owned(path):
            raise OwnershipError(
                f"{path} exists and was not written by rimnet; move it away or choose another path"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = _temp_sibling(path, directory=False)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists() and not tmp.is_dir():
            tmp.unlink()


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (same overwrite rules as :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def fingerprint(obj: Any) -> str:
    """Stable SHA-256 of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_signature(path: str | Path) -> dict[str, Any]:
    """Cheap identity of a file for cache fingerprints: resolved path, size and modification
    time."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def lock_for(path: str | Path) -> Path:
    """The lock file that guards building ``path`` (a hidden sibling)."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Exclusive inter-process lock (``filelock``, any OS): parallel sweep jobs and preprocess runs
    that need the same cohort, cache or splits file wait for the first one to build them."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


def safe_load(path: str | Path, what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain values only, never code.

    A file holding anything else (a pickled object, perhaps a payload) or a damaged file is an
    :class:`~rimnet.errors.UnsafeFileError`; the message never suggests loading it unsafely.

    Example:
        >>> state = safe_load("outputs/run/checkpoints/last.ckpt", "checkpoint")  # doctest: +SKIP
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise UnsafeFileError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            f"{what} {path} holds objects other than tensors and plain values; rimnet refuses "
            "to load it (it reads model files with weights_only=True only)"
        ) from exc
    except Exception as exc:  # zip, EOF and magic-number errors of damaged or foreign files
        raise UnsafeFileError(
            f"{what} {path} is damaged or not a PyTorch file ({type(exc).__name__})"
        ) from exc
