"""How to cite an adapter: one citation, built from the run, for the model card and the Space.

The adapter is cited by its Hub repo (author: the namespace; URL: its Hub page), with the year the
run finished (from the run's ``COMPLETE`` marker), followed by the methods it builds on.
"""

from __future__ import annotations

import re
from datetime import datetime

from catalog_lora.runs.folder import COMPLETE_MARKER, fetch_file

TASK_TITLES = {"tagging": "product tagging", "category": "product categorization", "description": "product descriptions"}
LORA_BIB = """@article{hu2021lora,
  title   = {LoRA: Low-Rank Adaptation of Large Language Models},
  author  = {Hu, Edward J. and Shen, Yelong and Wallis, Phillip and Allen-Zhu, Zeyuan and Li, Yuanzhi and Wang, Shean and Wang, Lu and Chen, Weizhu},
  journal = {arXiv preprint arXiv:2106.09685},
  year    = {2021}
}"""
QLORA_BIB = """@article{dettmers2023qlora,
  title   = {QLoRA: Efficient Finetuning of Quantized LLMs},
  author  = {Dettmers, Tim and Pagnoni, Artidoro and Holtzman, Ari and Zettlemoyer, Luke},
  journal = {arXiv preprint arXiv:2305.14314},
  year    = {2023}
}"""
LORA_APA = (
    "Hu, E. J., Shen, Y., Wallis, P., Allen-Zhu, Z., Li, Y., Wang, S., Wang, L., & Chen, W. (2021). "
    "*LoRA: Low-rank adaptation of large language models*. arXiv:2106.09685. https://arxiv.org/abs/2106.09685"
)
QLORA_APA = (
    "Dettmers, T., Pagnoni, A., Holtzman, A., & Zettlemoyer, L. (2023). "
    "*QLoRA: Efficient finetuning of quantized LLMs*. arXiv:2305.14314. https://arxiv.org/abs/2305.14314"
)


def run_year(adapter: str) -> int:
    """The year the run finished (its ``COMPLETE`` marker says ``finished YYYY-MM-DD …``), else this year."""
    try:
        marker = fetch_file(adapter, COMPLETE_MARKER, required=False)
    except Exception:  # an unreachable Hub repo: the citation still renders
        marker = None
    found = re.search(r"\b(\d{4})-\d{2}-\d{2}\b", marker.read_text()) if marker else None
    return int(found.group(1)) if found else datetime.now().year


def adapter_citation(repo_id: str, base_model: str, task: str, year: int, qlora: bool, methods: bool = True) -> str:
    """Markdown: the adapter's BibTeX and APA entries, then (with ``methods``) LoRA's and QLoRA's."""
    namespace, name = repo_id.split("/")
    key = re.sub(r"\W+", "_", f"{namespace}_{name}_{year}").strip("_").lower()
    title = f"{name}: a LoRA adapter of {base_model} for {TASK_TITLES[task]}"
    url = f"https://huggingface.co/{repo_id}"
    bib = (
        f"@misc{{{key},\n  title        = {{{title}}},\n  author       = {{{namespace}}},\n"
        f"  year         = {{{year}}},\n  howpublished = {{\\url{{{url}}}}},\n"
        "  note         = {LoRA adapter trained with catalog-lora}\n}"
    )
    apa = f"{namespace}. ({year}). *{title}* [LoRA adapter]. Hugging Face. {url}"
    if not methods:
        return f"```bibtex\n{bib}\n```\n\n- {apa}"
    return (
        "If you use this adapter, please cite it and the methods it builds on"
        + (" (QLoRA was used to train it)" if qlora else " (LoRA was used; QLoRA is the 4-bit variant the project supports)")
        + f":\n\n**BibTeX**\n\n```bibtex\n{bib}\n\n{LORA_BIB}\n\n{QLORA_BIB}\n```\n\n**APA**\n\n"
        f"- {apa}\n- {LORA_APA}\n- {QLORA_APA}"
    )


def methods_citation() -> str:
    """The methods alone, for an adapter that has no Hub repo to cite."""
    return f"```bibtex\n{LORA_BIB}\n\n{QLORA_BIB}\n```\n\n- {LORA_APA}\n- {QLORA_APA}"
