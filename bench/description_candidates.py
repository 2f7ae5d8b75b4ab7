"""Which search should hand the description head its candidates? The candidates on validation (the test split is
read only to score trained heads given with ``--runs``).

    .venv/bin/python bench/description_candidates.py [--data data/bigbasket-descriptions-split{1,2,3}] [--k 5]
                                                     [--runs runs/bigbasket-description-head-split{1,2,3}]

The description head (``training/configs/bigbasket_description_head.yaml``) picks one of the ``k`` training
descriptions nearest a product in the references index (MiniLM embeddings of the title and the config's
``choice_attributes``, the brand as shipped); the classical baseline answers with the description of the training
product nearest by TF-IDF over the same text (training/baseline.py). A choice can be no better than its best
candidate: for each search this scores the nearest candidate (``top-1``) and the candidate closest to the true
description by sentence chrF among the first 2, 3 and ``k`` (``oracle@n``, the ceiling of any choice among them),
and the two searches' candidates pooled (the first ``⌈k/2⌉`` of each, as the product pools them), on each grouped split (``datasets_prep.prepare
--format bigbasket-descriptions --seed <seed>``). With ``--runs``, each split's trained description head also
chooses among each search's candidates and among the pooled ones (the TF-IDF nearest first; the nearest's share
chosen on validation, as training does) and is scored on that split's test rows. Writes
``bench/results/description_candidates.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from catalog_lora.records.prompts import Example  # noqa: E402

SHIPPED_CONFIG = REPO / "training/configs/bigbasket_description_head.yaml"


def key_attributes(run: Path | None) -> list[str]:
    """What the head shows and searches by beside the title: the run's ``choice_attributes``, or without a run the
    shipped config's."""
    if run is not None:
        from catalog_lora.runs.folder import read_run_info

        return list(read_run_info(str(run)).choice_attributes)
    from training.config import load_config

    return list(load_config(SHIPPED_CONFIG).model.choice_attributes)


def tfidf_search(train: list[dict], keys: list[str]):
    """``find(rows, k)``: the ``k`` training products nearest each row by the baseline's own TF-IDF features over the
    title and the ``keys`` attributes, nearest first: the product's search (catalog_lora.retrieval.tfidf), fitted
    once. Ties keep the training order, so the first is the baseline's own answer."""
    from catalog_lora.records.prompts import with_attribute_values
    from catalog_lora.retrieval.tfidf import LexicalSearch
    from training.baseline import TfidfBaseline

    def key(record: dict) -> str:
        return with_attribute_values(record["text"], record.get("attributes"), keys)

    lines = [key(r) for r in train]
    with tempfile.TemporaryDirectory() as folder:
        files = TfidfBaseline("description").fit(lines, [r["description"] for r in train]).save_search(folder)
        search = LexicalSearch.load(*files, lines)

    def find(rows: list[dict], k: int) -> list[list[Example]]:
        return [[Example(train[j]["text"], train[j]["description"], train[j].get("attributes")) for j in found]
                for found in search.nearest([key(r) for r in rows], k)]

    return find


@contextmanager
def minilm_search(train: list[dict], keys: list[str]):
    """``find(rows, k)``: the ``k`` nearest in a references index built once, as the head's training builds it."""
    from catalog_lora.retrieval.references import build_index

    with tempfile.TemporaryDirectory() as folder:
        index = build_index(train, folder, task="description", key_attributes=keys)

        def find(rows: list[dict], k: int) -> list[list[Example]]:
            found = index.query([r["text"] for r in rows], k=k, attributes=[r.get("attributes") for r in rows])
            return [[Example(ref.text, ref.answer, ref.attributes) for ref in row] for row in found]

        try:
            yield find
        finally:
            index.close()


def both(references: list[str], answers: list[str]) -> dict:
    """ROUGE-L and chrF of ``answers``."""
    from training.metrics import description_metrics

    metrics = description_metrics(references, answers)
    return {"rougeL": metrics["rougeL"], "chrf": metrics["chrf"]}


def scores(references: list[str], candidates: list[list[Example]], depths: list[int]) -> dict[str, dict]:
    """ROUGE-L and chrF of the nearest candidate and of the oracle among the first ``n`` for each depth."""
    import sacrebleu

    def chrf(hypothesis: str, reference: str) -> float:
        return sacrebleu.sentence_chrf(hypothesis, [reference]).score

    descriptions = [[c.answer for c in row] for row in candidates]
    result = {"top-1": both(references, [row[0] for row in descriptions])}
    for n in depths:
        best = [max(row[:n], key=lambda d, r=r: chrf(d, r)) for row, r in zip(descriptions, references, strict=True)]
        result[f"oracle@{n}"] = both(references, best)
    return result


def head_choices(run: Path, rows: dict[str, list[dict]], candidates: dict[str, dict[str, list[list[Example]]]]) -> dict:
    """The trained description head ``run`` choosing among each search's ``candidates`` for the validation and test
    ``rows`` (both ``{split: ...}``, the candidates by search first): the nearest candidate's share chosen on validation by chrF, as its training chose it
    (training.tuning.best_nearest_share), then its answers on the test split scored, beside the nearest candidate
    (for the TF-IDF search, the baseline's answer)."""
    from catalog_lora.inference.engine import Engine
    from training.tuning import NAME, best_nearest_share, chosen_descriptions

    engine = Engine.load({NAME: str(run)}, quantization="none")
    engine.spec(NAME).info.knn_weight = 0.0  # the head's own probabilities: the share is mixed in below
    result = {}
    for search, by_split in candidates.items():
        chosen = {}
        for split, split_rows in rows.items():
            texts, attributes = [r["text"] for r in split_rows], [r.get("attributes") for r in split_rows]
            predictions = engine.predict(NAME, texts, attributes, batch_size=32, examples=by_split[split])
            chosen[split] = (predictions, by_split[split], [r["description"] for r in split_rows])
        share, _ = best_nearest_share(*chosen["validation"])
        predictions, test_candidates, references = chosen["test"]
        result[search] = {
            "nearest_share": share,
            "head": both(references, chosen_descriptions(predictions, test_candidates, share)),
            "nearest": both(references, [row[0].answer for row in test_candidates]),
        }
    return result


def pooled(tfidf: list[list[Example]], minilm: list[list[Example]], k: int) -> list[list[Example]]:
    """The first ``⌈k/2⌉`` of each search's candidates, each description once, the TF-IDF search's first (its nearest
    stays the baseline's answer): the product's pool (catalog_lora.retrieval.examples.pool) of a head with ``k``."""
    from catalog_lora.retrieval.examples import pool

    return [pool(a, b, k) for a, b in zip(tfidf, minilm, strict=True)]


def searches(k: int) -> tuple[str, str, str]:
    """The three searches' names in the results (the pool's says how many it takes from each)."""
    from catalog_lora.retrieval.examples import from_each_search

    return ("TF-IDF (the baseline's search)", "MiniLM references index (the head's search)",
            f"pooled: the first {from_each_search(k)} of each")


def measure(data: Path, train: list[dict], rows: list[dict], candidates: dict[str, list[list[Example]]], k: int) -> dict:
    """Each search's candidates (and the pool's) for ``data``'s validation products ``rows``, scored; how much the two
    searches agree."""
    from catalog_lora.retrieval.examples import from_each_search

    references = [r["description"] for r in rows]
    names, size = searches(k), 2 * from_each_search(k)  # the pool's most candidates
    tfidf, minilm, pooled = (candidates[search] for search in names)
    # candidates compared by their descriptions
    pairs = [({c.answer for c in a}, {c.answer for c in b}) for a, b in zip(tfidf, minilm, strict=True)]
    depths = sorted({n for n in (2, 3, k) if n <= k})
    return {
        "data": data.name, "validation": len(rows), "train": len(train),
        "same_first": sum(a[0].answer == b[0].answer for a, b in zip(tfidf, minilm, strict=True)) / len(rows),
        "shared": sum(len(a & b) for a, b in pairs) / len(rows),
        "pooled_size": sum(map(len, pooled)) / len(pooled),
        "scores": {
            names[0]: scores(references, tfidf, depths),
            names[1]: scores(references, minilm, depths),
            names[2]: {"oracle among them": scores(references, pooled, [size])[f"oracle@{size}"]},
        },
    }


def one_split(data: Path, run: Path | None, k: int) -> dict:
    """:func:`measure` for ``data``, and with ``run`` (trained on ``data``) :func:`head_choices`; each search built
    once, each split's candidates found once."""
    from catalog_lora.records.dataset_files import load_split

    keys = key_attributes(run)
    train = load_split(data, "train")
    splits = ("validation", "test") if run is not None else ("validation",)
    rows = {split: load_split(data, split) for split in splits}
    with minilm_search(train, keys) as minilm:
        names = searches(k)
        finders = {names[0]: tfidf_search(train, keys), names[1]: minilm}
        candidates = {search: {split: find(rows[split], k) for split in splits} for search, find in finders.items()}
    candidates[names[2]] = {split: pooled(*(candidates[search][split] for search in names[:2]), k) for split in splits}
    result = measure(data, train, rows["validation"], {search: candidates[search]["validation"] for search in names}, k)
    result["key_attributes"] = keys
    if run is not None:
        result["run"], result["heads"] = run.name, head_choices(run, rows, candidates)
    return result


def report(results: list[dict], host: dict, command: str, k: int) -> str:
    import statistics

    from bench.split_cells import mean_sd
    from catalog_lora.retrieval.examples import from_each_search

    lines = [
        "# Description candidates: which search should the head choose among?",
        "",
        f"Machine: {host['cpu']} ({host['arch']}), {host['torch_threads']} thread(s). Date: {host['date']}. Made by "
        f"`{command}`: the validation products of {', '.join(r['data'] for r in results)} (about "
        f"{results[0]['validation']:,} each, {results[0]['train']:,} training descriptions). Both searches read the "
        f"title and {', '.join(results[0]['key_attributes']) or 'nothing else'}. Mean ± sd over the splits. Their "
        "nearest candidate is the same for "
        f"{statistics.fmean(r['same_first'] for r in results):.0%} of the products; their first {k} share "
        f"{statistics.fmean(r['shared'] for r in results):.1f} descriptions on average; pooling the first "
        f"{from_each_search(k)} of each gives {statistics.fmean(r['pooled_size'] for r in results):.1f}.",
        "",
        "| search | candidate | ROUGE-L | chrF |",
        "|---|---|---:|---:|",
    ]
    for search, by_candidate in results[0]["scores"].items():
        for candidate in by_candidate:
            rouge = [r["scores"][search][candidate]["rougeL"] for r in results]
            chrf = [r["scores"][search][candidate]["chrf"] for r in results]
            lines.append(f"| {search} | {candidate} | {mean_sd(rouge, 4)} | {mean_sd(chrf, 2)} |")
    heads = [r for r in results if "heads" in r]
    if heads:
        lines += [
            "",
            f"A trained description head choosing among each search's first {k}, and among the pooled first "
            f"{from_each_search(k)} of each ({', '.join(r['run'] for r in heads)}): the nearest candidate's share chosen on validation by chrF, "
            "as training chooses it; scored on the test split. The TF-IDF search's nearest (the pool's first) is the "
            "baseline's answer.",
            "",
            "| search | answer | test ROUGE-L | test chrF | nearest's share (by split) |",
            "|---|---|---:|---:|---|",
        ]
        for search in heads[0]["heads"]:
            for answer, name in (("head", "the head's choice"), ("nearest", "the nearest candidate")):
                rouge = [r["heads"][search][answer]["rougeL"] for r in heads]
                chrf = [r["heads"][search][answer]["chrf"] for r in heads]
                shares = ", ".join(f"{r['heads'][search]['nearest_share']:g}" for r in heads) if answer == "head" else ""
                lines.append(f"| {search} | {name} | {mean_sd(rouge, 4)} | {mean_sd(chrf, 2)} | {shares} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from tqdm import tqdm

    from bench.speed_measure import machine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+",
                        default=[REPO / f"data/bigbasket-descriptions-split{seed}" for seed in (1, 2, 3)])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--runs", type=Path, nargs="*", default=[],
                        help="trained description heads, one per --data folder in the same order (each trained on it)")
    parser.add_argument("--output", type=Path, default=REPO / "bench/results/description_candidates.md")
    args = parser.parse_args()
    host = machine()
    if len(args.runs) > len(args.data):
        parser.error(f"{len(args.runs)} runs for {len(args.data)} data folders: give one data folder per run, in the same order")
    runs = args.runs + [None] * (len(args.data) - len(args.runs))
    results = [one_split(data, run, args.k) for data, run in tqdm(list(zip(args.data, runs, strict=True)),
                                                                    desc="splits", unit="split")]
    command = "bench/description_candidates.py --data " + " ".join(d.name for d in args.data) + f" --k {args.k}"
    command += (" --runs " + " ".join(str(run) for run in args.runs)) if args.runs else ""
    args.output.write_text(report(results, host, command, args.k))
    args.output.with_suffix(".json").write_text(json.dumps({"machine": host, "k": args.k, "results": results}, indent=1) + "\n")
    print(args.output.read_text())


if __name__ == "__main__":
    main()
