"""Speed benchmark: this project's engine against the reference approach and llama.cpp, on the same
model, adapter and machine.

    .venv/bin/python bench/speed.py [--products 256] [--parts inference,llama,memory,space,training]
                                    [--note "what else ran on the machine"]

Writes ``bench/results/speed.md`` and ``bench/results/speed.json`` (``--output``), then rewrites the speed figures
of README.md and docs/speed.md from ``bench/results/`` (``bench/speed_docs.py``). Run it as you
want it measured: ``OMP_NUM_THREADS=1 taskset -c 1 ...`` measures one thread on one core; the
machine line records the CPU, the threads torch used, the cores the process could run on, the
load average and the date.

Inference (products/s, peak memory, share of the fp32 compute floor, agreement): (a) the
reference, one product at a time, sampling at temperature 0.3 with max_new_tokens=50 (and the same
forced to generate all 50 tokens); (b) batched greedy; (c) batched greedy with constrained
decoding; the same with the adapter merged into the base, in bf16 (on a CPU that computes it natively)
and in int8; (d) the classification head, alone and merged, in bf16 and in int8; llama.cpp
(``bench/llama_cpp_peer.py``) at F16 and Q8_0, greedy and with a GBNF grammar over the taxonomy.
Agreement: the share of products whose tag set equals the fp32 engine's (greedy rows against (b),
constrained rows against (c), head rows against (d)); quality: micro-F1 of the tags
against the held-out gold labels. The products are the held-out body-wash reviews of
``data/bodywash`` (test, then validation) when prepared, else the raw body-wash CSV of
``../shared``, else the bundled sample.

Training (non-padding tokens/s): (a) padding to 512 as the reference; (b) dynamic padding with length
grouping; (c) packing. Memory: one base with three adapters against three separately loaded models,
whole-process RSS. The Space: /tag under 1, 5 and 20 concurrent users (``bench/load_bench.py``).

Each measurement runs in its own process, so its peak memory is its own. The tagging adapter is
``runs/bodywash-l1`` (``training/configs/bodywash_l1.yaml``) when trained, else the sample one of
``bash run.sh`` (trained here first when missing); the head rows use ``runs/bodywash-l1-head`` (else
``runs/sample-tagging-head``) when trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.speed_docs import write as write_docs  # noqa: E402
from bench.speed_measure import (  # noqa: E402
    measure_inference,
    measure_llama,
    measure_memory,
    measure_training,
)
from bench.speed_report import PARTS, report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=256)
    parser.add_argument("--reference-products", type=int, default=32, help="products for the one-at-a-time rows")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--train-steps", type=int, default=12)
    parser.add_argument("--note", default="", help="conditions the script cannot see, e.g. other work on the machine")
    parser.add_argument("--output", default=str(REPO / "bench/results/speed.md"))
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, mode, arg, options = args.measure
        options = json.loads(options)
        if kind == "inference":
            result = measure_inference(mode, int(arg), options)
        elif kind == "llama":
            result = measure_llama(mode, int(arg), options["constrained"])
        elif kind == "training":
            result = measure_training(mode, int(arg))
        else:
            result = measure_memory(mode)
        print(json.dumps(result))
        return
    table, result = report(args)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    output.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    if changed := write_docs():  # the documents quote bench/results/speed.json: keep them with it
        print(f"rewrote the speed figures of {', '.join(changed)}")
    print(table)
    print(f"Written to {output} and {output.with_suffix('.json')}")


if __name__ == "__main__":
    main()
