"""Checks of a Hydra command line before Hydra starts: a setting that does not exist, and a run or
sweep folder that is not rimnet's. Each returns the ``error:`` text, or None when all is well; the
entry point prints it and exits with 2 before Hydra writes anything."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from rimnet.config import CONFIG_DIR
from rimnet.errors import OwnershipError

# What Hydra itself writes into a sweep folder (the job folders are checked by the jobs).
SWEEP_FILES = frozenset({"multirun.yaml", "summary.csv"})


def _split(override: str) -> tuple[str, str, str]:
    key, sep, value = override.partition("=")
    return key.strip(), sep, value


def config_dirs(argv: list[str]) -> list[Path]:
    """The config folders Hydra will search: rimnet's, then those of ``--config-dir``/``-cd`` and
    of ``hydra.searchpath=[file://...]`` (a user's own experiments and models)."""
    dirs = [Path(CONFIG_DIR)]
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
        key, sep, value = _split(arg)
        if sep and key.lstrip("+") == "hydra.searchpath":
            for entry in value.strip("[]").split(","):
                entry = entry.strip().strip("'\"")
                if entry.startswith("file://"):
                    dirs.append(Path(entry[len("file://") :]))
    return [d for d in dirs if d.is_dir()]


def group_choices(argv: list[str], group: str) -> list[str]:
    """The choices of a config group (``experiment``, ``model``, ...) in every searched folder."""
    return sorted({p.stem for d in config_dirs(argv) for p in (d / group).glob("*.yaml")})


def _groups(argv: list[str]) -> set[str]:
    groups = {"hydra/launcher"}
    for conf in config_dirs(argv):
        groups |= {str(p.relative_to(conf)) for p in conf.rglob("*") if p.is_dir()}
    return groups


def _first_choice(value: str) -> str:
    return value.strip("[]").split(",")[0].strip()


def _leaf_paths(node: object, prefix: str = "") -> list[str]:
    if isinstance(node, DictConfig):
        out = []
        for key in node.keys():
            child = node._get_node(key)
            out += _leaf_paths(child, f"{prefix}{key}.") or [f"{prefix}{key}"]
        return out
    return []


def _has_key(cfg: DictConfig, dotted: str) -> bool:
    node: object = cfg
    for part in dotted.split("."):
        if isinstance(node, DictConfig) and part in node.keys():
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            return False
    return True


def unknown_key(overrides: list[str], config_name: str) -> str | None:
    """The error for ``key=value`` whose key the composed config does not have (Hydra would end
    with "not in struct"), naming the setting the user probably meant.

    Example:
        >>> unknown_key(["data.batch_size=-1"], "train")  # doctest: +SKIP
        'data.batch_size is not a setting (did you mean data.loader.batch_size?) ...'
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    groups = _groups(overrides)
    chosen, values = [], []
    for override in overrides:
        key, sep, value = _split(override)
        if sep and key.lstrip("+") == "hydra.searchpath":
            chosen.append(override)
        if not sep or key.startswith(("+", "~", "hydra.", "hydra/")) or "@" in key:
            continue
        if key in groups:
            chosen.append(f"{key}={_first_choice(value)}")
        else:
            values.append(key)
    if not values:
        return None
    extra = [d for d in config_dirs(overrides)[1:] if str(d) not in str(chosen)]
    if extra:  # --config-dir: searched as well
        listed = ",".join(f"file://{d.resolve()}" for d in extra)
        chosen = [c for c in chosen if not c.lstrip("+").startswith("hydra.searchpath")]
        chosen.append(f"hydra.searchpath=[{listed}]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name, overrides=chosen)
    except Exception:  # a bad choice: Hydra's own message says which
        return None
    finally:
        GlobalHydra.instance().clear()
    for key in values:
        if _has_key(cfg, key):
            continue
        leaves = _leaf_paths(cfg)
        last = key.split(".")[-1]
        near = [p for p in leaves if p.split(".")[-1] == last] or difflib.get_close_matches(
            key, leaves, n=2
        )
        hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        return (
            f"{key} is not a setting of rimnet's {config_name} config{hint}; --cfg job shows "
            f"every setting, and +{key}=... adds a new one on purpose"
        )
    return None


def _override(overrides: list[str], key: str) -> str | None:
    for override in overrides:
        k, sep, value = _split(override)
        if sep and k == key and "${" not in value:
            return value
    return None


def _first_link(root: Path, depth: int) -> Path | None:
    """The first symbolic link within ``depth`` levels under ``root`` (W&B's own folders left
    out), found without following links."""
    for dirpath, dirnames, filenames in os.walk(root):
        level = len(Path(dirpath).relative_to(root).parts)
        for name in sorted(dirnames + filenames):
            if (Path(dirpath) / name).is_symlink():
                return Path(dirpath) / name
        dirnames[:] = [] if level + 1 >= depth else [d for d in dirnames if d != "wandb"]
    return None


def run_folder_problem(overrides: list[str], multirun: bool) -> str | None:
    """The error for a ``hydra.run.dir`` that is not a new, empty or rimnet run folder, a run
    folder that another rimnet process is writing, or a ``hydra.sweep.dir`` that holds files of
    the user's (Hydra writes into both before rimnet starts)."""
    from rimnet.io import check_replaceable, lock_in_use

    if multirun:
        sweep = _override(overrides, "hydra.sweep.dir")
        if sweep is None or not Path(sweep).is_dir() or Path(sweep).is_symlink():
            return (
                None
                if sweep is None or not Path(sweep).is_symlink()
                else (
                    f"sweep folder {sweep} is a symbolic link; rimnet does not write through links"
                )
            )
        link = _first_link(Path(sweep), depth=3)
        if link is not None:
            return (
                f"sweep folder (hydra.sweep.dir) {sweep} holds a symbolic link, {link}; rimnet "
                "never writes or deletes through links: remove the link"
            )
        foreign = sorted(
            e.name
            for e in Path(sweep).iterdir()
            if not e.is_dir() and e.name not in SWEEP_FILES and not e.name.startswith(".")
        )
        if foreign:
            return (
                f"sweep folder (hydra.sweep.dir) {sweep} holds files rimnet did not write "
                f"({', '.join(foreign[:5])}); choose a new or empty folder"
            )
        return None
    run = _override(overrides, "hydra.run.dir")
    if run is None:
        return None
    try:
        check_replaceable(
            run, "training-run", "run folder (hydra.run.dir)", frozenset({".hydra", "train.log"})
        )
    except OwnershipError as exc:
        return str(exc)
    if lock_in_use(run):
        return (
            f"run folder {run} is in use by another rimnet train; wait for it to finish or "
            "choose another hydra.run.dir"
        )
    return None


HYDRA_HELP = """Hydra runs rimnet {stage}; see https://hydra.cc for more.

Flags:
  --help, -h                  rimnet {stage}'s help (config groups, examples)
  --hydra-help                this help
  --cfg, -c job|hydra|all     show the config instead of running (--resolve: resolved)
  --package, -p PACKAGE       the config package to show
  --multirun, -m              a sweep: one job per combination of comma-separated values
  --config-dir, -cd DIR       add DIR to the config search path (your own config files)
  --info, -i                  the config search path, defaults and plugins
  --shell-completion, -sc     answers rimnet's completion script; install that with
                                eval "$(rimnet completion bash)"
                              (zsh: autoload -U bashcompinit && bashcompinit first)
"""


def hydra_help(argv: list[str], stage: str) -> bool:
    """Print rimnet's version of ``--hydra-help`` (Hydra's own tells users to run a file inside
    site-packages to install completion) when asked; returns whether it was."""
    if "--hydra-help" not in argv:
        return False
    print(HYDRA_HELP.format(stage=stage), end="")
    return True


def completing(argv: list[str]) -> bool:
    """Whether the command line asks Hydra for shell completion (``-sc``), which the checks
    before Hydra must leave alone."""
    return any(a in ("-sc", "--shell-completion") for a in argv)


def start(hydra_main: Callable[[], object], config_name: str) -> None:
    """Run a Hydra stage after :func:`unknown_key` found every ``key=value`` of the command line
    in its config (else ``error:`` and exit 2 before Hydra starts)."""
    if hydra_help(sys.argv[1:], config_name):
        return
    problem = None if completing(sys.argv[1:]) else unknown_key(sys.argv[1:], config_name)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    hydra_main()
