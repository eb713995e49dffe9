"""Inference paths of a backbone: images/s and peak memory of each way to run it.

Each path runs in its own process (peak RSS only grows), on the same random images, in
flip-test batches (`2 * batch_size` images per call, as `extract_embeddings` sends):

- `predict`: `model.predict(batch, verbose=0)` per batch;
- `predict_on_batch`: `model.predict_on_batch(batch)`;
- `eager`: `model(batch, training=False)`, the previous `extract_embeddings`;
- `extract_embeddings`: `keras_face.evaluation.extract_embeddings` (its compiled path).

    python benchmarks/inference.py --model iresnet18 --images 256 --batch-size 64

Prints images/s (median over rounds of one pass over the images) and peak RSS in GB.
This is a benchmark, not a test: the numbers depend on the machine.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

PATHS = ("predict", "predict_on_batch", "eager", "extract_embeddings")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="iresnet18", help="keras_face.models name")
    parser.add_argument("--images", type=int, default=256, help="images per pass (default 256)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--input-size", type=int, default=112, help="square input size")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes (default 2)")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated paths")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_path(args):
    """One path in this process: JSON with images/s and peak RSS."""
    import keras

    from keras_face import evaluation
    from keras_face import models

    shape = (args.input_size, args.input_size, 3)
    backbone = models.get(args.model, input_shape=shape)
    images = np.random.default_rng(0).integers(0, 256, (args.images,) + shape).astype("uint8")

    def one_pass():
        if args.worker == "extract_embeddings":
            return evaluation.extract_embeddings(
                backbone, images, batch_size=args.batch_size, verbose=False
            )
        for start in range(0, args.images, args.batch_size):
            batch = images[start : start + args.batch_size].astype("float32")
            batch = np.concatenate([batch, batch[:, :, ::-1]], axis=0)
            if args.worker == "predict":
                backbone.predict(batch, verbose=0)
            elif args.worker == "predict_on_batch":
                backbone.predict_on_batch(batch)
            else:
                keras.ops.convert_to_numpy(backbone(batch, training=False))

    one_pass()  # tracing / compilation
    seconds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        one_pass()
        seconds.append(time.perf_counter() - start)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps({"images_per_s": args.images / float(np.median(seconds)), "peak_gb": peak_gb}))


def main(argv=None):
    args = parse_arguments(argv)
    if args.worker:
        run_path(args)
        return
    print(
        f"model={args.model} images={args.images} batch={args.batch_size} (x2 with flip) "
        f"input={args.input_size} rounds={args.rounds}"
    )
    print(f"{'path':<20} {'images/s':>9} {'peak RSS GB':>12}")
    for path in args.paths.split(","):
        command = [sys.executable, __file__, "--worker", path] + [
            arg for arg in (argv if argv is not None else sys.argv[1:])
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not lines:
            print(f"{path:<20} failed: {result.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(lines[-1])
        print(f"{path:<20} {row['images_per_s']:>9.1f} {row['peak_gb']:>12.2f}")


if __name__ == "__main__":
    main()
