"""The Space in a real browser: headless Chromium (Debian's ``chromium`` package) driven by Playwright.

Type a product and read its tags (with the training references beside them), upload a CSV,
download the result. Screenshots go to ``artifacts/space/``, the README's two (the Tag and Train tabs) reduced
to fit the docs in ``artifacts/space/docs/``; ``CATALOG_LORA_UPDATE_SCREENSHOTS=1`` also copies those into ``docs/``
(a test run leaves the repository's files as they are unless asked).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_space import launch_space

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "space"
MAX_DOCS_BYTES = 300 * 1024
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PERCENT = re.compile(r"\d+(\.\d+)?\s?%")
TIMEOUT_MS = 240_000  # the CPU is shared: a prediction on a busy machine can take a while


@pytest.fixture(scope="module")
def page(tiny_runs):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    _, url = launch_space(tiny_runs)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_role("tab", name="Tag a product").wait_for()
        yield page
        context.close()
        browser.close()


def docs_screenshot(source: Path, name: str) -> None:
    """A screenshot for the README: ``artifacts/space/docs/<name>``, reduced to a palette image when it is too big
    for the docs, and copied into ``docs/`` when ``CATALOG_LORA_UPDATE_SCREENSHOTS`` is set."""
    target = ARTIFACTS / "docs" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    if target.stat().st_size > MAX_DOCS_BYTES:
        from PIL import Image

        with Image.open(source) as image:
            image.convert("RGB").quantize(colors=128).save(target, optimize=True)
    assert target.stat().st_size <= MAX_DOCS_BYTES
    if os.environ.get("CATALOG_LORA_UPDATE_SCREENSHOTS"):
        shutil.copyfile(target, REPO / "docs" / name)


def test_tag_a_product(page, tiny_runs):
    page.get_by_role("tab", name="Tag a product").click()
    box = page.get_by_label("Product text or review")
    box.fill("Smells amazing and lathers well, but the bottle is tiny for the price.")
    page.get_by_role("button", name="Tag", exact=True).click()
    tags = page.locator("#tag-output [data-testid='label-output-value']")
    tags.wait_for()
    assert tags.inner_text().strip()
    assert PERCENT.search(page.locator("#tag-output").inner_text()), "each tag shows its probability"
    if (tiny_runs["tagging"] / "references").is_dir():
        page.get_by_text("most similar training examples").wait_for()
        assert page.locator("#tag-references tbody tr").count() >= 1
    shot = ARTIFACTS / "tag.png"
    page.screenshot(path=str(shot))
    docs_screenshot(shot, "space.png")


def test_a_category_shows_its_probability(page):
    page.get_by_role("tab", name="Classify").click()
    page.get_by_label("Product name").fill("Organic Cold-Pressed Virgin Coconut Oil, 500 ml")
    page.get_by_role("button", name="Classify", exact=True).click()
    page.locator("#classify-output [data-testid='label-output-value']").wait_for()
    assert PERCENT.search(page.locator("#classify-output").inner_text())
    page.screenshot(path=str(ARTIFACTS / "classify.png"))


def test_a_low_confidence_answer_shows_its_review_mark(page, tiny_runs):
    models, _ = launch_space(tiny_runs)
    info = models.slots["tag"].info
    saved, info.review_threshold = info.review_threshold, 1.01  # every answer is below it
    try:
        page.get_by_role("tab", name="Tag a product").click()
        page.get_by_label("Product text or review").fill("qwerty asdf")
        page.get_by_role("button", name="Tag", exact=True).click()
        page.locator("#tag-notice").get_by_text("Low confidence — review").wait_for()
    finally:
        info.review_threshold = saved


def test_about_shows_a_plot_per_adapter(page):
    page.get_by_role("tab", name="About").click()
    page.locator(".about-plot img").first.wait_for()
    for name, least in (
        ("tag", 3),
        ("category", 3),
        ("describe", 2),
    ):  # loss curve, every system's headline metric, then per-tag F1 or confusion matrix
        plots = page.locator(f"#about-plots-{name} .about-plot img")
        assert plots.count() >= least, name
        assert all(plots.nth(i).evaluate("img => img.naturalWidth") > 0 for i in range(plots.count())), name
    assert "/tmp/" not in page.locator("#about-tab").inner_text(), "no server paths"
    page.screenshot(path=str(ARTIFACTS / "about.png"), full_page=True)


def test_a_refused_file_cannot_be_run(page, tmp_path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("title\nCr\xe8me br\xfbl\xe9e\n".encode("latin-1"))
    page.get_by_role("tab", name="Batch upload").click()
    page.locator("#batch-file input[type=file]").set_input_files(str(bad))
    page.get_by_text("This file cannot be used").wait_for()
    assert page.locator("#batch-run").is_disabled()
    page.locator("#batch-file button[aria-label='Clear']").click()
    no_text = tmp_path / "no-text-column.csv"
    no_text.write_text("sku,name\n1,Coconut oil\n", encoding="utf-8")
    page.locator("#batch-file input[type=file]").set_input_files(str(no_text))
    page.get_by_text("choose the text column").wait_for()
    assert page.locator("#batch-run").is_disabled()
    page.locator("#batch-file button[aria-label='Clear']").click()


def test_upload_a_csv_and_download_the_result(page, tmp_path):
    csv = tmp_path / "products.csv"
    csv.write_text("id,title\n1,Coconut oil 500 ml\n2,\n3,=1+1\n", encoding="utf-8")
    page.get_by_role("tab", name="Batch upload").click()
    page.locator("#batch-file input[type=file]").set_input_files(str(csv))
    page.get_by_text("3 rows and 2 columns").wait_for()
    assert page.locator("#batch-run").is_disabled(), "no job is pre-checked"
    page.get_by_label("Tags", exact=True).check()  # tags alone: the CPU is shared, keep it short
    page.get_by_text("Press Run").wait_for()
    page.locator("#batch-run").click()
    page.get_by_text("Done: 3 rows").wait_for()
    assert page.locator("#batch-progress progress").count() == 1, "one progress bar"
    link = page.locator("#batch-download a").first
    link.wait_for()
    page.screenshot(path=str(ARTIFACTS / "batch.png"), full_page=True)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "downloaded.csv"
    download.value.save_as(saved)
    out = pd.read_csv(saved, dtype=str, keep_default_na=False)
    assert list(out["id"]) == ["1", "2", "3"]
    assert out.loc[2, "title"] == "'=1+1" and "empty title" in out.loc[1, "error"]
    assert {"predicted_tags", "tags_confidence", "needs_review"} <= set(out.columns)
    assert "predicted_category" not in out.columns
    # the job lives on the server: a reloaded page shows it again
    page.reload()
    page.get_by_role("tab", name="Batch upload").click()
    page.get_by_text("Done: 3 rows").wait_for()
    page.locator("#batch-download a").first.wait_for()


def choose(page, elem_id: str, option: str) -> None:
    """Pick ``option`` in the Gradio dropdown ``#elem_id`` (single or multiple choice)."""
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")


def tag_and_wait(page, text: str) -> None:
    """Tag ``text`` with the chosen adapter and wait for this answer (not the one shown before)."""
    from playwright.sync_api import expect

    page.get_by_label("Product text or review").fill(text)
    page.get_by_role("button", name="Tag", exact=True).click()
    page.locator("#tag-output").get_by_text("processing").wait_for()
    expect(page.locator("#tag-output")).not_to_contain_text("processing", timeout=TIMEOUT_MS)
    page.locator("#tag-output [data-testid='label-output-value']").wait_for()
    assert "Something went wrong" not in page.locator("#tag-notice").inner_text()


def set_number(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(value)
    box.press("Enter")


def test_train_an_adapter_then_tag_with_it_and_cancel_another(page, tmp_path):
    """Upload a small real-format catalog, train it for two steps, watch the progress and the loss
    plot, tag with the new adapter; then start a longer job and cancel it part way."""
    from test_space_train import catalog

    from catalog_space import training_jobs
    from training.train import STOPPED_EXIT

    path = catalog(tmp_path / "reviews.csv")
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-file input[type=file]").set_input_files(str(path))
    page.get_by_text("60 rows and 2 columns").wait_for()
    assert page.locator("#train-start").is_disabled(), "nothing starts before the answer column is mapped"
    choose(page, "train-targets", "tags")
    page.locator("#train-notice").get_by_text("Press Start").wait_for()
    page.locator("#train-counts [role=gridcell]").nth(3).wait_for()  # the label counts: two labels, each with its rows
    set_number(page, "train-minutes", "1")
    set_number(page, "train-epochs", "1")
    set_number(page, "train-samples", "16")  # two steps of 8 rows: a loss curve of two points
    page.locator("#train-name input, #train-name textarea").first.fill("browser-tags")
    page.locator("#train-notice").get_by_text("Press Start").wait_for()
    page.locator("#train-start").click()
    page.locator("#train-progress progress").wait_for()
    page.locator("#train-status").get_by_text("Done").wait_for(timeout=TIMEOUT_MS)
    page.locator("#train-loss canvas, #train-loss svg").first.wait_for()
    assert "step 2 of 2" in page.locator("#train-progress").inner_text()
    page.locator("#train-validation [role=gridcell]").first.wait_for()  # the validation results
    shot = ARTIFACTS / "train.png"
    page.screenshot(path=str(shot), full_page=True)
    docs_screenshot(shot, "train.png")

    page.get_by_role("tab", name="Tag a product").click()
    choose(page, "tag-adapter", "browser-tags (trained here)")
    tag_and_wait(page, "Smells amazing and lathers well")

    page.get_by_role("tab", name="Train").click()
    set_number(page, "train-samples", "400")  # a longer job, cancelled part way
    set_number(page, "train-minutes", "6")
    page.locator("#train-start").click()
    page.locator("#train-progress").get_by_text(re.compile(r"Training · step [1-9]")).wait_for(timeout=TIMEOUT_MS)
    page.locator("#train-cancel").click()
    page.locator("#train-status").get_by_text("Cancelled").wait_for(timeout=TIMEOUT_MS)
    assert "best checkpoint" in page.locator("#train-status").inner_text()
    cancelled = max(training_jobs._JOBS.values(), key=lambda job: job.started)
    assert cancelled.process.returncode == STOPPED_EXIT, "training stopped itself on SIGTERM"
    assert (cancelled.run_dir / "checkpoints" / "best" / "adapter_model.safetensors").is_file()
    assert not (cancelled.run_dir / "COMPLETE").exists(), "a cancelled run is not a finished run"
    page.get_by_role("tab", name="Tag a product").click()  # the app is still usable
    tag_and_wait(page, "The pump broke after a week")
