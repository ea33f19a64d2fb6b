"""``rimnet predict`` / ``python -m rimnet.predict``: per-lesion rim probabilities for new patients.

One patient:
    rimnet predict --bundle rimnet.pt --phase phase.nii.gz --flair flair.nii.gz \\
                   --lesion-mask lesions.nii.gz [--anatomy aseg.nii.gz] --out results/ [--id pat01]
Any modality by the name the bundle gives it (--phase, --t2star and --flair are shortcuts):
    rimnet predict --bundle qsm.pt --image qsm=qsm.nii.gz --image flair=flair.nii.gz ...
Many patients (the data contract's cohort.csv; rim annotations are not needed):
    rimnet predict --bundle rimnet.pt --cohort cohort.csv --out results/
The lesion under a point ("the expert clicks the lesion", §4 of the paper):
    rimnet predict ... --at 101 87 40          (voxel indices)   or   --at -12.5 3.0 20.1 --mm

Writes per patient lesions.csv, candidates.nii.gz (1 rim-, 2 rim+, 3 excluded), probability.nii.gz
and summary.json (and report.html with --report); for a cohort also lesions_all.csv, patients.csv
and report.html; --wandb logs the report's pictures to W&B. A patient that fails is listed
in failures.csv with its error; the others are written, and the exit code is 2. --out must be new,
empty, or a folder rimnet wrote before.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from tqdm.auto import tqdm

from rimnet.data.cohort import (
    MODALITIES,
    CohortError,
    check_patient_id,
    cohort_files,
    read_cohort,
)
from rimnet.data.contract import modality_problem
from rimnet.errors import CommandFailed, RimnetError, run_command
from rimnet.inference.predictor import (
    PatientResult,
    Predictor,
    lesion_at,
    patient_folder,
    write_patient,
)
from rimnet.io import atomic_path, check_replaceable, claim_folder, protected

if TYPE_CHECKING:
    from rimnet.inference.wandb_log import PredictLog


def build_parser(prog: str = "rimnet predict") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bundle", required=True, help="model bundle (.pt) from `rimnet export`")
    src = ap.add_argument_group(
        "input: one patient's NIfTI files (co-registered, 3D-EPI space), or --cohort"
    )
    for m in MODALITIES:
        src.add_argument(
            f"--{m}", help=f"{m} image (needed if the bundle uses {m}; = --image {m}=PATH)"
        )
    src.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="an image by its modality name in the bundle (e.g. --image qsm=qsm.nii.gz); "
        "repeat for each; `rimnet export` prints a bundle's names, and a missing one is named",
    )
    src.add_argument("--lesion-mask", help="automated lesion segmentation (binary or labels)")
    src.add_argument(
        "--anatomy",
        help="optional anatomy label map for the location column: the framework's codes "
        "(docs/data-contract.md) or a FreeSurfer aseg/aparc+aseg in NIfTI, told apart by their "
        "labels",
    )
    src.add_argument(
        "--anatomy-format",
        choices=["auto", "rimnet", "aseg"],
        default="auto",
        help="how to read --anatomy (default auto: FreeSurfer labels are recognised and mapped)",
    )
    src.add_argument(
        "--air-mask", help="optional mask of air artefacts (candidates touching it are excluded)"
    )
    src.add_argument(
        "--id",
        default=None,
        help="patient id for one patient (default: the BIDS sub-/ses- entities of the lesion "
        "mask's name, else its name without .nii.gz and role words such as lesion/mask, else "
        "its folder's name)",
    )
    src.add_argument("--cohort", help="cohort.csv (data contract) for many patients")
    ap.add_argument("--out", required=True, help="output folder (one sub-folder per patient)")
    ap.add_argument(
        "--tta", action="store_true", help="average over X/Y/Z flips too (test-time augmentation)"
    )
    ap.add_argument(
        "--chronic-threshold",
        type=int,
        default=4,
        help="rim+ lesions from which a patient is 'chronic active' (default 4)",
    )
    ap.add_argument(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write a self-contained QC report (report.html: one card per candidate with slices "
        "of every modality; a cohort index on top). Default: on with --cohort, off for one "
        "patient",
    )
    ap.add_argument(
        "--wandb",
        action="store_true",
        help="also log each patient's overview and candidate cards, and the tables, to a W&B run "
        "(group predict, files under --out/wandb; offline unless WANDB_MODE=online: "
        "`wandb sync` uploads it later)",
    )
    ap.add_argument(
        "--resample",
        action="store_true",
        help="resample images and masks that are not on the first modality's grid onto it "
        "(masks by nearest neighbour) instead of stopping with an error",
    )
    ap.add_argument(
        "--device",
        default="cuda" if _cuda() else "cpu",
        help="where the networks run: cuda, cuda:1, cpu (default: cuda when available)",
    )
    ap.add_argument(
        "--at",
        nargs=3,
        type=float,
        metavar=("X", "Y", "Z"),
        help="report the lesion under this point",
    )
    ap.add_argument(
        "--mm",
        action="store_true",
        help="--at is in mm (world coordinates) instead of voxel indices",
    )
    return ap


def _predict_log(out: Path, bundle_name: str, predictor: Predictor) -> PredictLog:
    from rimnet.inference.wandb_log import PredictLog

    return PredictLog(
        out,
        bundle_name,
        {"tta": predictor.tta, "chronic_threshold": predictor.chronic_threshold},
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _write_table(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _write_outputs(
    r: PatientResult, out: Path, report: bool, bundle_name: str, log: PredictLog | None
) -> Path:
    """One patient's files (and report); its pictures drawn once for the report and W&B."""
    figures = None
    if report or log is not None:
        from rimnet.inference.report import patient_figures

        figures = patient_figures(r)
    folder = write_patient(r, out, report, bundle_name, figures)
    if log is not None:
        log.patient(r, figures)
    return folder


def run_cohort(
    predictor: Predictor,
    cohort_csv: str,
    out_dir: str,
    chronic_threshold: int,
    report: bool = True,
    bundle_name: str = "",
    wandb: bool = False,
) -> int:
    """Every patient of a cohort; a failing patient is recorded in failures.csv and the rest go
    on. ``report``: a QC report per patient and ``report.html`` at the top linking them;
    ``wandb``: the same pictures in a W&B run."""
    cohort = read_cohort(cohort_csv, predictor.bundle.modalities)
    with protected(cohort_files(cohort_csv, cohort)):
        return _run_cohort(
            predictor, cohort, out_dir, chronic_threshold, report, bundle_name, wandb
        )


def _run_cohort(
    predictor: Predictor,
    cohort: pd.DataFrame,
    out_dir: str,
    chronic_threshold: int,
    report: bool,
    bundle_name: str,
    wandb: bool,
) -> int:
    out = claim_folder(out_dir, "predictions", "output folder (--out)")
    for pid in cohort["patient_id"]:
        patient_folder(out, pid)
    log = _predict_log(out, bundle_name, predictor) if wandb else None
    results, failures = [], []
    for _, row in tqdm(list(cohort.iterrows()), desc="predict", unit="patient"):
        try:
            r = predictor.predict_row(row)
            _write_outputs(r, out, report, bundle_name, log)
            r.images = {}  # the volumes are not needed any more
        except RimnetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures.append({"patient_id": row["patient_id"], "error": str(exc)})
            continue
        results.append(r)
    lesions = pd.concat([r.lesions for r in results], ignore_index=True) if results else None
    if lesions is not None:
        _write_table(out / "lesions_all.csv", lesions)
    patients = pd.DataFrame(
        [r.summary for r in results], columns=None if results else ["patient_id"]
    )
    _write_table(out / "patients.csv", patients)
    if log is not None:
        log.finish(lesions if lesions is not None else pd.DataFrame(), patients)
    if failures or (out / "failures.csv").exists():
        _write_table(out / "failures.csv", pd.DataFrame(failures, columns=["patient_id", "error"]))
    if report:
        from rimnet.inference.report import cohort_html

        with atomic_path(out / "report.html", replace=True) as tmp:
            page = cohort_html([r.summary for r in results], failures, bundle_name)
            tmp.write_text(page, encoding="utf-8")
    n_ca = sum(r.summary["chronic_active"] for r in results)
    print(
        f"{len(results)} patients, {n_ca} chronic active (>= {chronic_threshold} rim+); results "
        f"in {out}"
    )
    if failures:
        print(
            f"error: {len(failures)} patient(s) failed, listed in {out / 'failures.csv'}",
            file=sys.stderr,
        )
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    """The command: its input files (bundle, images, masks, cohort table) are protected from its
    own writes."""
    named = list(given_images(args).values())
    inputs = [args.bundle, args.cohort, args.lesion_mask, args.anatomy, args.air_mask, *named]
    with protected(inputs):
        return _run(args)


def given_images(args: argparse.Namespace) -> dict[str, str]:
    """The images of the command line by modality name: the shortcuts (``--phase`` ...) and each
    ``--image NAME=PATH``; a malformed or repeated one is an error.

    Example:
        >>> args = build_parser().parse_args(["--bundle", "b.pt", "--out", "o", "--phase", "p.nii",
        ...                                   "--image", "qsm=q.nii"])
        >>> given_images(args)
        {'phase': 'p.nii', 'qsm': 'q.nii'}
    """
    images = {m: getattr(args, m) for m in MODALITIES if getattr(args, m)}
    for item in args.image:
        name, sep, path = item.partition("=")
        problem = modality_problem(name.strip())
        if not sep or not path.strip() or problem:
            raise CohortError(
                f"--image {item}: give NAME=PATH with NAME a modality of the bundle"
                + (f" ({problem})" if sep and problem else "")
            )
        if name.strip() in images:
            raise CohortError(f"--image {item}: {name.strip()} is given twice")
        images[name.strip()] = path.strip()
    return images


def _run(args: argparse.Namespace) -> int:
    if args.cohort and args.id is not None:
        raise CohortError(
            "--id names the patient of one set of files; with --cohort the ids come from cohort.csv"
        )
    if args.cohort and args.at:
        raise CohortError("--at points into one patient's images; it cannot be used with --cohort")
    if not args.cohort and not args.lesion_mask:
        raise CohortError("give --lesion-mask and the images, or --cohort")
    pid = ""
    if not args.cohort:
        pid = check_patient_id(
            args.id if args.id is not None else default_patient_id(Path(args.lesion_mask)), "--id"
        )
        if args.id is None:
            print(f"patient id: {pid} (from {args.lesion_mask}; --id sets another)")
    predictor = Predictor(
        args.bundle,
        device=args.device,
        tta=args.tta,
        chronic_threshold=args.chronic_threshold,
        resample=args.resample,
        anatomy_format=args.anatomy_format,
    )
    what = "output folder (--out)"
    check_replaceable(args.out, "predictions", what)
    report = bool(args.cohort) if args.report is None else args.report
    bundle_name = Path(args.bundle).name
    if args.cohort:
        return run_cohort(
            predictor,
            args.cohort,
            args.out,
            args.chronic_threshold,
            report,
            bundle_name,
            args.wandb,
        )
    images = given_images(args)
    needed = predictor.bundle.modalities
    missing = [m for m in needed if m not in images]
    if missing:
        raise CohortError(
            f"patient {pid}: the bundle {bundle_name} needs the images {needed}; missing "
            f"{', '.join(missing)}: give " + " ".join(f"--image {m}=<file>" for m in missing)
        )
    unused = [m for m in images if m not in needed and m != "flair"]
    if unused:
        print(f"note: {', '.join(unused)} not used (the bundle needs {needed})")
    r = predictor.predict_files(
        pid, images, args.lesion_mask, anatomy=args.anatomy, air_mask=args.air_mask
    )
    out = claim_folder(args.out, "predictions", what)
    log = _predict_log(out, bundle_name, predictor) if args.wandb else None
    folder = _write_outputs(r, out, report, bundle_name, log)
    if log is not None:
        log.finish(r.lesions, pd.DataFrame([r.summary]))
    s = r.summary
    print(
        f"{pid}: {s['rim_pos_count']} rim+ of {s['assessed']} assessed candidates (threshold "
        f"{s['threshold']:.3f}); "
        f"chronic active: {'yes' if s['chronic_active'] else 'no'}; outputs in {folder}"
    )
    if args.at:
        lesion = lesion_at(r, args.at, mm=args.mm)
        if lesion is None:
            print(f"no candidate at {tuple(args.at)}")
            return 1
        print(
            f"lesion {lesion['lesion_id']} at {tuple(args.at)}: probability {lesion['prob']:.3f} "
            f"(spread {lesion['prob_std']:.3f}), {lesion['decision']}, {lesion['volume_mm3']:.1f} "
            f"mm3"
        )
    return 0


# Words that name a file's role, not its patient (dropped from the default patient id).
ROLE_WORDS = {
    *("lesion", "lesions", "mask", "masks", "seg", "segmentation", "label", "labels"),
    *("desc-lesion", "lesion-mask", *MODALITIES, "mag", "magnitude"),
}


def default_patient_id(mask: Path) -> str:
    """A patient id from the lesion mask's path: its BIDS ``sub-``/``ses-`` entities; else the
    file name without ``.nii.gz`` and role words (``lesion``, ``mask``, ...); else, when nothing is
    left, the name of the folder that holds it.

    Example:
        >>> default_patient_id(Path("sub-01/ses-2/anat/sub-01_ses-2_desc-lesion_mask.nii.gz"))
        'sub-01_ses-2'
        >>> default_patient_id(Path("/data/pat07_lesion_mask.nii.gz"))
        'pat07'
        >>> default_patient_id(Path("/data/pat07/lesions.nii.gz"))
        'pat07'
    """
    stem = mask.name.split(".")[0]
    parts = stem.split("_")
    entities = [part for part in parts if part.startswith(("sub-", "ses-"))]
    if entities:
        return "_".join(entities)
    kept = [part for part in parts if part.lower() not in ROLE_WORDS]
    return "_".join(kept) or mask.resolve().parent.name or stem


def main(argv: list[str] | None = None, prog: str = "rimnet predict") -> int:
    args = build_parser(prog).parse_args(argv)
    code = run_command(run, args)
    return 2 if isinstance(code, CommandFailed) else code


if __name__ == "__main__":
    sys.exit(main(prog="python -m rimnet.predict"))
