"""Can the language model pick a better description than the nearest neighbour's? Validation only.

    .venv/bin/python bench/description_choices.py [--data data/bigbasket-descriptions] [--k 5] [--adapter RUN]

The description baseline copies the description of the most similar training title. This measures,
on the VALIDATION split (the test split is never read), what choosing among the ``k`` nearest
training descriptions (the references index's MiniLM neighbours) gives instead:

- ``top-1``: the nearest one (what ``model.prompt_examples: 1`` shows the model);
- ``oracle``: the one closest to the true description (sentence chrF): the ceiling of any choice;
- ``consensus``: the one with the highest mean chrF to the other candidates (minimum Bayes risk);
- ``direct``: the highest mean token log-likelihood under the model given the product's prompt,
  minus ``rank_penalty`` x its similarity rank;
- ``channel``: the highest log-likelihood of the product's title given the candidate description
  (the noisy-channel direction), minus the same rank penalty;

and the TF-IDF nearest-neighbour baseline on the same rows. Writes ``bench/results/description_choices.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from catalog_lora.model.base_model import load_base_model  # noqa: E402
from catalog_lora.records.dataset_files import load_split  # noqa: E402
from catalog_lora.records.prompts import PromptTemplate  # noqa: E402
from catalog_lora.retrieval.references import build_index  # noqa: E402
from training.baseline import TfidfBaseline  # noqa: E402
from training.metrics import description_metrics  # noqa: E402

RANK_PENALTIES = (0.0, 0.5, 1.0, 2.0)
MAX_ANSWER_TOKENS = 120  # a candidate is scored on its first tokens: enough to tell products apart


def log_likelihoods(model, tokenizer, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16) -> list[tuple[float, int]]:
    """For each ``(context, target)`` token-id pair: the target's summed log-probability and its length."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        rows = [context + target for context, target in chunk]
        width = max(map(len, rows))
        ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
        with torch.inference_mode():
            logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        for i, (context, target) in enumerate(chunk):
            picked = logp[i, len(context) - 1 : len(context) + len(target) - 1].gather(-1, torch.tensor(target)[:, None])
            scores.append((float(picked.sum()), len(target)))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data/bigbasket-descriptions"), help="a prepared description dataset")
    parser.add_argument("--k", type=int, default=5, help="candidates: the k nearest training descriptions")
    parser.add_argument("--adapter", help="a generate run folder whose adapter scores the candidates (default: the base model)")
    parser.add_argument("--output", default=str(REPO / "bench/results/description_choices.md"))
    args = parser.parse_args()
    import sacrebleu

    data = Path(args.data)
    if not (data / "validation.jsonl").is_file():
        sys.exit(f"{data} has no validation.jsonl: prepare it first (README, 'Results on real catalogs')")
    train, validation = load_split(data, "train"), load_split(data, "validation")
    references = [r["description"] for r in validation]
    started = time.time()
    with tempfile.TemporaryDirectory() as folder:
        index = build_index(train, Path(folder) / "references", "description")
        candidates = [[hit.answer for hit in hits] for hits in index.query([r["text"] for r in validation], args.k)]
        index.close()

    model, tokenizer, precision = load_base_model()
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter)
    model.eval()
    template = PromptTemplate("description", "alpaca")

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    direct, channel = [], []
    for record, options in tqdm(list(zip(validation, candidates, strict=True)), desc="score candidates", unit="product"):
        prompt = encode(template.prompt(record["text"], attributes=record.get("attributes")))
        direct.append([s / n for s, n in log_likelihoods(model, tokenizer, [(prompt, encode(" " + c)[:MAX_ANSWER_TOKENS]) for c in options])])
        title = encode(" " + record["text"])
        channel.append([s for s, _ in log_likelihoods(model, tokenizer, [(encode(f"Description: {c[:600]}\nProduct:"), title) for c in options])])

    def chrf(hypothesis: str, reference: str) -> float:
        return sacrebleu.sentence_chrf(hypothesis, [reference]).score

    def pick(scores_per_row) -> list[str]:
        return [options[int(np.argmax(scores))] for options, scores in zip(candidates, scores_per_row, strict=True)]

    ranks = np.arange(args.k)
    rules = {
        "top-1 (nearest training description)": pick([-ranks for _ in candidates]),
        f"oracle among {args.k} (ceiling)": [max(o, key=lambda c, ref=ref: chrf(c, ref)) for o, ref in zip(candidates, references, strict=True)],
        "consensus (mean chrF to the other candidates)": pick(
            [[np.mean([chrf(c, other) for j, other in enumerate(o) if j != i]) for i, c in enumerate(o)] for o in candidates]
        ),
    }
    for penalty in RANK_PENALTIES:
        rules[f"direct: mean log p(description given prompt) - {penalty:g} x rank"] = pick([np.array(s) - penalty * ranks[: len(s)] for s in direct])
    for penalty in RANK_PENALTIES:
        rules[f"channel: log p(title given description) - {penalty:g} x rank"] = pick([np.array(s) - penalty * ranks[: len(s)] for s in channel])
    baseline = TfidfBaseline("description").fit([r["text"] for r in train], [r["description"] for r in train])
    rules["TF-IDF nearest-neighbour baseline"] = baseline.predict([r["text"] for r in validation])

    rows = []
    for name, answers in rules.items():
        metrics = description_metrics(references, answers)
        rows.append(f"| {name} | {metrics['rougeL']:.4f} | {metrics['chrf']:.2f} | {metrics['length_mean']:.0f} |")
    scorer = f"adapter {args.adapter}" if args.adapter else f"the base model ({precision.describe()})"
    text = "\n".join(
        [
            f"Made by `python bench/description_choices.py --k {args.k}{' --adapter ' + args.adapter if args.adapter else ''}` "
            f"on {time.strftime('%Y-%m-%d %H:%M %Z')}: {torch.get_num_threads()} torch threads, {time.time() - started:.0f} s.",
            "",
            f"{len(validation)} validation products of `{data.name}`; candidates: the {args.k} nearest training descriptions "
            f"(MiniLM references index); scored by {scorer}. The test split is not read.",
            "",
            "| choice | ROUGE-L | chrF | mean words |",
            "|---|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
