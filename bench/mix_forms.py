"""Other ways to mix a category head with its votes, measured on finished run folders, against the shipped one.

    .venv/bin/python bench/mix_forms.py runs/instacart-department-head-split{1,2,3} \
        runs/bigbasket-top-head-dropout-split{1,2,3} [--output bench/results/mix_forms.md]

Shipped (catalog_lora.inference.votes): a linear mix, ``(1 - Σ shares) * head + Σ share * vote``, of the head's
softmax, its neighbours' labels and the TF-IDF model's probabilities. Measured beside it, on the same adapter and
the same votes:

- **log-linear** (a product of experts): ``(1 - Σ shares) * log(head + ε) + Σ share * log(vote + ε)``, ε = 0.01
  (a label none of the 10 neighbours carries would otherwise veto the head's answer);
- **+ embedding vote**: a third vote, a logistic regression on the MiniLM embeddings the neighbours are searched
  by (``C`` chosen on validation), mixed linearly beside the other two.

Every form's shares are chosen on the validation split from ``WEIGHT_GRID`` exactly as training chooses the
shipped ones (the best accuracy, ties to the smaller total share); the test split only scores them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
EPSILON = 0.01
EMBEDDING_C = (1.0, 4.0, 16.0, 64.0)
FORMS = ("head alone", "linear (shipped)", "log-linear", "linear + embedding vote")


def log_linear(head: np.ndarray, votes: list[tuple[float, np.ndarray]]) -> np.ndarray:
    mixed = (1.0 - sum(share for share, _ in votes)) * np.log(head + EPSILON)
    for share, vote in votes:
        mixed = mixed + share * np.log(vote + EPSILON)
    return mixed


def embedding_vote(rows: dict[str, list[dict]], labels: list[str], config, attributes: list[str]) -> dict[str, np.ndarray]:
    """A logistic regression on the MiniLM embeddings of the training rows' vote texts, ``C`` chosen on
    validation; its probabilities on validation and test."""
    from sklearn.linear_model import LogisticRegression

    from catalog_lora.inference.votes import validation_score
    from catalog_lora.retrieval.embeddings import embed
    from training.data import vote_texts
    from training.tuning import gold_labels

    embedded = {part: np.asarray(embed(vote_texts(rows[part], attributes)), dtype=np.float32) for part in rows}
    gold = {part: gold_labels(rows[part], config, labels, False) for part in rows}
    known = gold["train"] >= 0

    def probabilities(model, part: str) -> np.ndarray:
        out = np.zeros((len(rows[part]), len(labels)))
        out[:, model.classes_] = model.predict_proba(embedded[part])
        return out

    models = [LogisticRegression(C=c, max_iter=2000).fit(embedded["train"][known], gold["train"][known]) for c in EMBEDDING_C]
    model = max(models, key=lambda m: validation_score(probabilities(m, "validation"), gold["validation"], False))
    return {part: probabilities(model, part) for part in ("validation", "test")}


def measure(run: Path) -> dict:
    from catalog_lora.inference.engine import Engine
    from catalog_lora.inference.votes import mix, tune_shares, validation_score
    from catalog_lora.records.labels import Taxonomy
    from training.config import load_config
    from training.data import read_config_splits
    from training.tuning import NAME, head_and_votes

    config = load_config(run / "config.yaml", [])
    if config.task != "category" or config.method != "head" or not (config.neighbours.k and config.lexical.vote):
        raise SystemExit(f"{run}: a category head with neighbours and a lexical vote is needed")
    splits = read_config_splits(config)
    taxonomy = Taxonomy.load(run / "taxonomy.json")
    engine = Engine.load({NAME: str(run)}, quantization="none")
    # (head, {"knn_weight": ..., "lexical_weight": ...}, gold) per split, as training's tuning computes them
    parts = {part: head_and_votes(engine, splits[part], config, taxonomy) for part in ("validation", "test")}
    extra = embedding_vote(splits, taxonomy.labels, config, engine.spec(NAME).info.attributes)
    for part, (_, votes, _) in parts.items():
        votes["embedding"] = extra[part]
    (head_v, votes_v, gold_v), (head_t, votes_t, gold_t) = parts["validation"], parts["test"]
    result = {"run": run.name, "head alone": {"shares": [], "test": validation_score(head_t, gold_t, False)}}
    shipped = ("knn_weight", "lexical_weight")
    for form, combine, names in (("linear (shipped)", mix, shipped), ("log-linear", log_linear, shipped),
                                 ("linear + embedding vote", mix, (*shipped, "embedding"))):
        shares, scores = tune_shares(head_v, {name: votes_v[name] for name in names}, gold_v, False, combine=combine)
        result[form] = {
            "shares": [float(share) for share in shares.values()],
            "validation": scores[tuple(shares.values())],
            "test": validation_score(combine(head_t, [(shares[name], votes_t[name]) for name in names]), gold_t, False),
        }
    return result


def report(results: list[dict], host: dict, command: str) -> str:
    from bench.split_cells import by_config, gain_cell, header, mean_cell

    lines = header("Forms of a category head's mix", host, command, "(see its docstring for the forms). Test accuracy; "
                   "each form's shares chosen on validation.") + [
        "| config | " + " | ".join(FORMS) + " | log-linear − linear | embedding vote − linear |",
        "|---|" + "---:|" * (len(FORMS) + 2),
    ]
    for name, members in by_config(results).items():
        cells = [mean_cell(members, form) for form in FORMS]
        cells += [gain_cell(members, form, "linear (shipped)") for form in ("log-linear", "linear + embedding vote")]
        lines.append(f"| {name} ({len(members)} splits) | " + " | ".join(cells) + " |")
    lines += ["", "Differences in points of accuracy, mean (by split). Shares chosen per split (neighbours, TF-IDF"
              "[, embedding]):", ""]
    for result in results:
        lines.append(f"- {result['run']}: " + "; ".join(
            f"{form} {result[form]['shares']}" for form in FORMS[1:]))
    return "\n".join(lines) + "\n"


def main() -> None:
    from bench.split_cells import run_bench

    run_bench("mix_forms", __doc__, measure, report, "finished category head run folders (neighbours + TF-IDF vote)")


if __name__ == "__main__":
    main()
