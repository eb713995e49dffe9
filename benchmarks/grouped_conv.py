"""One grouped convolution, forward + backward: `keras_face.models.Conv2D` against PyTorch.

Default shape: `mobilefacenet_mbf`'s grouped conv (128 channels, 64 groups, 3x3, 56x56,
batch 8). Each round times every Keras implementation (a compiled function on the
current backend: `tf.function` on TensorFlow, `jax.jit` on JAX) and then
`torch.nn.Conv2d(groups=...)`; it prints the median milliseconds and the median of the
per-round ratios (PyTorch time / Keras time; above 1 is Keras faster).

    python benchmarks/grouped_conv.py --rounds 5
    python benchmarks/grouped_conv.py --channels 320 --filters 640 --groups 40 --size 7
    KERAS_BACKEND=jax python benchmarks/grouped_conv.py --implementations dense

`native` (Keras' own grouped convolution) took over a minute per step on a 2-core CPU
with TensorFlow and JAX; it is left out unless named in `--implementations`.
This is a benchmark, not a test: the numbers depend on the machine.
"""

import argparse
import os
import time

import keras
import numpy as np

from keras_face import models


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=56, help="height and width")
    parser.add_argument("--channels", type=int, default=128, help="input channels")
    parser.add_argument("--filters", type=int, default=128, help="output channels")
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round")
    parser.add_argument(
        "--implementations",
        default="auto,grouped,depthwise,dense",
        help="comma-separated keras_face.models.Conv2D implementations",
    )
    return parser.parse_args(argv)


def keras_step(layer, images):
    """A compiled forward + backward (gradients of sum(y^2) w.r.t. input and kernel)."""
    backend = keras.backend.backend()
    # Lazy imports: the running backend's framework only.
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(images)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                outputs = layer(inputs)
                loss = tf.reduce_sum(outputs * outputs)
            return tape.gradient(loss, [inputs, layer.kernel])

        return lambda: [gradient.numpy() for gradient in step()]
    if backend == "jax":
        import jax

        def loss(kernel, inputs):
            outputs, _ = layer.stateless_call([kernel], [], inputs)
            return (outputs * outputs).sum()

        gradient = jax.jit(jax.grad(loss, argnums=(0, 1)))
        kernel = layer.kernel.value
        return lambda: jax.block_until_ready(gradient(kernel, images))
    import torch

    inputs = torch.tensor(images, requires_grad=True)

    def step():
        outputs = layer(inputs)
        (outputs * outputs).sum().backward()

    return step


def torch_step(args, images):
    import torch

    torch.set_num_threads(os.cpu_count())
    conv = torch.nn.Conv2d(
        args.channels, args.filters, 3, padding=1, groups=args.groups, bias=False
    )
    inputs = torch.tensor(images.transpose(0, 3, 1, 2).copy(), requires_grad=True)

    def step():
        outputs = conv(inputs)
        (outputs * outputs).sum().backward()

    return step


def timed(step, steps):
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv=None):
    args = parse_arguments(argv)
    images = (
        np.random.default_rng(0)
        .normal(size=(args.batch_size, args.size, args.size, args.channels))
        .astype("float32")
    )
    steps = {}
    for implementation in args.implementations.split(","):
        layer = models.Conv2D(
            args.filters,
            3,
            groups=args.groups,
            padding="same",
            use_bias=False,
            implementation=implementation,
        )
        layer.build(images.shape)
        label = implementation
        if implementation == "auto":
            label = f"auto ({layer.resolved_implementation()})"
        steps[label] = keras_step(layer, images)
    steps["pytorch"] = torch_step(args, images)
    for step in steps.values():
        step()  # tracing / compilation
    seconds = {label: [] for label in steps}
    for _ in range(args.rounds):
        for label, step in steps.items():
            seconds[label].append(timed(step, args.steps))
    print(
        f"backend={keras.backend.backend()} batch={args.batch_size} size={args.size} "
        f"channels={args.channels}->{args.filters} groups={args.groups} rounds={args.rounds} "
        f"cpus={os.cpu_count()}"
    )
    print(f"{'implementation':<22} {'fwd+bwd ms':>11} {'PyTorch / this':>15}")
    torch_seconds = np.array(seconds["pytorch"])
    for label, values in seconds.items():
        ratio = float(np.median(torch_seconds / np.array(values)))
        print(f"{label:<22} {1000 * float(np.median(values)):>11.1f} {ratio:>15.2f}")


if __name__ == "__main__":
    main()
