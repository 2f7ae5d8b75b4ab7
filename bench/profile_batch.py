"""Where one batch of the engine spends its time: cProfile of ``Engine.predict`` on 32 products.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/profile_batch.py [--merge] [--quantization int8]

Writes ``bench/results/profile.md`` (``--output``): the functions with the most own time, with the
machine line of ``bench/speed.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    from bench.speed_measure import machine, products, run_for
    from catalog_lora.inference.engine import Engine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=32)
    parser.add_argument("--merge", action="store_true")
    parser.add_argument("--quantization", default="auto")
    parser.add_argument("--unconstrained", action="store_true")
    parser.add_argument("--note", default="")
    parser.add_argument("--output", default=str(REPO / "bench/results/profile.md"))
    args = parser.parse_args()
    adapter = run_for("tagging")
    engine = Engine.load({"tagging": str(adapter)}, quantization=args.quantization, merge=args.merge)
    texts, _, source = products(args.products)
    engine.predict("tagging", texts[:4], batch_size=4)  # warm-up
    engine.tokens_processed = 0
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    engine.predict("tagging", texts, batch_size=args.products, constrained=not args.unconstrained)
    profile.disable()
    seconds = time.perf_counter() - start
    stream = io.StringIO()
    pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(15)
    host = machine()
    text = "\n".join(
        [
            f"Machine: {host['cpu']}, {host['torch_threads']} torch thread(s) on core(s) {host['cores_allowed']}, "
            f"load average {host['load_average_at_start'][0]:.2f}; torch {host['torch']}. {args.note} Date: {host['date']}.",
            "",
            f"One batch of {args.products} products ({source}), adapter {adapter.name}, "
            f"{engine.precision.describe().split(':')[0]}{', merged' if engine.merged else ''}, "
            f"{'unconstrained' if args.unconstrained else 'constrained'}: {seconds:.1f} s, "
            f"{engine.tokens_processed:,} token positions run.",
            "",
            "```",
            stream.getvalue().strip(),
            "```",
        ]
    )
    Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
