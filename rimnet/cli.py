"""The ``rimnet`` console script: ``rimnet predict ...`` and ``rimnet export ...``.

Training, preprocessing, synthesis and evaluation are Hydra applications:
``python -m rimnet.train``, ``python -m rimnet.preprocess``, ``python -m rimnet.synth``,
``python -m rimnet.evaluate`` (each with ``--help``).
"""

from __future__ import annotations

import argparse
import sys


def export_main(argv: list[str]) -> int:
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
    args = ap.parse_args(argv)
    from rimnet.errors import RimnetError
    from rimnet.inference.bundle import Bundle, export_bundle

    try:
        path = export_bundle(args.source, args.bundle, args.specificity)
    except RimnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    b = Bundle.load(path)
    print(
        f"bundle {path}: {b.experiment}, modalities {b.modalities}, {len(b.members)} model(s), "
        f"threshold {b.threshold:.4f} "
        f"({b.threshold_rule})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {
        "predict": "per-lesion rim probabilities, maps and counts for new patients",
        "export": "export a model bundle",
    }
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(
            "usage: rimnet {predict,export} ...\n\n"
            + "\n".join(f"  {k:8s} {v}" for k, v in commands.items())
            + "\n\nrimnet <command> --help explains each."
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "export":
        return export_main(argv[1:])
    from rimnet.predict import main as predict_main

    return predict_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
