"""The Train tab's layout and wiring (called inside :func:`ui.build_demo`'s ``gr.Tab``); its handlers
are the plain functions of :mod:`train_tab`."""

from __future__ import annotations

from functools import partial

import gradio as gr

from catalog_space import train_requests, train_tab
from catalog_space.models import Models


def train_tab_ui(models: Models) -> gr.State:
    """Declare the Train tab; returns the state that counts the Space's adapters (it changes when a
    job's adapter joins or leaves, and the other tabs' pickers follow it)."""
    settings = models.settings
    gr.Markdown(train_tab.availability(models))
    gr.Markdown(
        "Teach the model your own catalog: upload a file (or pick a prepared dataset), map its "
        "columns, choose a budget and press **Start training**. One job trains at a time, in its own "
        "process; the finished adapter joins the other tabs at once. The defaults finish in about "
        "10 minutes on 2 CPU cores (training, then the test evaluation against the base model and a "
        f"TF-IDF baseline). Uploads: at most {settings.max_train_rows:,} rows and "
        f"{settings.max_file_size_mb:g} MB."
    )
    with gr.Row():
        train_file = gr.File(
            label="Catalog (CSV, TSV, JSONL, Parquet, xlsx)",
            file_types=[".csv", ".tsv", ".jsonl", ".parquet", ".xlsx"],
            elem_id="train-file",
        )
        with gr.Column():
            train_dataset = gr.Dropdown(
                train_requests.prepared_datasets(),
                value=None,
                label="…or a prepared dataset (data/)",
                elem_id="train-dataset",
            )
            train_task = gr.Radio(train_tab.TASK_CHOICES, value="tagging", label="Task", elem_id="train-task")
    with gr.Row():
        train_text = gr.Dropdown(label="Text column", choices=[], allow_custom_value=True, elem_id="train-text")
        train_targets = gr.Dropdown(
            label="Answer column(s): tags, category levels (most general first) or the description",
            choices=[],
            multiselect=True,
            allow_custom_value=True,
            elem_id="train-targets",
        )
        train_separator = gr.Textbox("|", label="Tag separator inside a cell", elem_id="train-separator")
        train_attributes = gr.Dropdown(
            label="Attribute columns (brand, category…: read beside the text)",
            choices=[],
            multiselect=True,
            allow_custom_value=True,
        )
    with gr.Row():
        train_method = gr.Radio(
            list(train_requests.METHODS),
            value="generate",
            label="Method",
            info="generate: the model writes the answer; head: a classification head scores labels, "
            "or for descriptions chooses among the nearest training products' descriptions",
        )
        train_minutes = gr.Number(6, label="Time budget (minutes)", minimum=0, elem_id="train-minutes")
        train_epochs = gr.Number(2, label="Epochs (at most)", minimum=0, elem_id="train-epochs")
        train_samples = gr.Number(400, label="Max training samples", precision=0, minimum=0, elem_id="train-samples")
        train_name = gr.Textbox(label="Adapter name", placeholder="e.g. my-tags", elem_id="train-name")
    train_notice = gr.Markdown(elem_id="train-notice")
    with gr.Row():
        train_preview = gr.Dataframe(label="Parsed rows", interactive=False, wrap=True)
        train_counts = gr.Dataframe(label="Label counts", interactive=False, elem_id="train-counts")
    with gr.Row():
        train_start = gr.Button("Start training", variant="primary", interactive=False, elem_id="train-start")
        train_cancel = gr.Button("Cancel", elem_id="train-cancel")
        train_discard = gr.Button("Discard job", elem_id="train-discard")
    train_progress = gr.HTML(elem_id="train-progress")
    train_status = gr.Markdown(elem_id="train-status")
    with gr.Row():
        train_loss = gr.LinePlot(
            x="step",
            y="loss",
            color="series",
            color_map={"training": "#4f46e5", "validation": "#f97316"},
            label="Loss",
            height=260,
            elem_id="train-loss",
        )
        train_validation = gr.Dataframe(label="Validation", interactive=False, elem_id="train-validation")
    with gr.Accordion("Publish the adapter to the Hugging Face Hub", open=False):
        gr.Markdown("The token is used for this one upload: it is not stored, logged or shown again.")
        with gr.Row():
            publish_repo = gr.Textbox(label="Repository id", placeholder="you/catalog-tags")
            publish_token = gr.Textbox(label="Access token (write)", type="password")
            publish_button = gr.Button("Publish", scale=0)
        publish_notice = gr.Markdown()
    train_job = gr.BrowserState(None, storage_key="catalog-lora-train-job")
    train_timer = gr.Timer(train_tab.POLL_SECONDS, active=False)
    adapters_version = gr.State(len(models.slots))
    mapping = [
        train_task, train_text, train_targets, train_separator, train_attributes, train_method,
        train_minutes, train_epochs, train_samples, train_name,
    ]  # fmt: skip
    private = {"api_visibility": "private", "show_progress": "hidden"}
    train_file.change(
        partial(train_tab.inspect_training_file, models),
        train_file,
        [train_text, train_targets, train_attributes, train_preview, train_notice],
        **private,
    )
    gr.on(
        [c.change for c in [train_file, train_dataset, *mapping[:-1]]],
        partial(train_tab.preview_mapping, models),
        [train_file, train_dataset, *mapping],
        [train_preview, train_counts, train_notice, train_start],
        **private,
    )
    train_start.click(
        partial(train_tab.start_training, models),
        [train_file, train_dataset, *mapping],
        [train_job, train_timer, train_notice],
        **private,
    )
    status_outputs = [train_progress, train_status, train_loss, train_validation, train_timer]
    gr.on(
        [train_timer.tick, train_job.change],
        partial(train_tab.training_status, models),
        train_job,
        [*status_outputs, adapters_version],
        **private,
    )
    train_cancel.click(train_tab.cancel_training, train_job, train_notice, **private)
    train_discard.click(
        partial(train_tab.discard_training, models),
        train_job,
        [train_job, train_notice, adapters_version],
        **private,
    )
    publish_button.click(
        train_tab.publish_trained,
        [train_job, publish_repo, publish_token],
        [publish_notice, publish_token],
        api_visibility="private",
    )
    # The API: /train starts a job and returns its id; /train_status and /train_cancel take that id.
    train_id = gr.Textbox(visible=False)
    gr.Button("Train (API)", visible=False).click(
        partial(train_tab.train, models), [train_file, train_dataset, *mapping], train_id, api_name="train"
    )
    train_summary = gr.JSON(visible=False)
    gr.Button("Status (API)", visible=False).click(
        train_tab.job_summary, train_id, train_summary, api_name="train_status"
    )
    gr.Button("Cancel (API)", visible=False).click(
        train_tab.cancel_training, train_id, train_notice, api_name="train_cancel"
    )
    return adapters_version
