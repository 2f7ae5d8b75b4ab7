"""A third vote for a tag or category head, measured on finished run folders: the labels of the training rows
nearest to a row in the fine-tuned head's own space (the hidden state its output layer reads), beside the
shipped votes (MiniLM neighbours, TF-IDF).

    .venv/bin/python bench/head_neighbours.py runs/instacart-department-head-split{1,2,3} \
        runs/bodywash-l1-head-split{1,2,3} [--output bench/results/head_neighbours.md]

The MiniLM neighbours are searched by a general sentence embedding; the head's space is what training
shaped to separate this catalog's labels. Its nearest training rows are the kNN of kNN-LM (Khandelwal et
al., 2020) on the adapter's own features: each of the ``k`` nearest (cosine) weighted by
``exp(similarity / temperature)``, ``k`` and the temperature chosen on validation by the vote alone, then
the three votes' shares chosen together on validation exactly as training chooses the shipped two
(catalog_lora.inference.votes.tune_shares). The test split only scores them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
KS = (10, 30)
TEMPERATURES = (0.02, 0.05, 0.1)
FORMS = ("head alone", "head-space neighbours alone", "shipped mix", "shipped mix + head-space neighbours")


@torch.inference_mode()
def head_features(engine, name: str, rows: list[dict], batch_size: int = 64) -> np.ndarray:
    """The hidden state the head's output layer reads for each row (at its last token), L2-normalized."""
    spec = engine.spec(name)
    prompts = [engine.prompt_for(spec, r["text"], r.get("attributes"))[0] for r in rows]
    head = next(module for module_name, module in engine.model.named_modules() if module_name.split(".")[-1] == "score")
    captured = []
    hook = head.register_forward_hook(lambda module, args, output: captured.append(args[0]))
    order = sorted(range(len(rows)), key=lambda i: -len(prompts[i]))
    features = None  # allocated once the first batch shows the hidden size
    try:
        for start in tqdm(range(0, len(order), batch_size), desc=f"features [{len(rows)} rows]", unit="batch", leave=False):
            index = order[start : start + batch_size]
            with engine._using(spec, True):
                batch = engine._encode([prompts[i] for i in index], "right")
                engine.model(**batch)
            hidden = captured.pop()
            last = batch["attention_mask"].sum(dim=1) - 1
            pooled = hidden[torch.arange(len(index)), last].float()
            if features is None:
                features = np.zeros((len(rows), pooled.shape[1]), dtype=np.float32)
            features[index] = torch.nn.functional.normalize(pooled, dim=1).cpu().numpy()
    finally:
        hook.remove()
    return features


def knn_vote(queries: np.ndarray, keys: np.ndarray, targets: np.ndarray, k: int, temperature: float) -> np.ndarray:
    """Each query's vote: ``targets`` (one row of label scores per key) of its ``k`` most similar keys, weighted
    by ``exp(similarity / temperature)``."""
    votes = np.zeros((len(queries), targets.shape[1]), dtype=np.float32)
    for start in range(0, len(queries), 512):
        similarity = queries[start : start + 512] @ keys.T
        top = np.argpartition(-similarity, k, axis=1)[:, :k]
        scores = np.take_along_axis(similarity, top, axis=1)
        weights = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
        weights /= weights.sum(axis=1, keepdims=True)
        votes[start : start + 512] = np.einsum("qk,qkl->ql", weights, targets[top])
    return votes


def measure(run: Path) -> dict:
    from catalog_lora.inference.engine import Engine
    from catalog_lora.inference.votes import best_thresholds, micro_f1, mix, tune_shares, validation_score
    from catalog_lora.records.labels import Taxonomy
    from training.config import load_config
    from training.data import read_config_splits
    from training.tuning import NAME, gold_labels, head_and_votes

    config = load_config(run / "config.yaml", [])
    if config.method != "head" or config.task == "description":
        raise SystemExit(f"{run}: a tag or category head is needed")
    splits = read_config_splits(config)
    taxonomy = Taxonomy.load(run / "taxonomy.json")
    multi, scope = taxonomy.multi_label, config.eval.threshold_scope
    engine = Engine.load({NAME: str(run)}, quantization="none")
    parts = {part: head_and_votes(engine, splits[part], config, taxonomy) for part in ("validation", "test")}
    features = {part: head_features(engine, NAME, splits[part]) for part in ("train", "validation", "test")}
    gold_train = gold_labels(splits["train"], config, taxonomy.labels, multi)
    if multi:
        targets = gold_train.astype(np.float32)
    else:
        targets = np.zeros((len(gold_train), len(taxonomy.labels)), dtype=np.float32)
        known = gold_train >= 0
        targets[np.flatnonzero(known), gold_train[known]] = 1.0
    (head_v, votes_v, gold_v), (head_t, votes_t, gold_t) = parts["validation"], parts["test"]
    settings = {(k, t): validation_score(knn_vote(features["validation"], features["train"], targets, k, t), gold_v, multi, scope)
                for k in KS for t in TEMPERATURES}
    k, temperature = max(settings, key=settings.get)
    votes_v["head_knn"] = knn_vote(features["validation"], features["train"], targets, k, temperature)
    votes_t["head_knn"] = knn_vote(features["test"], features["train"], targets, k, temperature)
    result = {"run": run.name, "metric": "micro_f1" if multi else "accuracy", "k": k, "temperature": temperature}

    def scored(names: tuple[str, ...], fixed: dict | None = None) -> dict:
        """The mix of ``names``' votes with the head, its shares chosen on validation (or ``fixed``), scored on test
        (tags: with the thresholds chosen on validation, as training does)."""
        shares = fixed or tune_shares(head_v, {name: votes_v[name] for name in names}, gold_v, multi, scope)[0]
        mixed_v = mix(head_v, [(shares[n], votes_v[n]) for n in names])
        mixed_t = mix(head_t, [(shares[n], votes_t[n]) for n in names])
        if multi:
            test = micro_f1(gold_t, mixed_t >= best_thresholds(mixed_v, gold_v, scope))
        else:
            test = validation_score(mixed_t, gold_t, False)
        return {"shares": [float(s) for s in shares.values()], "validation": validation_score(mixed_v, gold_v, multi, scope),
                "test": test}

    shipped = tuple(name for name in ("knn_weight", "lexical_weight") if name in votes_v)
    result["head alone"] = scored(())
    result["head-space neighbours alone"] = scored(("head_knn",), {"head_knn": 1.0})
    result["shipped mix"] = scored(shipped)
    result["shipped mix + head-space neighbours"] = scored((*shipped, "head_knn"))
    return result


def report(results: list[dict], host: dict, command: str) -> str:
    from bench.split_cells import by_config, gain_cell, header, mean_cell

    lines = header("A head-space neighbours vote beside a head's shipped votes", host, command, "(see its docstring). "
                   "Test split; every share, k, temperature and threshold chosen on validation.") + [
        "| config | metric | " + " | ".join(FORMS) + " | gain of the third vote (by split) |",
        "|---|---|" + "---:|" * (len(FORMS) + 1),
    ]
    for name, members in by_config(results).items():
        cells = [*(mean_cell(members, form) for form in FORMS), gain_cell(members, FORMS[3], FORMS[2])]
        lines.append(f"| {name} ({len(members)} splits) | {members[0]['metric']} | " + " | ".join(cells) + " |")
    lines += ["", "Gain in points. Per split: k and temperature of the head-space vote; the shares (MiniLM neighbours, "
              "TF-IDF[, head-space]):", ""]
    for result in results:
        lines.append(f"- {result['run']}: k={result['k']}, temperature {result['temperature']}; shipped "
                     f"{result[FORMS[2]]['shares']}, with the third vote {result[FORMS[3]]['shares']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    from bench.split_cells import run_bench

    run_bench("head_neighbours", __doc__, measure, report, "finished tag or category head run folders")


if __name__ == "__main__":
    main()
