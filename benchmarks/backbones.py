"""Backbone sizes and throughput on the current Keras backend.

Prints, per model: parameters (PyTorch counting), FLOPs (multiply-accumulates, as
insightface reports them) next to the published figures, and forward and training
images/s at the given batch size (training: backbone + `keras_face.heads.ArcFace`, SGD).

Only Keras and keras_face are imported, so it runs unchanged with `KERAS_BACKEND=jax`
or `torch` on a machine without TensorFlow:

    python benchmarks/backbones.py --models iresnet18,mobilefacenet --batch-size 16
    KERAS_BACKEND=jax python benchmarks/backbones.py --mixed-precision bfloat16 --jit-compile

This is a benchmark, not a test: the numbers depend on the machine.
"""

import argparse
import time

import keras
import numpy as np
from tqdm import tqdm

from keras_face import heads, models

# Published sizes at 112x112 (parameters, FLOPs as multiply-accumulates); see docs/models.md.
PUBLISHED = {
    "iresnet18": (24.03e6, 2.6e9),
    "iresnet34": (34.14e6, None),
    "iresnet50": (43.59e6, 6.3e9),
    "iresnet100": (65.16e6, 12.1e9),
    "iresnet200": (118.83e6, 23.5e9),
    "mobilefacenet": (0.99e6, 0.221e9),
    "mobilefacenet_mbf": (None, 0.45e9),
    # The paper's 1.022 G FLOPs count a multiply-accumulate as two operations.
    "vargfacenet": (None, 1.022e9 / 2),
}


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=",".join(models.names()),
        help="comma-separated names from keras_face.models.names() (default: all)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measure (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument(
        "--mixed-precision",
        choices=("none", "float16", "bfloat16"),
        default="none",
        help="global dtype policy mixed_float16 / mixed_bfloat16 (default none)",
    )
    parser.add_argument("--jit-compile", action="store_true", help="compile with jit_compile=True")
    parser.add_argument("--input-size", type=int, nargs=2, default=(112, 112), metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=1000, help="identities of the ArcFace head")
    parser.add_argument("--no-training", action="store_true", help="skip the training measure")
    return parser.parse_args(argv)


def describe_device():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return str(jax.devices()[0])
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return gpus[0].name if gpus else "cpu"
    return backend


def images_per_second(step, batch_size, steps, warmup):
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def arcface_training_model(backbone, input_shape, num_classes, jit_compile):
    """`[image, label] -> ArcFace logits` over `backbone`, compiled with SGD momentum 0.9.

    The assembly of `keras_face.training.FaceTrainingModel`, written with keras only
    (`keras_face.training` needs TensorFlow; these benchmarks also run on JAX and PyTorch).
    """
    image = keras.Input(input_shape, name="image")
    label = keras.Input((), dtype="int32", name="label")
    logits = heads.ArcFace(num_classes)([backbone(image), label])
    model = keras.Model([image, label], logits)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def benchmark(name, args):
    input_shape = tuple(args.input_size) + (3,)
    backbone = models.get(name, input_shape=input_shape)
    row = {
        "model": name,
        "parameters": models.count_parameters(backbone),
        "flops": models.count_flops(backbone, input_shape),
    }
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch_size,) + input_shape).astype("float32")
    labels = rng.integers(0, args.num_classes, (args.batch_size,)).astype("int32")

    backbone.compile(jit_compile=args.jit_compile)
    row["forward"] = images_per_second(
        lambda: backbone.predict_on_batch(images), args.batch_size, args.steps, args.warmup
    )
    if not args.no_training:
        model = arcface_training_model(backbone, input_shape, args.num_classes, args.jit_compile)
        row["training"] = images_per_second(
            lambda: model.train_on_batch([images, labels], labels),
            args.batch_size,
            args.steps,
            args.warmup,
        )
    return row


def format_published(value, scale):
    return "-" if value is None else f"{value / scale:.2f}"


def main(argv=None):
    args = parse_arguments(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    if args.mixed_precision != "none":
        keras.config.set_dtype_policy(f"mixed_{args.mixed_precision}")
    print(
        f"backend={keras.backend.backend()} device={describe_device()} "
        f"policy={keras.config.dtype_policy().name} jit_compile={args.jit_compile} "
        f"batch={args.batch_size} input={args.input_size[0]}x{args.input_size[1]} "
        f"steps={args.steps}"
    )
    rows = []
    for name in tqdm(names, desc="backbones", unit="model"):
        rows.append(benchmark(name, args))
        keras.backend.clear_session()
    header = (
        f"{'model':<18} {'params M':>9} {'(paper)':>8} {'FLOPs G':>8} {'(paper)':>8} "
        f"{'fwd img/s':>10} {'train img/s':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        published_parameters, published_flops = PUBLISHED.get(row["model"], (None, None))
        training = f"{row['training']:.1f}" if "training" in row else "-"
        print(
            f"{row['model']:<18} {row['parameters'] / 1e6:>9.2f} "
            f"{format_published(published_parameters, 1e6):>8} "
            f"{row['flops'] / 1e9:>8.3f} {format_published(published_flops, 1e9):>8} "
            f"{row['forward']:>10.1f} {training:>12}"
        )


if __name__ == "__main__":
    main()
