"""``rimnet prepare``'s output as a BIDS derivatives dataset.

Every image lives in the space of the subject's 3D-EPI magnitude, ``space-T2starw`` (the suffix
convention of fMRIPrep's ``space-T1w``: the subject's own raw image with that suffix). The
magnitude itself, the reference of that space, keeps its raw name (space and desc are optional in
the derivatives template); the rest are ``space-T2starw_desc-<what>``. Each image has a JSON
sidecar naming its ``Sources``. ``cohort.csv`` and ``prepare_report.csv`` at the root are the data
contract; they, the per-subject fingerprints and the QC figures are listed in ``.bidsignore``, with
the derivative names the legacy validator does not check (docs/prepare.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rimnet import __version__
from rimnet.data.contract import ANATOMY_NAMES
from rimnet.io import atomic_path
from rimnet.prepare.bids import Session

# data-contract column -> the file's name after ``sub-<s>[_ses-<t>]_``
OUTPUTS: dict[str, str] = {
    "t2star": "part-mag_T2starw",
    "phase": "space-T2starw_desc-preproc_part-phase_T2starw",
    "flair": "space-T2starw_desc-preproc_FLAIR",
    "lesion_mask": "space-T2starw_desc-lesion_mask",
    "rim_mask": "space-T2starw_desc-rim_mask",
    "rater1_mask": "space-T2starw_desc-rater1_mask",
    "rater2_mask": "space-T2starw_desc-rater2_mask",
    "anatomy": "space-T2starw_desc-rimnet_dseg",
}
MASK_TYPES = {
    "lesion_mask": "Lesion",
    "rim_mask": "ROI",
    "rater1_mask": "ROI",
    "rater2_mask": "ROI",
}
BIDSIGNORE = [
    "cohort.csv",
    "prepare_report.csv",
    "prepare.json",
    ".rimnet-owned",
    "figures/",
    "*_space-T2starw_*",  # derivative names: the legacy validator checks raw names only
    "*_dseg.tsv",
]
BIDS_VERSION = "1.9.0"


def output_path(ses: Session, column: str) -> Path:
    """Where a data-contract column of one session lives, relative to the dataset root.

    Example:
        >>> output_path(Session("01", "m12"), "phase").as_posix()
        'sub-01/ses-m12/anat/sub-01_ses-m12_space-T2starw_desc-preproc_part-phase_T2starw.nii.gz'
    """
    return ses.folder / "anat" / f"{ses.prefix}_{OUTPUTS[column]}.nii.gz"


def figure_path(ses: Session) -> Path:
    """The registration checkerboard of one session, relative to the dataset root."""
    return ses.folder / "figures" / f"{ses.prefix}_desc-checkerboard_FLAIR.png"


def source_uri(path: Path, bids_root: Path) -> str:
    """A BIDS URI of an input file (``bids:raw:<path in the raw dataset>``)."""
    return f"bids:raw:{Path(path).resolve().relative_to(bids_root.resolve()).as_posix()}"


def write_sidecar(image: Path, fields: dict[str, Any]) -> None:
    """The JSON sidecar of ``image`` (``x.nii.gz`` -> ``x.json``)."""
    name = image.name.removesuffix(".gz").removesuffix(".nii") + ".json"
    (image.parent / name).write_text(json.dumps(fields, indent=2) + "\n")


def sidecars(ses: Session, bids_root: Path, steps: str, registration: str) -> dict[str, dict]:
    """The sidecar fields of each output column of one session (written by the caller)."""

    def src(*roles: str) -> list[str]:
        return [source_uri(ses.files[r], bids_root) for r in roles if r in ses.files]

    scan = {k: ses.metadata.get("phase", {})[k] for k in ("EchoTime", "MagneticFieldStrength")
            if k in ses.metadata.get("phase", {})}  # fmt: skip
    reference = f"bids::{output_path(ses, 't2star').as_posix()}"
    mag = {k: v for k, v in ses.metadata.get("t2star", {}).items() if not isinstance(v, dict)}
    mag["Sources"] = [source_uri(p, bids_root) for p in ses.magnitude_echoes] or src("t2star")
    if ses.echo_note:
        mag["Description"] = f"3D-EPI magnitude, {ses.echo_note}"
    out = {
        "t2star": mag,
        "phase": {
            **scan,
            "Units": "rad",
            "Description": f"3D-EPI phase: {steps}",
            "Sources": src("phase", "t2star"),
            "SpatialReference": reference,
        },
        "flair": {
            "Description": f"FLAIR registered to the T2* magnitude ({registration})",
            "Sources": src("flair", "t2star"),
            "SpatialReference": reference,
        },
        "anatomy": {
            "Description": "the aseg mapped to rimnet's anatomy codes (desc-rimnet_dseg.tsv)",
            "Sources": src("aseg", "t2star"),
            "SpatialReference": reference,
        },
    }
    for role, kind in MASK_TYPES.items():
        out[role] = {"Type": kind, "Sources": src(role, "t2star"), "SpatialReference": reference}
    return out


def write_dataset_files(out: Path, bids_root: Path, command: str) -> None:
    """``dataset_description.json``, README, ``.bidsignore`` and the anatomy's ``dseg.tsv``."""
    desc = {
        "Name": f"rimnet prepare of {bids_root.resolve().name}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "rimnet", "Version": __version__, "Description": command}],
        "SourceDatasets": [{"URL": bids_root.resolve().as_uri()}],
        "DatasetLinks": {"raw": bids_root.resolve().as_uri()},
    }
    files = {
        "dataset_description.json": json.dumps(desc, indent=2) + "\n",
        "README": README,
        ".bidsignore": "\n".join(BIDSIGNORE) + "\n",
        "desc-rimnet_dseg.tsv": "index\tname\n"
        + "".join(f"{code}\t{name}\n" for code, name in sorted(ANATOMY_NAMES.items())),
    }
    for name, text in files.items():
        with atomic_path(out / name, replace=True) as tmp:
            Path(tmp).write_text(text)


README = """\
# rimnet prepare

A BIDS derivatives dataset written by `rimnet prepare`: per subject (and session), the 3D-EPI
magnitude, the processed phase, the registered FLAIR, the lesion, rim and rater masks and the
anatomy, all in the space of the 3D-EPI magnitude (`space-T2starw`). Each image's JSON sidecar names
its sources. `cohort.csv` lists every patient's files for `rimnet preprocess`;
`prepare_report.csv` holds the registration metrics and phase steps; `figures/` holds a
checkerboard of the registered FLAIR over the magnitude per subject.
"""
