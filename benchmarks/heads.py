"""Speed of one training step of every margin head, side by side with a plain step.

For each head: forward (cosine matrix, margin, logits) + sparse softmax cross-entropy +
backward (gradients w.r.t. the embeddings and every trainable weight of the head) at
B=256, D=512, C=100,000, float32, on the CPU. Printed per head:

- the median step time, and the median over the repetitions of the per-repetition ratio
  to the baseline timed in the same repetition. On TensorFlow the baseline (row `plain`)
  is a NormFace step written in plain TensorFlow: `tf.nn.l2_normalize` of the embeddings
  and of the kernel, `tf.matmul`, times the scale (`--scale`, 64 when not given), sparse
  softmax cross-entropy and its gradients. Elsewhere it is the `normface` head. Target:
  every head <= 1.05x the plain step at the same scale (`--scale 64`): the margin is O(B)
  work next to an O(B D C) product. A head whose kernel has K columns per class
  (`sub_centers=K`, SubCenterArcFace) is compared with a plain step of K C columns, timed
  too, and its GEMM rate counts its K-times larger products;
- the GEMM rate achieved, counting the three products of a step (logits, the gradients
  w.r.t. embeddings and kernel: 3 x 2 B D C FLOPs), against the machine's matmul rate,
  measured in the same run with the same framework (`(B, D) @ (D, C)`) (target: NormFace
  >= 70 % of the matmul rate). The time of the three bare products is printed too: the
  best a step can do.

The machine may be shared and noisy: repetitions are interleaved (each repetition times
every head and the matmul once, in a rotated order) and medians are reported. Next to the
wall time, the process CPU time per step (all threads): on a machine whose cores other
jobs also use, wall time measures the contention, CPU time the work, and the ratios and
rates computed from CPU time are the fairer ones.

    python benchmarks/heads.py                              # current KERAS_BACKEND
    KERAS_BACKEND=jax python benchmarks/heads.py --repeats 7
    KERAS_BACKEND=tensorflow python benchmarks/heads.py --modes graph xla
    python benchmarks/heads.py --heads normface arcface --classes 20000
    # The issue-9 measurement: every head at s = 64 against the plain TensorFlow step.
    KERAS_BACKEND=tensorflow python benchmarks/heads.py --classes 50000 --scale 64 \
        --modes graph --repeats 15 --steps 1 \
        --heads normface arcface cosface magface adaface curricularface subcenterarcface
"""

import argparse
import os
import resource
import statistics
import time

import numpy as np


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--steps", type=int, default=2, help="steps per timing")
    parser.add_argument("--heads", nargs="*", default=None, help="default: all heads")
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="build every head that has a `scale` argument with this scale (NormFace's "
        "default is 10, the margin heads' 64 or 30; a larger scale makes the softmax's "
        "exponentials underflow more, which costs time on CPUs). Default: each head's own.",
    )
    parser.add_argument(
        "--modes",
        nargs="*",
        default=None,
        help="TensorFlow: graph (tf.function) and/or xla (jit_compile=True); "
        "JAX: jit; PyTorch: eager. Default: all of the backend's modes.",
    )
    parser.add_argument(
        "--allocator",
        choices=["bfc", "default"],
        default="bfc",
        help="TensorFlow CPU allocator (TF_CPU_ALLOCATOR_USE_BFC). Defaults to bfc.",
    )
    return parser.parse_args()


# --------------------------------------------------------------------------------------
# One compiled training step per backend: returns a function `step()` that runs one
# step and blocks until its results exist.
def tensorflow_step(head, x, y, jit_compile):
    import keras
    import tensorflow as tf

    loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = head.trainable_variables

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = head([x, y], training=True)
            loss = loss_object(y, logits)
            for extra in head.losses:
                loss += extra
        return tape.gradient(loss, [x] + variables)

    x, y = tf.constant(x), tf.constant(y)

    def run():
        gradients = step(x, y)
        for gradient in gradients:
            gradient.numpy()

    return run


def plain_tensorflow_step(kernel, x, y, scale, jit_compile):
    """The baseline: NormFace in plain TensorFlow, with the same loss and gradients."""
    import tensorflow as tf

    kernel = tf.Variable(kernel)

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = scale * tf.matmul(
                tf.nn.l2_normalize(x, axis=1), tf.nn.l2_normalize(kernel, axis=0)
            )
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            )
        return tape.gradient(loss, [x, kernel])

    x, y = tf.constant(x), tf.constant(y)

    def run():
        for gradient in step(x, y):
            gradient.numpy()

    return run


def tensorflow_products(x, kernel, jit_compile, products):
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile)
    def matmul(x, w):
        out = tf.matmul(x, w)
        if products == 1:
            return out
        # The three products of a step: Z = X W, dX = dZ W^T, dW = X^T dZ.
        return out, tf.matmul(out, w, transpose_b=True), tf.matmul(x, out, transpose_a=True)

    x, w = tf.constant(x), tf.constant(kernel)

    def run():
        tf.nest.map_structure(lambda t: t.numpy(), matmul(x, w))

    return run


def jax_step(head, x, y):
    import jax
    import keras

    loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable, losses = head.stateless_call(
            trainable, non_trainable, [x, y], training=True, return_losses=True
        )
        loss = loss_object(y, logits)
        for extra in losses:
            loss = loss + extra
        return loss, non_trainable

    gradient_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 2), has_aux=True))
    state = {
        "trainable": [v.value for v in head.trainable_variables],
        "non_trainable": [v.value for v in head.non_trainable_variables],
    }
    x, y = jax.numpy.asarray(x), jax.numpy.asarray(y)

    def run():
        (_, non_trainable), gradients = gradient_fn(
            state["trainable"], state["non_trainable"], x, y
        )
        jax.block_until_ready(gradients)
        state["non_trainable"] = non_trainable

    return run


def jax_products(x, kernel, products):
    import jax

    @jax.jit
    def matmul(x, w):
        out = x @ w
        if products == 1:
            return out
        return out, out @ w.T, x.T @ out

    x, w = jax.numpy.asarray(x), jax.numpy.asarray(kernel)

    def run():
        jax.block_until_ready(matmul(x, w))

    return run


def torch_step(head, x, y):
    import keras
    import torch

    loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = [v.value for v in head.trainable_variables]
    x = torch.tensor(x, requires_grad=True)
    y = torch.tensor(y)

    def run():
        logits = head([x, y], training=True)
        loss = loss_object(y, logits)
        for extra in head.losses:
            loss = loss + extra
        torch.autograd.grad(loss, [x] + variables)

    return run


def torch_products(x, kernel, products):
    import torch

    x, w = torch.tensor(x), torch.tensor(kernel)

    def run():
        with torch.no_grad():
            out = x @ w
            if products == 3:
                out @ w.T, x.T @ out

    return run


# --------------------------------------------------------------------------------------
def time_once(run, steps):
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(steps):
        run()
    return (time.perf_counter() - wall) / steps, (cpu_seconds() - cpu) / steps


def baseline_name(backend, columns):
    """Name of the baseline run for a kernel of `columns` columns."""
    base = "plain" if backend == "tensorflow" else "normface"
    return base if columns is None else f"{base}/{columns}"


def build_runs(backend, mode, names, args):
    """Compiled steps of every head (and of the baselines) and of the bare products."""
    import keras

    from keras_face import heads

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.dim)).astype("float32")
    y = rng.integers(0, args.classes, size=(args.batch,)).astype("int32")
    kernel = rng.normal(0, 0.01, size=(args.dim, args.classes)).astype("float32")

    runs = {}
    columns = {}
    baselines = [baseline_name(backend, None)]
    for name in names:
        head = heads.get(name, args.classes, **scale_argument(heads, name, args))
        head([keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)], training=False)
        # A head with K columns per class: its products are K times larger, and its
        # baseline has as many columns.
        columns[name] = int(head.kernel.shape[-1])
        if columns[name] != args.classes:
            baselines.append(baseline_name(backend, columns[name]))
        runs[name] = make_step(backend, mode, head, x, y)
    for name in dict.fromkeys(baselines):
        width = int(name.split("/")[1]) if "/" in name else args.classes
        columns[name] = width
        if name.startswith("plain"):
            wide = rng.normal(0, 0.01, size=(args.dim, width)).astype("float32")
            scale = 64.0 if args.scale is None else args.scale
            runs[name] = plain_tensorflow_step(wide, x, y, scale, mode == "xla")
            continue
        head = heads.NormFace(width, **scale_argument(heads, "normface", args))
        head([keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)], training=False)
        runs[name] = make_step(backend, mode, head, x, y)
    for products, label in ((1, "matmul"), (3, "3 products")):
        if backend == "tensorflow":
            runs[label] = tensorflow_products(x, kernel, mode == "xla", products)
        elif backend == "jax":
            runs[label] = jax_products(x, kernel, products)
        else:
            runs[label] = torch_products(x, kernel, products)
    return runs, columns


def scale_argument(heads, name, args):
    """`{"scale": args.scale}` when asked for and the head takes a scale, else `{}`."""
    import inspect

    if args.scale is None:
        return {}
    head_class = type(heads.get(name, 2))
    if "scale" not in inspect.signature(head_class.__init__).parameters:
        return {}
    return {"scale": args.scale}


def make_step(backend, mode, head, x, y):
    if backend == "tensorflow":
        return tensorflow_step(head, x, y, jit_compile=mode == "xla")
    if backend == "jax":
        return jax_step(head, x, y)
    return torch_step(head, x, y)


def benchmark_mode(backend, mode, names, args):
    """Interleaved timings: medians and the per-repetition ratios to the baselines."""
    runs, columns = build_runs(backend, mode, names, args)
    for run in runs.values():  # compile and warm up
        run()
    order = list(runs)
    wall = {name: [] for name in order}
    cpu = {name: [] for name in order}
    for repeat in range(args.repeats):
        rotated = order[repeat % len(order) :] + order[: repeat % len(order)]
        for name in rotated:
            seconds, cpu_time = time_once(runs[name], args.steps)
            wall[name].append(seconds)
            cpu[name].append(cpu_time)
    results = {}
    for name in order:
        baseline = baseline_name(
            backend, None if columns.get(name, args.classes) == args.classes else columns[name]
        )
        wall_ratio = cpu_ratio = None
        if baseline in wall and name in columns:
            # Median of the per-repetition ratios: each ratio compares two timings
            # taken moments apart, under the same load.
            wall_ratio = statistics.median(a / b for a, b in zip(wall[name], wall[baseline]))
            cpu_ratio = statistics.median(a / b for a, b in zip(cpu[name], cpu[baseline]))
        results[name] = {
            "wall": statistics.median(wall[name]),
            "cpu": statistics.median(cpu[name]),
            "wall_ratio": wall_ratio,
            "cpu_ratio": cpu_ratio,
            "baseline": baseline,
        }
    return results, columns


def print_table(backend, mode, results, columns, names, args):
    flops = 2.0 * args.batch * args.dim * args.classes
    matmul_wall, matmul_cpu = results["matmul"]["wall"], results["matmul"]["cpu"]
    ideal_wall, ideal_cpu = results["3 products"]["wall"], results["3 products"]["cpu"]
    scale = "each head's own" if args.scale is None else f"{args.scale:g}"
    print(
        f"\n{backend} / {mode}: B={args.batch}, D={args.dim}, C={args.classes}, scale "
        f"{scale}; medians of {args.repeats} interleaved repetitions x {args.steps} steps"
    )
    print(
        f"matmul (B,D)@(D,C): {matmul_wall * 1e3:.0f} ms wall = "
        f"{flops / matmul_wall / 1e9:.1f} GFLOP/s, {matmul_cpu:.3f} CPU s; the three "
        f"bare products of a step: {ideal_wall * 1e3:.0f} ms wall, {ideal_cpu:.3f} CPU s "
        f"({100 * 3 * matmul_cpu / ideal_cpu:.0f} % of the matmul rate by CPU time)"
    )
    print(
        "| head | step ms | ratio to baseline | GEMM GFLOP/s | % of matmul rate "
        "| CPU s/step | CPU ratio to baseline | % of matmul rate (CPU time) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    # The baseline first, then the heads, then the baselines of wider kernels.
    wider = [n for n in results if "/" in n]
    rows = list(dict.fromkeys([baseline_name(backend, None)] + list(names) + wider))
    for name in rows:
        result = results[name]
        wall, cpu = result["wall"], result["cpu"]
        # K columns per class: K times the products, compared with a baseline of as many
        # columns (a "(vs plain/N)" note says so).
        factor = columns[name] / args.classes
        note = "" if factor == 1 or name == result["baseline"] else f" (vs {result['baseline']})"
        rate = 3 * factor * flops / wall / 1e9
        wall_ratio, cpu_ratio = result["wall_ratio"], result["cpu_ratio"]
        print(
            f"| {name} | {wall * 1e3:.0f} | "
            + (f"{wall_ratio:.3f}{note}" if wall_ratio is not None else "-")
            + f" | {rate:.1f} | {100 * 3 * factor * matmul_wall / wall:.0f} % | {cpu:.3f} | "
            + (f"{cpu_ratio:.3f}{note}" if cpu_ratio is not None else "-")
            + f" | {100 * 3 * factor * matmul_cpu / cpu:.0f} % |"
        )


def main():
    args = parse_args()
    if args.allocator == "bfc":
        # TensorFlow's CPU allocator defaults to malloc: every (B, C) temporary (100 MB
        # here) is a fresh mmap whose pages fault in on first touch. The BFC allocator
        # reuses its memory. Read when TensorFlow initialises: set before importing it.
        os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    import keras

    from keras_face import heads

    backend = keras.backend.backend()
    names = args.heads or heads.names()
    if "normface" in names:  # NormFace first, next to the baseline
        names = ["normface"] + [n for n in names if n != "normface"]
    modes = args.modes or {"tensorflow": ["graph", "xla"], "jax": ["jit"]}.get(backend, ["eager"])
    print(
        f"{os.cpu_count()} CPUs visible; TF_CPU_ALLOCATOR_USE_BFC="
        f"{os.environ.get('TF_CPU_ALLOCATOR_USE_BFC', 'unset')}"
    )
    for mode in modes:
        results, columns = benchmark_mode(backend, mode, names, args)
        print_table(backend, mode, results, columns, names, args)


if __name__ == "__main__":
    main()
