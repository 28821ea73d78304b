"""Adding a dataset from the browser: upload a file, confirm the proposed entry, register it, preview it.

The studio reads the uploaded file and proposes its format and column mapping; the user confirms or
edits the entry (JSON, as in dataset_info.json) and names the dataset. Registering converts every
row first, so a bad file is refused with file, line and fix and the registry stays as it was. A dataset of
pictures comes as a zip of its data file and pictures (studio.data.image_sets), unpacked by the studio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr

from app.feedback import problem
from app.i18n import Labels, T
from app.page import Page
from studio.errors import StudioError
from studio.locales import in_language

UPLOAD_TYPES = [".json", ".jsonl", ".csv", ".parquet", ".txt", ".zip"]


@dataclass
class DatasetUpload:
    file: gr.UploadButton
    proposal: gr.Markdown
    name: gr.Textbox
    entry: gr.Code
    register: gr.Button
    hub_id: gr.Textbox
    register_hub: gr.Button
    status: gr.Markdown


def layout(labels: Labels, upload_limit_mib: int) -> DatasetUpload:
    with labels.add(gr.Accordion(T.add_dataset("en"), open=False, elem_id="qs-add-dataset"), T.add_dataset):
        note = T.add_dataset_note.filled(limit=upload_limit_mib)
        labels.add(gr.Markdown(note("en")), note, "value")
        with gr.Row():
            # a button rather than Gradio's drop zone: the zone's own words follow the browser's language, not the
            # page's (an English browser showed "Drop File Here" in 中文); the file input sits inside qs-upload
            with gr.Column(scale=2, elem_id="qs-upload"):
                file = labels.add(
                    gr.UploadButton(T.upload_file("en"), file_types=UPLOAD_TYPES, variant="secondary"),
                    T.upload_file,
                )
            with gr.Column(scale=3):
                proposal = gr.Markdown(elem_id="qs-upload-proposal")
                name = labels.add(gr.Textbox(label=T.dataset_name("en"), elem_id="qs-upload-name"), T.dataset_name)
        entry = labels.add(
            gr.Code(language="json", label=T.dataset_entry("en"), interactive=True, elem_id="qs-upload-entry"),
            T.dataset_entry,
        )
        register = labels.add(
            gr.Button(T.register_dataset("en"), variant="primary", elem_id="qs-upload-register"),
            T.register_dataset,
            "value",
        )
        with gr.Row(equal_height=True):
            hub_id = labels.add(
                gr.Textbox(label=T.hub_dataset("en"), placeholder="llamafactory/alpaca_gpt4_zh", scale=3), T.hub_dataset
            )
            register_hub = labels.add(gr.Button(T.register_hub("en"), scale=1), T.register_hub, "value")
        status = gr.Markdown(elem_id="qs-upload-status")
    return DatasetUpload(file, proposal, name, entry, register, hub_id, register_hub, status)


def wire(page: Page, upload: DatasetUpload, dataset_dir: gr.Textbox, datasets: gr.Dropdown):
    """Wire the upload; returns the event that registers a file, for the caller to chain a preview to."""
    studio, lang = page.studio, page.lang

    def on_upload(path, lng):
        if not path:
            return "", "", "", ""
        try:
            found = studio.detect_dataset(path)
        except Exception as error:
            return problem(error, lng), "", "", ""
        summary = f"`{found.file_name}`: " + T.detected(
            lng, format=found.format, rows=found.num_rows, columns=", ".join(found.columns)
        )
        if found.pictures:
            summary += " " + T.detected_pictures(lng, count=found.pictures)
        note = f"\n\n_{in_language(found.note, lng)}_" if found.note else ""
        return summary + note, _default_name(found.file_name), json.dumps(found.entry, ensure_ascii=False, indent=2), ""

    upload.file.upload(
        on_upload,
        [upload.file, lang],
        [upload.proposal, upload.name, upload.entry, upload.status],
        api_name="detect_dataset",
    )

    def on_register(path, name, entry_text, folder, chosen, lng):
        try:
            entry = _entry(entry_text)
            spec = studio.register_dataset(folder, name.strip(), path, entry) if path else None
        except Exception as error:
            return problem(error, lng), gr.update()
        if spec is None:
            return f"**{T.error(lng)}:** {T.upload_first(lng)}", gr.update()
        return T.registered(lng, name=spec.name), _with_choice(studio, folder, chosen, spec.name)

    registered = upload.register.click(
        on_register,
        [upload.file, upload.name, upload.entry, dataset_dir, datasets, lang],
        [upload.status, datasets],
        api_name="register_dataset",
    )

    def on_register_hub(hub_id, name, folder, chosen, lng):
        try:
            spec = studio.register_hub_dataset(folder, (name or hub_id.split("/")[-1]).strip(), (hub_id or "").strip())
        except Exception as error:
            return problem(error, lng), gr.update()
        return T.registered(lng, name=spec.name), _with_choice(studio, folder, chosen, spec.name)

    upload.register_hub.click(
        on_register_hub,
        [upload.hub_id, upload.name, dataset_dir, datasets, lang],
        [upload.status, datasets],
        api_name="register_hub_dataset",
    )
    return registered


def _entry(text: str) -> dict:
    try:
        entry = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise StudioError("page.entry_not_json", line=error.lineno, column=error.colno, reason=error.msg) from None
    if not isinstance(entry, dict):
        raise StudioError("page.entry_not_object")
    return entry


def _default_name(file_name: str) -> str:
    stem = file_name.rsplit(".", 1)[0]
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in stem) or "my_dataset"


def _with_choice(studio, folder: str, chosen: list | None, name: str):
    """The folder's datasets, the new one chosen beside those still there: the preview that follows shows it."""
    names = studio.dataset_names(folder)
    return gr.update(choices=names, value=[c for c in chosen or [] if c in names and c != name] + [name])
