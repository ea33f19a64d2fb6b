"""Find each subject's (and session's) inputs in a BIDS folder by their entities.

A small entity parser rather than pybids: the roles are a dozen fixed patterns, a BIDS layout
index would be built (slowly) over every file of a large study for them, and every error here must
name the subject and the files. Raw images live in ``sub-<s>[/ses-<t>]/anat/``; derivatives in
``derivatives/<any pipeline>/sub-<s>[/ses-<t>]/anat/`` (see :data:`ROLES`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from rimnet.errors import RimnetError


class BidsError(RimnetError):
    """A BIDS folder that does not give one file per role: names the subject and the files."""


@dataclass(frozen=True)
class Role:
    """A kind of input: its BIDS suffix and the entities its name must carry."""

    suffix: str
    entities: dict[str, str]
    derivative: bool
    required: bool


ROLES: dict[str, Role] = {
    "t2star": Role("T2starw", {"part": "mag"}, False, True),
    "phase": Role("T2starw", {"part": "phase"}, False, True),
    "flair": Role("FLAIR", {}, False, True),
    "t1w": Role("T1w", {}, False, False),
    "lesion_mask": Role("mask", {"desc": "lesion"}, True, True),
    "rim_mask": Role("mask", {"desc": "rim"}, True, False),
    "rater1_mask": Role("mask", {"desc": "rater1"}, True, False),
    "rater2_mask": Role("mask", {"desc": "rater2"}, True, False),
    "aseg": Role("dseg", {"desc": "aseg"}, True, False),
}
SPACES = ("FLAIR", "T2starw", "T1w")
_NAME = re.compile(
    r"^(?P<entities>(?:[a-zA-Z0-9]+-[a-zA-Z0-9]+_)*)(?P<suffix>[a-zA-Z0-9]+)\.nii(\.gz)?$"
)


def parse_name(name: str) -> tuple[dict[str, str], str] | None:
    """Entities and suffix of a BIDS NIfTI file name, or ``None`` if it is not one.

    Example:
        >>> parse_name("sub-01_ses-m12_part-phase_T2starw.nii.gz")
        ({'sub': '01', 'ses': 'm12', 'part': 'phase'}, 'T2starw')
    """
    m = _NAME.match(name)
    if not m:
        return None
    pairs = [p.split("-", 1) for p in m["entities"].strip("_").split("_") if p]
    return dict(pairs), m["suffix"]


@dataclass
class Session:
    """One subject (and session) and the file found for each role."""

    subject: str
    session: str
    files: dict[str, Path] = field(default_factory=dict)
    spaces: dict[str, str] = field(default_factory=dict)  # derivative role -> its space

    @property
    def patient_id(self) -> str:
        """``<subject>`` or ``<subject>_<session>``: a session is part of the patient id."""
        return f"{self.subject}_{self.session}" if self.session else self.subject

    @property
    def label(self) -> str:
        return f"sub-{self.subject}" + (f" ses-{self.session}" if self.session else "")


def _matches(entities: dict[str, str], role: Role) -> bool:
    return all(entities.get(k) == v for k, v in role.entities.items())


def _anat_dirs(root: Path, subject: str, session: str) -> list[Path]:
    rel = Path(f"sub-{subject}") / (f"ses-{session}" if session else "") / "anat"
    dirs = [root / rel]
    deriv = root / "derivatives"
    if deriv.is_dir():
        dirs += [d / rel for d in sorted(deriv.iterdir()) if d.is_dir()]
    return [d for d in dirs if d.is_dir()]


def find_session(root: Path, subject: str, session: str) -> Session:
    """The files of one subject/session, one per role; raises :class:`BidsError` on a missing
    required role or two candidates for one role."""
    found: dict[str, list[tuple[Path, dict[str, str]]]] = {r: [] for r in ROLES}
    for folder in _anat_dirs(root, subject, session):
        derivative = "derivatives" in folder.relative_to(root).parts
        for path in sorted(folder.iterdir()):
            parsed = parse_name(path.name)
            if parsed is None:
                continue
            entities, suffix = parsed
            if entities.get("sub") != subject or entities.get("ses", "") != session:
                continue
            for name, role in ROLES.items():
                if (
                    role.suffix == suffix
                    and role.derivative == derivative
                    and _matches(entities, role)
                ):
                    found[name].append((path, entities))
    ses = Session(subject, session)
    for name, hits in found.items():
        role = ROLES[name]
        if len(hits) > 1:
            listed = "\n  ".join(str(p) for p, _ in hits)
            raise BidsError(
                f"{ses.label}: {len(hits)} candidate files for {name} ({role.suffix}, "
                f"{role.entities or 'no entity'}); keep one or tell them apart:\n  {listed}"
            )
        if not hits:
            if role.required:
                where = "derivatives/<pipeline>/" if role.derivative else ""
                raise BidsError(
                    f"{ses.label}: no {name} file; expected {where}sub-{subject}/"
                    f"{'ses-' + session + '/' if session else ''}anat/"
                    f"{_pattern(subject, session, role)}"
                )
            continue
        path, entities = hits[0]
        ses.files[name] = path
        if role.derivative:
            space = entities.get("space", "FLAIR")
            if space not in SPACES:
                raise BidsError(f"{ses.label}: {path.name} has space-{space}; use one of {SPACES}")
            ses.spaces[name] = space
    if "T1w" in ses.spaces.values() and "t1w" not in ses.files:
        raise BidsError(
            f"{ses.label}: derivatives in space-T1w but no T1w image to register them with"
        )
    return ses


def _pattern(subject: str, session: str, role: Role) -> str:
    ents = f"sub-{subject}_" + (f"ses-{session}_" if session else "")
    ents += "".join(f"{k}-{v}_" for k, v in role.entities.items())
    return f"{ents}{role.suffix}.nii.gz"


def find_sessions(root: str | Path, participants: list[str] | None = None) -> list[Session]:
    """Every subject (and session) of a BIDS folder, optionally only ``participants`` (labels
    without ``sub-``).

    Example:
        >>> [s.patient_id for s in find_sessions("bids/")]  # doctest: +SKIP
        ['01', '02_m12']
    """
    root = Path(root)
    if not root.is_dir():
        raise BidsError(f"BIDS folder {root} does not exist")
    subjects = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    for label in subjects:
        check_label(root / f"sub-{label}", label)
    if participants:
        wanted = [str(p).removeprefix("sub-") for p in participants]
        missing = sorted(set(wanted) - set(subjects))
        if missing:
            raise BidsError(f"{root}: no folder for participant(s) {missing} (found {subjects})")
        subjects = [s for s in subjects if s in wanted]
    if not subjects:
        raise BidsError(f"{root}: no sub-* folder; is this a BIDS dataset?")
    out = []
    for sub in subjects:
        sessions = sorted(p.name[4:] for p in (root / f"sub-{sub}").glob("ses-*") if p.is_dir())
        for label in sessions:
            check_label(root / f"sub-{sub}" / f"ses-{label}", label)
        out += [find_session(root, sub, ses) for ses in (sessions or [""])]
    return out


def check_label(folder: Path, label: str) -> None:
    """A BIDS label (after ``sub-`` or ``ses-``) holds letters and digits only."""
    if not label or not label.isalnum() or not label.isascii():
        raise BidsError(
            f"folder {folder} does not name a valid BIDS label ({label!r}): the label after "
            "sub-/ses- holds letters and digits only"
        )


def participant_sites(root: str | Path) -> dict[str, str]:
    """``participant label -> site`` from ``participants.tsv`` (empty if it has no site column;
    a table without ``participant_id`` is a :class:`BidsError`)."""
    path = Path(root) / "participants.tsv"
    if not path.exists():
        return {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BidsError(f"{path} cannot be read as a tab-separated table ({exc})") from None
    if rows and "participant_id" not in rows[0]:
        raise BidsError(
            f"{path} has no participant_id column (its columns: {', '.join(rows[0])}); BIDS "
            "names each subject there as sub-<label>"
        )
    if not rows or "site" not in rows[0]:
        return {}
    return {r["participant_id"].removeprefix("sub-"): r["site"].strip() for r in rows}
