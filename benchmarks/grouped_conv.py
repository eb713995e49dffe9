"""One grouped convolution, forward + backward: `keras_face.models.Conv2D` against PyTorch.

Default shape: `mobilefacenet_mbf`'s grouped conv (128 channels, 64 groups, 3x3, 56x56,
batch 8). Each round times every Keras implementation (a compiled function on the
current backend: `tf.function` on TensorFlow, `jax.jit` on JAX) and then
`torch.nn.Conv2d(groups=...)`; it prints the median milliseconds and the median of the
per-round ratios (PyTorch time / Keras time; above 1 is Keras faster).

    python benchmarks/grouped_conv.py --rounds 5
    python benchmarks/grouped_conv.py --channels 320 --filters 640 --groups 40 --size 7
    KERAS_BACKEND=jax python benchmarks/grouped_conv.py --implementations dense
    python benchmarks/grouped_conv.py --jit-compile --implementations grouped,dense,shifted
    python benchmarks/grouped_conv.py --depthwise --jit-compile --stride 2
    python benchmarks/grouped_conv.py --forward-only --jit-compile --implementations dense,shifted

`--jit-compile` compiles the TensorFlow step with XLA; `--forward-only` times the
forward pass alone (what `predict` runs; there `"auto"` can choose differently, see
`keras_face.models.conv2d.select_implementation`); `--depthwise` times
`keras_face.models.DepthwiseConv2D` (`native` and `shifted`, `--channels` channels)
against `torch.nn.Conv2d(groups=channels)`.

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
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument(
        "--depthwise",
        action="store_true",
        help="time keras_face.models.DepthwiseConv2D instead (implementations auto,native,shifted)",
    )
    parser.add_argument(
        "--jit-compile", action="store_true", help="TensorFlow: compile the step with XLA"
    )
    parser.add_argument(
        "--forward-only",
        action="store_true",
        help="time the inference forward pass only (no gradients), as `predict` runs it",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round")
    parser.add_argument(
        "--implementations",
        default="auto,grouped,depthwise,dense",
        help="comma-separated keras_face.models.Conv2D implementations",
    )
    return parser.parse_args(argv)


def keras_step(layer, images, jit_compile=False, forward_only=False):
    """A compiled forward + backward (gradients of sum(y^2) w.r.t. input and kernel).

    With `forward_only`, the compiled forward pass alone instead.
    """
    backend = keras.backend.backend()
    if forward_only:
        return keras_forward(layer, images, jit_compile)
    # Lazy imports: the running backend's framework only.
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(images)

        @tf.function(jit_compile=jit_compile)
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


def keras_forward(layer, images, jit_compile):
    """The compiled inference forward pass of `layer`, as a closure."""
    backend = keras.backend.backend()
    # Lazy imports: the running backend's framework only.
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(images)
        forward = tf.function(lambda: layer(inputs), jit_compile=jit_compile)
        return lambda: forward().numpy()
    if backend == "jax":
        import jax

        def call(kernel, inputs):
            outputs, _ = layer.stateless_call([kernel], [], inputs)
            return outputs

        forward = jax.jit(call)
        kernel = layer.kernel.value
        return lambda: jax.block_until_ready(forward(kernel, images))
    import torch

    inputs = torch.tensor(images)

    def step():
        with torch.no_grad():
            layer(inputs)

    return step


def torch_step(args, images):
    import torch

    torch.set_num_threads(os.cpu_count())
    groups = args.channels if args.depthwise else args.groups
    filters = args.channels if args.depthwise else args.filters
    conv = torch.nn.Conv2d(
        args.channels, filters, 3, stride=args.stride, padding=1, groups=groups, bias=False
    )
    inputs = torch.tensor(images.transpose(0, 3, 1, 2).copy(), requires_grad=True)

    if args.forward_only:

        def forward():
            with torch.no_grad():
                conv(inputs)

        return forward

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
    implementations = args.implementations
    if args.depthwise and implementations == "auto,grouped,depthwise,dense":
        implementations = "auto,native,shifted"
    # Stride 2: explicit symmetric padding, as the backbones (and PyTorch's padding=1) do.
    padding = "same" if args.stride == 1 else "valid"
    keras_images = images
    if args.stride != 1:
        keras_images = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for implementation in implementations.split(","):
        if args.depthwise:
            layer = models.DepthwiseConv2D(
                3,
                strides=args.stride,
                padding=padding,
                use_bias=False,
                implementation=implementation,
            )
        else:
            layer = models.Conv2D(
                args.filters,
                3,
                strides=args.stride,
                groups=args.groups,
                padding=padding,
                use_bias=False,
                implementation=implementation,
            )
        layer.build(keras_images.shape)
        steps[implementation] = keras_step(layer, keras_images, args.jit_compile, args.forward_only)
    steps["pytorch"] = torch_step(args, images)
    for step in steps.values():
        step()  # tracing / compilation
    seconds = {label: [] for label in steps}
    for _ in range(args.rounds):
        for label, step in steps.items():
            seconds[label].append(timed(step, args.steps))
    groups = args.channels if args.depthwise else args.groups
    print(
        f"backend={keras.backend.backend()} jit_compile={args.jit_compile} "
        f"batch={args.batch_size} size={args.size} stride={args.stride} "
        f"channels={args.channels}->{args.channels if args.depthwise else args.filters} "
        f"groups={groups} rounds={args.rounds} forward_only={args.forward_only} "
        f"cpus={os.cpu_count()}"
    )
    measure = "fwd ms" if args.forward_only else "fwd+bwd ms"
    print(f"{'implementation':<22} {measure:>11} {'PyTorch / this':>15}")
    torch_seconds = np.array(seconds["pytorch"])
    for label, values in seconds.items():
        ratio = float(np.median(torch_seconds / np.array(values)))
        print(f"{label:<22} {1000 * float(np.median(values)):>11.1f} {ratio:>15.2f}")


if __name__ == "__main__":
    main()
