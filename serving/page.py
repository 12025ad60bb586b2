"""The app's page (Gradio): one X-ray explained, a batch scored, and always beside them how far to trust it.

`build(explainer, score_folder, ...)` lays the page out; `pipeline/app.py` launches it. The page reads the model
card that export wrote into the SavedModel (`assets.extra/model_card.json`), so what it says about intended use,
data, weights, validation and blessing is the record of the very model it serves; external validations of that
model (`pipeline.validate`'s folders, read and checked by `serving/validations.py`) are shown beside its development
evidence. The batch tab scores through the function it is given (`pipeline.score`'s), so a CSV from the page and
one from the scoring job are the same.

Privacy: every upload is moved out of Gradio's cache into a folder of this request (`RequestFolder`) that is
removed when the request ends, single images are renamed `upload<suffix>` there so no reason quotes a real file
name, and the log gets the size and the outcome of a request, never a file name. The picture shown is inline in the
page (`picture_html`), never written to disk. What Gradio's cache still holds (an upload never scored, a batch's
scores.csv, which names the uploaded files) is deleted once older than CACHE_KEPT_SECONDS (`delete_cache`).
Offline: no CDN fonts (system fonts), analytics off (the runner sets it before Gradio loads); the browser test checks that no request leaves
the server.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import lzma
import shutil
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np
import PIL.Image

from serving import validations
from serving.contract import CLASS, ERROR, FOLD_PROBABILITIES, PROBABILITY
from serving.explain import Explainer, Explanation
from serving.validations import SiteValidation

LOG = logging.getLogger("covid_cxr.app")
API_NAME = "predict"
SCORES_CSV = "scores.csv"
# A zip may expand to at most this many times the upload limit: a small archive of huge files is refused.
ZIP_EXPANSION = 20
# A zip of more entries is refused (each becomes a file and a row; the archive's directory is read whole).
MAX_ZIP_MEMBERS = 10_000
# What unpacking a damaged, encrypted or oddly compressed zip raises; the messages of several name the member (a
# file name, maybe a patient's), so the page answers with a sentence of its own.
ZIP_FAILURES = (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error,
                lzma.LZMAError, OSError)
# Gradio's cache (`gr.Blocks(delete_cache=...)`): every CACHE_SWEEP_SECONDS, what Gradio holds that is older than
# CACHE_KEPT_SECONDS is deleted: an upload never scored, a scores.csv download (its link stops working then).
CACHE_SWEEP_SECONDS = 60
CACHE_KEPT_SECONDS = 600
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
SYSTEM_MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
RESEARCH_NOTICE = "**Research use only: this is not a medical device.** Do not use it to decide anything about a patient."
FRONTAL_ONLY = ("Send frontal (PA or AP) chest X-rays only: the model answers for any picture, and for a PNG or "
                "JPEG the page cannot tell a lateral or non-chest image (a DICOM header can, and is checked).")

OVERLAY_LABEL = "Grad-CAM on the image as the model saw it (red: what raised the predicted risk)"

ScoreFolder = Callable[[Path, Path], None]  # (folder of images, output CSV) -> writes the CSV


class UploadRefused(Exception):
    """An upload the page does not take (too large, a bad zip), with the sentence shown."""


class RequestFolder:
    """A temporary folder for one request's uploads, removed when the request ends, whatever happens."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="request-", dir=self.root))
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def take_upload(upload: str | Path, folder: Path, name: str, max_bytes: int) -> Path:
    """Move an upload out of Gradio's cache into `folder` as `name`; refuse it (and delete it) above `max_bytes`."""
    upload = Path(upload)
    target = folder / name
    shutil.move(upload, target)
    _discard(upload)
    size = target.stat().st_size
    if size > max_bytes:
        raise UploadRefused(f"The file is {size / 2**20:.1f} MB; this page takes files up to "
                            f"{max_bytes / 2**20:g} MB (--max_upload_mb).")
    return target


def _discard(upload: Path) -> None:
    """An upload (if still there) and the folder of its own Gradio keeps it in (if empty) removed."""
    upload.unlink(missing_ok=True)
    try:
        upload.parent.rmdir()
    except OSError:
        pass


# ---------------------------------------------------------------- one image
def single_image(explainer: Explainer, temp_root: Path, max_bytes: int, upload: str | None) -> Explanation:
    """Explain one upload inside a request folder; a refused upload is an answer with its reason."""
    if not upload:
        return Explanation(explainer.answer(error="no file: upload a PNG, JPEG or DICOM chest X-ray"), None, None)
    started = time.perf_counter()
    size = Path(upload).stat().st_size if Path(upload).is_file() else 0
    with RequestFolder(temp_root) as folder:
        try:
            path = take_upload(upload, folder, "upload" + Path(upload).suffix.lower()[:8], max_bytes)
            explanation = explainer.explain(path)
        except UploadRefused as refused:
            explanation = Explanation(explainer.answer(error=f"file_too_large: {refused}"), None, None)
    error = explanation.result[ERROR]
    LOG.info("single image: %d bytes, %s, %.2f s", size, error.split(":")[0] if error else "scored",
             time.perf_counter() - started)
    return explanation


def result_markdown(result: dict[str, Any]) -> str:
    """The answer for a person: risk, spread, class with its threshold, warnings, DICOM header; or the reason."""
    lines = []
    for warning in result["warnings"]:
        lines.append(f"> ⚠️ **Warning.** {warning}")
    if result[ERROR]:
        reason, _, detail = result[ERROR].partition(": ")
        lines.append(f"### Not scored: `{reason}`\n\n{detail or reason}\n\nThe page is ready for another file.")
        return "\n\n".join(lines)
    probability = result[PROBABILITY]
    lines.append(f"### Probability of death: {probability:.1%}")
    folds = result[FOLD_PROBABILITIES]
    if folds:
        lines.append(f"**Fold models** ({len(folds)}): {min(folds):.1%} to {max(folds):.1%} "
                     f"({', '.join(f'{p:.1%}' for p in folds)}). A wide spread means the models trained on "
                     "different folds of the data disagree about this image.")
    else:
        lines.append("**Fold models**: not available from this export (see *What this export lacks*).")
    threshold = result["threshold"]
    meaning = (f"class 1 ('died') when the probability is at least {threshold:g}, the threshold set at export"
               if threshold is not None else "the threshold is not known (no model card)")
    lines.append(f"**Class: {result[CLASS]} ({result['class_meaning']})**: {meaning}. The class is the threshold "
                 "applied to the probability, not a diagnosis.")
    if result["dicom"]:
        rows = "\n".join(f"| {label} | {value} |" for label, value in result["dicom"].items())
        lines.append(f"**DICOM header** (the fields that matter here; nothing identifying is read out):\n\n"
                     f"| field | value |\n|---|---|\n{rows}")
    return "\n\n".join(lines)


# ---------------------------------------------------------------- several files
def several_files(score_folder: ScoreFolder, temp_root: Path, downloads: Path, max_bytes: int,
                  uploads: Sequence[str] | None) -> tuple[list[list[Any]], str | None, str]:
    """(table rows, the CSV to download, a status line): the uploads (files or zips) scored by the scoring job."""
    if not uploads:
        return [], None, "No files: upload X-rays (PNG, JPEG, DICOM) or a zip of them."
    started = time.perf_counter()
    total = sum(Path(u).stat().st_size for u in uploads if Path(u).is_file())
    with RequestFolder(temp_root) as folder:
        images = folder / "images"
        images.mkdir()
        unique_name = UniqueNames()
        try:
            for upload in uploads:
                name = Path(upload).name
                if name.lower().endswith(".zip"):
                    extract_zip(take_upload(upload, folder, "upload.zip", max_bytes), images, max_bytes, unique_name)
                    (folder / "upload.zip").unlink()
                else:
                    take_upload(upload, images, unique_name(name), max_bytes)
        except UploadRefused as refused:
            for upload in uploads:  # those not taken yet would wait in Gradio's cache
                _discard(Path(upload))
            LOG.info("batch: %d files, %d bytes, refused", len(uploads), total)
            return [], None, f"Refused: {refused}"
        if not any(images.iterdir()):
            return [], None, "No image files in the upload."
        output = folder / SCORES_CSV
        score_folder(images, output)
        with open(output, newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        download = keep_download(output, downloads)
    errors = sum(1 for row in rows if row[3])
    LOG.info("batch: %d files, %d bytes, %d scored, %d errors, %.2f s", len(rows), total, len(rows) - errors, errors,
             time.perf_counter() - started)
    return rows, str(download), f"{len(rows) - errors} scored, {errors} not scored (reason in the error column)."


class UniqueNames:
    """Names for the files of one folder: `name` (its last part only), or `<i>-name` for its i-th repeat."""

    def __init__(self):
        self.repeats: dict[str, int] = {}
        self.taken: set[str] = set()

    def __call__(self, name: str) -> str:
        name = Path(name).name or "file"
        index = self.repeats.get(name, 0)
        candidate = name if index == 0 else f"{index}-{name}"
        while candidate in self.taken:  # an upload named like a renamed one (`1-x.png` beside two `x.png`)
            index += 1
            candidate = f"{index}-{name}"
        self.repeats[name] = index + 1
        self.taken.add(candidate)
        return candidate


def extract_zip(archive: Path, folder: Path, max_bytes: int, unique_name: UniqueNames) -> None:
    """A zip's files, flattened into `folder` (no path of the archive is followed), up to MAX_ZIP_MEMBERS entries
    and ZIP_EXPANSION times the upload limit in all; hidden files and folders are skipped. A zip that cannot be
    unpacked is refused with a sentence that names none of its entries."""
    try:
        with zipfile.ZipFile(archive) as opened:
            entries = opened.infolist()
            if len(entries) > MAX_ZIP_MEMBERS:
                raise UploadRefused(f"The zip holds {len(entries)} entries; this page takes at most "
                                    f"{MAX_ZIP_MEMBERS} (score more with `python -m pipeline.score`).")
            members = [m for m in entries if not m.is_dir() and not any(
                part.startswith((".", "__MACOSX")) for part in Path(m.filename).parts)]
            if sum(m.file_size for m in members) > ZIP_EXPANSION * max_bytes:
                raise UploadRefused(f"The zip expands to more than {ZIP_EXPANSION} x {max_bytes / 2**20:g} MB.")
            for member in members:
                with opened.open(member) as source, open(folder / unique_name(member.filename), "wb") as out:
                    shutil.copyfileobj(source, out)
    except ZIP_FAILURES:
        raise UploadRefused("The .zip file could not be unpacked: it is damaged, encrypted or compressed in a way "
                            "this page does not read (stored or deflated entries, no password).") from None


def keep_download(csv_path: Path, downloads: Path) -> Path:
    """Copy the CSV where Gradio serves it from after the request folder is gone: `downloads` is inside Gradio's
    cache, so Gradio takes this copy as it is (no second one) and deletes it after CACHE_KEPT_SECONDS."""
    downloads.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(dir=downloads)) / SCORES_CSV
    shutil.copyfile(csv_path, target)
    return target


def picture_html(picture: np.ndarray | None) -> str:
    """The picture inline (a PNG data URL in an <img>): given as an array, Gradio's gr.Image would write it into
    its cache, where it would stay until the app stops; inline, it is never written to disk."""
    if picture is None:
        return ""
    encoded = io.BytesIO()
    PIL.Image.fromarray(picture).save(encoded, format="PNG")
    return (f'<img src="data:image/png;base64,{base64.b64encode(encoded.getvalue()).decode()}" '
            f'alt="{OVERLAY_LABEL}" style="max-height: 320px; max-width: 100%">')


# ---------------------------------------------------------------- what to trust
def banner_markdown(explainer: Explainer) -> str:
    """The research notice, and the DEMO banner with its reason for a model that is not blessed."""
    card = explainer.card or {}
    model = card.get("model", {})
    lines = [RESEARCH_NOTICE]
    if not model.get("blessed", False):
        reason = model.get("status") or "no model card, so no evidence that it was ever blessed"
        lines.append(f"## DEMO: this model is not blessed for use\n\n{reason}")
    else:
        lines.append(f"**{model.get('name')}**: {model.get('status')}")
    lines += [f"> {gap}" for gap in explainer.missing()]
    return "\n\n".join(lines)


def trust_markdown(explainer: Explainer, sites: Sequence[SiteValidation] = ()) -> str:
    """Intended use, known failure modes, data and weights, validation evidence: development, each site of the
    card's updates and each external validation of this model given to the app (`sites`)."""
    card = explainer.card
    if card is None:
        return "\n\n".join(["No model card: nothing is known about what this model was trained on or how well it "
                            "did in development.", *(validation_markdown(site) for site in sites)])
    data, weights, metrics = card.get("data", {}), card.get("weights", {}), card.get("metrics", {})
    parts = ["### Intended use", card.get("intended_use", ""), card.get("notice", ""),
             "### Known failure modes", "\n".join(f"- {mode}" for mode in card.get("known_failure_modes", [])),
             "### Data and weights",
             f"- **data**: {data.get('collection') or data.get('source') or 'unknown'}, variant "
             f"{data.get('variant')}, {data.get('split')} split: {data.get('images')} images of "
             f"{data.get('patients')} patients, {data.get('patients_who_died')} of whom died; "
             f"{data.get('observed_labels')} observed and {data.get('imputed_labels')} imputed labels",
             f"- **weights**: {weights.get('initialisation')}",
             "### Validation evidence",
             f"**Development** ({'; '.join(str(x) for x in (metrics.get('source'), metrics.get('interval')) if x)}):",
             "| metric | value | 95% interval |\n|---|---|---|\n" + "\n".join(
                 f"| {name} | {_number(m.get('value'))} | {_interval(m)} |"
                 for name, m in metrics.get("values", {}).items())]
    updates = card.get("updates", [])
    if updates:
        parts.append("**External sites** (validated and updated there, `pipeline.validate --update`):")
        parts += [f"- site {u['site']} ({u['date']}): {u['images']} images of {u['patients']} patients, "
                  f"{u['patients_who_died']} of whom died; {u['method']} (intercept {u['intercept']:.3f}, slope "
                  f"{u['slope']:.3f})" for u in updates]
    parts += [validation_markdown(site) for site in sites]
    if not updates and not sites:
        parts.append("**External sites**: none. Every number above is cross-validated on the training data.")
    return "\n\n".join(parts)


def validation_markdown(site: SiteValidation) -> str:
    """One external validation of this very model (`pipeline.app --validations`): who, how many, how well."""
    name = f"`{site.site.replace('`', '')}`" if site.site else "unnamed (validated without --site)"
    lines = [f"**External site {name}** (`pipeline.validate`{f', {site.date}' if site.date else ''}): {site.images} "
             f"images of {site.patients} patients; {site.images_of_deaths} images of the {site.patients_who_died} "
             f"patients who died. Per image; 95% bootstrap interval, patients resampled"
             f"{f' ({site.resamples} resamples)' if site.resamples else ''}:",
             "| metric | value | 95% interval |\n|---|---|---|\n" + "\n".join(
                 f"| {label} | {_number(site.metrics[key]['value'])} | {_interval(site.metrics[key])} |"
                 for key, label in validations.METRICS)]
    if site.events:
        lines.append(f"> {site.events}")
    if site.update:
        lines.append(f"Update: {site.update}.")
    return "\n\n".join(lines)


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def _interval(metric: dict[str, Any]) -> str:
    return f"{_number(metric['ci_low'])} – {_number(metric['ci_high'])}" if "ci_low" in metric else "–"


# ---------------------------------------------------------------- the page
def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts: the default theme fetches Google Fonts."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO_FONTS)


def build(explainer: Explainer, score_folder: ScoreFolder, temp_root: Path, max_upload_mb: int,
          sites: Sequence[SiteValidation] = ()) -> gr.Blocks:
    """The page. `temp_root` holds the request folders and the CSV downloads (the runner removes it at exit);
    `sites` are the external validations of this model shown under its validation evidence."""
    max_bytes = max_upload_mb * 2**20

    def predict(upload: str | None) -> dict[str, Any]:
        return single_image(explainer, temp_root, max_bytes, upload).result

    def show(upload: str | None):
        explanation = single_image(explainer, temp_root, max_bytes, upload)
        # Without Grad-CAM (an older export, no backbone) the picture is still the one the models saw.
        picture = explanation.overlay if explanation.overlay is not None else explanation.model_input
        return result_markdown(explanation.result), picture_html(picture), explanation.result

    def score(uploads: Sequence[str] | None):
        downloads = Path(page.GRADIO_CACHE) / "downloads"  # Gradio's cache: pruned by delete_cache below
        return several_files(score_folder, temp_root, downloads, max_bytes, uploads)

    with gr.Blocks(title="COVID-19 mortality risk from a chest X-ray (research use only)", analytics_enabled=False,
                   delete_cache=(CACHE_SWEEP_SECONDS, CACHE_KEPT_SECONDS)) as page:
        gr.Markdown("# COVID-19 mortality risk from a chest X-ray")
        gr.Markdown(banner_markdown(explainer), elem_id="banner")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Tab("One image"):
                    gr.Markdown(FRONTAL_ONLY)
                    upload = gr.File(label=f"Chest X-ray: PNG, JPEG or DICOM (up to {max_upload_mb} MB)",
                                     file_count="single", type="filepath", elem_id="single-upload")
                    with gr.Row():
                        result = gr.Markdown(elem_id="result")
                        overlay = gr.HTML(label=OVERLAY_LABEL, show_label=True, container=True, elem_id="overlay")
                    with gr.Accordion("The answer as the API returns it (/predict)", open=False):
                        answer = gr.JSON(elem_id="answer")
                    api_trigger = gr.Button(visible=False)
                    upload.upload(show, upload, [result, overlay, answer], api_visibility="private")
                    upload.clear(lambda: ("", "", None), None, [result, overlay, answer], api_visibility="private")
                    api_trigger.click(predict, upload, answer, api_name=API_NAME)
                with gr.Tab("Several files"):
                    gr.Markdown("X-rays (PNG, JPEG, DICOM) or a zip of them, scored by the scoring job "
                                "(`python -m pipeline.score`): one row per file, unreadable files with their reason.")
                    uploads = gr.File(label="X-rays or a .zip", file_count="multiple", type="filepath",
                                      elem_id="batch-upload")
                    run = gr.Button("Score", elem_id="batch-score")
                    status = gr.Markdown(elem_id="batch-status")
                    table = gr.Dataframe(headers=["filename", "probability_of_death", "class", "error"],
                                         interactive=False, elem_id="batch-table")
                    csv_file = gr.File(label="scores.csv", elem_id="batch-csv")
                    run.click(score, uploads, [table, csv_file, status], api_visibility="private")
            with gr.Column(scale=2):
                gr.Markdown(trust_markdown(explainer, sites), elem_id="trust")
                if explainer.card_markdown:
                    with gr.Accordion("The whole model card", open=False):
                        gr.Markdown(explainer.card_markdown)
    return page
