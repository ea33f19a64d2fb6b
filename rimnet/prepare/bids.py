"""Find each subject's (and session's) inputs in a BIDS dataset with pybids.

A :class:`bids.BIDSLayout` over the raw dataset and every pipeline under ``derivatives/`` answers
one query per role (:data:`ROLES`): raw images in ``sub-<s>[/ses-<t>]/anat/``, masks and the aseg
in ``derivatives/<pipeline>/sub-<s>[/ses-<t>]/anat/``. ``bids_filter`` narrows a role's query by
entities, in the habit of fMRIPrep's ``--bids-filter-file``; multi-echo GRE (``MEGRE`` with
``echo-``) is resolved to one echo (or the magnitude's root sum of squares). Every error names the
subject, the files and, where one exists, the filter that resolves it.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rimnet.errors import RimnetError

log = logging.getLogger(__name__)


class BidsError(RimnetError):
    """A BIDS dataset that does not give one file per role: names the subject and the files."""


@dataclass(frozen=True)
class Role:
    """A kind of input: its BIDS suffixes and the entities its name must carry."""

    suffixes: tuple[str, ...]
    entities: dict[str, str | tuple[str | None, ...]]  # a tuple: any of these (None: absent)
    derivative: bool
    required: bool


ROLES: dict[str, Role] = {
    "t2star": Role(("T2starw", "MEGRE"), {"part": ("mag", None)}, False, True),  # mag by default
    "phase": Role(("T2starw", "MEGRE"), {"part": "phase"}, False, True),
    "flair": Role(("FLAIR",), {}, False, True),
    "t1w": Role(("T1w",), {}, False, False),
    "lesion_mask": Role(("mask",), {"desc": "lesion"}, True, True),
    "rim_mask": Role(("mask",), {"desc": "rim"}, True, False),
    "rater1_mask": Role(("mask",), {"desc": "rater1"}, True, False),
    "rater2_mask": Role(("mask",), {"desc": "rater2"}, True, False),
    "aseg": Role(("dseg",), {"desc": "aseg"}, True, False),
}
# space-<label> of a derivative: the subject's own raw image with that suffix (as fMRIPrep's
# space-T1w); none means FLAIR, where lesion segmentations are drawn.
SPACES = ("FLAIR", "T2starw", "T1w")
# Filter keys as users write them (fMRIPrep's habit) -> pybids entity names.
FILTER_KEYS = {
    "acq": "acquisition",
    "acquisition": "acquisition",
    "run": "run",
    "echo": "echo",
    "ses": "session",
    "session": "session",
    "rec": "reconstruction",
    "reconstruction": "reconstruction",
    "space": "space",
    "pipeline": "pipeline",  # derivatives only: the folder name under derivatives/
}
_SHORT = {"acquisition": "acq", "session": "ses", "reconstruction": "rec"}
_INTEGER = ("run", "echo")
_SHOWN = ("acquisition", "run", "echo", "reconstruction", "space", "desc")


@dataclass
class EchoChoice:
    """How a multi-echo GRE becomes one magnitude and one phase.

    Args:
        echo: ``auto`` (the echo nearest ``echo_time_ms``), an echo number (1, 2, ...) or ``rss``
            (magnitude: root sum of squares of all echoes; phase: the echo nearest
            ``echo_time_ms``).
        echo_time_ms: the target echo time of ``auto`` and of ``rss``'s phase.
    """

    echo: str | int = "auto"
    echo_time_ms: float = 35.0


@dataclass
class Session:
    """One subject (and session), the file found for each role and what its sidecars say."""

    subject: str
    session: str
    files: dict[str, Path] = field(default_factory=dict)
    spaces: dict[str, str] = field(default_factory=dict)  # derivative role -> its space
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> sidecar
    magnitude_echoes: list[Path] = field(default_factory=list)  # echo=rss: combined magnitudes
    echo_note: str = ""  # which echo was used and why (multi-echo only)

    @property
    def patient_id(self) -> str:
        """``<subject>`` or ``<subject>_<session>``: a session is part of the patient id."""
        return f"{self.subject}_{self.session}" if self.session else self.subject

    @property
    def label(self) -> str:
        return f"sub-{self.subject}" + (f" ses-{self.session}" if self.session else "")

    @property
    def prefix(self) -> str:
        """The BIDS name prefix, ``sub-<s>[_ses-<t>]``."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def folder(self) -> Path:
        """The subject's (or session's) folder relative to a dataset root."""
        return Path(f"sub-{self.subject}") / (f"ses-{self.session}" if self.session else "")


def parse_filters(filters: dict | str | Path | None) -> dict[str, dict[str, Any]]:
    """A ``bids_filter`` (role -> entities: a dict, a JSON file as fMRIPrep's
    ``--bids-filter-file``, or JSON text) checked and mapped to pybids entity names.

    Example:
        >>> parse_filters({"phase": {"acq": "highres", "run": 2}})
        {'phase': {'acquisition': 'highres', 'run': 2}}
    """
    if filters is None or filters == "":
        return {}
    if isinstance(filters, (str, Path)):
        text = str(filters)
        if Path(text).suffix == ".json" or Path(text).is_file():
            if not Path(text).is_file():
                raise BidsError(f"bids_filter file {text} does not exist")
            text = Path(text).read_text()
        try:
            filters = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"bids_filter is neither a JSON file nor JSON ({exc}): {text!r}"
            raise BidsError(msg) from None
    if not isinstance(filters, dict):
        raise BidsError(f"bids_filter must map roles to entities, got {filters!r}")
    out: dict[str, dict[str, Any]] = {}
    for role, entities in filters.items():
        if role not in ROLES:
            raise BidsError(f"bids_filter names {role!r}; roles are {', '.join(ROLES)}")
        if not isinstance(entities, dict):
            raise BidsError(f"bids_filter[{role!r}] must map entities to values")
        out[role] = {}
        for key, value in entities.items():
            if key not in FILTER_KEYS:
                raise BidsError(
                    f"bids_filter[{role!r}] names {key!r}; filter by {', '.join(FILTER_KEYS)}"
                )
            name = FILTER_KEYS[key]
            out[role][name] = int(value) if name in _INTEGER else str(value)
    return out


def check_derivatives(root: Path, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """The pipelines under ``derivatives/`` (not ``exclude``): those that describe themselves
    (``dataset_description.json`` with ``GeneratedBy``, as BIDS asks) and those that do not."""
    deriv = root / "derivatives"
    if not deriv.is_dir():
        return [], []
    skip = exclude.resolve() if exclude is not None else None
    described, undescribed = [], []
    for folder in sorted(p for p in deriv.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.resolve() == skip:
            continue
        desc = folder / "dataset_description.json"
        try:
            info = json.loads(desc.read_text()) if desc.exists() else None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BidsError(f"{desc} is not JSON ({exc})") from None
        good = isinstance(info, dict) and (
            info.get("GeneratedBy") or info.get("PipelineDescription")
        )
        (described if good else undescribed).append(folder)
    return described, undescribed


@dataclass
class Layouts:
    """pybids layouts: the raw dataset with its described pipelines, and one layout per pipeline
    without a ``dataset_description.json`` (read with the derivatives entities all the same)."""

    main: Any
    extra: list[Any]
    undescribed: list[Path]


def open_layouts(root: Path, exclude: Path | None = None) -> Layouts:
    """The layouts of ``root`` and its derivatives (not ``exclude``, e.g. our own output)."""
    from bids import BIDSLayout

    described, undescribed = check_derivatives(root, exclude)
    try:
        main = BIDSLayout(str(root), validate=False, derivatives=[str(p) for p in described])
        extra = [
            BIDSLayout(str(p), validate=False, config=["bids", "derivatives"]) for p in undescribed
        ]
    except Exception as exc:  # pybids raises many kinds; all mean "not a BIDS dataset here"
        raise BidsError(f"{root} cannot be read as a BIDS dataset: {exc}") from None
    return Layouts(main, extra, undescribed)


def _pipeline(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[1] if parts[0] == "derivatives" and len(parts) > 1 else ""


def _values(value: str | tuple) -> Any:
    from bids.layout import Query

    if isinstance(value, tuple):
        return [Query.NONE if v is None else v for v in value]
    return value


def _query(layouts: Layouts, root: Path, ses: Session, name: str, filters: dict) -> list:
    from bids.layout import Query

    role = ROLES[name]
    skip = ("pipeline", "session")  # the session is chosen in find_sessions
    wanted = {k: v for k, v in filters.get(name, {}).items() if k not in skip}
    query = {
        "subject": ses.subject,
        "session": ses.session or Query.NONE,
        "suffix": list(role.suffixes),
        "extension": [".nii", ".nii.gz"],
        "datatype": "anat",
        "invalid_filters": "allow",
        **{k: _values(v) for k, v in role.entities.items()},
        **wanted,
    }
    if not role.derivative:
        hits = layouts.main.get(scope="raw", **query)
    else:
        hits = layouts.main.get(scope="derivatives", **query) if layouts.main.derivatives else []
        for extra in layouts.extra:
            hits += extra.get(**query)
    pipeline = filters.get(name, {}).get("pipeline")
    if pipeline:
        hits = [h for h in hits if _pipeline(Path(h.path), root) == pipeline]
    return sorted(hits, key=lambda h: h.path)


def _differences(hits: list) -> dict[str, list[str]]:
    """Entities (and pipelines) whose values tell the candidate files apart."""
    ents = [h.get_entities() for h in hits]
    out = {}
    for key in _SHOWN:
        values = [str(e.get(key, "")) for e in ents]
        if len(set(values)) > 1:
            out[_SHORT.get(key, key)] = values
    return out


def _ambiguous(ses: Session, name: str, hits: list, root: Path) -> BidsError:
    listed = "\n  ".join(str(h.path) for h in hits)
    diff = _differences(hits)
    if not diff:
        pipelines = [_pipeline(Path(h.path), root) for h in hits]
        if len(set(pipelines)) > 1:
            diff = {"pipeline": pipelines}
    if diff:
        key, values = next(iter(diff.items()))
        first = values[0]
        value = int(first) if key in ("run", "echo") and first.isdigit() else first
        hint = f"bids_filter='{{{name}:{{{key}:{value}}}}}'"
        how = f"choose one with {hint} (they differ in {key}: {', '.join(values)})"
    else:
        how = "keep one of them"
    return BidsError(f"{ses.label}: {len(hits)} candidate files for {name}; {how}:\n  {listed}")


def _echo_time_ms(hit: Any) -> float | None:
    te = hit.get_metadata().get("EchoTime")
    return None if te is None else float(te) * 1000.0


def _choose_echo(ses: Session, mags: list, phases: list, choice: EchoChoice) -> tuple[Any, Any]:
    """One magnitude and one phase of a multi-echo GRE (``ses.magnitude_echoes`` for rss)."""

    def by_echo(hits: list) -> dict[int, Any]:
        echoes = [h.get_entities().get("echo") for h in hits]
        if None in echoes or len(set(echoes)) != len(echoes):
            return {}
        return {int(e): h for e, h in zip(echoes, hits)}

    mag, pha = by_echo(mags), by_echo(phases)
    if not mag or not pha or set(mag) != set(pha):
        return mags[0], phases[0]  # not a multi-echo pair: the caller reports the ambiguity
    echoes = sorted(mag)
    if isinstance(choice.echo, int) or str(choice.echo).isdigit():
        n = int(choice.echo)
        if n not in mag:
            raise BidsError(f"{ses.label}: echo={n}, but its echoes are {echoes}")
        ses.echo_note = f"echo {n} (echo={n})"
        return mag[n], pha[n]
    times = {e: _echo_time_ms(pha[e]) or _echo_time_ms(mag[e]) for e in echoes}
    missing = [e for e, t in times.items() if t is None]
    if missing:
        raise BidsError(
            f"{ses.label}: echoes {missing} have no EchoTime in their sidecars; give echo=<n>"
        )
    near = min(echoes, key=lambda e: abs(times[e] - choice.echo_time_ms))
    te = f"TE {times[near]:.1f} ms, nearest {choice.echo_time_ms:g} ms"
    if choice.echo == "rss":
        ses.magnitude_echoes = [Path(mag[e].path) for e in echoes]
        ses.echo_note = (
            f"magnitude: root sum of squares of echoes {echoes}; phase: echo {near} ({te})"
        )
    elif choice.echo == "auto":
        ses.echo_note = f"echo {near} of {echoes} ({te})"
    else:
        raise BidsError(f"echo={choice.echo!r}: choose auto, rss or an echo number")
    return mag[near], pha[near]


def find_session(
    layouts: Layouts,
    root: Path,
    subject: str,
    session: str,
    filters: dict | None = None,
    echo: EchoChoice | None = None,
) -> Session:
    """The files of one subject/session, one per role; raises :class:`BidsError` on a missing
    required role or two candidates for one role that no rule tells apart."""
    filters = filters or {}
    ses = Session(subject, session)
    found = {name: _query(layouts, root, ses, name, filters) for name in ROLES}
    if len(found["t2star"]) > 1 and len(found["phase"]) > 1:
        choice = echo or EchoChoice()
        mag, pha = _choose_echo(ses, found["t2star"], found["phase"], choice)
        if ses.echo_note:
            found["t2star"], found["phase"] = [mag], [pha]
    for name, hits in found.items():
        role = ROLES[name]
        if len(hits) > 1:
            raise _ambiguous(ses, name, hits, root)
        if not hits:
            if role.required:
                narrowed = f" matching bids_filter {filters[name]}" if filters.get(name) else ""
                raise BidsError(
                    f"{ses.label}: no {name} file{narrowed}; expected {_pattern(ses, name)}"
                )
            continue
        hit = hits[0]
        ses.files[name] = Path(hit.path)
        ses.metadata[name] = dict(hit.get_metadata())
        if role.derivative:
            space = hit.get_entities().get("space", "FLAIR")
            if space not in SPACES:
                raise BidsError(
                    f"{ses.label}: {Path(hit.path).name} has space-{space}; use one of {SPACES} "
                    "(the subject's own raw image with that suffix)"
                )
            ses.spaces[name] = space
    if "T1w" in ses.spaces.values() and "t1w" not in ses.files:
        raise BidsError(
            f"{ses.label}: derivatives in space-T1w but no T1w image to register them with"
        )
    return ses


def _pattern(ses: Session, name: str) -> str:
    role = ROLES[name]
    where = "derivatives/<pipeline>/" if role.derivative else ""
    ents = "".join(f"{k}-{v[0] if isinstance(v, tuple) else v}_" for k, v in role.entities.items())
    return f"{where}{ses.folder.as_posix()}/anat/{ses.prefix}_{ents}{role.suffixes[0]}.nii.gz"


def find_sessions(
    root: str | Path,
    participants: list[str] | None = None,
    filters: dict | str | None = None,
    echo: EchoChoice | None = None,
    exclude: Path | None = None,
) -> list[Session]:
    """Every subject (and session) of a BIDS dataset, optionally only ``participants`` (labels
    without ``sub-``).

    Args:
        root: the raw dataset (its ``derivatives/`` are searched too).
        participants: only these subjects.
        filters: ``bids_filter``: role -> entities (:func:`parse_filters`).
        echo: how a multi-echo GRE becomes one magnitude and phase.
        exclude: a derivatives pipeline folder not to read (prepare's own output).

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
    parsed = parse_filters(filters)
    wanted_sessions = {f["session"] for f in parsed.values() if "session" in f}
    layouts = open_layouts(root, exclude)
    for folder in layouts.undescribed:
        log.warning(
            "%s has no dataset_description.json with GeneratedBy (BIDS derivatives describe "
            "themselves); read with the derivatives entities all the same",
            folder,
        )
    out = []
    for sub in subjects:
        sessions = sorted(p.name[4:] for p in (root / f"sub-{sub}").glob("ses-*") if p.is_dir())
        for label in sessions:
            check_label(root / f"sub-{sub}" / f"ses-{label}", label)
        if wanted_sessions:
            sessions = [s for s in sessions if s in wanted_sessions]
        out += [find_session(layouts, root, sub, s, parsed, echo) for s in (sessions or [""])]
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
