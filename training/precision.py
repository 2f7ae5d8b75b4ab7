"""Record how often a finished head run answers the same in bf16 as in fp32, without training again.

    python -m training.precision runs/bodywash-l1-head [--texts 128]

What ``eval.bf16_check`` does at the end of training (catalog_lora.inference.bf16_check), for a run trained
before it existed: the first ``--texts`` validation records of the run's data are answered in fp32 and in
bf16, and the share of equal answers is written to the run's ``catalog_lora.json`` (``bf16_agreement``).
A Space on a CPU with native bf16 then serves the head in bf16 when it is at least 98%.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from catalog_lora.runs.folder import COMPLETE_MARKER, CONFIG_FILE, read_run_info
from training.config import ConfigError, EvalSettings, load_config
from training.data import read_config_splits
from training.run_folder import record_bf16_agreement


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a finished head run folder")
    parser.add_argument("--texts", type=int, default=EvalSettings.bf16_check, help="validation texts to measure on")
    args = parser.parse_args(argv)
    run = Path(args.run)
    if not (run / COMPLETE_MARKER).is_file():
        raise SystemExit(f"{run} has no {COMPLETE_MARKER} marker: only a finished run folder can be measured")
    if args.texts < 1:
        raise SystemExit(f"--texts={args.texts} must be at least 1")
    info = read_run_info(str(run))
    if info.method != "head":
        raise SystemExit(f"{run} is a {info.method} run: bf16 serving is chosen for head adapters")
    try:
        config = load_config(run / CONFIG_FILE)
    except ConfigError as error:
        raise SystemExit(f"{run}: {error}") from None
    splits = read_config_splits(config)
    record_bf16_agreement(run, info, splits["validation"], args.texts)
    return info.bf16_agreement


if __name__ == "__main__":
    main()
