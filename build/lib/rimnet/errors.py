"""The errors a user can fix, and how every entry point reports them: ``error: ...``, exit code 2.

Every error class here names the patient, file, folder or config key at fault in its message. An
entry point wraps its main function with :func:`exit_on_error`, so a bad input never ends in a
traceback.
"""

from __future__ import annotations

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


def _message(exc: BaseException) -> str:
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", None) or str(exc).split(":")[-1].strip()
        return f"the setting {key}= is required and has no default (see --help)"
    return str(exc)


def exit_on_error(fn: F) -> F:
    """Decorator: turn :class:`RimnetError` (and a missing mandatory config value) into
    ``error: <message>`` on stderr and exit code 2.

    Example:
        >>> @exit_on_error
        ... def main() -> None:
        ...     raise RimnetError("patient p1: lesion_mask file m.nii.gz does not exist")
    """
    from omegaconf.errors import MissingMandatoryValue

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RimnetError, MissingMandatoryValue) as exc:
            print(f"error: {_message(exc)}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
