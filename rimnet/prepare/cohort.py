"""BIDS dataset -> the data contract: per patient, phase post-processing, FLAIR (and masks,
anatomy) registered to the 3D-EPI space, FreeSurfer anatomy mapped; written as a BIDS derivatives
dataset (:mod:`rimnet.prepare.derivatives`) with ``cohort.csv`` and ``prepare_report.csv`` at its
root.

Each subject (or session) folder is written atomically and carries the fingerprint of its inputs
and parameters, so an interrupted run resumes where it stopped and a rerun reuses what is done.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rimnet.data.anatomy import to_rimnet_codes
from rimnet.data.cache import ordered_map
from rimnet.data.cohort import check_patient_id
from rimnet.data.contract import MODALITIES
from rimnet.errors import ConfigError
from rimnet.figures.slices import checkerboard
from rimnet.io import (
    atomic_dir,
    atomic_path,
    check_replaceable,
    claim_folder,
    file_signature,
    fingerprint,
)
from rimnet.prepare.bids import (
    BidsError,
    EchoChoice,
    Session,
    find_sessions,
    parse_filters,
    participant_sites,
)
from rimnet.prepare.derivatives import (
    figure_path,
    output_path,
    sidecars,
    write_dataset_files,
    write_sidecar,
)
from rimnet.prepare.phase import process_phase

PREPARE_VERSION = 2
MASK_ROLES = ("lesion_mask", "rim_mask", "rater1_mask", "rater2_mask")


@dataclass
class PrepareConfig:
    """Parameters of :func:`prepare_bids` (mirrors ``conf/prepare.yaml``)."""

    phase: str = "raw"  # raw | unwrapped | filtered: what the stored phase already is
    phase_filter: str = "hann"  # homodyne low-pass: hann (k-space) | gaussian (image space)
    hann_kernel: int = 96
    sigma_mm: float = 4.0
    phase_sign: int = 1
    site: str | None = None
    participant_label: list[str] | None = None
    bids_filter: dict | str | None = None  # role -> entities, e.g. {"phase": {"acq": "hr"}}
    echo: str | int = "auto"  # multi-echo GRE: auto | <echo number> | rss
    echo_time_ms: float = 35.0  # echo=auto (and rss's phase): the echo nearest this TE
    anatomy_format: str = "auto"
    affine: bool = True
    iterations: int = 200
    seed: int = 0
    n_jobs: int = 1

    def content(self) -> dict[str, Any]:
        """What decides a patient's output (not the selection or the parallelism)."""
        skip = ("participant_label", "n_jobs")
        return {k: v for k, v in asdict(self).items() if k not in skip}


def prepare_bids(
    bids: str | Path,
    out: str | Path,
    cfg: PrepareConfig,
    progress: bool = True,
    command: str | None = None,
) -> Path:
    """Prepare every subject/session of ``bids`` into the derivatives dataset ``out``; returns
    ``out/cohort.csv``.

    Args:
        bids: the raw BIDS dataset (with its ``derivatives/``).
        out: the derivatives dataset to write (new, or one this function wrote).
        cfg: the parameters.
        progress: show a progress bar.
        command: the command line, recorded in ``dataset_description.json``'s ``GeneratedBy``.

    Example:
        >>> prepare_bids("bids/", "prepared/", PrepareConfig(site="basel"))  # doctest: +SKIP
        PosixPath('prepared/cohort.csv')
    """
    bids = Path(bids)
    check_replaceable(out, "prepared-cohort", "output folder (out=)")
    sites = participant_sites(bids)
    echo = EchoChoice(cfg.echo, cfg.echo_time_ms)
    sessions = find_sessions(bids, cfg.participant_label, cfg.bids_filter, echo, Path(out))
    jobs = []
    for ses in sessions:
        check_patient_id(ses.patient_id, ses.label)
        site = sites.get(ses.subject) or cfg.site
        if not site:
            raise BidsError(
                f"{ses.label}: no site (no 'site' column for it in {bids / 'participants.tsv'}); "
                f"give site=<name>"
            )
        jobs.append((ses, site, cfg, bids))
    out = claim_folder(out, "prepared-cohort", "output folder (out=)")
    write_dataset_files(out, bids, command or f"rimnet prepare bids={bids} out={out}")
    rows, report = [], []
    bar = tqdm(total=len(jobs), desc="prepare", unit="patient", disable=not progress)
    for row, rep in ordered_map(_prepare_job, [(j, out) for j in jobs], max(1, cfg.n_jobs)):
        rows.append(row)
        report.append(rep)
        bar.update()
    bar.close()
    with atomic_path(out / "prepare_report.csv", replace=True) as tmp:
        pd.DataFrame(report).to_csv(tmp, index=False)
    csv = out / "cohort.csv"
    with atomic_path(csv, replace=True) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return csv


def _prepare_job(job: tuple[tuple[Session, str, PrepareConfig, Path], Path]) -> tuple[dict, dict]:
    (ses, site, cfg, bids), out = job
    return prepare_session(ses, site, out, cfg, bids)


def prepare_session(
    ses: Session, site: str, out: Path, cfg: PrepareConfig, bids: Path
) -> tuple[dict, dict]:
    """One patient into ``out/sub-<s>[/ses-<t>]`` (reused when its inputs and parameters are
    unchanged); returns its ``cohort.csv`` row and its report row."""
    pid = ses.patient_id
    folder = out / ses.folder
    inputs = {**ses.files, **{f"echo{i}": p for i, p in enumerate(ses.magnitude_echoes)}}
    key = fingerprint(
        {
            "version": PREPARE_VERSION,
            "cfg": cfg.content(),
            "files": {k: file_signature(v) for k, v in sorted(inputs.items())},
            "metadata": ses.metadata,
        }
    )
    meta = folder / "prepare.json"
    if meta.exists() and json.loads(meta.read_text()).get("fingerprint") == key:
        report = json.loads(meta.read_text())["report"]
    else:
        folder.parent.mkdir(exist_ok=True)  # sub-<s> of a session
        with atomic_dir(folder, "prepared-patient", f"patient folder {folder}") as tmp:
            report = _process(ses, site, tmp, cfg, bids)
            (tmp / "prepare.json").write_text(json.dumps({"fingerprint": key, "report": report}))
    row = {"patient_id": pid, "site": site, "scanner": ""}
    for name in (*MODALITIES, *MASK_ROLES, "anatomy"):
        if (out / output_path(ses, name)).exists():
            row[name] = output_path(ses, name).as_posix()
    return row, report


def _voxel_mm(img: nib.Nifti1Image) -> np.ndarray:
    return np.sqrt((img.affine[:3, :3] ** 2).sum(0))


def _magnitude(ses: Session, img: nib.Nifti1Image) -> np.ndarray:
    """The 3D-EPI magnitude: the file found, or the root sum of squares of the echoes."""
    if not ses.magnitude_echoes:
        return np.asarray(img.dataobj, np.float32)
    total = np.zeros(img.shape, np.float64)
    for path in ses.magnitude_echoes:
        echo = nib.load(path)
        if echo.shape != img.shape:
            raise BidsError(f"{ses.label}: echo {path.name} {echo.shape} is not on {img.shape}")
        total += np.asarray(echo.dataobj, np.float64) ** 2
    return np.sqrt(total).astype(np.float32)


def _process(ses: Session, site: str, tmp: Path, cfg: PrepareConfig, bids: Path) -> dict:
    from rimnet.prepare import register as reg

    def dest(column: str) -> Path:
        path = tmp / output_path(ses, column).relative_to(ses.folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    where = f"{ses.label}: phase file {ses.files['phase']}"
    mag_img = nib.load(ses.files["t2star"])
    phase_img = nib.load(ses.files["phase"])
    if phase_img.shape != mag_img.shape or not np.allclose(
        phase_img.affine, mag_img.affine, atol=1e-3
    ):
        raise BidsError(
            f"{ses.label}: phase {ses.files['phase'].name} {phase_img.shape} and magnitude "
            f"{ses.files['t2star'].name} {mag_img.shape} are not on one grid"
        )
    vox = _voxel_mm(mag_img)
    magnitude = _magnitude(ses, mag_img)
    meta = ses.metadata.get("phase", {})
    phase, steps = process_phase(
        np.asarray(phase_img.dataobj, np.float32),
        magnitude,
        vox,
        cfg.phase,
        cfg.phase_filter,
        cfg.hann_kernel,
        cfg.sigma_mm,
        cfg.phase_sign,
        where,
        meta.get("Units"),
    )
    written = {"phase": _save(phase, mag_img, dest("phase"), np.float32)}
    written["t2star"] = _save(magnitude, mag_img, dest("t2star"), np.float32)

    fixed, flair = reg.read(ses.files["t2star"]), reg.read(ses.files["flair"])
    to_flair = reg.register(fixed, flair, cfg.affine, cfg.seed, cfg.iterations)
    flair_epi = reg.resample(flair, fixed, to_flair.transform, label=False)
    written["flair"] = _save(flair_epi, mag_img, dest("flair"), np.float32)
    transforms = {"FLAIR": to_flair.transform, "T2starw": None}
    warnings = []
    te = meta.get("EchoTime")
    report = {
        "patient_id": ses.patient_id,
        "site": site,
        "voxel_mm": "x".join(f"{v:.3g}" for v in vox),
        "flair_voxel_mm": "x".join(f"{v:.3g}" for v in _voxel_mm(nib.load(ses.files["flair"]))),
        "registration": to_flair.kind,
        "registration_metric": round(to_flair.metric, 4),
        "phase_steps": "; ".join(steps) or "none (filtered input)",
        "echo_time_ms": "" if te is None else round(float(te) * 1000, 3),
        "field_strength_T": meta.get("MagneticFieldStrength", ""),
        "echo": ses.echo_note,
    }
    if "t1w" in ses.files and "T1w" in ses.spaces.values():
        t1 = reg.read(ses.files["t1w"])
        to_t1 = reg.register(flair, t1, affine=False, seed=cfg.seed, iterations=cfg.iterations)
        transforms["T1w"] = reg.compose(to_flair.transform, to_t1.transform)
        report["t1w_registration_metric"] = round(to_t1.metric, 4)
    for role in (*MASK_ROLES, "aseg"):
        if role not in ses.files:
            continue
        space = ses.spaces[role]
        src = reg.read(ses.files[role])
        tf = transforms[space]
        arr = (
            np.asarray(nib.load(ses.files[role]).dataobj)
            if tf is None
            else reg.resample(src, fixed, tf, label=True)
        )
        arr = np.rint(arr).astype(np.int32)
        if role == "aseg":
            codes = to_rimnet_codes(arr, cfg.anatomy_format, f"{ses.label}: {ses.files[role]}")
            written["anatomy"] = _save(codes, mag_img, dest("anatomy"), np.uint8)
        else:
            if role == "lesion_mask" and not arr.any():
                warnings.append("lesion mask empty after registration")
            written[role] = _save(arr, mag_img, dest(role), np.int16)
    fields = sidecars(ses, bids, report["phase_steps"], to_flair.kind)
    for column, path in written.items():
        write_sidecar(path, fields[column])
    qc = tmp / figure_path(ses).relative_to(ses.folder)
    qc.parent.mkdir(parents=True, exist_ok=True)
    checkerboard(magnitude, flair_epi, qc, f"{ses.patient_id}: FLAIR (registered) on T2* magnitude")
    report["checkerboard"] = figure_path(ses).as_posix()
    report["warnings"] = "; ".join(warnings)
    return report


def _save(arr: np.ndarray, like: nib.Nifti1Image, path: Path, dtype: type) -> Path:
    img = nib.Nifti1Image(arr.astype(dtype), like.affine, header=like.header)
    img.set_data_dtype(dtype)
    img.header.set_slope_inter(1.0, 0.0)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return path


def config_from(node: Any) -> PrepareConfig:
    """A :class:`PrepareConfig` from the ``prepare`` Hydra config, with checks."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(node, resolve=True)
    known = set(PrepareConfig.__dataclass_fields__)
    cfg = PrepareConfig(**{k: v for k, v in values.items() if k in known})
    problems = []
    if cfg.phase not in ("raw", "unwrapped", "filtered"):
        problems.append(f"phase={cfg.phase!r}: choose raw, unwrapped or filtered")
    if cfg.phase_filter not in ("hann", "gaussian"):
        problems.append(f"phase_filter={cfg.phase_filter!r}: choose hann or gaussian")
    if cfg.phase_sign not in (1, -1):
        problems.append(f"phase_sign={cfg.phase_sign}: choose 1 or -1")
    if cfg.anatomy_format not in ("auto", "rimnet", "aseg"):
        problems.append(f"anatomy_format={cfg.anatomy_format!r}: choose auto, rimnet or aseg")
    if not (cfg.echo in ("auto", "rss") or str(cfg.echo).isdigit()) or cfg.echo_time_ms <= 0:
        problems.append(f"echo={cfg.echo!r}: choose auto, rss or an echo number; echo_time_ms > 0")
    if cfg.hann_kernel < 2 or cfg.sigma_mm <= 0 or cfg.n_jobs < 1 or cfg.iterations < 1:
        problems.append("hann_kernel >= 2, sigma_mm > 0, n_jobs >= 1 and iterations >= 1")
    if problems:
        raise ConfigError("bad prepare config:\n  " + "\n  ".join(problems))
    if isinstance(cfg.participant_label, (str, int)):
        cfg.participant_label = [str(cfg.participant_label)]
    parse_filters(cfg.bids_filter)  # refuses unknown roles or entities before any work
    return cfg
