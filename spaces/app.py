"""catalog-lora Space: tag, classify and describe products with LoRA adapters on one small base model.

    python spaces/app.py [--port 7860] [--host 127.0.0.1] [--lazy]

One base model is loaded once (bf16 on CUDA, or 4-bit NF4 for a base too large for the GPU; fp32 on CPU) and every adapter sits on it;
each request picks its adapter. The adapters come from ``adapters.yaml`` beside this file or
from environment variables (``CATALOG_LORA_TAG_ADAPTER``, ``CATALOG_LORA_CATEGORY_ADAPTER``,
``CATALOG_LORA_DESCRIBE_ADAPTER``, ``CATALOG_LORA_BASE_MODEL``…); a missing adapter switches
its tab off with a message, the rest of the app still works.

The rooms of the app live in ``catalog_space/`` beside this file: ``settings`` (what is served),
``models`` (the adapter pool and the model calls), ``handlers``, ``batch_runs``, ``dataset`` and
``about`` (plain functions), ``ui`` (``build_demo(models)``, the one ``gr.Blocks``). Importing this
file loads no model and reads nothing from the Hub; :func:`main` does, then launches.
"""

from __future__ import annotations

# ZeroGPU's package must be imported before torch touches CUDA. Locally it is not installed
# (and this folder, deliberately not a package, must never stand in for it).
try:
    import spaces  # noqa: F401
except ImportError:
    pass

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # catalog_space/ sits beside this file
    sys.path.insert(0, str(HERE))
if importlib.util.find_spec("catalog_lora") is None:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parent))

from catalog_space.models import Models  # noqa: E402
from catalog_space.settings import read_settings  # noqa: E402
from catalog_space.ui import build_demo, launch  # noqa: E402

logger = logging.getLogger("catalog_lora.space")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The catalog-lora Space.")
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    parser.add_argument("--lazy", action="store_true", help="load the model on the first request, not at start")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    models = Models(read_settings())
    for slot in models.slots.values():
        if slot.problem:
            logger.warning("%s adapter: %s", slot.name, slot.problem)
    if not args.lazy:
        models.load()
    launch(build_demo(models), models, port=args.port, host=args.host)


if __name__ == "__main__":
    main()
