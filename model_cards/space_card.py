"""The README of the Space: its front matter (gradio at the installed version, the models it uses) and a body."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from huggingface_hub import SpaceCardData

from catalog_lora.runs.folder import check_repo_id
from model_cards.templating import render


def gradio_version() -> str:
    try:
        return version("gradio")
    except PackageNotFoundError:
        raise RuntimeError("gradio is not installed; the Space README needs its version (pip install gradio)") from None


def space_readme(
    title: str,
    adapters: list[str],
    *,
    base_models: list[str] = (),
    emoji: str = "🛍️",
    license: str = "apache-2.0",
    short_description: str = "Tag, categorize and describe products with LoRA adapters",
    app_file: str = "app.py",
    sdk_version: str | None = None,
    color_from: str = "indigo",
    color_to: str = "green",
    pinned: bool = False,
    body: str | None = None,
) -> str:
    """README.md of the Space: front matter (gradio at its installed version; ``models:`` = the adapters,
    then their base models) and a body (``body``, or ``templates/space_readme.md`` listing the adapters)."""
    for model in (*adapters, *base_models):
        check_repo_id(model)
    data = SpaceCardData(
        title=title,
        emoji=emoji,
        colorFrom=color_from,
        colorTo=color_to,
        sdk="gradio",
        sdk_version=sdk_version or gradio_version(),
        app_file=app_file,
        license=license,
        models=list(dict.fromkeys([*adapters, *base_models])) or None,
        short_description=short_description,
        pinned=pinned,
    )
    if body is None:
        body = (
            render(
                "space_readme.md",
                title=title,
                short_description=short_description,
                adapters=adapters,
                app_file=app_file,
            )
            + "\n"
        )
    return f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"
