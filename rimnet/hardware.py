"""What this machine's processor can do, read from the processor itself (never guessed from the
vendor): native bfloat16 arithmetic decides the CPU trainer's default precision.

No torch import: the configs resolve ``${cpu_precision:}`` before any work starts.
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from pathlib import Path

from rimnet.errors import ConfigError

# Instruction-set extensions that execute bfloat16 dot products natively: AVX512-BF16 (Intel
# Cooper Lake and later, AMD Zen 4 and later), AMX-BF16 (Intel Sapphire Rapids and later) and the
# Arm BF16 extension (Armv8.6; Neoverse V1/N2, Graviton 3, Apple M2 and later).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@cache
def cpu_flags() -> frozenset[str]:
    """The processor's feature flags: ``flags`` (x86) or ``Features`` (Arm) of ``/proc/cpuinfo``
    on Linux, the ``hw.optional`` keys set to 1 on macOS; empty where neither can be read.

    Example:
        >>> isinstance(cpu_flags(), frozenset)
        True
    """
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return frozenset(value.split())
        return frozenset()
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "hw.optional"], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return frozenset()
        on = (line.split(":")[0].strip() for line in out.splitlines() if line.endswith(": 1"))
        return frozenset(k.rsplit(".", 1)[-1].lower().removeprefix("feat_") for k in on)
    return frozenset()


def cpu_name() -> str:
    """The processor's model name (``model name`` of ``/proc/cpuinfo`` on Linux), else the
    architecture (``platform.machine()``).

    Example:
        >>> isinstance(cpu_name(), str)
        True
    """
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the processor computes in bfloat16 natively (see :data:`BF16_FLAGS`).

    Args:
        flags: feature flags to judge (default: this machine's, :func:`cpu_flags`).

    Example:
        >>> native_bf16(frozenset({"avx2", "avx512f", "avx512_bf16"}))
        True
        >>> native_bf16(frozenset({"avx2", "avx512f"}))
        False
    """
    return bool((cpu_flags() if flags is None else flags) & set(BF16_FLAGS))


PRECISION_ENV = "RIMNET_CPU_PRECISION"
# Lightning's precision names (``Trainer(precision=...)``) a CPU run can take.
PRECISIONS = ("64-true", "32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true")


def cpu_precision(flags: frozenset[str] | None = None) -> str:
    """The CPU trainer's default precision: ``bf16-mixed`` where the processor has native
    bfloat16, else ``32-true`` (without it bfloat16 is emulated: ~30x slower convolutions,
    docs/benchmarks.md). The environment variable ``RIMNET_CPU_PRECISION`` sets another default
    for every run on a machine (the test suite pins ``32-true``); ``trainer.precision=...``
    always wins.

    Example:
        >>> cpu_precision(frozenset({"avx512_bf16"})), cpu_precision(frozenset())
        ('bf16-mixed', '32-true')
    """
    if flags is None and os.environ.get(PRECISION_ENV):
        value = os.environ[PRECISION_ENV]
        if value not in PRECISIONS:
            raise ConfigError(
                f"{PRECISION_ENV}={value!r} is not a precision; one of: {', '.join(PRECISIONS)}"
            )
        return value
    return "bf16-mixed" if native_bf16(flags) else "32-true"
