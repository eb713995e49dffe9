"""Peak memory of embedding extraction as the number of images grows.

`keras_face.evaluation.extract_embeddings` must use memory bounded by its batch, not by the
number of images: it sends `2 * batch_size` images (with their mirrors) per call of one
compiled forward pass and writes each batch's embeddings into the output array. Each
measurement runs in its own process (peak RSS only grows) on random uint8 images:

- `extract_embeddings`: `keras_face.evaluation.extract_embeddings(model, images, batch_size)`;
- `predict` (the baseline): `model.predict(images, batch_size=2 * batch_size)` on the whole
  array, as plain Keras code would run it (no flip test, so it does half the work).

    python benchmarks/extraction_memory.py --model mobilefacenet --images 256,1024,4096

For each path and image count it prints the peak RSS of the process and its growth during
the extraction (peak RSS minus the RSS once the model is built, warmed up on one batch,
and the images are in memory). The growth of a memory-bounded path stays flat as the
number of images grows (up to the output array, `images x embedding size x 4` bytes).
This is a benchmark, not a test: the numbers depend on the machine.
"""

import argparse
import json
import resource
import subprocess
import sys

import numpy as np

PATHS = ("extract_embeddings", "predict")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilefacenet", help="keras_face.models name")
    parser.add_argument("--images", default="256,1024,4096", help="comma-separated image counts")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")
    parser.add_argument("--input-size", type=int, default=112, help="square input size")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated paths")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _rss_mib():
    """Current resident set size of this process in MiB (Linux `/proc`)."""
    with open("/proc/self/statm") as file:
        pages = int(file.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_worker(args, path, num_images):
    """One extraction in this process: JSON with the RSS before and the peak."""
    from keras_face import evaluation
    from keras_face import models

    shape = (args.input_size, args.input_size, 3)
    backbone = models.get(args.model, input_shape=shape)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (num_images,) + shape, dtype=np.uint8)
    warm_up = images[: args.batch_size]
    if path == "extract_embeddings":
        evaluation.extract_embeddings(backbone, warm_up, args.batch_size, verbose=False)
    else:
        backbone.predict(warm_up.astype("float32"), batch_size=2 * args.batch_size, verbose=0)
    before = _rss_mib()
    if path == "extract_embeddings":
        embeddings = evaluation.extract_embeddings(
            backbone, images, batch_size=args.batch_size, verbose=False
        )
    else:
        embeddings = backbone.predict(
            images.astype("float32"), batch_size=2 * args.batch_size, verbose=0
        )
    peak = _peak_rss_mib()
    return {"before_mib": before, "peak_mib": peak, "shape": list(embeddings.shape)}


def main(argv=None):
    args = parse_arguments(argv)
    if args.worker:
        path, num_images = args.worker.split(":")
        print(json.dumps(run_worker(args, path, int(num_images))))
        return
    counts = [int(value) for value in args.images.split(",")]
    print(
        f"{args.model}, {args.input_size} px, batch {args.batch_size} "
        f"(extract_embeddings: {2 * args.batch_size} images per call with the flip test)"
    )
    print(f"{'path':<20}{'images':>8}{'peak RSS MiB':>14}{'growth MiB':>12}")
    for path in args.paths.split(","):
        for count in counts:
            command = [sys.executable, __file__, "--worker", f"{path}:{count}"]
            command += ["--model", args.model, "--batch-size", str(args.batch_size)]
            command += ["--input-size", str(args.input_size)]
            completed = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            growth = result["peak_mib"] - result["before_mib"]
            print(f"{path:<20}{count:>8}{result['peak_mib']:>14.0f}{growth:>12.0f}")


if __name__ == "__main__":
    main()
