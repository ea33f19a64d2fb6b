"""The patch cache: cohort → validated volumes → candidates → patches (+ offline augmentation).

Layout of a cache folder (written atomically as a whole; reused while its fingerprint matches):

- ``patches.bin``: one contiguous C-order array (N, C, S, S, S) of ``dtype`` (float16 by default),
  memory-mappable with :func:`load_cache`; row ``n`` belongs to row ``n`` of ``lesions.csv``.
- ``lesions.csv``: one row per stored patch, originals and augmented copies (columns in
  docs/data-contract.md).
- ``patients.csv``: one row per patient, also those with zero candidates.
- ``meta.json``: shape, dtype, modalities, parameters and the fingerprint of inputs + parameters.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rimnet.data.candidates import CandidateRules, extract_candidates, rim_instances_outside
from rimnet.data.cohort import (
    CohortError,
    PatientVolumes,
    cohort_files,
    load_patient,
    read_cohort,
)
from rimnet.data.contract import (
    LESION_COLUMNS,
    MASKS,
    center_crop,
    context_size,
    crop_centered,
    extract_patch,
    lesion_id,
    modality_problem,
    normalise,
)
from rimnet.data.patches import ROTATIONS, ElasticDeformer, rotate
from rimnet.errors import ConfigError, RimnetError
from rimnet.io import (
    atomic_dir,
    check_replaceable,
    file_lock,
    file_signature,
    fingerprint,
    lock_for,
    protected,
    write_json,
)

CACHE_VERSION = 2  # 2: elastic copies seeded per patient (parallel preprocessing)
RIM_OUTSIDE_POLICIES = ("error", "warn", "ignore")
# Every patient is processed with this many torch threads, in this process or in a worker: MONAI's
# elastic deformation rounds differently with another count (and with one thread torch falls back
# to a convolution ~4x slower), so the cache is the same for any n_jobs.
PATIENT_THREADS = 2


@dataclass
class PreprocessConfig:
    """Parameters of :func:`build_cache`: the keys of ``conf/patches/paper.yaml``, which holds
    their values (:meth:`paper` reads them; the comments there explain each)."""

    modalities: list[str]
    patch_size: int
    max_shift: int
    elastic_copies: int
    rotate_rim: bool
    elastic_margin: int
    dtype: str
    seed: int
    resample: bool
    sites: list[str] | None
    rim_outside_lesion: str
    anatomy_format: str
    n_jobs: int | None  # processes over patients; None: one per 2 cores (same output)
    rules: CandidateRules

    def __post_init__(self) -> None:
        mods = list(self.modalities or [])
        bad = [p for p in map(modality_problem, mods) if p]
        if not mods or len(set(mods)) != len(mods) or bad:
            raise ConfigError(
                f"patches modalities={mods} must be different image columns of cohort.csv"
                + (f": {'; '.join(bad)}" if bad else "")
            )

    @classmethod
    def paper(cls, **overrides: Any) -> PreprocessConfig:
        """The paper's parameters (``conf/patches/paper.yaml``) with ``overrides``; ``rules``
        may be a dict of the rules to change.

        Example:
            >>> PreprocessConfig.paper(elastic_copies=0).elastic_copies
            0
        """
        from rimnet.config import paper_patches

        return cls.from_values({**paper_patches(), **overrides})

    @classmethod
    def from_values(cls, values: dict) -> PreprocessConfig:
        """From plain values; a ``rules`` dict changes the paper's rules it names."""
        values = dict(values)
        rules = values.pop("rules", None) or {}
        if not isinstance(rules, CandidateRules):
            rules = CandidateRules.paper(**rules)
        return cls(**values, rules=rules)

    def workers(self) -> int:
        """How many processes preprocess patients: ``n_jobs``, or one per
        :data:`PATIENT_THREADS` cores available."""
        import os

        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
        return max(1, int(self.n_jobs or cores // PATIENT_THREADS))

    @property
    def context(self) -> int:
        return context_size(self.patch_size, self.max_shift)

    @classmethod
    def from_config(cls, node: Any) -> PreprocessConfig:
        """From a ``patches`` config node (``conf/patches/paper.yaml``)."""
        from omegaconf import OmegaConf

        return cls.from_values(OmegaConf.to_container(node, resolve=True))


@dataclass
class PatchCache:
    """A loaded cache: memory-mapped patches, the lesion and patient tables and ``meta.json``."""

    patches: np.ndarray
    lesions: pd.DataFrame
    patients: pd.DataFrame
    meta: dict
    path: Path

    def channels(self, modalities: list[str]) -> list[int]:
        """Indices of ``modalities`` in the stored channel order (raises on a missing one)."""
        stored = self.meta["modalities"]
        missing = [m for m in modalities if m not in stored]
        if missing:
            raise ConfigError(f"cache {self.path} has modalities {stored}; {missing} requested")
        return [stored.index(m) for m in modalities]


def _inputs_signature(cohort: pd.DataFrame, cfg: PreprocessConfig) -> list:
    cols = [c for c in (*cfg.modalities, *MASKS) if c in cohort.columns]
    return [
        [row.patient_id, row.site, row.scanner]
        + [file_signature(row[c]) if row[c] and Path(row[c]).exists() else row[c] for c in cols]
        for _, row in cohort.iterrows()
    ]


def check_rim_annotation(vol: PatientVolumes, table: pd.DataFrame, policy: str, path: str) -> None:
    """Rim annotations must sit on lesions (§2.3: every rim was matched to a candidate).

    ``policy`` says what an annotation that touches no lesion does: ``error`` (default), ``warn`` or
    ``ignore``. A non-empty rim mask that leaves every candidate rim- is always an error.
    """
    rim = vol.masks.get("rim_mask")
    if rim is None or not rim.any():
        return
    if policy not in RIM_OUTSIDE_POLICIES:
        raise CohortError(
            f"params.rim_outside_lesion must be one of {list(RIM_OUTSIDE_POLICIES)}, not {policy!r}"
        )
    n, voxels = rim_instances_outside(vol.masks["lesion_mask"], rim)
    if n and policy != "ignore":
        msg = (
            f"patient {vol.patient_id}: rim_mask file {path} has {n} rim+ annotation(s) ({voxels} "
            f"voxels) that touch "
            "no lesion of the lesion mask (wrong space or file?); set "
            "params.rim_outside_lesion=warn to go on"
        )
        if policy == "error":
            raise CohortError(msg)
        warnings.warn(msg, stacklevel=2)
    if not (table["label"] == 1).any():
        raise CohortError(
            f"patient {vol.patient_id}: rim_mask file {path} is not empty but overlaps none of the "
            f"{len(table)} candidate(s) of the lesion mask, so every lesion would be rim-"
        )


def synthetic_cohort(cohort_csv: str | Path, scale: str, seed: int) -> Path:
    """The synthetic cohort whose table is ``cohort_csv``, generated on first use (under a lock,
    so parallel jobs wait for the first); returns its ``cohort.csv``."""
    from rimnet.synth.cohort import generate_cohort

    folder = Path(cohort_csv).parent
    with file_lock(lock_for(folder)):
        return generate_cohort(folder, scale, seed=seed)


def build_cache(
    cohort_csv: str | Path,
    cache_dir: str | Path,
    cfg: PreprocessConfig | None = None,
    force: bool = False,
    progress: bool = True,
) -> PatchCache:
    """Build (or reuse) the patch cache of a cohort and return it loaded (``cfg``: the paper's
    parameters when not given).

    Takes the cache's lock, so parallel jobs that need the same cache wait for the first one.

    Example:
        >>> cache = build_cache("cohort.csv", "cache/")  # doctest: +SKIP
        >>> cache.patches.shape  # doctest: +SKIP
        (4312, 3, 32, 32, 32)
    """
    cfg = cfg or PreprocessConfig.paper()
    check_replaceable(cache_dir, "patch-cache", "cache_dir")
    with file_lock(lock_for(cache_dir)):
        return _build_cache(cohort_csv, cache_dir, cfg, force, progress)


def _result_params(cfg: PreprocessConfig) -> dict:
    """The parameters that decide a cache's content (``n_jobs`` does not)."""
    return {k: v for k, v in asdict(cfg).items() if k != "n_jobs"}


def _build_cache(
    cohort_csv: str | Path,
    cache_dir: str | Path,
    cfg: PreprocessConfig,
    force: bool,
    progress: bool,
) -> PatchCache:
    cohort = read_cohort(cohort_csv, cfg.modalities, cfg.sites)
    cache_hash = fingerprint(
        {
            "version": CACHE_VERSION,
            "params": _result_params(cfg),
            "inputs": _inputs_signature(cohort, cfg),
        }
    )
    cache_dir = Path(cache_dir)
    if not force and read_meta(cache_dir, missing_ok=True).get("fingerprint") == cache_hash:
        return load_cache(cache_dir)
    with (
        protected(cohort_files(cohort_csv, cohort)),
        atomic_dir(cache_dir, "patch-cache", "cache_dir") as tmp,
    ):
        rows, patients = _write_patches(cohort, cfg, tmp / "patches.bin", progress)
        lesions = pd.DataFrame(rows, columns=LESION_COLUMNS)
        lesions.to_csv(tmp / "lesions.csv", index=False)
        pd.DataFrame(patients).to_csv(tmp / "patients.csv", index=False)
        write_json(tmp / "meta.json", _meta(cache_hash, cohort_csv, cfg, lesions, len(patients)))
    return load_cache(cache_dir)


def _write_patches(
    cohort: pd.DataFrame, cfg: PreprocessConfig, path: Path, progress: bool
) -> tuple[list, list]:
    """Stream every patient's patches into ``path`` in cohort order (patients are processed by
    ``cfg.n_jobs`` processes); returns the lesion rows and the patient rows."""
    rows, patients = [], []
    jobs = [(cohort_row, cfg) for _, cohort_row in cohort.iterrows()]
    with open(path, "wb") as fh, _torch_threads(PATIENT_THREADS):
        bar = tqdm(total=len(jobs), desc="preprocess", unit="patient", disable=not progress)
        for patient, patient_rows, data in ordered_map(_process_patient, jobs, cfg.workers()):
            fh.write(data)
            patients.append(patient)
            rows += patient_rows
            bar.update()
            bar.set_postfix(patches=len(rows))
        bar.close()
    return rows, patients


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads, then restore the count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def ordered_map(fn: Any, jobs: list, n_jobs: int) -> Iterator:
    """``map(fn, jobs)`` in order, over ``n_jobs`` processes, with at most 2 × n_jobs results
    waiting (a patient's patches can be ~100 MB)."""
    if n_jobs <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")  # no fork of a process whose torch threads are running
    with ProcessPoolExecutor(n_jobs, ctx, _worker_threads) as pool:
        pending = [pool.submit(fn, job) for job in jobs[: 2 * n_jobs]]
        for nxt in range(2 * n_jobs, len(jobs) + 2 * n_jobs):
            result = pending.pop(0).result()
            if nxt < len(jobs):
                pending.append(pool.submit(fn, jobs[nxt]))
            yield result


def _worker_threads() -> None:
    import torch

    torch.set_num_threads(PATIENT_THREADS)


def _process_patient(job: tuple[pd.Series, PreprocessConfig]) -> tuple[dict, list[dict], bytes]:
    """One patient: (patient row, lesion rows, the bytes of its patches). The elastic copies are
    seeded by (seed, patient id), so the result does not depend on the order or the worker."""
    cohort_row, cfg = job
    vol, table = _patient_candidates(cohort_row, cfg)
    patient_seed = int(fingerprint([cfg.seed, vol.patient_id])[:8], 16)
    deformer = ElasticDeformer(seed=patient_seed) if cfg.elastic_copies > 0 else None
    rows, chunks = [], []
    for row, patch in _patient_patches(vol, table, cfg, deformer):
        chunks.append(np.ascontiguousarray(patch, dtype=np.dtype(cfg.dtype)).tobytes())
        rows.append(row)
    patient = {
        "patient_id": vol.patient_id,
        "site": vol.site,
        "scanner": vol.scanner,
        "voxel_mm": float(vol.voxel_mm.mean()),
        "n_candidates": len(table),
    }
    return patient, rows, b"".join(chunks)


def _patient_candidates(
    cohort_row: pd.Series, cfg: PreprocessConfig
) -> tuple[PatientVolumes, pd.DataFrame]:
    """Load and check one patient, and extract its candidates (§2.3-2.4)."""
    vol = load_patient(cohort_row, cfg.modalities, cfg.resample, cfg.anatomy_format)
    masks = {m: vol.masks.get(m) for m in MASKS if m != "lesion_mask"}
    table, _ = extract_candidates(vol.masks["lesion_mask"], vol.affine, cfg.rules, **masks)
    check_rim_annotation(vol, table, cfg.rim_outside_lesion, cohort_row.get("rim_mask", ""))
    return vol, table


def _patient_patches(
    vol: PatientVolumes,
    table: pd.DataFrame,
    cfg: PreprocessConfig,
    deformer: ElasticDeformer | None,
) -> Iterator[tuple[dict, np.ndarray]]:
    """(lesion row, patch) of every stored patch of one patient, in storage order."""
    stack = [vol.images[m] for m in cfg.modalities]
    for cand in table.itertuples(index=False):
        source = lesion_id(vol.patient_id, cand.lesion_index)
        base = {
            "patient_id": vol.patient_id,
            "site": vol.site,
            "scanner": vol.scanner,
            "source_lesion_id": source,
            **cand._asdict(),
        }
        centre = np.array([cand.center_i, cand.center_j, cand.center_k])
        for tag, patch in _lesion_variants(stack, centre, cand, cfg, deformer):
            yield (
                {
                    **base,
                    "lesion_id": source if tag == "none" else f"{source}_{tag}",
                    "augmentation": tag,
                },
                patch,
            )


def _lesion_variants(
    stack: list[np.ndarray],
    centre: np.ndarray,
    cand: Any,
    cfg: PreprocessConfig,
    deformer: ElasticDeformer | None,
) -> list[tuple[str, np.ndarray]]:
    """The original patch, and for kept labelled candidates the offline augmentation of §2.6:
    rim+ rotated 90/180/270° about each axis (×10), then elastic copies of every patch."""
    context = cfg.context
    variants = [("none", extract_patch(stack, centre, context))]
    if cand.excluded or cand.label < 0:
        return variants
    margin_cube = np.stack(
        [crop_centered(img, centre, context + 2 * cfg.elastic_margin) for img in stack]
    )
    sources = [("none", margin_cube)]
    if cfg.rotate_rim and cand.label == 1:
        sources += [(name, rotate(margin_cube, plane, k)) for name, plane, k in ROTATIONS]
    for name, src in sources:
        if name != "none":
            variants.append((name, normalise(center_crop(src, context))))
        for e in range(cfg.elastic_copies):
            tag = f"elastic{e + 1}" if name == "none" else f"{name}+elastic{e + 1}"
            variants.append((tag, normalise(deformer(src, context))))
    return variants


def _meta(
    cache_hash: str,
    cohort_csv: str | Path,
    cfg: PreprocessConfig,
    lesions: pd.DataFrame,
    n_patients: int,
) -> dict:
    originals = lesions[lesions["augmentation"] == "none"]
    c = cfg.context
    return {
        "fingerprint": cache_hash,
        "version": CACHE_VERSION,
        "cohort": str(Path(cohort_csv).resolve()),
        "shape": [len(lesions), len(cfg.modalities), c, c, c],
        "dtype": cfg.dtype,
        "modalities": list(cfg.modalities),
        "params": _result_params(cfg),
        "counts": {
            "patients": n_patients,
            "patches": len(lesions),
            "candidates": int(len(originals)),
            "excluded": originals["excluded"].replace("", "kept").value_counts().to_dict(),
        },
    }


class CacheError(RimnetError):
    """A damaged patch cache (the message says how to rebuild it)."""


def _damaged(cache_dir: Path, problem: str) -> CacheError:
    return CacheError(
        f"patch cache {cache_dir} is damaged: {problem}; rebuild it with force=true "
        "(rimnet preprocess ... force=true)"
    )


def read_meta(cache_dir: str | Path, missing_ok: bool = False) -> dict:
    """``meta.json`` of a cache ({} when absent and ``missing_ok``); a damaged one is a
    :class:`CacheError` naming the cache."""
    cache_dir = Path(cache_dir)
    path = cache_dir / "meta.json"
    if not path.is_file():
        if missing_ok:
            return {}
        raise CacheError(
            f"{cache_dir} is not a patch cache (no meta.json); build it with rimnet preprocess"
        )
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _damaged(cache_dir, f"meta.json is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise _damaged(cache_dir, "meta.json does not hold an object")
    return meta


def load_cache(cache_dir: str | Path) -> PatchCache:
    """Open a cache folder; patches are memory-mapped read-only. A truncated or damaged file is a
    :class:`CacheError` that says how to rebuild the cache."""
    cache_dir = Path(cache_dir)
    meta = read_meta(cache_dir)
    try:
        shape, dtype = tuple(int(n) for n in meta["shape"]), np.dtype(meta["dtype"])
        list(meta["modalities"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(cache_dir, f"meta.json lacks or garbles {exc}") from None
    expected = int(np.prod(shape)) * dtype.itemsize
    data = cache_dir / "patches.bin"
    size = data.stat().st_size if data.is_file() else -1
    if shape[0] and size != expected:
        raise _damaged(
            cache_dir, f"patches.bin holds {max(size, 0)} bytes where meta.json says {expected}"
        )
    if shape[0] == 0:
        patches = np.zeros(shape, dtype=dtype)
    else:
        patches = np.memmap(data, dtype=dtype, mode="r", shape=shape)
    try:
        lesions = pd.read_csv(
            cache_dir / "lesions.csv",
            dtype={"excluded": str, "location": str},
            keep_default_na=False,
        )
        patients = pd.read_csv(
            cache_dir / "patients.csv",
            dtype={"patient_id": str, "scanner": str},
            keep_default_na=False,
        )
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise _damaged(cache_dir, f"its tables cannot be read ({exc})") from None
    if len(lesions) != shape[0] or not set(LESION_COLUMNS) <= set(lesions.columns):
        raise _damaged(cache_dir, f"lesions.csv has {len(lesions)} rows for {shape[0]} patches")
    return PatchCache(patches, lesions, patients, meta, cache_dir)
