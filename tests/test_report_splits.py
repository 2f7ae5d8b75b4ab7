"""Evaluation that can tell a win from noise: one config trained on differently seeded grouped splits is
reported as one record with its means and spreads (training.report), against the TF-IDF baseline whose
settings were chosen on validation (training.baseline.TfidfBaseline.tuned)."""

from __future__ import annotations

import json
import shutil
import statistics

import pytest
from conftest import train_tiny
from matplotlib.image import imread

from catalog_lora.runs.folder import METRICS_FILE
from training.baseline import C_GRID, CLASS_WEIGHTS, TfidfBaseline


def test_one_config_on_two_splits_is_one_record_with_its_spread(tmp_path):
    from datasets_prep.prepare import prepare_sample
    from training.report import combine, run_record
    from training.report import main as report_main

    runs = []
    for seed in (1, 2):
        data = tmp_path / f"sample-split{seed}"
        prepare_sample(data, seed=seed)
        runs.append(train_tiny(  # a head on the first 2 layers: the report reads its metrics, not its depth
            "sample_category_head.yaml", data / "category", tmp_path / f"category-head-split{seed}", "eval.base=false",
            "model.num_layers=2",
        ))
    tests = [json.loads((run / METRICS_FILE).read_text())["test"] for run in runs]
    for test in tests:
        assert test["baseline"]["settings"].startswith("C="), "the baseline names the settings validation chose"

    text = report_main([*map(str, runs), "--json", str(tmp_path / "r.json"), "--shipped", "category-head",
                        "--plot", str(tmp_path / "gains.png"), "--plot-target", "3"])
    [record] = json.loads((tmp_path / "r.json").read_text())
    assert imread(tmp_path / "gains.png").shape[:2] > (200, 400), "the gains across splits, drawn"
    adapters = [t["adapter"]["accuracy"] for t in tests]
    baselines = [t["baseline"]["accuracy"] for t in tests]
    assert record["name"] == "category-head" and record["splits"] == 2 and record["shipped"] is True
    assert record["split_runs"] == ["category-head-split1", "category-head-split2"]
    assert record["adapter"] == pytest.approx(statistics.fmean(adapters))
    assert record["adapter_std"] == pytest.approx(statistics.stdev(adapters))
    assert record["baseline_std"] == pytest.approx(statistics.stdev(baselines))
    gains = [a - b for a, b in zip(adapters, baselines, strict=True)]
    assert record["gain"] == pytest.approx(statistics.fmean(gains)) and record["gain_std"] == pytest.approx(statistics.stdev(gains))
    shown = "exceeds" if record["gain"] > record["gain_std"] else "does not exceed"
    assert f"means of 2 splits; the gain {record['gain']:+.4f} {shown} its spread" in text
    keys = {"name", "dataset", "task", "method", "metric", "base", "adapter", "baseline", "train_seconds", "threads", "shipped"}
    assert keys <= set(record) and record["dataset"] == "category"

    # that report's JSON gathered into another one beside a run folder measured now, as the shipped configs'
    # table is gathered from the reports that measured them; a config measured again replaces its record
    other = shutil.copytree(runs[0], tmp_path / "other-head")
    gathered = report_main([str(other), "--results", str(tmp_path / "r.json"), "--json", str(tmp_path / "all.json"),
                            "--shipped", "other-head"])
    measured, earlier = json.loads((tmp_path / "all.json").read_text())
    assert measured["name"] == "other-head" and measured["shipped"] is True
    assert earlier == {**record, "shipped": False}, "an earlier record comes as it was measured, shipped set again"
    assert f"`{tmp_path / 'r.json'}`" in gathered and "category-head (2 splits)" in gathered
    again = report_main([*map(str, runs), "--results", str(tmp_path / "r.json"), "--json", str(tmp_path / "again.json")])
    assert [r["name"] for r in json.loads((tmp_path / "again.json").read_text())] == ["category-head"]
    assert (f"in place of their earlier records: category-head-split1 ({tmp_path / 'r.json'}), "
            f"category-head-split2 ({tmp_path / 'r.json'})") in again

    # a report of one split, folded with a new split measured later: the record both splits make together
    report_main([str(runs[0]), "--json", str(tmp_path / "split1.json"), "--shipped", "category-head"])
    later = report_main([str(runs[1]), "--results", str(tmp_path / "split1.json"), "--json", str(tmp_path / "folded.json"),
                         "--shipped", "category-head"])
    [folded] = json.loads((tmp_path / "folded.json").read_text())
    assert folded["split_runs"] == record["split_runs"] and folded["splits"] == 2
    for key in ("adapter", "adapter_std", "baseline", "baseline_std", "gain", "gain_std", "shipped"):
        assert folded[key] == pytest.approx(record[key]), key
    assert f"Folded with the splits measured here: category-head-split1 ({tmp_path / 'split1.json'})" in later
    with pytest.raises(SystemExit, match="'category-head' is in an earlier --results file too"):
        report_main(["--results", str(tmp_path / "r.json"), str(tmp_path / "r.json")])

    # a row that one split was not scored on (e.g. a run made before it existed) has no mean: not one of some splits
    records = [run_record(run, False) for run in runs]
    records[1]["adapter"] = None
    combined = combine("category-head", records)
    assert combined["adapter"] is None and combined["adapter_std"] is None and combined["baseline"] == record["baseline"]
    assert combined["gain"] is None and combined["gain_std"] is None


def test_tuned_baseline_keeps_the_validation_best_settings():
    """On titles whose words decide the label, the search keeps a setting that scores best on validation,
    and the settings it tries are the documented grid."""
    train = (["red apple", "green apple", "fresh milk", "skim milk", "apple juice", "milk powder"] * 3,
             ["Fruit", "Fruit", "Dairy", "Dairy", "Fruit", "Dairy"] * 3)
    validation = (["sweet apple", "whole milk"], ["Fruit", "Dairy"])
    tried = []

    def score(predictions):
        tried.append(predictions)
        return sum(p == g for p, g in zip(predictions, validation[1], strict=True)) / 2

    baseline = TfidfBaseline.tuned("category", ["Dairy", "Fruit"], 0, train, validation, score)
    assert len(tried) == 2 * len(C_GRID)
    assert baseline.predict(validation[0]) == ["Fruit", "Dairy"] and baseline.C in C_GRID


def test_each_setting_of_the_grid_is_the_model_a_script_fitting_it_alone_gets():
    """Every setting the search scores is fitted from zeros, in one process or in several: started from the previous
    ``C``'s solution, lbfgs stopped where its gradient was already within tolerance (BigBasket's ``C=10`` fit was the
    ``C=3`` model), so the grid did not try what it named."""
    import random

    rng = random.Random(0)
    words = {"Dairy": ["milk", "curd", "paneer", "ghee"], "Fruit": ["apple", "mango", "banana", "grapes"],
             "Snacks": ["chips", "namkeen", "cookies", "bhujia"]}
    noise = ["fresh", "pack", "500 g", "1 kg", "organic", "classic", "premium", "value"]

    def rows(n):
        labels = [rng.choice(sorted(words)) for _ in range(n)]
        # a tenth of the titles name another category's word too, so that C changes what the model answers
        texts = [" ".join([rng.choice(words[y]), *rng.sample(noise, 2)]
                          + ([rng.choice(words[rng.choice(sorted(words))])] if rng.random() < 0.1 else [])) for y in labels]
        return texts, labels

    train, validation = rows(300), rows(60)
    for jobs in (1, 2):
        scored = []

        def rising(predictions, seen=scored):  # each setting scores above the one before: the last one is kept
            seen.append(predictions)
            return len(seen)

        baseline = TfidfBaseline.tuned("category", sorted(words), 0, train, validation, rising, jobs=jobs)
        settings = [(c, weight) for weight in CLASS_WEIGHTS for c in C_GRID]
        assert len(scored) == len(settings) and (baseline.C, baseline.class_weight) == settings[-1]
        for predictions, (c, weight) in zip(scored, settings, strict=True):
            alone = TfidfBaseline("category", sorted(words), 0, C=c, class_weight=weight).fit(*train)
            assert predictions == alone.predict(validation[0]), (jobs, c, weight)
        # the last setting, which a warm start began from the one before it, is bit for bit the model fitted alone
        assert (baseline.model.coef_ == alone.model.coef_).all() and (baseline.model.intercept_ == alone.model.intercept_).all()


def test_a_gain_plot_needs_a_record_with_both_scores(tmp_path):
    from training.plots import gains

    with pytest.raises(ValueError, match="no record has both an adapter and a baseline score"):
        gains([{"name": "x", "metric": "accuracy", "adapter": 0.9, "baseline": None}], tmp_path / "g.png", "t")


def test_a_gain_is_a_win_only_above_its_spread_and_one_split_has_none():
    """training.verdicts is the one rule the report, its plot and the README's read-out apply."""
    from training.report import verdict
    from training.verdicts import exceeds_spread

    record = {"metric": "accuracy", "adapter": 0.83, "baseline": 0.80, "splits": 3, "gain": 0.03, "gain_std": 0.01,
              "second_metric": {"name": "macro_f1", "adapter": 0.7, "baseline": 0.6}}
    assert exceeds_spread(record) and "the gain +0.0300 exceeds its spread 0.0100" in verdict(record)
    noisy = {**record, "gain_std": 0.04}
    assert not exceeds_spread(noisy) and "does not exceed its spread 0.0400" in verdict(noisy)
    one_split = {**record, "splits": 1, "gain_std": None}
    assert not exceeds_spread(one_split) and "spread" not in verdict(one_split)
    assert not exceeds_spread({**record, "gain": None, "gain_std": None})
