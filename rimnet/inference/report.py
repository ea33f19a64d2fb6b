"""A self-contained HTML QC report per patient (and one per cohort) for raters to look at.

Per patient: a header (id, bundle, threshold, rim+ count, the chronic-active verdict), an axial
overview with every candidate coloured by its decision, and one card per candidate, sorted by
probability: axial, coronal and sagittal slices through the lesion centre of every modality
loaded (FLAIR included, as the paper's Fig. 1), the lesion outline drawn, and its probability,
ensemble spread, decision, location, volume and exclusion reason. Excluded candidates are greyed.
Images are PNGs embedded as data URIs: the file loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rimnet.figures import COLOURS
from rimnet.figures.slices import qc_card, qc_overview

DECISIONS = ("rim+", "rim-", "excluded")


def _png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222}
h1{margin:0 0 4px 0}.verdict{font-size:1.2em;font-weight:600}
.ca{color:#c0143c}.nca{color:#2e6b30}
.warn{background:#fff3cd;border:1px solid #c9a227;padding:6px;max-width:42em}
.top{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.card{border:2px solid #ccc;border-radius:6px;padding:6px;background:#fafafa}
.card.rimplus{border-color:#dc143c}.card.rimminus{border-color:#4682b4}
.card.excluded{opacity:.45}
.card p{margin:4px 0;font-size:.85em}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}
.legend span{display:inline-block;width:12px;height:12px;border-radius:6px;margin:0 4px 0 10px}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>"
    )


@dataclass
class PatientFigures:
    """The pictures of one patient's report: the overview and one card per candidate, in report
    order (assessed by falling probability, then excluded)."""

    overview: bytes  # PNG
    cards: list[tuple[object, bytes]]  # (the candidate's row of lesions.csv, its card as PNG)


def patient_figures(result) -> PatientFigures:
    """Overview and cards of one :class:`~rimnet.inference.predictor.PatientResult` (with
    ``images``), drawn once for the HTML report and for W&B.

    Example:
        >>> figs = patient_figures(result)
        >>> figs.cards[0][0].lesion_id, figs.cards[0][1][:4]
    """
    lesions = result.lesions.copy()
    lesions["_order"] = (lesions["decision"] == "excluded").astype(int)
    lesions = lesions.sort_values(["_order", "prob"], ascending=[True, False])
    background = result.images.get("flair", next(iter(result.images.values())))
    cards = []
    for les in lesions.itertuples():
        centre = (
            int(round(les.center_i)), int(round(les.center_j)), int(round(les.center_k))
        )  # fmt: skip
        mask = result.labels == les.lesion_index
        cards.append((les, qc_card(result.images, mask, centre, les.decision, result.affine)))
    return PatientFigures(qc_overview(background, result.lesions, result.affine), cards)


def patient_html(result, bundle_name: str, figures: PatientFigures | None = None) -> str:
    """The report of one :class:`~rimnet.inference.predictor.PatientResult` (with ``images``);
    ``figures`` when they were drawn already."""
    s = result.summary
    figures = figures or patient_figures(result)
    verdict = "chronic active" if s["chronic_active"] else "not chronic active"
    head = (
        f"<h1>{html.escape(str(result.patient_id))}</h1>"
        f"<p class='verdict {'ca' if s['chronic_active'] else 'nca'}'>{s['rim_pos_count']} rim+ "
        f"lesion(s): {verdict} (&ge; {s['chronic_threshold']})</p>"
        f"<p>bundle {html.escape(bundle_name)} ({html.escape(str(s['experiment']))}, "
        f"{s['members']} model(s){', TTA' if s['tta'] else ''}); threshold {s['threshold']:.3f}; "
        f"{s['candidates']} candidates, {s['assessed']} assessed</p>"
    )
    if not s.get("threshold_calibrated", True):
        head += (
            "<p class='warn'>The threshold is not calibrated: the bundle fell back to 0.5 (no test "
            "fold held both classes). Read the rim+ calls, and the verdict, with caution.</p>"
        )
    legend = "".join(f"<span style='background:{COLOURS[d]}'></span>{d}" for d in DECISIONS)
    overview = (
        f"<div><img alt='overview' src='{_png(figures.overview)}'>"
        f"<p class='legend'>axial maximum-intensity projection, letters: the "
        f"directions of the image axes{legend}</p></div>"
    )
    cards = []
    for les, img in figures.cards:
        kind = {"rim+": "rimplus", "rim-": "rimminus"}.get(les.decision, "excluded")
        why = f"<p>excluded: {html.escape(les.excluded)}</p>" if les.excluded else ""
        cards.append(
            f"<div class='card {kind}' id='{html.escape(les.lesion_id)}'>"
            f"<img alt='{html.escape(les.lesion_id)}' src='{_png(img)}'>"
            f"<p><b>{html.escape(les.lesion_id)}</b>: {card_caption(les, s['members'])}</p>"
            f"<p>{html.escape(str(les.location))}, {les.volume_mm3:.0f} mm&sup3;</p>{why}</div>"
        )
    body = f"<div class='top'><div>{head}</div>{overview}</div><div class='cards'>"
    return _page(f"rimnet QC: {result.patient_id}", body + "".join(cards) + "</div>")


def card_caption(les, members: int = 2) -> str:
    """``rim+, p = 0.912 ± 0.031`` for a candidate's row; the ensemble spread only when there
    is an ensemble (``members`` > 1)."""
    spread = f" ± {les.prob_std:.3f}" if members > 1 else ""
    return f"{les.decision}, p = {les.prob:.3f}{spread}"


def write_patient_report(
    result, folder: Path, bundle_name: str, figures: PatientFigures | None = None
) -> Path:
    """``folder/report.html`` of one patient."""
    path = folder / "report.html"
    path.write_text(patient_html(result, bundle_name, figures), encoding="utf-8")
    return path


def cohort_html(
    summaries: Sequence[dict], failures: Sequence[dict] = (), bundle_name: str = ""
) -> str:
    """The cohort's index: the bundle, threshold and date, then one row per patient with counts,
    verdict and a link to its report."""
    rows = "".join(
        f"<tr><td><a href='{html.escape(s['patient_id'])}/report.html'>"
        f"{html.escape(s['patient_id'])}</a></td><td>{html.escape(str(s.get('site', '')))}</td>"
        f"<td>{s['rim_pos_count']}</td><td>{s['assessed']}</td>"
        f"<td class='{'ca' if s['chronic_active'] else 'nca'}'>"
        f"{'chronic active' if s['chronic_active'] else 'no'}</td></tr>"
        for s in summaries
    )
    failed = "".join(
        f"<li>{html.escape(f['patient_id'])}: {html.escape(f['error'])}</li>" for f in failures
    )
    n_ca = sum(bool(s["chronic_active"]) for s in summaries)
    first = summaries[0] if summaries else {}
    about = f"bundle {html.escape(bundle_name)}" if bundle_name else ""
    if first:
        calibrated = "" if first.get("threshold_calibrated", True) else " (not calibrated)"
        about += (
            f" ({html.escape(str(first['experiment']))}, {first['members']} model(s)); threshold "
            f"{first['threshold']:.3f}{calibrated}; chronic active at &ge; "
            f"{first['chronic_threshold']} rim+"
        )
    about += f"; written {datetime.now().strftime('%Y-%m-%d %H:%M')}"
    body = (
        f"<h1>rimnet QC: {len(summaries)} patients, {n_ca} chronic active</h1><p>{about}</p>"
        "<table><tr><th>patient</th><th>site</th><th>rim+</th><th>assessed</th>"
        f"<th>chronic active</th></tr>{rows}</table>"
        + (f"<h2>failed</h2><ul>{failed}</ul>" if failed else "")
    )
    return _page("rimnet QC: cohort", body)
