"""Every rimnet command shown in the README and docs/ parses: the Hydra stages print their config
(``--cfg job``; a sweep is checked with the first value of each swept key), export and predict
parse their options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
HYDRA = ("prepare", "synth", "preprocess", "train", "evaluate")


def shown_commands() -> list[tuple[str, str]]:
    """(page, command) for each ``rimnet ...`` line of a bash block (continuations joined, comments
    and ``[optional]`` parts dropped, ``<placeholders>`` filled in; lines with ``...`` elisions
    skipped)."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            text = re.sub(r"\\\n\s*", " ", block)
            for line in text.splitlines():
                line = re.sub(r"\s#.*$", "", line).strip()
                line = re.sub(r"\s\[[^\]]*\]", "", line)  # [--tta], [wandb=true] optional parts
                if line.startswith("rimnet ") and "..." not in line:
                    found.append((page.name, re.sub(r"<[^>]+>", "x", line)))  # <time>: a value
    return found


def as_single_job(args: list[str]) -> list[str]:
    """A sweep's first job: ``-m`` dropped and each ``key=a,b`` reduced to ``key=a``."""
    out = []
    for a in args:
        if a in ("-m", "--multirun"):
            continue
        key, sep, value = a.partition("=")
        if sep and "," in value and not value.startswith("["):
            a = f"{key}={value.split(',')[0]}"
        out.append(a)
    return out


COMMANDS = shown_commands()


def test_the_docs_show_commands_of_every_stage():
    stages = {shlex.split(c)[1] for _, c in COMMANDS}
    assert set(HYDRA) | {"export", "predict"} <= stages


@pytest.mark.parametrize("page, command", COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_a_shown_command_parses(page, command, tmp_path, monkeypatch, capsys):
    from rimnet.cli import export_parser, main
    from rimnet.predict import build_parser

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RIMNET_ROOT", str(tmp_path))
    words = shlex.split(command)[1:]
    stage, args = words[0], words[1:]
    if stage in HYDRA:
        try:
            code = main([stage, *as_single_job(args), "--cfg", "job"])
        except SystemExit as exc:
            code = exc.code
        assert code in (0, None), f"{page}: {command}\n{capsys.readouterr().err[-1500:]}"
    elif stage in ("export", "predict"):
        parser = export_parser() if stage == "export" else build_parser()
        parser.parse_args(args)  # an unknown option or a missing argument exits 2
    else:
        assert stage in ("completion",) or stage.startswith("-"), f"{page}: {command}"
