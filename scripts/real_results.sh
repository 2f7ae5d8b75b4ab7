#!/usr/bin/env bash
# The README's results table: prepare the real data in ../shared, train every real config, report.
# Each config states its CPU budget (train.max_minutes); the whole script takes about 3 hours on a
# 2-core CPU, minutes on a GPU. Pass config names to run only those (e.g. `instacart_department_head`).
#
# SPLITS="1 2 3" trains every config once per differently seeded grouped split (datasets_prep's --seed):
# data/<dataset>-split<seed>, runs/<run>-split<seed>; training.report then reports each config's mean and
# spread over its splits and whether the mean gain over the baseline exceeds that spread.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RAW=${CATALOG_LORA_SHARED_DATA:-../shared/data/raw}
SPLITS=${SPLITS:-}
DATASETS=(
  "bodywash|$RAW/bodywash/bodywash-train_L1_L2.DERIVED.csv|bodywash"
  "bigbasket|$RAW/bigbasket/bigbasket_products_27k_no_description.csv|bigbasket"
  "instacart|$RAW/instacart/products_19k.DERIVED_clean_with_names.csv|instacart"
  "bigbasket-descriptions|$RAW/bigbasket/bigbasket_products_first6k_with_description.DERIVED_clean.csv|bigbasket-descriptions"
  "amazontitles|$RAW/amazontitles_1.3mm/trn_first500_nonempty_title_content.json|amazontitles"
)
for entry in "${DATASETS[@]}"; do
  IFS='|' read -r format input folder <<< "$entry"
  if [ -z "$SPLITS" ]; then
    $PY -m datasets_prep.prepare --format "$format" --input "$input" --output "data/$folder"
  fi
  for seed in $SPLITS; do
    $PY -m datasets_prep.prepare --format "$format" --input "$input" --output "data/$folder-split$seed" --seed "$seed"
  done
done
CONFIGS=("$@")
if [ ${#CONFIGS[@]} -eq 0 ]; then
  CONFIGS=(bigbasket_category_head bigbasket_top_head instacart_department_head bodywash_l1_head bigbasket_description_head \
           bigbasket_description bodywash_l1 bigbasket_category amazontitles_description)
fi
# A config's data folder and run folder, as its YAML names them.
field() { $PY -c "import yaml, sys; c = yaml.safe_load(open(sys.argv[1])); print(c['data']['path'] if sys.argv[2] == 'data' else c['output_dir'])" "$1" "$2"; }
for config in "${CONFIGS[@]}"; do
  file="training/configs/$config.yaml"
  if [ -z "$SPLITS" ]; then
    $PY -m training.train --config "$file"
  fi
  for seed in $SPLITS; do
    $PY -m training.train --config "$file" "data.path=$(field "$file" data)-split$seed" "output_dir=$(field "$file" out)-split$seed"
  done
done
# The report covers every finished run folder of the configs above; the shipped default of each task is named.
# The records of the last report stay for the configs not trained here (a config's splits measured now replace
# or join its earlier ones), so one config can be run again without losing the others': the last report is kept
# as real_data_previous.json / .md (its run sections), which the new one names as the source of those records.
EARLIER=()
if [ -f bench/results/real_data.json ]; then
  cp bench/results/real_data.json bench/results/real_data_previous.json
  [ -f bench/results/real_data.md ] && cp bench/results/real_data.md bench/results/real_data_previous.md
  EARLIER=(--results bench/results/real_data_previous.json)
fi
# With SPLITS, the split runs (runs/<run>-split<seed>) alone: a run folder of the default split left from an earlier
# run would otherwise join its config's record as one more split.
RUNS=()
for run in runs/bigbasket-category-head runs/bigbasket-top-head runs/instacart-department-head runs/bodywash-l1 \
           runs/bodywash-l1-head runs/bigbasket-description-head runs/bigbasket-description runs/bigbasket-category \
           runs/amazontitles-description; do
  if [ -n "$SPLITS" ]; then folders=("$run"-split*); else folders=("$run" "$run"-split*); fi
  for folder in "${folders[@]}"; do
    [ -f "$folder/COMPLETE" ] && RUNS+=("$folder")
  done
done
$PY -m training.report "${RUNS[@]}" "${EARLIER[@]}" --output bench/results/real_data.md --json bench/results/real_data.json \
  --ablation bench/results/ablation.md --plot bench/results/real_data.png --plot-target 3 \
  --shipped bigbasket-category-head bigbasket-top-head instacart-department-head bodywash-l1-head bigbasket-description-head
# the README's results table and its read-out, from the JSON just written
$PY bench/speed_docs.py
