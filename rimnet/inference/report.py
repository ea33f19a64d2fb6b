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
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

COLOURS = {"rim+": (220, 20, 60), "rim-": (70, 130, 180), "excluded": (150, 150, 150)}
ORDER = ("phase", "t2star", "flair")
HALF = 16  # voxels each side of the centre in a card's slices
ZOOM = 3  # screen pixels per voxel


def _png(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _grey(plane: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def _planes(vol: np.ndarray, c: Sequence[int]) -> list[np.ndarray]:
    """Axial, coronal and sagittal crops (2·HALF)² through ``c``, zero-padded at the borders,
    oriented for display (superior/anterior up)."""
    pad = np.pad(vol, HALF)
    i, j, k = (int(x) + HALF for x in c)
    cube = pad[i - HALF : i + HALF, j - HALF : j + HALF, k - HALF : k + HALF]
    axial, coronal, sagittal = cube[:, :, HALF], cube[:, HALF, :], cube[HALF, :, :]
    return [np.flipud(p.T) for p in (axial, coronal, sagittal)]


def card_image(
    images: dict[str, np.ndarray], component: np.ndarray, centre: Sequence[int], decision: str
) -> Image.Image:
    """Rows = modalities, columns = axial/coronal/sagittal; the lesion outline, one screen pixel
    thin so the rim under it stays visible, in the decision's colour."""
    names = [m for m in ORDER if m in images] + [m for m in images if m not in ORDER]
    side, label_w, top = 2 * HALF * ZOOM, 48, 14
    zoomed = [
        np.kron(p > 0, np.ones((ZOOM, ZOOM), bool))
        for p in _planes(component.astype(np.uint8), centre)
    ]
    edges = [m & ~ndimage.binary_erosion(m) for m in zoomed]
    canvas = Image.new("RGB", (label_w + 3 * (side + 2), top + len(names) * (side + 2)), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for col, view in enumerate(("axial", "coronal", "sagittal")):
        draw.text((label_w + col * (side + 2) + 4, 1), view, fill=(200, 200, 200))
    for r, name in enumerate(names):
        y = top + r * (side + 2)
        planes = _planes(images[name], centre)
        lo, hi = np.percentile(np.concatenate([p.ravel() for p in planes]), [1, 99])
        draw.text((4, y + side // 2 - 6), name, fill=(230, 230, 230))
        for col, (plane, edge) in enumerate(zip(planes, edges)):
            grey = np.kron(_grey(plane, lo, hi), np.ones((ZOOM, ZOOM), np.uint8))
            rgb = np.repeat(grey[..., None], 3, axis=2)
            rgb[edge] = COLOURS[decision]
            canvas.paste(Image.fromarray(rgb), (label_w + col * (side + 2), y))
    return canvas


def overview_image(background: np.ndarray, lesions, size: int = 360) -> Image.Image:
    """Axial maximum-intensity projection with every candidate's centre as a dot coloured by its
    decision (area ~ volume)."""
    mip = np.flipud(background.max(axis=2).T)
    lo, hi = np.percentile(mip, [1, 99.5])
    scale = size / max(mip.shape)
    img = Image.fromarray(_grey(mip, lo, hi)).convert("RGB")
    img = img.resize((int(mip.shape[1] * scale), int(mip.shape[0] * scale)), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    n_rows = background.shape[1]
    for les in lesions.itertuples():
        x = les.center_i * scale
        y = (n_rows - 1 - les.center_j) * scale
        r = max(2.0, min(9.0, (les.volume_mm3 ** (1 / 3)) * 0.8))
        draw.ellipse((x - r, y - r, x + r, y + r), outline=COLOURS[les.decision], width=2)
    return img


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222}
h1{margin:0 0 4px 0}.verdict{font-size:1.2em;font-weight:600}
.ca{color:#c0143c}.nca{color:#2e6b30}
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

    overview: Image.Image
    cards: list[tuple[object, Image.Image]]  # (the candidate's row of lesions.csv, its card)


def patient_figures(result) -> PatientFigures:
    """Overview and cards of one :class:`~rimnet.inference.predictor.PatientResult` (with
    ``images``), drawn once for the HTML report and for W&B.

    Example:
        >>> figs = patient_figures(result)
        >>> figs.cards[0][0].lesion_id, figs.cards[0][1].size
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
        img = card_image(result.images, result.labels == les.lesion_index, centre, les.decision)
        cards.append((les, img))
    return PatientFigures(overview_image(background, result.lesions), cards)


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
    legend = "".join(f"<span style='background:rgb{c}'></span>{d}" for d, c in COLOURS.items())
    overview = (
        f"<div><img alt='overview' src='{_png(figures.overview)}'>"
        f"<p class='legend'>axial maximum-intensity projection{legend}</p></div>"
    )
    cards = []
    for les, img in figures.cards:
        kind = {"rim+": "rimplus", "rim-": "rimminus"}.get(les.decision, "excluded")
        why = f"<p>excluded: {html.escape(les.excluded)}</p>" if les.excluded else ""
        cards.append(
            f"<div class='card {kind}' id='{html.escape(les.lesion_id)}'>"
            f"<img alt='{html.escape(les.lesion_id)}' src='{_png(img)}'>"
            f"<p><b>{html.escape(les.lesion_id)}</b>: {card_caption(les)}</p>"
            f"<p>{html.escape(str(les.location))}, {les.volume_mm3:.0f} mm&sup3;</p>{why}</div>"
        )
    body = f"<div class='top'><div>{head}</div>{overview}</div><div class='cards'>"
    return _page(f"rimnet QC: {result.patient_id}", body + "".join(cards) + "</div>")


def card_caption(les) -> str:
    """``rim+, p = 0.912 ± 0.031`` for a candidate's row."""
    return f"{les.decision}, p = {les.prob:.3f} ± {les.prob_std:.3f}"


def write_patient_report(
    result, folder: Path, bundle_name: str, figures: PatientFigures | None = None
) -> Path:
    """``folder/report.html`` of one patient."""
    path = folder / "report.html"
    path.write_text(patient_html(result, bundle_name, figures), encoding="utf-8")
    return path


def cohort_html(summaries: Sequence[dict], failures: Sequence[dict] = ()) -> str:
    """The cohort's index: one row per patient with counts, verdict and a link to its report."""
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
    body = (
        f"<h1>rimnet QC: {len(summaries)} patients, {n_ca} chronic active</h1>"
        "<table><tr><th>patient</th><th>site</th><th>rim+</th><th>assessed</th>"
        f"<th>chronic active</th></tr>{rows}</table>"
        + (f"<h2>failed</h2><ul>{failed}</ul>" if failed else "")
    )
    return _page("rimnet QC: cohort", body)
