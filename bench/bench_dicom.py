"""Ingest's DICOM images/s against pydicom's bare decode, and the scoring job against the bare model.

    python -m bench.bench_dicom                        # 24 files per transfer syntax, 1024-2048 px, 12 bits
    python -m bench.bench_dicom --count=40 --skip_score

DICOM, one run on the same generated files (sample X-rays upscaled to 1024-2048 px, 12-bit values
with noise, CR chest PA headers; JPEG 2000 Lossless, JPEG Lossless SV1, uncompressed):
- ingest: `components.ingest.ingest` on a manifest folder of those files (the real code path:
  every image decoded, rendered by images/dicom.py, screened; worker processes, one per core,
  from the first image and their start included), and the same with one worker;
- bare: `pydicom.dcmread(path).pixel_array` on each file in turn, in this one process.
The three are timed in interleaved rounds, each one's fastest kept, so that a burst of other jobs'
load does not land on one side only.
The ratio ingest/bare is what checking on every core buys where decoding dominates (compressed
files), net of the rendering ingest does beyond the decode; uncompressed files show the rendering.

Scoring: `bench.bench_score.measure` (the scoring job on PNG/JPEG vs the bare `predict_images`
signature on preprocessed tensors). A measuring tool, not a test: numbers move with machine load.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile

from bench import bench_score, timing

SYNTAXES = ("JPEG2000Lossless", "JPEGLosslessSV1", "ExplicitVRLittleEndian")
BITS_STORED = 12


def side_lengths(count: int, smallest: int = 1024, largest: int = 2048) -> list[int]:
    """`count` image sides spread evenly from `smallest` to `largest` (multiples of 16), as a PACS
    export mixes detector sizes."""
    if count == 1:
        return [smallest]
    return [(smallest + (largest - smallest) * i // (count - 1)) // 16 * 16 for i in range(count)]


def stored_values(gray, seed: int):
    """An 8-bit grey picture as `BITS_STORED`-bit stored values, its low bits noise (as a detector's
    are), so the lossless codecs have a radiograph's work, not a smooth upscale's."""
    import numpy as np
    noise = np.random.default_rng(seed).integers(0, 2 ** (BITS_STORED - 8), gray.shape)
    return (gray.astype(np.uint16) << (BITS_STORED - 8)) + noise.astype(np.uint16)


def write_dicom_folder(folder: pathlib.Path, syntax_name: str, count: int) -> list[pathlib.Path]:
    """`count` CR chest files in `syntax_name` plus the `manifest.csv` that makes the folder a data source."""
    import numpy as np
    import pydicom.uid
    from PIL import Image

    from tests.images import dicom_files
    from tests.sources.manifest_data import write_manifest

    samples = sorted(dicom_files.SAMPLE_IMAGES.iterdir())
    folder.mkdir(parents=True)
    paths = []
    for i, side in enumerate(side_lengths(count)):
        gray = Image.open(samples[i % len(samples)]).convert("L").resize((side, side + side // 8))
        dataset = dicom_files.dataset(stored_values(np.asarray(gray), seed=i), bits_stored=BITS_STORED,
                                      WindowCenter=2 ** (BITS_STORED - 1), WindowWidth=2 ** BITS_STORED)
        paths.append(dicom_files.write(dataset, folder / f"{i:03d}.dcm", getattr(pydicom.uid, syntax_name)))
    write_manifest(folder, [{"image": p.name, "patient_id": f"P{i}", "died": str(i % 2)} for i, p in enumerate(paths)])
    return paths


def spin(steps: int) -> int:
    """Pure-Python CPU work, the same in any process."""
    total = 0
    for step in range(steps):
        total += step * step
    return total


def parallel_headroom(workers: int, tasks: int = 8, steps: int = 2_000_000) -> float:
    """How many times faster `workers` processes do CPU work than one, now: what the cores give while
    other jobs share them (2.0 on an idle 2-core machine). Ingest's ratio cannot beat it."""
    import concurrent.futures

    def one_process():
        for _ in range(tasks):
            spin(steps)

    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        list(pool.map(spin, [1] * workers))  # started
        in_pool = timing.seconds_per_call(lambda: list(pool.map(spin, [steps] * tasks)), warmup=0, repeats=1)
    return round(timing.seconds_per_call(one_process, warmup=0, repeats=1) / in_pool, 2)


def measure_dicom(folder: pathlib.Path, paths: list[pathlib.Path], repeats: int) -> dict:
    """Images/s of ingest (one worker per core, and one worker) and of the bare decode, and their ratios."""
    import pydicom

    import sources
    from components import configs, ingest

    source = sources.open_source(folder, lambda: b"bench-dicom-key-" * 2)
    ingest.POOL_AFTER_SECONDS = 0.0  # the pool from the first image, as a large export runs nearly all of its own

    def ingest_all(workers):
        result = ingest.ingest(source, configs.FRONTAL_VIEWS, workers=workers)
        assert result["counts"]["usable"] == len(paths), result["dropped"]

    def bare():  # pydicom's own order of plugins: its GDCM plugin first for JPEG Lossless, not images.gdcm_buffer
        for path in paths:
            pydicom.dcmread(path).pixel_array  # noqa: B018 - the decode is the point

    cores = ingest.usable_cores()
    ways = {"bare_pydicom": bare, f"ingest_{cores}_workers": lambda: ingest_all(None),
            "ingest_1_worker": lambda: ingest_all(1)}
    for way in ways.values():
        way()  # warm-up: page cache, the forkserver, lazy imports
    # Interleaved rounds, each way's fastest: other jobs' load comes and goes, and only ever adds time.
    trials = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            trials[name] += timing.call_seconds(way, warmup=0, repeats=1)
    seconds = {name: min(times) for name, times in trials.items()}
    per_second = {name: round(len(paths) / s, 2) for name, s in seconds.items()}
    bare_ips = per_second["bare_pydicom"]
    return {"files": len(paths), "megabytes": round(sum(p.stat().st_size for p in paths) / 1e6, 1),
            "images_per_s": per_second,
            "ratio_ingest_over_bare": timing.format_ratio(per_second[f"ingest_{cores}_workers"], bare_ips),
            "ratio_ingest_1_worker_over_bare": timing.format_ratio(per_second["ingest_1_worker"], bare_ips),
            "parallel_headroom_after": parallel_headroom(cores)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24, help="DICOM files per transfer syntax")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds (the fastest counts), after one untimed")
    parser.add_argument("--syntaxes", default=",".join(SYNTAXES), help="pydicom.uid names, comma-separated")
    parser.add_argument("--skip_score", action="store_true", help="DICOM only")
    parser.add_argument("--score_count", type=int, default=96, help="images the scoring job scores")
    args = parser.parse_args()

    from common.quiet import quiet_tensorflow_logs
    quiet_tensorflow_logs()

    from components import ingest
    cores = ingest.usable_cores()
    print(json.dumps({"cores": cores, "parallel_headroom": parallel_headroom(cores)}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for syntax_name in args.syntaxes.split(","):
            folder = pathlib.Path(tmp) / syntax_name
            paths = write_dicom_folder(folder, syntax_name, args.count)
            print(json.dumps({"dicom": syntax_name, **measure_dicom(folder, paths, args.repeats)}), flush=True)
    if not args.skip_score:
        print(json.dumps({"score": "sample PNG/JPEG", **bench_score.measure(
            "resnet18", 224, 1, args.score_count, 32, str(bench_score.SAMPLE_IMAGES))}))


if __name__ == "__main__":
    main()
