"""The app's time to a result for one X-ray beside the bare signature on the same image, same run.

    python -m bench.bench_app                          # ResNet-18 at 224 px, 3 fold models (random weights)
    python -m bench.bench_app --model=runs             # the README's sample run's export
    python -m bench.bench_app --image=sample_data/covid-chestxray-dicom/00870a9c.dcm

Three timings of the same file, medians of `--repeats` calls after a warm-up:
- page: `/predict` through `gradio_client` over HTTP, what a person's upload costs end to end (the upload,
  moving it into the request folder, reading it with image_io, the `explain` signature with the fold models'
  Grad-CAM, the JSON answer);
- explain: the bare `explain` signature on the file's standard bytes (what the page adds beside the plain score:
  the fold probabilities and the Grad-CAM's gradients);
- bare: the bare `serving_default` signature on the same bytes, what TF Serving would run.
The ratios page/bare and explain/bare say what the page costs over the plain score. A measuring tool, not a
test: numbers move with machine load.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import socket
import tempfile

from bench import timing

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE_IMAGE = REPO_ROOT / "sample_data" / "covid-chestxray-sample" / "images" / "00870a9c.jpg"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="as pipeline.app's --model; default: a random ResNet-18 export")
    parser.add_argument("--folds", type=int, default=3, help="fold models of the random export")
    parser.add_argument("--image", default=str(SAMPLE_IMAGE))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(measure(args.model, args.folds, pathlib.Path(args.image), args.repeats)))


def measure(model: str | None, folds: int, image: pathlib.Path, repeats: int) -> dict:
    """Median seconds per result of the page (HTTP), the bare explain signature and the bare serving_default."""
    import tensorflow as tf
    from gradio_client import Client, handle_file

    from images import image_io
    from models import build_classifier
    from pipeline import app, score
    from serving import contract, signature

    label = model or f"random resnet18 x{folds}"
    tmp = pathlib.Path(tempfile.mkdtemp())
    try:
        if model is None:
            signature.write_saved_model([build_classifier("resnet18", image_size=224)[0] for _ in range(folds)],
                                        tmp / "saved_model")
            model = str(tmp / "saved_model")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        blocks = app.launch(model, "127.0.0.1", port, None, max_upload_mb=50, block=False)
        try:
            client = Client(blocks.local_url, verbose=False)
            page = timing.seconds_per_call(lambda: client.predict(handle_file(str(image)), api_name="/predict"),
                                           repeats=repeats)
            answer = client.predict(handle_file(str(image)), api_name="/predict")
        finally:
            blocks.close()
            shutil.rmtree(blocks.temp_root, ignore_errors=True)
        loaded = tf.saved_model.load(str(score.resolve_model(model)))
        encoded = tf.constant([image_io.load_standard_image(image).encoded])
        explain = timing.seconds_per_call(lambda: loaded.signatures[contract.EXPLAIN_SIGNATURE](image_bytes=encoded)[
            contract.PROBABILITY].numpy(), repeats=repeats)
        bare = timing.seconds_per_call(lambda: loaded.signatures[contract.DEFAULT_SIGNATURE](image_bytes=encoded)[
            contract.PROBABILITY].numpy(), repeats=repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"model": label,
            "image": image.name, "repeats": repeats, "error": answer["error"],
            "page_s": round(page, 4), "explain_signature_s": round(explain, 4), "bare_signature_s": round(bare, 4),
            "ratio_page_over_bare": round(page / bare, 2), "ratio_explain_over_bare": round(explain / bare, 2)}


if __name__ == "__main__":
    main()
