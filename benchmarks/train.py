"""End-to-end training throughput (images/s) of a backbone + ArcFace on in-memory batches.

Each configuration (dtype policy x `jit_compile`) runs in a fresh Python process, on the
current Keras backend (`KERAS_BACKEND=tensorflow|jax|torch`), and the script prints a
table with the ratio of each configuration to the float32, no-XLA baseline. The step is
a full training step (forward, ArcFace logits, cross-entropy, backward, SGD momentum
update) on one fixed random batch, so the input pipeline is not measured.

This script imports neither TensorFlow nor `keras_face.training` at the top level: it runs
on machines that carry JAX but not TensorFlow.

    python benchmarks/train.py                                   # iresnet50, 112x112
    KERAS_BACKEND=jax python benchmarks/train.py --batch-size 128 --steps 20
    python benchmarks/train.py --precisions float32,mixed_bfloat16 --jit false,true

Options `--single PRECISION JIT` run one configuration in this process and print one
`RESULT {...}` JSON line (what the table is built from).
"""

import argparse
import json
import os
import subprocess
import sys
import time


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="iresnet50", help="keras_face.models.get name")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--embedding-size", type=int, default=512)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation)")
    parser.add_argument(
        "--precisions",
        default="float32,mixed_bfloat16",
        help="comma-separated: float32, mixed_float16, mixed_bfloat16",
    )
    parser.add_argument("--jit", default="false,true", help="comma-separated jit_compile values")
    parser.add_argument("--single", nargs=2, metavar=("PRECISION", "JIT"), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per configuration")
    return parser.parse_args(argv)


def run_single(args, precision, jit_compile):
    """Build, compile and time one configuration; return its result dict."""
    import keras
    import numpy as np
    from backbones import arcface_training_model  # benchmarks/ is this script's folder

    from keras_face import models

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    input_shape = (args.image_size, args.image_size, 3)
    backbone = models.get(args.model, input_shape=input_shape, embedding_size=args.embedding_size)
    model = arcface_training_model(backbone, input_shape, args.num_classes, jit_compile)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch_size,) + input_shape).astype("float32")
    labels = rng.integers(0, args.num_classes, (args.batch_size,)).astype("int32")
    started = time.perf_counter()
    for _ in range(args.warmup):
        loss = model.train_on_batch([images, labels], labels)
    warmup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = model.train_on_batch([images, labels], labels)  # returns a NumPy value: synchronised
    seconds = time.perf_counter() - started
    return {
        "backend": keras.backend.backend(),
        "model": args.model,
        "precision": precision,
        "jit_compile": jit_compile,
        "resolved_jit_compile": bool(model.jit_compile),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "images_per_second": args.batch_size * args.steps / seconds,
        "seconds_per_step": seconds / args.steps,
        "warmup_seconds": warmup_seconds,
        "final_loss": float(np.asarray(loss)),
        "parameters": int(backbone.count_params()),
        "devices": _devices(),
    }


def _devices():
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return [str(device) for device in jax.devices()]
        if backend == "tensorflow":
            import tensorflow as tf

            return [device.name for device in tf.config.list_logical_devices()]
        if backend == "torch":
            import torch

            return ["cuda"] if torch.cuda.is_available() else ["cpu"]
    except Exception as error:  # the table still prints without the device list
        return [f"unknown ({error})"]
    return []


def _as_bool(text):
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise SystemExit(f"--jit values must be true or false. Received: {text!r}")


def run_table(args):
    rows = []
    for precision in args.precisions.split(","):
        for jit in args.jit.split(","):
            command = [sys.executable, os.path.abspath(__file__), "--single", precision, jit]
            for name in (
                "model",
                "image_size",
                "embedding_size",
                "num_classes",
                "batch_size",
                "steps",
                "warmup",
            ):
                command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
            print(f"running {precision}, jit_compile={jit} ...", flush=True)
            try:
                completed = subprocess.run(
                    command, capture_output=True, text=True, timeout=args.timeout
                )
            except subprocess.TimeoutExpired:
                rows.append(
                    {
                        "precision": precision,
                        "jit_compile": jit,
                        "error": f"timeout after {args.timeout}s",
                    }
                )
                continue
            lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
            if completed.returncode != 0 or not lines:
                tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or [
                    "no output"
                ]
                rows.append({"precision": precision, "jit_compile": jit, "error": tail[0][:160]})
                continue
            rows.append(json.loads(lines[-1][len("RESULT ") :]))
    first = next((row for row in rows if "error" not in row), None)
    # Ratios are to float32 without XLA when it ran, else to the first configuration.
    baseline = next(
        (
            row
            for row in rows
            if "error" not in row and row["precision"] == "float32" and not row["jit_compile"]
        ),
        first,
    )
    if first is not None:
        print(
            f"\n{first['model']} ({first['parameters']:,} parameters) + "
            f"ArcFace({args.num_classes}), {args.image_size}x{args.image_size}, "
            f"batch {args.batch_size}, backend {first['backend']}, "
            f"devices {', '.join(first['devices'])}"
        )
    header = (
        f"{'precision':<16}{'jit_compile':<13}{'images/s':>10}{'s/step':>9}"
        f"{'warm-up s':>11}{'ratio':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row:
            print(f"{row['precision']:<16}{row['jit_compile']:<13}  failed: {row['error']}")
            continue
        ratio = (
            row["images_per_second"] / baseline["images_per_second"] if baseline else float("nan")
        )
        jit = f"{row['jit_compile']}" + (
            "" if row["resolved_jit_compile"] == row["jit_compile"] else " (off)"
        )
        print(
            f"{row['precision']:<16}{jit:<13}{row['images_per_second']:>10.2f}"
            f"{row['seconds_per_step']:>9.3f}{row['warmup_seconds']:>11.1f}{ratio:>11.2f}x"
        )
    return rows


def main(argv=None):
    args = parse_arguments(argv)
    if args.single:
        precision, jit = args.single
        result = run_single(args, precision, _as_bool(jit))
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    rows = run_table(args)
    return 0 if any("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
