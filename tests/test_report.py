"""benchmark.report's CLI entry point on a real tiny study (journal storage, MLflow store,
real worker loop on ring8) and on a synthetic pareto study in SQLite without MLflow."""

from __future__ import annotations

import base64
import csv
import math
import os
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution

from benchmark import report
from benchmark import study as study_cli
from benchmark.reporting import load, stats, study_report
from benchmark.reporting.document import format_ci
from benchmark.trainables import RealMixParams

try:
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _mlflow import fresh_mlflow_uri

PNG = b"\x89PNG\r\n\x1a\n"
TINY = [
    "--dataset", "ring8", "--epochs", "2", "--seeds", "2", "--pruner", "none",
    "--setting", "train_size=256", "--setting", "n_eval=100", "--setting", "heldout_size=200",
    "--setting", "device=cpu",
]  # fmt: skip

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def compare_study(tmp_path_factory):
    """A finished compare study on ring8: one trial per trainable, 2 seeds, 2 epochs (slices,
    contours and importances are covered by the synthetic study below, without training)."""
    folder = tmp_path_factory.mktemp("report")
    uri = fresh_mlflow_uri(tmp_path_factory, folder)
    storage = folder / "optuna.journal"
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(folder)  # MLflow artifacts go to ./mlruns, best.json to ./results
    torch.set_num_threads(1)
    try:
        code = study_cli.main(
            ["--space", "compare", "--trials", "3", "--storage", str(storage),
             "--study-name", "tiny", "--tracking-uri", uri, *TINY]
        )  # fmt: skip
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    assert code == 0
    return folder, storage


@pytest.fixture(scope="module")
def compare_report(compare_study):
    """The report CLI's entry point on the stored study (in this process: the study's
    workers already ran for real, and a second interpreter would only repeat imports)."""
    folder, storage = compare_study
    out = folder / "reports"
    assert (
        report.main(["--study", "tiny", "--storage", str(storage), "--out", str(out / "tiny")])
        == 0
    )
    study = optuna.load_study(study_name="tiny", storage=load.open_existing_storage(str(storage)))
    return out / "tiny", study


def _complete(study: optuna.Study, trainable: str) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        if t.user_attrs["config"]["trainable"] == trainable
    ]


def test_summary_rows_are_recomputed_from_the_stored_seeds(compare_report):
    out, study = compare_report
    with (out / "summary.csv").open() as handle:
        rows = {(r["trainable"], r["metric"]): r for r in csv.DictReader(handle)}
    trainables = {t.user_attrs["config"]["trainable"] for t in study.trials if t.values}
    assert {key[0] for key in rows} == trainables
    markdown = (out / "report.md").read_text()
    for trainable in trainables:
        best = min(_complete(study, trainable), key=lambda t: t.value)
        w1 = [s["w1"] for s in best.user_attrs["seeds"]]
        assert len(w1) == 2
        ci = stats.t_ci(w1)
        row = rows[(trainable, "w1")]
        assert int(row["trial"]) == best.number
        assert float(row["mean"]) == pytest.approx(np.mean(w1), rel=1e-12)
        assert float(row["mean"]) == pytest.approx(best.value, rel=1e-12)
        assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((ci.low, ci.high))
        assert int(row["n"]) == 2
        assert format_ci(ci) in markdown
        # loss variance comes from MLflow's per-seed metrics; the worker stored their mean
        assert float(rows[(trainable, "g_loss_var")]["mean"]) == pytest.approx(
            best.user_attrs["final"]["g_loss_var"], rel=1e-9
        )
        # only RealMix has a second sampling mode
        assert ((trainable, "w1_noise") in rows) == (trainable == "realmix")
        if trainable == "realmix":
            noise = [s["w1_noise"] for s in best.user_attrs["seeds"]]
            assert float(rows[(trainable, "w1_noise")]["mean"]) == pytest.approx(np.mean(noise))
    assert "Noise floor" in markdown and "Expected best W1 after n trials" in markdown


def test_floor_and_ceiling_rows_beside_the_distances(compare_report, tmp_path):
    from benchmark.data import load_dataset
    from benchmark.metrics.reference import reference_scale

    out, study = compare_report
    markdown = (out / "report.md").read_text()
    trainables = sorted({t.user_attrs["config"]["trainable"] for t in study.trials if t.values})
    # measured afresh (no cache) on the study's split and n: ring8, 200 held-out, n_eval 100
    data = load_dataset("ring8", heldout_size=200, train_size=256, batch_size=128)
    direct = reference_scale(data, 100, trainables=trainables, cache=False)
    floor = next(line for line in markdown.splitlines() if line.startswith("| real-vs-real"))
    ceiling = next(line for line in markdown.splitlines() if line.startswith("| untrained G"))
    header = next(line for line in markdown.splitlines() if line.startswith("| trainable |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(columns, [c.strip() for c in floor.strip("|").split("|")], strict=True))
    tops = dict(zip(columns, [c.strip() for c in ceiling.strip("|").split("|")], strict=True))
    assert cells["W1"] == f"{direct.floor['w1']:.4g}"
    assert tops["W1"] == f"{direct.ceiling_of('w1'):.4g}"
    assert direct.floor["w1"] < direct.ceiling_of("w1")
    assert "real-vs-real floor" in markdown and "(n=100, mean of 3 evaluation draws)" in markdown
    # the comparison tables give the scale of the objective too
    assert f"For scale (w1, n=100): real-vs-real floor {direct.floor['w1']:.4g}" in markdown


def test_every_figure_is_a_png_embedded_in_the_html(compare_report):
    out, study = compare_report
    page = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    trainables = {t.user_attrs["config"]["trainable"] for t in study.trials if t.values}
    expected = {"expected_best.png", "losses_best.png", "sliced_w2_best.png"}
    expected |= {f"samples_{t}.png" for t in trainables}
    if "realmix" in trainables:
        expected.add("samples_realmix_noise.png")
    pngs = {p.name: p for p in out.glob("*.png")}
    assert expected <= set(pngs)
    for name, path in pngs.items():
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 1000, name
        assert base64.b64encode(data).decode() in page, f"{name} is not embedded in the HTML"
        assert f"({name})" in markdown, f"{name} is not linked from the Markdown"
    sources = re.findall(r'<img [^>]*src="([^"]{0,30})', page)
    assert len(sources) == len(pngs)
    assert all(s.startswith("data:image/png;base64,") for s in sources)


def test_real_samples_are_shown_beside_the_generated_ones(compare_report):
    """The samples section starts with real held-out data drawn the same way (ring8 here:
    the generated held-out points, identical to what the study scored against)."""
    out, _ = compare_report
    markdown = (out / "report.md").read_text()
    section = markdown.split("## Samples of the best trials")[1]
    generated = re.search(r"\(samples_(?!real)\w+\.png\)", section)
    assert generated and section.index("(samples_real.png)") < generated.start()
    assert "Real ring8 images from the held-out split" in section
    assert (out / "samples_real.png").read_bytes().startswith(PNG)


def _synthetic_pareto(path: Path) -> tuple[str, list[tuple[int, tuple[float, float]]]]:
    """A pareto study of 8 complete RealMix trials (2 seeds each) and one pruned trial, with
    a tracking URI that does not exist."""
    url = f"sqlite:///{path}"
    study = optuna.create_study(storage=url, study_name="syn", directions=["minimize", "minimize"])
    study.set_user_attr("space", "realmix")
    study.set_user_attr("objective", "pareto")
    study.set_user_attr("settings", {"epochs": 2, "dataset": "ring8", "seeds": 2})
    study.set_user_attr("mlflow_tracking_uri", f"sqlite:///{path.parent / 'missing.db'}")
    rng = np.random.default_rng(3)
    dists = {"p_mix": FloatDistribution(0.0, 1.0), "alpha": FloatDistribution(0.02, 2.0, log=True)}
    points = []
    for i in range(8):
        params = {"p_mix": float(rng.uniform()), "alpha": float(np.exp(rng.uniform(-3.9, 0.6)))}
        w1 = rng.normal(1.0 + params["p_mix"], 0.02, size=2)
        var = rng.normal(0.5 - 0.4 * params["p_mix"], 0.01, size=2)
        values = (float(w1.mean()), float(var.mean()))
        seeds = [
            {"seed": s, "status": "finished", "w1": float(w1[s]), "g_loss_var": float(var[s])}
            for s in range(2)
        ]
        config = {"trainable": "realmix", "params": RealMixParams(**params).to_dict()}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                values=list(values),
                user_attrs={"seeds": seeds, "config": config, "final": {}},
            )  # fmt: skip
        )
        points.append((i, values))
    study.add_trial(
        optuna.trial.create_trial(
            params={"p_mix": 0.5, "alpha": 0.2},
            distributions=dists,
            state=optuna.trial.TrialState.PRUNED,
            user_attrs={"reason": "far-behind"},
        )  # fmt: skip
    )
    return url, points


def test_pareto_study_without_mlflow(tmp_path, capsys):
    url, points = _synthetic_pareto(tmp_path / "syn.db")
    code = report.main(
        ["--study", "syn", "--storage", url, "--out", str(tmp_path / "out" / "syn")]
    )
    assert code == 0
    out = tmp_path / "out" / "syn"
    for name in ("pareto.png", "importance_realmix.png", "contour_realmix_p_mix_alpha.png",
                 "slice_realmix_p_mix.png", "expected_best.png"):  # fmt: skip
        assert (out / name).read_bytes().startswith(PNG), name
    markdown = (out / "report.md").read_text()
    assert "missing.db not found" in markdown  # the MLflow gap is stated, not hidden
    front = {
        i
        for i, p in points
        if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for _, q in points)
    }
    section = markdown.split("## Pareto front")[1].split("\n## ")[0]
    listed = {int(n) for n in re.findall(r"^\| #(\d+) \|", section, flags=re.M)}
    assert listed == front and front
    assert "1 pruned trial(s) left out" in markdown
    # importances are normalised shares of the two searched knobs
    importances = study_report._param_importances(
        load.load_study_data("syn", url).complete("realmix")
    )[0]
    assert importances is not None
    assert set(importances[0]) == {"p_mix", "alpha"}
    assert math.isclose(sum(importances[0].values()), 1.0, rel_tol=1e-9)


def test_unknown_study_or_storage_exits_2_naming_the_fix(tmp_path, capsys):
    url, _ = _synthetic_pareto(tmp_path / "syn.db")
    assert report.main(["--study", "nope", "--storage", url, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "study 'nope' not found" in err and "available: syn" in err
    missing = tmp_path / "missing.journal"
    assert report.main(["--study", "x", "--storage", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.exists()  # reading a report never creates an empty storage
    assert report.main(["--study", "x", "--storage", "ftp://host/db"]) == 2
    assert "invalid --storage" in capsys.readouterr().err


def test_noise_objective_picks_and_judges_by_its_own_metric(tmp_path):
    """A wasserstein-noise study ranks trials by W1 in noise mode, not by buffer-mode W1."""
    url = f"sqlite:///{tmp_path / 'noise.db'}"
    study = optuna.create_study(storage=url, study_name="nz", direction="minimize")
    study.set_user_attr("space", "realmix")
    study.set_user_attr("objective", "wasserstein-noise")
    study.set_user_attr("settings", {"epochs": 1, "dataset": "ring8", "seeds": 2})
    dist = {"p_mix": FloatDistribution(0.0, 1.0)}
    # trial 0 copies (low buffer W1, high noise W1); trial 1 generalises
    for p_mix, w1, w1_noise in ((0.9, (1.0, 1.1), (3.0, 3.2)), (0.1, (2.0, 2.1), (2.0, 2.2))):
        seeds = [{"seed": s, "status": "finished", "w1": w1[s], "w1_noise": w1_noise[s]}
                 for s in range(2)]  # fmt: skip
        study.add_trial(
            optuna.trial.create_trial(
                params={"p_mix": p_mix},
                distributions=dist,
                value=float(np.mean(w1_noise)),
                user_attrs={"seeds": seeds, "config": {"trainable": "realmix", "params": {}}},
            )  # fmt: skip
        )
    assert report.main(["--study", "nz", "--storage", url, "--out", str(tmp_path / "nz")]) == 0
    with (tmp_path / "nz" / "summary.csv").open() as handle:
        rows = {r["metric"]: r for r in csv.DictReader(handle)}
    assert rows["w1_noise"]["trial"] == "1" and float(rows["w1_noise"]["mean"]) == 2.1
    markdown = (tmp_path / "nz" / "report.md").read_text()
    floor = stats.noise_floor([2.0, 2.2])
    assert f"noise floor {floor:.4g} (2 x the sd of W1 (noise mode)" in markdown
    assert "Expected best W1 (noise mode) after n trials" in markdown
