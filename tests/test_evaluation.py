"""Statistics against independent implementations and brute force; analyses on hand-made tables."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import average_precision_score, roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from rimnet.config import experiment_catalogue
from rimnet.evaluation import analysis
from rimnet.evaluation.stats import (
    confusion_metrics,
    delong_ci,
    delong_components,
    delong_covariance,
    delong_test,
    mcnemar_test,
    threshold_at_specificity,
    two_proportion_z_test,
    welch_t_test,
)


def brute_force_components(y, s):
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(), psi.mean(1), psi.mean(0)


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.2
    a = np.round(y * 1.2 + rng.normal(size=300), 1)  # rounding creates ties
    b = np.round(0.6 * a + y * 0.5 + rng.normal(size=300), 1)
    return y.astype(int), a, b


def test_delong_components_equal_brute_force(scored):
    y, a, b = scored
    aucs, v10, v01 = delong_components(y, np.vstack([a, b]))
    for r, s in enumerate((a, b)):
        auc, bv10, bv01 = brute_force_components(y, s)
        assert aucs[r] == pytest.approx(auc) == pytest.approx(roc_auc_score(y, s))
        np.testing.assert_allclose(v10[r], bv10)
        np.testing.assert_allclose(v01[r], bv01)


def test_delong_covariance_and_test_by_hand(scored):
    y, a, b = scored
    _, ca10, ca01 = brute_force_components(y, a)
    _, cb10, cb01 = brute_force_components(y, b)
    m, n = len(ca10), len(ca01)
    s10 = np.cov(np.vstack([ca10, cb10]))
    s01 = np.cov(np.vstack([ca01, cb01]))
    cov = s10 / m + s01 / n
    _, fast = delong_covariance(y, np.vstack([a, b]))
    np.testing.assert_allclose(fast, cov)
    z = (roc_auc_score(y, a) - roc_auc_score(y, b)) / np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    r = delong_test(y, a, b)
    assert r.z == pytest.approx(z) and r.p_value == pytest.approx(2 * sps.norm.sf(abs(z)))
    assert delong_test(y, a, a).p_value == pytest.approx(1.0)
    lo, auc, hi = delong_ci(y, a)
    assert auc == pytest.approx(roc_auc_score(y, a))
    assert hi - auc == pytest.approx(1.959964 * np.sqrt(cov[0, 0]), rel=1e-5) and lo < auc < hi


def test_delong_scales_to_many_lesions():
    rng = np.random.default_rng(1)
    y = (rng.random(40_000) < 0.09).astype(int)
    s = y + rng.normal(size=y.size)
    r = delong_test(y, s, s + rng.normal(scale=0.3, size=y.size))
    assert 0 <= r.p_value <= 1 and r.auc_a > r.auc_b


def test_mcnemar_equals_statsmodels():
    rng = np.random.default_rng(2)
    a, b = rng.random(200) < 0.8, rng.random(200) < 0.7
    ours = mcnemar_test(a, b)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    ref = sm_mcnemar(table, exact=False, correction=True)
    assert ours.statistic == pytest.approx(ref.statistic) and ours.p_value == pytest.approx(
        ref.pvalue
    )
    assert mcnemar_test([True, False], [True, False]).p_value == 1.0


def test_welch_equals_scipy():
    a, b = [1, 2, 3, 4, 9.0], [2, 2, 2.5, 3.0]
    t, p = welch_t_test(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue))


def test_two_proportion_z_test_by_hand():
    # §3.3: 225/389 rim+ vs 1203/4605 rim- lesions are periventricular
    z, p = two_proportion_z_test(225, 389, 1203, 4605)
    pooled = (225 + 1203) / (389 + 4605)
    z_hand = (225 / 389 - 1203 / 4605) / np.sqrt(pooled * (1 - pooled) * (1 / 389 + 1 / 4605))
    assert z == pytest.approx(z_hand) and p == pytest.approx(sps.norm.sf(z_hand)) and p < 1e-4


def test_threshold_at_specificity_on_hand_made_scores():
    y = [0] * 20 + [1] * 4
    s = list(range(20)) + [30, 19, 18.5, 2]
    t = threshold_at_specificity(y, s, 0.95)  # one false positive allowed out of 20
    assert 18 < t <= 19
    pred = np.array(s) >= t
    m = confusion_metrics(y, pred)
    assert m["specificity"] == 0.95 and m["sensitivity"] == 0.75
    assert threshold_at_specificity(y, s, 1.0) > 19  # no false positive
    y2, s2 = [0, 0, 0, 0, 1], [0.5, 0.5, 0.5, 0.1, 0.9]  # ties at the boundary are all excluded
    assert (
        confusion_metrics(y2, np.array(s2) >= threshold_at_specificity(y2, s2, 0.7))["specificity"]
        == 1.0
    )


def test_confusion_metrics_by_hand():
    m = confusion_metrics([1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0, 0])
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 4)
    assert (
        m["accuracy"] == 0.75
        and m["sensitivity"] == pytest.approx(2 / 3)
        and m["specificity"] == 0.8
    )
    assert m["ppv"] == pytest.approx(2 / 3) and m["npv"] == 0.8 and m["f1"] == pytest.approx(2 / 3)


def _preds(seed=0, folds=4, n=200):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(int)
    return pd.DataFrame(
        {
            "label": y,
            "prob": np.clip(0.5 * y + rng.random(n) * 0.8, 0, 1),
            "fold": np.arange(n) % folds,
        }
    )


def test_mean_curves_match_sklearn_per_fold():
    pred = _preds()
    mc = analysis.mean_curves(pred)
    for fold, g in pred.groupby("fold"):
        assert mc.fold_auc[fold] == pytest.approx(roc_auc_score(g.label, g.prob))
        assert mc.fold_ap[fold] == pytest.approx(average_precision_score(g.label, g.prob))
    assert mc.auc == pytest.approx(np.mean(list(mc.fold_auc.values())))
    assert mc.pooled_auc == pytest.approx(roc_auc_score(pred.label, pred.prob))
    assert mc.tpr[0] >= 0 and mc.tpr[-1] == 1.0 and np.all(np.diff(mc.tpr) >= 0)
    # the area under the mean step curve approaches the mean AUC
    assert np.trapezoid(mc.tpr, mc.grid) == pytest.approx(mc.auc, abs=0.02)


def test_roc_on_grid_is_piecewise_constant():
    tpr = analysis.roc_on_grid([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], np.array([0.0, 0.49, 0.5, 1.0]))
    assert tpr.tolist() == [0.5, 0.5, 1.0, 1.0]


def test_patient_wise_counts_on_a_hand_made_table():
    pred = pd.DataFrame(
        {
            "patient_id": ["a"] * 5 + ["b"] * 3 + ["c"] * 2,
            "label": [1, 1, 1, 1, 0, 1, 0, 0, 0, 0],
            "pred": [1, 1, 1, 0, 1, 1, 1, 0, 0, 0],
            "rater1": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
            "rater2": [1, 1, 0, 1, 0, 1, 0, 0, 1, 0],
        }
    )
    counts = analysis.patient_counts(pred)
    assert counts.loc["a", ["true", "model", "rater1", "rater2"]].tolist() == [4, 4, 4, 3]
    assert counts.loc["b", ["true", "model"]].tolist() == [1, 2]
    pw = analysis.patient_wise(counts, thresholds=[1, 4])
    at4 = pw[(pw.threshold == 4)].set_index("who")
    assert at4.loc["model", "accuracy"] == 1.0 and at4.loc["rater2", "accuracy"] == pytest.approx(
        2 / 3
    )
    at1 = pw[(pw.threshold == 1)].set_index("who")
    assert at1.loc["rater2", ["tp", "fp", "tn", "fn"]].tolist() == [2, 1, 0, 0]


def test_operating_point_table_and_error_analyses():
    pred = _preds(seed=3)
    rng = np.random.default_rng(4)
    pred["rater1"] = np.where(rng.random(len(pred)) < 0.9, pred.label, 1 - pred.label)
    pred["rater2"] = pred.label
    pred["consensus_needed"] = pred.rater1 != pred.rater2
    pred["location"] = np.array(["periventricular", "juxtacortical", "deep_wm", "other"])[
        np.arange(len(pred)) % 4
    ]
    op = analysis.apply_operating_point(pred)
    for _, g in op.groupby("fold"):
        assert confusion_metrics(g.label, g.pred)["specificity"] >= 0.95
    t3 = analysis.lesion_table(op)
    assert list(t3.index) == ["model", "rater1", "rater2"]
    assert t3.loc["model", "accuracy"] == pytest.approx((op.pred == op.label).mean())
    assert t3.loc["model", "p_vs_rater1"] == pytest.approx(
        mcnemar_test(op.pred == op.label, op.rater1 == op.label).p_value
    )
    err = analysis.consensus_error_analysis(op).set_index("class")
    wrong = op.pred != op.label
    agreed_pos = wrong[(op.label == 1) & ~op.consensus_needed]
    assert err.loc["rim+", "error_agreed"] == pytest.approx(agreed_pos.mean())
    loc = analysis.location_analysis(op).set_index("location")
    assert loc["rim+"].sum() == op.label.sum()
    g = op[op.location == "deep_wm"]
    assert loc.loc["deep_wm", "accuracy"] == pytest.approx((g.pred == g.label).mean())


def _synthetic_sweep(sweep: Path) -> pd.DataFrame:
    """Predictions of every configuration for 24 patients (4 folds) and the ICS ensemble."""
    from rimnet.config import cv_experiments
    from rimnet.evaluation.report import ICS_EXPERIMENT

    rng = np.random.default_rng(7)
    n = 240
    base = pd.DataFrame(
        {
            "lesion_id": [f"p{i % 24:02d}_L{i:04d}" for i in range(n)],
            "patient_id": [f"p{i % 24:02d}" for i in range(n)],
            "site": np.where(np.arange(n) % 24 < 12, "basel", "lausanne"),
            "label": (rng.random(n) < 0.15).astype(int),
        }
    )
    base["rater1"] = np.where(rng.random(n) < 0.95, base.label, 1 - base.label)
    base["rater2"] = np.where(rng.random(n) < 0.95, base.label, 1 - base.label)
    base["consensus_needed"] = base.rater1 != base.rater2
    base["location"] = np.array(list(analysis.LOCATIONS))[rng.integers(0, 4, n)]
    fold = (base.patient_id.str[1:].astype(int) % 4).to_numpy()
    for e in cv_experiments():
        p = base.assign(
            prob=np.clip(base.label * 0.4 + rng.random(n) * 0.7, 0, 1), experiment=e, fold=fold
        )
        for k in range(4):
            (sweep / e / f"fold{k}").mkdir(parents=True)
            p[p.fold == k].to_csv(sweep / e / f"fold{k}" / "predictions.csv", index=False)
    lau = base[base.site == "lausanne"].assign(
        prob=lambda d: np.clip(d.label * 0.5 + rng.random(len(d)) * 0.6, 0, 1), fold="ensemble"
    )
    (sweep / ICS_EXPERIMENT / "ensemble").mkdir(parents=True)
    lau.to_csv(sweep / ICS_EXPERIMENT / "ensemble" / "predictions.csv", index=False)
    return base


def test_report_writer_on_a_synthetic_sweep(tmp_path, monkeypatch):
    from helpers import read_offline_wandb

    from rimnet.evaluation.report import write_report

    monkeypatch.setenv("WANDB_MODE", "offline")
    _synthetic_sweep(tmp_path / "sweep")
    out = tmp_path / "report"
    summary = write_report(tmp_path / "sweep", out, experiment_catalogue(), log_wandb=True)
    run = next((out / "wandb").glob("offline-run-*/run-*.wandb"))  # beside the report
    history, _ = read_offline_wandb(run)
    logged = set().union(*history)
    assert {
        "table3/_type",
        "auc/_type",
        "fig5_roc_pr/_type",
        "fig8_confusion/_type",
    } <= logged  # tables and images
    assert summary["missing"] == []
    t3 = pd.read_csv(out / "table3.csv")
    assert list(t3.columns[:8]) == [
        "section",
        "row",
        "accuracy",
        "f1",
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
    ]
    assert {"p_vs_expert1", "p_vs_expert2"} <= set(t3.columns)
    rimnet = pd.concat(
        [
            pd.read_csv(f)
            for f in sorted((tmp_path / "sweep" / "phase_flair").glob("fold*/predictions.csv"))
        ]
    )
    op = analysis.apply_operating_point(rimnet)
    row = t3[(t3.section == "cv") & (t3.row == "RimNet: phase + FLAIR")].iloc[0]
    assert row.sensitivity == pytest.approx(
        100 * confusion_metrics(op.label, op.pred)["sensitivity"]
    )
    assert row.p_vs_expert1 == pytest.approx(
        mcnemar_test(op.pred == op.label, op.rater1 == op.label).p_value
    )
    aucs = pd.read_csv(out / "auc.csv").set_index("experiment")
    assert aucs.loc["phase_flair", "auc_pooled"] == pytest.approx(
        roc_auc_score(rimnet.label, rimnet.prob)
    )
    pairs = pd.read_csv(out / "delong_pairs.csv")
    assert len(pairs) == 15
    for fig in (
        "fig5_roc_pr.png",
        "fig6_intercenter.png",
        "fig7_patientwise.png",
        "fig8_confusion.png",
    ):
        assert (out / fig).stat().st_size > 10_000
    md = (out / "table3.md").read_text()
    assert "Expert #1" in md and "(94.6)" in md  # the paper's number next to ours
    ics = t3[t3.section == "ics"]
    assert ics.row.tolist() == ["RimNet: phase + FLAIR", "Expert #1", "Expert #2"]


def test_configurations_beyond_the_paper_are_rows_tested_against_rimnet(tmp_path, monkeypatch):
    """A configuration file marked ``study: beyond`` and a run of the user's own (its names read
    from the run's resolved config) get rows in the AUC table and Table 3, with DeLong P against
    RimNet (phase + FLAIR) on the same lesions, and a figure of their own; the paper's tables and
    Fig. 5 keep the paper's configurations."""
    from omegaconf import OmegaConf

    from rimnet.evaluation.report import write_report

    monkeypatch.setenv("WANDB_MODE", "disabled")
    sweep = tmp_path / "sweep"
    base = _synthetic_sweep(sweep)
    rng = np.random.default_rng(3)
    fold = (base.patient_id.str[1:].astype(int) % 4).to_numpy()
    for name in ("phase_t2star_flair", "qsm_flair"):
        p = base.assign(
            prob=np.clip(base.label * 0.6 + rng.random(len(base)) * 0.5, 0, 1), fold=fold
        )
        for k in range(4):
            (sweep / name / f"fold{k}").mkdir(parents=True)
            p[fold == k].to_csv(sweep / name / f"fold{k}" / "predictions.csv", index=False)
    run = {"modalities": ["qsm", "flair"], "model": {"net": {"_target_": "rimnet.models.RimNet"}}}
    OmegaConf.save(OmegaConf.create(run), sweep / "qsm_flair" / "fold0" / "resolved_config.yaml")
    out = tmp_path / "report"
    summary = write_report(sweep, out, experiment_catalogue())
    assert summary["missing"] == []  # densenet/resnet were not run: optional, not missing
    assert summary["beyond"] == ["qsm_flair", "phase_t2star_flair"]  # fewer modalities first
    aucs = pd.read_csv(out / "auc.csv").set_index("experiment")
    assert aucs.loc["qsm_flair", "configuration"] == "RimNet: qsm + FLAIR"
    assert aucs.loc["phase_t2star_flair", "configuration"] == "RimNet: phase + T2* + FLAIR"
    assert (aucs.loc[["phase_t2star_flair", "qsm_flair"], "study"] == "beyond").all()
    assert aucs.index[-2:].tolist() == ["qsm_flair", "phase_t2star_flair"]
    rimnet = pd.concat(pd.read_csv(f) for f in sorted((sweep / "phase_flair").glob("fold*/*.csv")))
    ours = pd.concat(pd.read_csv(f) for f in sorted((sweep / "qsm_flair").glob("fold*/*.csv")))
    m = ours.merge(rimnet[["lesion_id", "prob"]], on="lesion_id", suffixes=("", "_rimnet"))
    expected = delong_test(m.label, m.prob, m.prob_rimnet).p_value
    assert aucs.loc["qsm_flair", "p_vs_rimnet"] == pytest.approx(expected)
    assert np.isnan(aucs.loc["phase_flair", "p_vs_rimnet"])
    assert aucs.loc["phase", "p_vs_rimnet"] < 1
    t3 = pd.read_csv(out / "table3.csv")
    assert t3[t3.section == "beyond"].row.tolist() == [
        "RimNet: qsm + FLAIR",
        "RimNet: phase + T2* + FLAIR",
    ]
    assert "Beyond the paper" in (out / "table3.md").read_text()
    assert (out / "fig_beyond_roc_pr.png").stat().st_size > 10_000
    assert len(pd.read_csv(out / "delong_pairs.csv")) == 28  # 8 configurations, every pair


def test_paper_figures_show_the_data_they_come_from(tmp_path, monkeypatch):
    """Figs 3, 9 and 10: bars per panel and their heights from the same predictions; Table S1
    has thresholds 1-6; the re-rating list holds the most confident errors."""
    from rimnet.evaluation.report import write_report
    from rimnet.figures import pyplot

    monkeypatch.setenv("WANDB_MODE", "disabled")
    base = _synthetic_sweep(tmp_path / "sweep")
    drawn = {}
    monkeypatch.setattr(pyplot(), "close", lambda fig: drawn.setdefault(
        fig.texts[0].get_text() if fig.texts else fig.axes[0].get_title(), fig))  # fmt: skip
    out = tmp_path / "report"
    write_report(tmp_path / "sweep", out, experiment_catalogue())
    fig3 = drawn["Fig. 3: rim+ lesion burden per site"]
    true = base.groupby("patient_id").agg(site=("site", "first"), n=("label", "sum"))
    heights = [round(b.get_height()) for b in fig3.axes[0].patches]
    expected = [int(((true.site == s) & analysis.burden_classes(true.n).eq(c)).sum())
                for s in ("basel", "lausanne") for c in analysis.BURDEN]  # fmt: skip
    assert heights == expected and sum(heights) == 24
    fig9 = drawn["Fig. 9: errors and rater consensus (one-tailed two-proportion z-test)"]
    op = analysis.apply_operating_point(
        pd.concat(pd.read_csv(f) for f in sorted((tmp_path / "sweep" / "phase_flair").glob(
            "fold*/predictions.csv")))
    )  # fmt: skip
    for ax, label in zip(fig9.axes, (1, 0)):
        assert len(ax.patches) == 4  # correct + wrong, for agreed and consensus needed
        assert sum(round(b.get_height()) for b in ax.patches) == int((op.label == label).sum())
    ticks = fig3.axes[0].get_yticks()
    assert all(float(t).is_integer() for t in ticks)  # patients are counted in whole numbers
    for ax in fig9.axes:  # each panel explains its colours, the same ones in both
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["correct", "wrong"]
    assert len({tuple(ax.patches[-1].get_facecolor()) for ax in fig9.axes}) == 1
    fig10 = drawn["Fig. 10: lesion location (n/a: no lesions there, or the score is undefined)"]
    assert fig10.axes[1].get_ylabel()
    assert len(fig10.axes[0].patches) == 2 * len(analysis.LOCATIONS)
    assert sum(round(b.get_height()) for b in fig10.axes[0].patches) == len(base)
    assert len(fig10.axes[1].patches) == 3 * len(analysis.LOCATIONS)
    table = (out / "table_s1_patientwise.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines()[6:]] == list("123456")
    errors = pd.read_csv(out / "rerating_list.csv")
    fp = errors[errors.error == "false_positive"]
    assert (fp.label == 0).all() and fp.prob.is_monotonic_decreasing
    assert fp.prob.iloc[0] == op[(op.label == 0) & (op.pred == 1)].prob.max()


def test_a_sweep_without_phase_or_rimnet_is_reported(tmp_path):
    """Table 3's rows need the phase model or RimNet; a sweep of T2* runs alone still gets its
    AUCs, and a Table 3 without rows."""
    from rimnet.evaluation.report import write_report

    _synthetic_sweep(tmp_path / "all")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "all" / "t2star").rename(tmp_path / "sweep" / "t2star")
    summary = write_report(tmp_path / "sweep", tmp_path / "report", experiment_catalogue())
    assert summary["configurations"] == ["t2star"]
    assert 0.5 < summary["auc"]["t2star"]["auc_pooled"] <= 1
    assert "Cross-validation evaluation" not in (tmp_path / "report" / "table3.md").read_text()


def _pooled(experiment_dir: Path) -> pd.DataFrame:
    """A configuration's predictions over its folds, by lesion."""
    files = sorted(experiment_dir.glob("fold*/predictions.csv"))
    return pd.concat(map(pd.read_csv, files)).set_index("lesion_id")


def test_a_study_over_seeds_is_evaluated_per_seed_and_across(tmp_path, monkeypatch, capsys):
    """``seed<s>/`` folders (``seed_folders=true``): a report per seed, and the mean and spread
    of each configuration's pooled AUC over the seeds, through ``rimnet evaluate``."""
    from rimnet.cli import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    for seed in (1, 2):
        _synthetic_sweep(tmp_path / "sweep" / f"seed{seed}")
    second = tmp_path / "sweep" / "seed2" / "phase" / "fold0" / "predictions.csv"
    pred = pd.read_csv(second)
    pred.assign(prob=1 - pred.prob).to_csv(second, index=False)  # seed 2 differs on one fold
    out = tmp_path / "report"
    argv = ["evaluate", f"sweep_dir={tmp_path / 'sweep'}", f"out_dir={out}"]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code in (0, None), capsys.readouterr().err[-2000:]
    assert "pooled AUC" in capsys.readouterr().out
    per_seed = pd.read_csv(out / "seeds_auc.csv")
    for seed in (1, 2):
        own = pd.read_csv(out / f"seed{seed}" / "auc.csv").set_index("experiment")
        rows = per_seed[per_seed.seed == seed].set_index("experiment")
        assert rows.auc_pooled.to_dict() == pytest.approx(own.auc_pooled.to_dict())
    summary = pd.read_csv(out / "seeds_summary.csv").set_index("experiment")
    phase = per_seed[per_seed.experiment == "phase"].auc_pooled
    assert summary.loc["phase", "pooled_mean"] == pytest.approx(phase.mean(), abs=1e-4)
    assert summary.loc["phase", "pooled_sd"] == pytest.approx(phase.std(ddof=1), abs=1e-4)
    assert summary.loc["phase", "pooled_sd"] > 0
    assert summary.loc["flair", "pooled_sd"] == 0  # the same predictions in both seeds
    assert set(pd.read_csv(out / "seeds_delong.csv").seed) == {1, 2}
    assert "± " in (out / "seeds.md").read_text()
    # the ensemble: each lesion's probability averaged over the two seeds, then the AUCs
    one, two = (_pooled(tmp_path / "sweep" / f"seed{s}" / "phase") for s in (1, 2))
    expected = roc_auc_score(one.label, (one.prob + two.prob.loc[one.index]) / 2)
    ensemble = pd.read_csv(out / "seeds_ensemble_auc.csv").set_index("experiment")
    assert ensemble.loc["phase", "auc_pooled"] == pytest.approx(expected, abs=1e-4)
    assert ensemble.loc["flair", "auc_pooled"] == pytest.approx(
        summary.loc["flair", "pooled_mean"], abs=1e-4
    )  # two equal seeds: their ensemble is either
    assert len(pd.read_csv(out / "seeds_ensemble_delong.csv")) >= 1
    assert f"{ensemble.loc['phase', 'auc_pooled']:.3f}" in (out / "seeds.md").read_text()
