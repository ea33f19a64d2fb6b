"""The errors a user can fix, and how every entry point reports them: ``error: ...``, exit code 2.

Every error class here names the patient, file, folder or config key at fault in its message. An
entry point wraps its main function with :func:`exit_on_error`, so a bad input never ends in a
traceback.
"""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class RimnetError(ValueError):
    """Bad input or a refused action; the message says what and where."""


class OwnershipError(RimnetError):
    """The tool was asked to replace or write into a folder or file it did not create."""


class UnsafeFileError(RimnetError):
    """A checkpoint or bundle that holds more than tensors and plain values, or is damaged."""


class ConfigError(RimnetError):
    """A config value out of its allowed range (the message names key, value and what is
    allowed)."""


def error_message(exc: BaseException) -> str | None:
    """The ``error:`` text of an exception the user can act on, or None for a bug.

    A :class:`RimnetError` (also where a config resolver raised it), a missing mandatory config
    value, an object the config cannot build
    (Hydra's ``InstantiationException``, e.g. a trainer option Lightning refuses), or an
    operating-system error on a file (disk full, read-only file system, name too long, ...).
    """
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    if isinstance(exc, RimnetError):
        return str(exc)
    inner = exc.__cause__ or exc.__context__
    if isinstance(exc, InterpolationResolutionError) and isinstance(inner, RimnetError):
        return str(inner)  # raised inside a resolver, e.g. ${cpu_precision:}
    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", None) or str(exc).split(":")[-1].strip()
        return f"the setting {key}= is required and has no default (see --help)"
    from hydra.errors import InstantiationException

    if isinstance(exc, InstantiationException):
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        return "the config cannot be built: " + "; ".join(lines)
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        where = f" {exc.filename}" if exc.filename else ""
        return (
            f"the file system refused{where}: {exc.strerror or exc} ({name}); what this command "
            "had begun was removed, nothing else was changed"
        )
    return None


def exit_on_error(fn: F) -> F:
    """Decorator: run ``fn`` as one command (:func:`rimnet.io.command_scope`) and turn an error
    the user can act on (:func:`error_message`) into ``error: <message>`` on stderr and exit
    code 2.

    Example:
        >>> @exit_on_error
        ... def main() -> None:
        ...     raise RimnetError("patient p1: lesion_mask file m.nii.gz does not exist")
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        code = run_command(fn, *args, **kwargs)
        if isinstance(code, CommandFailed):
            sys.exit(2)
        return code

    return wrapper  # type: ignore[return-value]


class CommandFailed:
    """What :func:`run_command` returns when the command failed with an ``error:`` line."""


def run_command(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` as one command; an error the user can act on is printed as ``error: ...`` and
    a :class:`CommandFailed` is returned instead of raising."""
    from rimnet.io import command_scope

    try:
        with command_scope():
            return fn(*args, **kwargs)
    except Exception as exc:
        message = error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return CommandFailed()
