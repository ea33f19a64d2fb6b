"""Safe writing shared by every stage: nothing half-written after a crash, nothing of the user's
lost.

Rules (docs/safety.md):

- Every folder the tool writes carries an ownership marker, :data:`OWNER_MARKER`, that names its
  kind (:data:`KINDS`: synthetic cohort, prepared cohort, patch cache, training run, predictions,
  report, ...) and the stage that wrote it. A stage writes into or replaces only a folder of its
  own kind (or a new or empty one), never one that holds the current command's inputs
  (:func:`protected`). Anything else is an :class:`~rimnet.errors.OwnershipError` naming the path.
- A folder written as a whole (:func:`atomic_dir`) lists what it holds in its marker; it is
  replaced only while it holds nothing else, so a user's file inside it is never deleted.
- Writes go to a temporary sibling whose name carries a checksum of itself; a stale one (its
  process on this host is gone) is removed only when the checksum proves it was rimnet's.
- Walks, globs and deletes work on ``lstat``: a symbolic link is never followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rimnet.errors import OwnershipError, UnsafeFileError

OWNER_MARKER = ".rimnet-owned"
# kind -> (what it is, the stage that writes it)
KINDS: dict[str, tuple[str, str]] = {
    "synthetic-cohort": ("a synthetic cohort", "rimnet synth"),
    "synthetic-patient": ("a synthetic patient's folder", "rimnet synth"),
    "prepared-cohort": ("a prepared cohort", "rimnet prepare"),
    "prepared-patient": ("a prepared patient's folder", "rimnet prepare"),
    "patch-cache": ("a patch cache", "rimnet preprocess"),
    "training-run": ("a training run or nested job folder", "rimnet train"),
    "ensemble-predictions": ("an ensemble's predictions", "rimnet train"),
    "predictions": ("a predictions folder", "rimnet predict"),
    "patient-predictions": ("a patient's predictions", "rimnet predict"),
    "evaluation-report": ("an evaluation report", "rimnet evaluate"),
}
_PROTECTED: set[Path] = set()
_HELD: dict[Path, Any] = {}  # folder -> the FileLock this command holds on it
_CLAIMED: list[tuple[Path, Path]] = []  # (claimed folder, the topmost folder created for it)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_real_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_marker(folder: str | Path) -> dict | None:
    """The marker of ``folder`` (kind, stage, version, files), or None if it carries none."""
    marker = Path(folder) / OWNER_MARKER
    if not _is_real_dir(Path(folder)) or not _is_real_file(marker):
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {"kind": "unknown"}
    return data if isinstance(data, dict) else {"kind": "unknown"}


def is_owned(folder: str | Path) -> bool:
    """Whether ``folder`` is a real directory carrying the ownership marker."""
    return read_marker(folder) is not None


def owner_kind(folder: str | Path) -> str | None:
    """The kind named by ``folder``'s marker (``unknown`` for a marker without one)."""
    marker = read_marker(folder)
    return None if marker is None else str(marker.get("kind") or "unknown")


def inside_owned(path: str | Path) -> bool:
    """Whether ``path`` lies inside a folder that carries the ownership marker."""
    return any(is_owned(p) for p in Path(path).absolute().parents)


def mark_owned(folder: str | Path, kind: str, files: list[str] | None = None) -> None:
    """Write the ownership marker into ``folder``: its kind, the stage that wrote it, the rimnet
    version and, for a folder written as a whole, the list of what it holds."""
    from rimnet import __version__

    if kind not in KINDS:
        raise ValueError(f"unknown folder kind {kind!r}")
    info: dict[str, Any] = {
        "tool": "rimnet",
        "kind": kind,
        "stage": KINDS[kind][1],
        "version": __version__,
    }
    if files is not None:
        info["files"] = files
    (Path(folder) / OWNER_MARKER).write_text(json.dumps(info) + "\n")


def _describe(kind: str) -> str:
    return KINDS.get(kind, ("a folder of an older rimnet that does not say its kind", "rimnet"))[0]


@contextlib.contextmanager
def protected(paths: Iterable[str | Path | None]) -> Iterator[None]:
    """While inside, the given inputs of the current command are protected: no folder that holds
    one is replaced or claimed, and no input file is overwritten.

    Example:
        >>> with protected(["cohort.csv"]):  # doctest: +SKIP
        ...     build_cache("cohort.csv", "cache")
    """
    before = set(_PROTECTED)
    _PROTECTED.update(Path(os.path.abspath(p)) for p in paths if p is not None and str(p))
    try:
        yield
    finally:
        _PROTECTED.intersection_update(before)


def _held_input(folder: Path) -> Path | None:
    root = Path(os.path.abspath(folder))
    for p in sorted(_PROTECTED):
        if p == root or root in p.parents:
            return p
    return None


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """One command's life: its protected inputs are forgotten afterwards, and on failure the
    folders it created that still hold nothing but their marker are removed again (a failed
    command leaves nothing behind)."""
    _PROTECTED.clear()
    _CLAIMED.clear()
    try:
        yield
    except BaseException:
        discard_empty_claims()
        raise
    finally:
        _PROTECTED.clear()
        _CLAIMED.clear()
        release_locks()


def discard_empty_claims() -> None:
    """Remove the folders this command created (:func:`claim_folder`) that hold only the
    marker."""
    for folder, top in reversed(_CLAIMED):
        with contextlib.suppress(OSError):
            if _is_real_dir(folder) and {e.name for e in os.scandir(folder)} <= {OWNER_MARKER}:
                if _lexists(folder / OWNER_MARKER):
                    (folder / OWNER_MARKER).unlink()
                while True:
                    folder.rmdir()
                    if folder == top:
                        break
                    folder = folder.parent
    _CLAIMED.clear()


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` that does not exist yet (None if ``path`` exists)."""
    path = Path(os.path.abspath(path))
    if _lexists(path):
        return None
    while not _lexists(path.parent):
        path = path.parent
    return path


def walk_entries(folder: str | Path) -> list[str]:
    """Every entry under ``folder`` as a relative POSIX path (folders end in ``/``), found without
    following links; the marker is left out."""
    folder, out = Path(folder), []

    def visit(d: Path, rel: str) -> None:
        with os.scandir(d) as it:
            for e in it:
                name = f"{rel}{e.name}"
                if not rel and e.name == OWNER_MARKER:
                    continue
                if e.is_dir(follow_symlinks=False):
                    out.append(name + "/")
                    visit(Path(e.path), name + "/")
                else:
                    out.append(name)

    visit(folder, "")
    return sorted(out)


def _unknown_entries(path: Path, marker: dict, ignore: frozenset[str]) -> list[str]:
    """Entries of an owned folder that its marker does not list (all of them when it lists
    nothing: an incremental folder or an older marker)."""
    if "files" not in marker:
        return []
    listed = set(marker["files"])
    return [
        e
        for e in walk_entries(path)
        if e not in listed and e.split("/")[0] not in ignore and not _is_temp_name(e.split("/")[-1])
    ]


def _foreign_entries(folder: Path, ignore: frozenset[str]) -> list[str]:
    return sorted(
        e.name for e in os.scandir(folder) if e.name not in ignore and not _is_temp_name(e.name)
    )


def _listing(names: list[str]) -> str:
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def check_replaceable(
    path: str | Path,
    kind: str,
    what: str = "folder",
    ignore: frozenset[str] = frozenset(),
    whole: bool = False,
) -> None:
    """Raise :class:`OwnershipError` unless ``path`` may be written as a folder of ``kind``.

    It may if it is absent, empty, or a folder the tool marked as ``kind`` that holds none of the
    command's inputs; with ``whole`` (the folder is replaced as a whole) it must also hold nothing
    its marker does not list. ``ignore`` names entries that do not count (what Hydra wrote into a
    run folder just before).
    """
    path = Path(path)
    if path.is_symlink():
        raise OwnershipError(
            f"{what} {path} is a symbolic link; rimnet does not write through links: choose a "
            f"real folder"
        )
    if not _lexists(path):
        return
    if not _is_real_dir(path):
        raise OwnershipError(
            f"{what} {path} exists and is a file, not a folder; choose an empty or new folder"
        )
    held = _held_input(path)
    if held is not None:
        raise OwnershipError(
            f"{what} {path} holds this command's input {held}; rimnet never writes over its own "
            "inputs: choose another folder"
        )
    marker = read_marker(path)
    if marker is None:
        foreign = _foreign_entries(path, ignore)
        if foreign:
            raise OwnershipError(
                f"{what} {path} exists and was not written by rimnet (it holds "
                f"{_listing(foreign)}); choose an empty or new folder"
            )
        return
    links = sorted(e.name for e in os.scandir(path) if e.is_symlink())
    if links:
        raise OwnershipError(
            f"{what} {path} holds a symbolic link, {links[0]}; rimnet never writes or deletes "
            "through links: remove the link or choose another folder"
        )
    found = str(marker.get("kind") or "unknown")
    if found != kind:
        raise OwnershipError(
            f"{what} {path} is {_describe(found)} (written by "
            f"{marker.get('stage') or KINDS.get(found, ('', 'rimnet'))[1]}), not "
            f"{_describe(kind)}; {KINDS[kind][1]} writes only into a folder of its own kind: "
            "choose another folder"
        )
    if whole:
        if "files" not in marker:
            raise OwnershipError(
                f"{what} {path} was written by an older rimnet that did not list its files, so "
                "rimnet cannot tell them from yours; remove it yourself or choose another folder"
            )
        unknown = _unknown_entries(path, marker, ignore)
        if unknown:
            raise OwnershipError(
                f"{what} {path} holds files rimnet did not write ({_listing(unknown)}); move them "
                "away or choose another folder"
            )


def claim_folder(
    path: str | Path, kind: str, what: str = "output folder", ignore: frozenset[str] = frozenset()
) -> Path:
    """Create ``path`` (or accept it if empty or already a folder of ``kind``) and mark it.

    ``ignore`` names entries that may already be there (see :func:`check_replaceable`).

    Example:
        >>> out = claim_folder("results", "predictions")  # doctest: +SKIP
    """
    path = Path(path)
    check_replaceable(path, kind, what, ignore)
    top = _first_missing(path)
    if top is not None:
        _CLAIMED.append((Path(os.path.abspath(path)), top))
    path.mkdir(parents=True, exist_ok=True)
    if not is_owned(path):
        mark_owned(path, kind)
    return path


_TEMP = re.compile(
    r"^\.(?P<name>.+)\.rimnet-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-(?P<rand>[a-z0-9]{8})"
    r"-(?P<check>[0-9a-f]{12})(?P<old>\.old)?\.tmp$"
)


def _checksum(name: str, host: str, pid: str, rand: str) -> str:
    return hashlib.sha256(f"rimnet-temp|{name}|{host}|{pid}|{rand}".encode()).hexdigest()[:12]


def _temp_name(name: str, rand: str) -> str:
    host, pid = _host(), str(os.getpid())
    return f".{name}.rimnet-{host}-{pid}-{rand}-{_checksum(name, host, pid, rand)}.tmp"


def _temp_match(name: str) -> re.Match | None:
    """The parts of a temporary name of the tool's, or None; the checksum must prove it."""
    m = _TEMP.match(name)
    if m and m["check"] == _checksum(m["name"], m["host"], m["pid"], m["rand"]):
        return m
    return None


def _is_temp_name(name: str) -> bool:
    return _temp_match(name) is not None


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

    Only names whose checksum proves they are the tool's are touched, plain files and marked
    folders only (never a link), and never those of a live process or of another host (a shared
    cluster filesystem).
    """
    path = Path(path)
    if not _is_real_dir(path.parent):
        return []
    removed, host = [], _host()
    for entry in os.scandir(path.parent):
        m = _temp_match(entry.name)
        if not m or m["name"] != path.name or m["host"] != host or _pid_alive(int(m["pid"])):
            continue
        target = Path(entry.path)
        if entry.is_file(follow_symlinks=False):
            target.unlink()
        elif entry.is_dir(follow_symlinks=False) and is_owned(target):
            shutil.rmtree(target)
        else:
            continue
        removed.append(target)
    return removed


def _temp_sibling(path: Path, directory: bool) -> Path:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    for _ in range(100):
        rand = "".join(alphabet[b % len(alphabet)] for b in os.urandom(8))
        tmp = path.parent / _temp_name(path.name, rand)
        try:
            if directory:
                os.mkdir(tmp)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                os.unlink(tmp)
        except FileExistsError:
            continue
        return tmp
    raise OSError(f"cannot create a temporary name beside {path}")


def _old_name(tmp: Path) -> Path:
    return tmp.with_name(tmp.name[: -len(".tmp")] + ".old.tmp")


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: str, what: str = "folder") -> Iterator[Path]:
    """Yield a fresh marked temporary folder that replaces ``path`` as a whole on success.

    ``path`` must be absent, empty, or a folder of ``kind`` holding only what its marker lists
    (checked before and after the work); on success the marker lists what the new folder holds;
    on failure the temporary folder is removed and ``path`` is left as it was.

    Example:
        >>> with atomic_dir("cache/smoke", "patch-cache") as tmp:  # doctest: +SKIP
        ...     (tmp / "meta.json").write_text("{}")
    """
    path = Path(path)
    check_replaceable(path, kind, what, whole=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = _temp_sibling(path, directory=True)
    mark_owned(tmp, kind)
    try:
        yield tmp
        mark_owned(tmp, kind, walk_entries(tmp))
        check_replaceable(path, kind, what, whole=True)
        if _lexists(path):
            old = _old_name(tmp)
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old)
        else:
            os.rename(tmp, path)
    finally:
        if _is_real_dir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling file path; on success it replaces ``path`` atomically.

    An existing ``path`` is overwritten only inside a folder the tool marked, or with ``replace``
    when the caller has checked that the file is its own (else :class:`OwnershipError`), and never
    when it is an input of the current command; a folder at ``path`` is never replaced (use
    :func:`atomic_dir`).

    Example:
        >>> with atomic_path("out/predictions.csv") as tmp:  # doctest: +SKIP
        ...     df.to_csv(tmp)
    """
    path = Path(path)
    if _is_real_dir(path):
        raise OwnershipError(
            f"{path} is a folder; rimnet writes a file there and will not replace a folder"
        )
    if _lexists(path):
        if path.is_symlink():
            raise OwnershipError(f"{path} is a symbolic link; rimnet does not write through links")
        if Path(os.path.abspath(path)) in _PROTECTED:
            raise OwnershipError(
                f"{path} is an input of this command; rimnet will not overwrite it"
            )
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
        if _is_real_file(tmp):
            tmp.unlink()


def safe_glob(folder: str | Path, pattern: str) -> list[Path]:
    """``folder.glob(pattern)`` that never enters a symbolic link: every part of the pattern
    matches real folders only, and the last part matches plain files only.

    Example:
        >>> safe_glob("job", "inner*/checkpoints/*.ckpt")  # doctest: +SKIP
    """
    import fnmatch

    parts = pattern.split("/")
    level = [Path(folder)] if _is_real_dir(Path(folder)) else []
    for i, part in enumerate(parts):
        last, nxt = i == len(parts) - 1, []
        for d in level:
            with os.scandir(d) as it:
                for e in it:
                    if not fnmatch.fnmatchcase(e.name, part):
                        continue
                    ok = (
                        e.is_file(follow_symlinks=False)
                        if last
                        else e.is_dir(follow_symlinks=False)
                    )
                    if ok:
                        nxt.append(Path(e.path))
        level = nxt
    return sorted(level)


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


def lock_in_use(path: str | Path) -> bool:
    """Whether another process holds the lock of ``path`` (:func:`hold_lock`)."""
    from filelock import FileLock, Timeout

    lock_file = lock_for(Path(os.path.abspath(path)))
    if not lock_file.parent.is_dir() or Path(os.path.abspath(path)) in _HELD:
        return False
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def hold_lock(path: str | Path, what: str) -> None:
    """Take the lock of ``path`` until the command ends (:func:`command_scope`); another process
    that holds it is an :class:`OwnershipError` (two commands never write one folder)."""
    from filelock import FileLock, Timeout

    key = Path(os.path.abspath(path))
    if key in _HELD:
        return
    key.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_for(key)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise OwnershipError(
            f"{what} {path} is in use by another rimnet process; wait for it to finish or choose "
            "another folder"
        ) from None
    _HELD[key] = lock


def release_locks() -> None:
    """Release what :func:`hold_lock` took."""
    for lock in _HELD.values():
        lock.release()
    _HELD.clear()


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Exclusive inter-process lock (``filelock``, any OS): parallel sweep jobs and preprocess runs
    that need the same cohort, cache or splits file wait for the first one to build them."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


# A model file is a zip archive of stored (uncompressed) tensors; one whose members would expand
# far beyond its size on disk is refused before anything is read from it.
MAX_EXPANSION, MAX_MODEL_BYTES = 20, 64 * 2**30


def check_archive(path: Path, what: str) -> None:
    """Refuse a file that is neither a PyTorch zip archive nor a legacy pickle, or an archive
    whose declared sizes would expand beyond :data:`MAX_EXPANSION` × its size (a zip bomb)."""
    import zipfile

    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] != b"PK":
        if head[:1] == b"\x80":  # the legacy (pre-zip) pickle format of torch.save
            return
        raise UnsafeFileError(
            f"{what} {path} is damaged or not a PyTorch file (neither a zip archive nor a "
            "pickle): give a .ckpt or .pt that rimnet or Lightning wrote"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            declared = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnsafeFileError(
            f"{what} {path} is damaged or not a PyTorch file ({type(exc).__name__})"
        ) from exc
    size = path.stat().st_size
    if declared > MAX_MODEL_BYTES or declared > MAX_EXPANSION * size + 2**20:
        raise UnsafeFileError(
            f"{what} {path} declares {declared / 2**20:.0f} MiB of content in a "
            f"{size / 2**20:.1f} MiB file (a compressed archive, not a PyTorch file); rimnet "
            "refuses to read it"
        )


def safe_load(path: str | Path, what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain values only, never code.

    A file holding anything else (a pickled object, perhaps a payload), a damaged file, a file of
    another format or an archive that would expand far beyond its size is an
    :class:`~rimnet.errors.UnsafeFileError`; the message never suggests loading it unsafely.

    Example:
        >>> state = safe_load("outputs/run/checkpoints/last.ckpt", "checkpoint")  # doctest: +SKIP
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise UnsafeFileError(f"{what} {path} does not exist")
    check_archive(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise UnsafeFileError(
                f"{what} {path} is damaged or not a PyTorch file (UnpicklingError)"
            ) from exc
        raise UnsafeFileError(
            f"{what} {path} holds objects other than tensors and plain values; rimnet refuses "
            "to load it (it reads model files with weights_only=True only)"
        ) from exc
    except Exception as exc:  # zip, EOF and magic-number errors of damaged or foreign files
        raise UnsafeFileError(
            f"{what} {path} is damaged or not a PyTorch file ({type(exc).__name__})"
        ) from exc
