#!/usr/bin/env bash
# The README's results table: prepare the real data in ../shared, train every real config, report.
# Each config states its CPU budget (train.max_minutes); the whole script takes about 3 hours on a
# 2-core CPU, minutes on a GPU. Pass config names to run only those (e.g. `instacart_department_head`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RAW=${CATALOG_LORA_SHARED_DATA:-../shared/data/raw}
$PY -m datasets_prep.prepare --format bodywash --input "$RAW/bodywash/bodywash-train_L1_L2.DERIVED.csv" --output data/bodywash
$PY -m datasets_prep.prepare --format bigbasket --input "$RAW/bigbasket/bigbasket_products_27k_no_description.csv" --output data/bigbasket
$PY -m datasets_prep.prepare --format instacart --input "$RAW/instacart/products_19k.DERIVED_clean_with_names.csv" --output data/instacart
$PY -m datasets_prep.prepare --format bigbasket-descriptions --input "$RAW/bigbasket/bigbasket_products_first6k_with_description.DERIVED_clean.csv" --output data/bigbasket-descriptions
$PY -m datasets_prep.prepare --format amazontitles --input "$RAW/amazontitles_1.3mm/trn_first500_nonempty_title_content.json" --output data/amazontitles
CONFIGS=("$@")
if [ ${#CONFIGS[@]} -eq 0 ]; then
  CONFIGS=(bigbasket_category_head bigbasket_top_head instacart_department_head bodywash_l1_head bigbasket_description_head \
           bigbasket_description bodywash_l1 bigbasket_category amazontitles_description)
fi
for config in "${CONFIGS[@]}"; do
  $PY -m training.train --config "training/configs/$config.yaml"
done
# The report covers every finished run folder of the configs above; the shipped default of each task is named.
RUNS=()
for run in runs/bigbasket-category-head runs/bigbasket-top-head runs/instacart-department-head runs/bodywash-l1 \
           runs/bodywash-l1-head runs/bigbasket-description-head runs/bigbasket-description runs/bigbasket-category \
           runs/amazontitles-description; do
  [ -f "$run/COMPLETE" ] && RUNS+=("$run")
done
$PY -m training.report "${RUNS[@]}" --output bench/results/real_data.md --json bench/results/real_data.json \
  --ablation bench/results/ablation.md \
  --shipped bigbasket-category-head bigbasket-top-head instacart-department-head bodywash-l1-head bigbasket-description-head
