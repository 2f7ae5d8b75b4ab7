"""The page: :func:`build_demo` declares every tab of the one ``gr.Blocks`` and wires the handlers to it.

Handlers are the plain functions of :mod:`handlers`, :mod:`batch_runs`, :mod:`dataset` and
:mod:`about`, bound here to the adapter pool they serve. API names for ``gradio_client``:
``/tag``, ``/describe``, ``/classify``, ``/batch``, ``/compare``, ``/dataset``.
"""

from __future__ import annotations

from functools import partial

import gradio as gr

from catalog_space import about, batch_runs, dataset, handlers, train_tab
from catalog_space.models import MICRO_BATCH, Models
from catalog_space.train_ui import train_tab_ui

TITLE = "catalog-lora: product tags, categories and descriptions"
CONCURRENCY = 2  # requests at once; the engine itself runs one model call at a time
QUEUE_SIZE = 64
CSS = (
    "table th, table th * { white-space: nowrap !important; word-break: normal !important; "
    "overflow-wrap: normal !important; }"
)
REFERENCE_WIDTHS = ["24%", "42%", "34%"]

TAG_EXAMPLES = [
    "Smells amazing and lathers well, but the bottle is tiny for the price.",
    "My sensitive skin did not react at all, and it rinses off clean.",
    "The pump broke after a week and the scent fades fast.",
]
CATEGORY_EXAMPLES = [
    ["Organic Cold-Pressed Virgin Coconut Oil, 500 ml Glass Jar", "brand: Parachute"],
    ["Brightbite Whitening Toothpaste, 100 g", "brand: Brightbite"],
    ["Clearguard Lemon Floor Cleaner, 1 L", ""],
]
DESCRIBE_EXAMPLES = [
    ["Lavender & Chamomile Calming Body Wash, 400 ml", "brand: Dermaleaf; category: Personal Care"],
    ["Homenest Stainless Steel Water Bottle, 1 L", "brand: Homenest; category: Home & Kitchen"],
    ["Beehaven Wildflower Honey, 500 g", ""],
]


def build_demo(models: Models) -> gr.Blocks:
    """The Space's page for ``models``; nothing is loaded here (the models load on first use)."""
    settings = models.settings
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(
            "# catalog-lora\nA small language model taught a retailer's catalog with LoRA: "
            "tag products, classify them into the category tree, write descriptions, or run a whole file."
        )
        with gr.Tabs():
            with gr.Tab("Tag a product", id="tag"):
                tag_availability = gr.Markdown(about.availability(models, "tag"))
                with gr.Row():
                    with gr.Column(scale=3):
                        tag_text = gr.Textbox(
                            label="Product text or review",
                            lines=3,
                            max_length=handlers.MAX_INPUT_CHARS,
                            placeholder="e.g. Smells great but the bottle leaked in my bag",
                        )
                        tag_adapter = adapter_picker(models, "tag", "tagging")
                        tag_button = gr.Button("Tag", variant="primary")
                        tag_output = gr.Label(label="Tags", num_top_classes=10, elem_id="tag-output")
                        tag_notice = gr.Markdown(elem_id="tag-notice")
                        gr.Examples(TAG_EXAMPLES, inputs=tag_text)
                    with gr.Column(scale=2):
                        tag_refs_note, tag_refs = references_column("tagging", elem_id="tag-references")
                gr.on(
                    [tag_button.click, tag_text.submit],
                    partial(handlers.tag, models),
                    inputs=[tag_text, tag_adapter],
                    outputs=[tag_output, tag_notice, tag_refs_note, tag_refs],
                    api_name="tag",
                    **single_product_queue(models),
                )

            with gr.Tab("Describe a product", id="describe"):
                describe_availability = gr.Markdown(about.availability(models, "describe"))
                with gr.Row():
                    with gr.Column(scale=3):
                        describe_title = gr.Textbox(
                            label="Product title",
                            max_length=handlers.MAX_INPUT_CHARS,
                            placeholder="e.g. Lavender Body Wash, 400 ml",
                        )
                        describe_attributes = gr.Textbox(
                            label="Attributes (optional)", placeholder="brand: Dermaleaf; category: Personal Care"
                        )
                        describe_adapter = adapter_picker(models, "describe", "description")
                        describe_button = gr.Button("Describe", variant="primary")
                        describe_output = gr.Textbox(
                            label="Description", lines=5, interactive=False, elem_id="describe-output"
                        )
                        describe_notice = gr.Markdown()
                        gr.Examples(DESCRIBE_EXAMPLES, inputs=[describe_title, describe_attributes])
                    with gr.Column(scale=2):
                        describe_refs_note, describe_refs = references_column("description")
                gr.on(
                    [describe_button.click, describe_title.submit],
                    partial(handlers.describe, models),
                    inputs=[describe_title, describe_attributes, describe_adapter],
                    outputs=[describe_output, describe_notice, describe_refs_note, describe_refs],
                    api_name="describe",
                )

            with gr.Tab("Classify", id="classify"):
                classify_availability = gr.Markdown(about.availability(models, "category"))
                classify_text = gr.Textbox(
                    label="Product name",
                    max_length=handlers.MAX_INPUT_CHARS,
                    placeholder="e.g. Organic Virgin Coconut Oil, 500 ml",
                )
                classify_attributes = gr.Textbox(
                    "",  # a value, so that an API call may leave it out
                    label="Attributes (optional)",
                    placeholder="brand: Parachute",
                    info="An adapter trained with a catalog's attributes (BigBasket's brand) reads them beside the name.",
                )
                classify_adapter = adapter_picker(models, "category", "category")
                classify_button = gr.Button("Classify", variant="primary")
                classify_output = gr.Label(label="Category path (top 5)", num_top_classes=5, elem_id="classify-output")
                classify_notice = gr.Markdown()
                gr.Examples(CATEGORY_EXAMPLES, inputs=[classify_text, classify_attributes])
                gr.on(
                    [classify_button.click, classify_text.submit],
                    partial(handlers.classify, models),
                    inputs=[classify_text, classify_adapter, classify_attributes],
                    outputs=[classify_output, classify_notice],
                    api_name="classify",
                    **single_product_queue(models),
                )

            with gr.Tab("Batch upload", id="batch"):
                gr.Markdown(
                    f"Upload a CSV (UTF-8) or xlsx catalog, up to {settings.max_rows:,} rows and "
                    f"{settings.max_file_size_mb:g} MB. Every row comes back, with one column per job, its "
                    "confidence, `needs_review` for answers below the adapter's review threshold and an `error` "
                    "column saying what went wrong in a row. The run goes on in the background: the rows finished "
                    "so far can be downloaded at any time, and closing this page loses nothing (open it again to "
                    "see the run). A column named like an attribute an adapter reads (`brand`, for one trained on "
                    "BigBasket's) goes to it with the text."
                )
                with gr.Row():
                    batch_file = gr.File(
                        label="Catalog file", file_types=[".csv", ".tsv", ".xlsx"], elem_id="batch-file"
                    )
                    with gr.Column():
                        batch_column = gr.Dropdown(
                            label="Text column", choices=[], value=None, allow_custom_value=True, elem_id="batch-column"
                        )
                        batch_jobs = gr.CheckboxGroup(
                            batch_runs.available_jobs(models),
                            label="Jobs (choose the ones that fit your file)",
                            value=[],
                            elem_id="batch-jobs",
                        )
                        batch_button = gr.Button("Run", variant="primary", interactive=False, elem_id="batch-run")
                batch_notice = gr.Markdown(elem_id="batch-notice")
                batch_progress = gr.HTML(elem_id="batch-progress")
                batch_download = gr.File(label="Predictions (CSV)", interactive=False, elem_id="batch-download")
                batch_preview = gr.Dataframe(
                    label=f"First {batch_runs.PREVIEW_ROWS} rows", interactive=False, wrap=True, elem_id="batch-preview"
                )
                batch_job = gr.BrowserState(None, storage_key="catalog-lora-batch-job")
                batch_timer = gr.Timer(batch_runs.POLL_SECONDS, active=False)
                batch_file.change(
                    partial(batch_runs.inspect_upload, models),
                    batch_file,
                    [batch_column, batch_preview, batch_notice, batch_button],
                    api_visibility="private",
                    show_progress="hidden",
                )
                gr.on(
                    [batch_column.change, batch_jobs.change],
                    partial(batch_runs.batch_readiness, models),
                    [batch_file, batch_column, batch_jobs],
                    [batch_notice, batch_button],
                    api_visibility="private",
                    show_progress="hidden",
                )
                batch_button.click(
                    partial(batch_runs.start_batch, models),
                    [batch_file, batch_column, batch_jobs],
                    [batch_job, batch_timer, batch_notice],
                    api_visibility="private",
                    show_progress="hidden",
                )
                batch_status_outputs = [batch_progress, batch_preview, batch_download, batch_notice, batch_timer]
                batch_timer.tick(
                    batch_runs.batch_status,
                    batch_job,
                    batch_status_outputs,
                    api_visibility="private",
                    show_progress="hidden",
                )
                # The API's /batch: the same job, waited for, so a gradio_client call returns the finished file.
                gr.Button("Run (API)", visible=False).click(
                    partial(batch_runs.batch, models),
                    [batch_file, batch_column, batch_jobs],
                    [batch_preview, batch_download, batch_notice],
                    api_name="batch",
                    concurrency_limit=1,
                    concurrency_id="batch",
                )

            with gr.Tab("Compare", id="compare"):
                gr.Markdown("The same input through the base model alone and through the fine-tuned adapter.")
                compare_adapter = gr.Radio(all_adapters(models), value="tag", label="Adapter")
                compare_text = gr.Textbox(label="Product text", max_length=handlers.MAX_INPUT_CHARS)
                compare_button = gr.Button("Compare", variant="primary")
                with gr.Row():
                    compare_base_labels = gr.Label(label="Base model (adapter off)", elem_id="compare-base")
                    compare_tuned_labels = gr.Label(label="Fine-tuned adapter", elem_id="compare-adapter")
                with gr.Row():
                    compare_base = gr.Textbox(label="Base model's answer", lines=3, interactive=False)
                    compare_tuned = gr.Textbox(label="Adapter's answer", lines=3, interactive=False)
                compare_notice = gr.Markdown()
                gr.on(
                    [compare_button.click, compare_text.submit],
                    partial(handlers.compare, models),
                    inputs=[compare_adapter, compare_text],
                    outputs=[compare_base_labels, compare_tuned_labels, compare_base, compare_tuned, compare_notice],
                    api_name="compare",
                )
                compare_adapter.change(
                    partial(labels_shown, models),
                    compare_adapter,
                    [compare_base_labels, compare_tuned_labels],
                    api_visibility="private",
                )

            with gr.Tab("Dataset", id="dataset"):
                gr.Markdown("The examples the adapters were trained on; search finds the nearest ones.")
                with gr.Row(equal_height=True):
                    dataset_adapter = gr.Radio(all_adapters(models), value="tag", label="Adapter")
                    dataset_query = gr.Textbox(label="Search", placeholder="e.g. bottle leaked", scale=2)
                    dataset_button = gr.Button("Search", scale=0)
                dataset_notice = gr.Markdown()
                dataset_table = gr.Dataframe(interactive=False, wrap=True)
                gr.on(
                    [dataset_adapter.change, dataset_query.submit, dataset_button.click],
                    partial(dataset.browse_dataset, models),
                    inputs=[dataset_adapter, dataset_query],
                    outputs=[dataset_table, dataset_notice],
                    api_name="dataset",
                )

            with gr.Tab("Train", id="train", visible=models.settings.train_tab):
                adapters_version = train_tab_ui(models)

            with gr.Tab("About", id="about", elem_id="about-tab"):

                @gr.render(triggers=[demo.load, adapters_version.change])
                def about_tab():
                    about_page(models)

        demo.load(
            partial(dataset.browse_dataset, models),
            [dataset_adapter, dataset_query],
            [dataset_table, dataset_notice],
            api_visibility="private",
        )
        # Adapters trained here since the page was built: in every picker, on each page load and each new one.
        pickers = [tag_adapter, classify_adapter, describe_adapter, tag_availability, classify_availability]
        pickers += [describe_availability, compare_adapter, dataset_adapter, batch_jobs]
        gr.on(
            [demo.load, adapters_version.change],
            partial(train_tab.refreshed_choices, models),
            adapters_version,
            pickers,
            api_visibility="private",
            show_progress="hidden",
        )
        # A job started earlier in this browser (the page was closed or reloaded): show it again.
        batch_job.change(
            batch_runs.batch_status, batch_job, batch_status_outputs, api_visibility="private", show_progress="hidden"
        )
    return demo


def single_product_queue(models: Models) -> dict:
    """Tag and Classify with batching: as many requests at once as one batch holds, so concurrent
    users reach the micro-batcher together instead of waiting in Gradio's queue."""
    if not models.batching:
        return {}
    return {"concurrency_limit": MICRO_BATCH, "concurrency_id": "single-product"}


def references_column(task: str, elem_id: str | None = None) -> tuple[gr.Markdown, gr.Dataframe]:
    """The "most similar training products" beside a tab's answer: a note and the examples' table."""
    gr.Markdown("### Most similar training products")
    note = gr.Markdown()
    frame = gr.Dataframe(
        handlers.reference_frame(task), interactive=False, wrap=True, column_widths=REFERENCE_WIDTHS, elem_id=elem_id
    )
    return note, frame


def adapter_picker(models: Models, name: str, task: str) -> gr.Dropdown:
    """A tab's choice of adapter: the Space's own for the task first, then any trained in the Train tab."""
    return gr.Dropdown(
        train_tab.adapter_choices(models, task),
        value=train_tab.picked_adapter(models, name),
        allow_custom_value=True,  # the API may name an adapter trained after this page was built
        label="Adapter",
        elem_id=f"{name}-adapter",
    )


def all_adapters(models: Models) -> list[tuple[str, str]]:
    return [(slot.label, name) for name, slot in models.slots.items()]


def labels_shown(models: Models, name: str):
    """The Compare tab's two label boxes: shown for labels, hidden for descriptions."""
    visible = name in models.slots and models.slots[name].task != "description"
    return [gr.Label(visible=visible)] * 2


def about_page(models: Models) -> None:
    """The About tab's content, read from the run files each time a page opens."""
    gr.Markdown(about.about_intro(models))
    for slot in models.slots.values():
        summary, details = about.adapter_summary(slot)
        gr.Markdown(summary)
        with gr.Row(elem_id=f"about-plots-{slot.name}"):
            for plot_path, caption in about.adapter_plots(slot):
                gr.Image(plot_path, label=caption, interactive=False, elem_classes="about-plot", height=260)
        if details:
            with gr.Accordion("All test metrics", open=False):
                gr.Markdown(details)
    gr.Markdown("## How to cite\n\n" + about.citations(models))


def launch(demo: gr.Blocks, models: Models, port: int | None = None, host: str | None = None, **kwargs):
    """Queue with a concurrency limit, the upload size limit, then Gradio's own launch."""
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=models.settings.max_file_bytes,
        theme=gr.themes.Soft(),
        css=CSS,
        **kwargs,
    )
