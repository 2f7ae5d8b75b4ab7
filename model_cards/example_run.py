"""A small but real finished run folder, for previewing cards and testing publishing without training.

    python -m model_cards.example_run /tmp/example-run [--method head]

The adapter is a real peft LoRA (r=4 on ``q_proj``/``v_proj``) on the embedded base model, with
random (seeded) weights so that it changes the model's output; every other file follows the run
folder layout of :mod:`catalog_lora.run_files`. The metrics and statistics in it are illustrative
numbers written by this module, not measurements.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from catalog_lora.labels import Taxonomy
from catalog_lora.run_files import COMPLETE_MARKER, CONFIG_FILE, METRICS_FILE, STATS_FILE, TAXONOMY_FILE, RunInfo

LABELS = ["Fragrance", "Price", "Packaging", "Lather", "Moisturization"]
COUNTS = {"Fragrance": 67, "Price": 29, "Packaging": 25, "Lather": 25, "Moisturization": 8}


def make_example_run(folder: str | Path, method: str = "generate", seed: int = 0) -> Path:
    """Write a finished tagging run folder (adapter, tokenizer and every run file) into ``folder``."""
    import torch
    from peft import LoraConfig, get_peft_model

    from catalog_lora.base_model import load_base_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    head = method == "head"
    info = RunInfo(task="tagging", method=method, labels=list(LABELS), max_new_tokens=8, max_length=256)
    model, tokenizer, _ = load_base_model(
        "embedded", quantization="none", device="cpu", num_labels=info.num_labels, problem_type=info.problem_type
    )
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4,
        lora_alpha=32,  # scale 8: the random adapter clearly changes greedy output
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj"],
        task_type="SEQ_CLS" if head else "CAUSAL_LM",
        init_lora_weights=False,  # random A and B: the adapter visibly changes the output
    )
    model = get_peft_model(model, config)
    trainable, total = model.get_nb_trainable_parameters()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    info.save(folder)
    Taxonomy(LABELS, COUNTS, multi_label=True).save(folder / TAXONOMY_FILE)
    (folder / CONFIG_FILE).write_text(
        yaml.safe_dump(
            {
                "task": "tagging",
                "method": method,
                "model": {"base_model": "embedded", "quantization": "none", "prompt_template": "alpaca"},
                "data": {"path": "data/sample/tagging", "label_field": "labels"},
                "lora": {"r": 4, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
                "train": {"epochs": 1.0, "batch_size": 8, "lr": 2.0e-4, "scheduler": "cosine", "seed": seed},
                "eval": {"base": True, "baseline": True, "constrained": True},
                "output_dir": str(folder),
            },
            sort_keys=False,
        )
    )
    scores = {
        "base": {"micro_f1": 0.1234, "macro_f1": 0.0988, "exact_match": 0.02, "n": 37},
        "adapter": {"micro_f1": 0.7125, "macro_f1": 0.6502, "exact_match": 0.4054, "n": 37, "truncated": 0},
        "baseline": {"micro_f1": 0.6011, "macro_f1": 0.5217, "exact_match": 0.2973, "n": 37},
    }
    (folder / METRICS_FILE).write_text(json.dumps({"test": scores}, indent=2) + "\n")
    stats = {  # the keys training.train writes
        "task": "tagging",
        "method": method,
        "precision": "no quantization, float32 on cpu: example run",
        "quantization": "none",
        "total_parameters": total,
        "trainable_parameters": trainable,
        "trainable_percent": 100.0 * trainable / total,
        "hardware": "CPU (example, 2 threads) x 1 process(es)",
        "train_runtime_seconds": 312.5,
        "final_train_loss": 0.8123,
        "final_validation_loss": 0.9345,
        "examples": {"train": 128, "validation": 19, "test": 37},
        "log_history": [{"step": 5, "loss": 2.1}, {"step": 16, "loss": 0.8123}, {"step": 16, "eval_loss": 0.9345}],
    }
    (folder / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    (folder / COMPLETE_MARKER).write_text("")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--method", choices=["generate", "head"], default="generate")
    args = parser.parse_args(argv)
    print(make_example_run(args.folder, args.method))


if __name__ == "__main__":
    main()
