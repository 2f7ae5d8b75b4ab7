"""Choose again, on validation, what the end of training chooses for a finished head run, and evaluate it again.

    python -m training.tune runs/bodywash-l1-head --lexical-vote true

    python -m training.tune runs/bigbasket-description-head model.choice_search=pooled

For a head trained before a lever existed, or to switch one on or off without training again: the
adapter's weights stay as they are; the lexical vote's TF-IDF model is fitted (``--lexical-vote true``), or a
description head's TF-IDF search (``model.choice_search=pooled``); the votes' shares, a description head's
nearest candidate's share, the tag thresholds and the review threshold are chosen on the validation split
(training.tuning), and the test split is evaluated again (training.evaluate). The run folder's
``catalog_lora.json``, ``config.yaml``, ``metrics.json`` and plots are rewritten, the bf16 agreement is measured
again (``eval.bf16_check``), ``lexical_fit_seconds`` is recorded in ``train_stats.json``, and its ``COMPLETE``
marker is renewed last.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from catalog_lora.inference.engine import Engine
from catalog_lora.records.labels import Taxonomy
from catalog_lora.runs.folder import (
    COMPLETE_MARKER,
    CONFIG_FILE,
    INFO_FILE,
    LEXICAL_FILES,
    METRICS_FILE,
    SEARCH_FILES,
    STATS_FILE,
    TAXONOMY_FILE,
)
from catalog_lora.runs.markdown import metrics_table
from training.config import ConfigError, load_config, save_config
from training.data import read_config_splits
from training.evaluate import evaluate_all, save_plots
from training.run_folder import mark_complete, record_bf16_agreement
from training.tuning import NAME, fit_lexical, fit_search, tune_on_validation


def retune(run: str | Path, overrides: list[str] = (), log=print) -> dict:
    """Tune and evaluate the finished head run folder ``run`` again, with its config changed by ``overrides``
    (``key=value``, as training takes them); returns the test split's results."""
    run = Path(run)
    if not (run / COMPLETE_MARKER).is_file():
        raise ConfigError(f"{run} has no {COMPLETE_MARKER} marker: only a finished run folder can be tuned again")
    config = load_config(run / CONFIG_FILE, list(overrides))
    if config.method != "head":
        raise ConfigError(f"{run} is a {config.method} {config.task} run; training.tune re-tunes heads")
    splits = read_config_splits(config)
    taxonomy = Taxonomy.load(run / TAXONOMY_FILE) if config.task != "description" else None
    engine = Engine.load({NAME: str(run)}, quantization="none")
    (run / COMPLETE_MARKER).unlink()  # until every file below agrees again
    for name in (*LEXICAL_FILES, *SEARCH_FILES):
        (run / name).unlink(missing_ok=True)
    spec = engine.spec(NAME)
    spec.info.choice_search = config.model.choice_search
    if config.model.choice_search == "pooled":
        fit_search(splits["train"], config, run, log)
    if config.lexical.vote:
        baseline = fit_lexical(splits["train"], splits["validation"], config, taxonomy, spec.info.attributes, run, log)
    else:
        baseline = None
    spec.info.lexical_weight = 0.0
    with engine.reusing_passes():
        tune_on_validation(engine, splits["validation"], config, taxonomy, log)
    spec.info.save(run)
    save_config(config, run / CONFIG_FILE)
    results = evaluate_all(
        engine, NAME, splits["train"], splits["test"], base=config.eval.base, baseline=config.eval.baseline,
        batch_size=config.eval.batch_size, batch_tokens=config.eval.batch_tokens, seed=config.train.seed,
        validation=splits["validation"], fitted_baseline=baseline,
    )
    metrics = json.loads((run / METRICS_FILE).read_text()) if (run / METRICS_FILE).is_file() else {}
    metrics["test"] = results
    (run / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    save_plots(results, config.task, run)
    stats = json.loads((run / STATS_FILE).read_text())
    stats["lexical_fit_seconds"] = baseline.fit_seconds if baseline else None
    if config.eval.bf16_check:  # the answers changed with the shares: their agreement in bf16 is measured again
        stats["bf16_check_seconds"] = record_bf16_agreement(run, spec.info, splits["validation"], config.eval.bf16_check, log)
    (run / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    mark_complete(run, f"re-tuned by training.tune ({INFO_FILE}, {CONFIG_FILE} and {METRICS_FILE} rewritten)")
    log(metrics_table(results, config.task))
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a finished head run folder")
    parser.add_argument("--lexical-vote", choices=["true", "false"], help="switch the TF-IDF model's vote on or off")
    args, overrides = parser.parse_known_args(argv)
    if args.lexical_vote:
        overrides.append(f"lexical.vote={args.lexical_vote}")
    try:
        return retune(args.run, overrides)
    except (ConfigError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
