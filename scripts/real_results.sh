#!/usr/bin/env bash
# The README's results table: prepare the real data in ../shared, train five adapters, report.
# About 1.7 hours on a 2-core CPU; minutes on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RAW=${CATALOG_LORA_SHARED_DATA:-../shared/data/raw}
$PY -m datasets_prep.prepare --format bodywash --input "$RAW/bodywash/bodywash-train_L1_L2.DERIVED.csv" --output data/bodywash
$PY -m datasets_prep.prepare --format bigbasket --input "$RAW/bigbasket/bigbasket_products_27k_no_description.csv" --output data/bigbasket
$PY -m datasets_prep.prepare --format amazontitles --input "$RAW/amazontitles_1.3mm/trn_first500_nonempty_title_content.json" --output data/amazontitles
for config in bodywash_l1 bodywash_l1_head bigbasket_category bigbasket_category_head amazontitles_description; do
  $PY -m training.train --config "training/configs/$config.yaml"
done
$PY -m training.report runs/bodywash-l1 runs/bodywash-l1-head runs/bigbasket-category runs/bigbasket-category-head runs/amazontitles-description --output bench/results/real_data.md
