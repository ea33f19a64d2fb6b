"""The ``rimnet`` console script: ``rimnet <stage> ...`` for every stage, ``rimnet --version``.

``prepare``, ``synth``, ``preprocess``, ``train`` and ``evaluate`` are Hydra applications (as
``python -m rimnet.<stage>``: key=value overrides, ``--help``, ``-m`` sweeps); ``export`` and
``predict`` take plain options.
"""

from __future__ import annotations

import argparse
import importlib
import sys


def export_parser() -> argparse.ArgumentParser:
    """The options of ``rimnet export``."""
    ap = argparse.ArgumentParser(
        prog="rimnet export",
        description="Export a model bundle from a training run folder "
        "(python -m rimnet.train) or a nested-CV experiment folder (<sweep>/<experiment> with "
        "fold*/).",
    )
    ap.add_argument("source", help="run folder or CV experiment folder")
    ap.add_argument("bundle", help="output file, e.g. rimnet_phase_flair.pt")
    ap.add_argument(
        "--specificity",
        type=float,
        default=0.95,
        help="operating point of the threshold (default 0.95)",
    )
    return ap


def export_main(argv: list[str]) -> int:
    args = export_parser().parse_args(argv)
    from rimnet.errors import CommandFailed, run_command
    from rimnet.inference.bundle import Bundle, export_bundle

    path = run_command(export_bundle, args.source, args.bundle, args.specificity)
    if isinstance(path, CommandFailed):
        return 2
    b = Bundle.load(path)
    print(
        f"bundle {path}: {b.experiment}, modalities {b.modalities}, {len(b.members)} model(s), "
        f"threshold {b.threshold:.4f} "
        f"({b.threshold_rule})"
    )
    return 0


# Hydra stages: the module whose ``main`` runs the stage (its --help is Hydra's, with examples).
HYDRA_STAGES = {
    "prepare": ("rimnet.prepare.__main__", "scanner images in BIDS -> cohort.csv (§2.2)"),
    "synth": ("rimnet.synth.__main__", "generate a synthetic cohort (dipole-model phantoms)"),
    "preprocess": ("rimnet.preprocess", "cohort.csv -> candidates -> patch cache"),
    "train": ("rimnet.train", "train RimNet: single runs, nested CV jobs, the inter-center study"),
    "evaluate": ("rimnet.evaluate", "Table 3, DeLong tests, patient-wise tables, Figs 3 and 5-10"),
}
COMMANDS = {
    **{name: help_ for name, (_, help_) in HYDRA_STAGES.items()},
    "export": "export a model bundle (fold models + threshold) from training output",
    "predict": "per-lesion rim probabilities, maps and counts for new patients",
    "completion": 'tab completion for bash: eval "$(rimnet completion bash)"',
}
# Bash completion of ``rimnet <command> ...``: commands first, then a Hydra stage's own answer
# (groups, keys, values; Hydra's ``-sc query=bash``) for what follows its name, file names for
# export and predict.
BASH_COMPLETION = r"""_rimnet_complete()
{
    local cur=${COMP_WORDS[COMP_CWORD]}
    if (( COMP_CWORD == 1 )); then
        COMPREPLY=($(compgen -W "COMMANDS --help --version" -- "$cur"))
        return
    fi
    case ${COMP_WORDS[1]} in
        HYDRA_STAGES)
            local rest=${COMP_LINE#*${COMP_WORDS[1]}}
            local choices=$(COMP_LINE="rimnet$rest" COMP_POINT=$((${#rest} + 6)) \
                ${COMP_WORDS[0]} ${COMP_WORDS[1]} -sc query=bash 2>/dev/null)
            COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "$cur"));;
        *)
            COMPREPLY=($(compgen -f -- "$cur"));;
    esac
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _rimnet_complete rimnet
"""


def completion_main(argv: list[str]) -> int:
    """``rimnet completion bash``: the script that ``eval`` installs in the current shell (add
    the line to ~/.bashrc to keep it; zsh users load ``bashcompinit`` first)."""
    usage = (
        "usage: rimnet completion bash\n\n"
        '  eval "$(rimnet completion bash)" installs tab completion of the commands and of each\n'
        "  stage's config groups, choices and keys in this shell (add the line to ~/.bashrc to "
        "keep it;\n  zsh: autoload -U bashcompinit && bashcompinit first)."
    )
    if argv in (["-h"], ["--help"]):
        print(usage)
        return 0
    if argv != ["bash"]:
        print(usage, file=sys.stderr)
        return 2
    script = BASH_COMPLETION.replace("HYDRA_STAGES)", "|".join(HYDRA_STAGES) + ")")
    print(script.replace('"COMMANDS ', '"' + " ".join(COMMANDS) + " "), end="")
    return 0


def usage() -> str:
    from rimnet import __version__

    lines = [f"  {k:10s} {v}" for k, v in COMMANDS.items()]
    return (
        f"rimnet {__version__}: paramagnetic rim lesions in MS (RimNet, Barquero et al. 2020)\n\n"
        "usage: rimnet <command> [arguments]\n       rimnet --version\n\ncommands, in the order "
        "of the pipeline:\n" + "\n".join(lines) + "\n\nrimnet <command> --help explains each; "
        "the Hydra stages take key=value overrides\n(e.g. rimnet train experiment=phase_flair "
        'data=smoke).\nTab completion (bash): eval "$(rimnet completion bash)"'
    )


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``rimnet <command> ...``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--version":
        from rimnet import __version__

        print(f"rimnet {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}\n", file=sys.stderr)
        print(usage())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command in HYDRA_STAGES:
        module = importlib.import_module(HYDRA_STAGES[command][0])
        # Hydra reads its overrides from sys.argv; the module's file as argv[0] lets Lightning's
        # DDP launcher start the same stage again in its worker processes.
        sys.argv = [str(module.__file__), *rest]
        module.main()
        return 0
    if command == "export":
        return export_main(rest)
    if command == "completion":
        return completion_main(rest)
    from rimnet.predict import main as predict_main

    return predict_main(rest)


if __name__ == "__main__":
    sys.exit(main())
