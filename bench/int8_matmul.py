"""Is int8 or bf16 worth it on this CPU? ``torch._int_mm`` (what ``quantization: int8`` runs) and the bf16 matmul
(``quantization: bf16``) against the fp32 matmul, on the shapes of SmolLM2-135M's linear layers and one micro-batch
of tokens.

    .venv/bin/python bench/int8_matmul.py [--tokens 64] [--output bench/results/int8_matmul.md]

Without AVX512-VNNI or AMX torch has no fast int8 kernel, and ``choose_precision`` warns; without AVX512-BF16 or AMX
bf16 is emulated (and refused by the loader).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# (in, out) of the decoder's linear layers: q/o, k/v (3 KV heads of 64), gate/up, down
SHAPES = [(576, 576), (576, 192), (576, 1536), (1536, 576)]


def milliseconds(matmul, a: torch.Tensor, b: torch.Tensor, reps: int = 20) -> float:
    matmul(a, b)
    start = time.perf_counter()
    for _ in range(reps):
        matmul(a, b)
    return (time.perf_counter() - start) / reps * 1000


def main() -> None:
    from bench.speed_measure import machine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="rows of the activation matrix (> 16 for _int_mm)")
    parser.add_argument("--output", default=str(REPO / "bench/results/int8_matmul.md"))
    args = parser.parse_args()
    host = machine()
    rows = []
    for fan_in, fan_out in SHAPES:
        x, w = torch.randn(args.tokens, fan_in), torch.randn(fan_in, fan_out)
        qx = torch.randint(-127, 128, (args.tokens, fan_in), dtype=torch.int8)
        qw = torch.randint(-127, 128, (fan_in, fan_out), dtype=torch.int8)
        fp32, int8 = milliseconds(torch.mm, x, w), milliseconds(torch._int_mm, qx, qw)
        bf16 = milliseconds(torch.mm, x.bfloat16(), w.bfloat16())
        rows.append(
            f"| {args.tokens} x {fan_in} @ {fan_in} x {fan_out} | {fp32:.3f} | {int8:.3f} | {int8 / fp32:.2f}x "
            f"| {bf16:.3f} | {bf16 / fp32:.2f}x |"
        )
    text = (
        f"Machine: {host['cpu']} ({host['arch']}), {host['torch_threads']} torch thread(s) on core(s) {host['cores_allowed']}, "
        f"load average {host['load_average_at_start'][0]:.2f} at start; torch {host['torch']}. "
        f"Date: {host['date']}. Made by `bench/int8_matmul.py --tokens {args.tokens}`. Time per product: below 1.00x "
        "is faster than fp32.\n\n"
        "| matmul | fp32 ms | int8 (`torch._int_mm`) ms | int8 / fp32 | bf16 ms | bf16 / fp32 |\n"
        "|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
