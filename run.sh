#!/usr/bin/env bash
# One command: install, prepare the bundled sample catalog, fine-tune the three default
# adapters on the embedded base model, then open the Gradio app on http://127.0.0.1:7860.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
PY=.venv/bin/python
$PY -m datasets_prep.prepare --format sample --output data/sample
for task in tagging category description; do
  if [ -f "runs/sample-$task/COMPLETE" ]; then
    echo "runs/sample-$task is already trained (delete it to retrain)"
  else
    $PY -m training.train --config "training/configs/sample_$task.yaml"
  fi
done
echo "Adapters: runs/sample-tagging runs/sample-category runs/sample-description"
[ "${CATALOG_LORA_NO_APP:-0}" = 1 ] && exit 0
exec $PY spaces/app.py
