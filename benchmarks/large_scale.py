"""One head training step at large class counts: full softmax against Partial FC.

For each class count C (default 100,000, 1,000,000 and 2,000,000) and each method, one
training step of the classifier alone at B=256, D=512, float32, on the CPU (TensorFlow):
forward (class cosines, ArcFace margin, logits), sparse softmax cross-entropy, backward
(gradients w.r.t. the embeddings and the kernel) and the optimizer update (L2SGD:
momentum 0.9, coupled L2 5e-4, so every kernel column moves every step, as arcface_torch's
Partial FC v2). Methods:

- `full`: `keras_face.heads.ArcFace(C)`, the softmax over all C classes;
- `pfc`: `keras_face.heads.PartialFC(ArcFace(C), sample_rate=--rate)` (default 0.1): the
  batch's classes plus random negatives, `int(r C)` classes in the softmax; the kernel in
  its default `(C, D)` layout (a class per row), whose row-sparse gradient `L2SGD` applies
  as one dense decay pass plus the sampled rows;
- `pfc-columns`: the same with the kernel in the `(D, C)` layout of the full head
  (`kernel_layout="columns"`): a dense `(D, C)` kernel gradient each step;
- `pool`: F²C's classifier side, when `keras_face.class_pools.ClassPool` exists: the
  batch's gallery features written into an LRU pool of `--pool-fraction` C identities
  (default 10 %, two rows), then the CosFace (s 32, m 0.4) cross-entropy of the probes
  against both weight sets (no kernel, no gradient, no optimizer slot; the gallery
  network's forward pass, the pool's real price, is backbone work and not counted).

Printed per (C, method): the median step time (wall and process CPU), the peak resident
memory of the process (each measurement runs in its own process, so that peak RSS is its
own), and the bytes of classifier state (kernel + optimizer slots + sampler state, or the
pool), plus the ratio of each method's step to the full softmax at the same C, in wall
and in CPU time (on a shared machine CPU time measures the work, wall time the contention
too). The runs
of one C are interleaved: `--rounds` rounds each time every method once (a fresh process
each), and the median over rounds is reported. A configuration whose estimated memory
exceeds the available memory (`/proc/meminfo`'s MemAvailable) is skipped and said so.

Goals (issue 10): at C = 1M, Partial FC r = 0.1 <= 0.2x the full step; C = 2M with
r = 0.1 within 24 GiB.

Below the table, the floor of the dense optimizer update that Partial FC v2 keeps (every
column decays and carries momentum): reading the kernel and its momentum and writing both,
4 x 4 D C bytes (5 x 4 D C with a dense gradient to read, as the full head and
`pfc-columns`), at the memory bandwidth measured in a worker of its own (NumPy
`a + b -> c` over 512 MiB arrays, 3 x 512 MiB moved).

    python benchmarks/large_scale.py                       # C in {100k, 1M, 2M}
    python benchmarks/large_scale.py --classes 100000      # a subset
    python benchmarks/large_scale.py --classes 1000000 --methods full pfc --rounds 3
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

GIB = 2**30


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_bytes():
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def available_memory_bytes():
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def estimated_bytes(method, classes, batch, dim, rate, pool_fraction):
    """A rough peak for the skip decision: state, dense gradient and logits, times 1.3."""
    kernel = 4 * dim * classes
    if method == "full":
        columns = classes
        total = 3 * kernel + 3 * 4 * batch * columns
    elif method.startswith("pfc"):
        columns = max(int(rate * classes), batch)
        total = 3 * kernel + 4 * dim * columns + 3 * 4 * batch * columns
    else:
        columns = int(pool_fraction * classes)
        total = 4 * dim * columns + 3 * 4 * batch * columns
    return int(1.3 * total) + 600 * 2**20  # + the TensorFlow runtime


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100_000, 1_000_000, 2_000_000])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["full", "pfc", "pool"],
        choices=["full", "pfc", "pfc-columns", "pool"],
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rate", type=float, default=0.1, help="Partial FC sample_rate")
    parser.add_argument("--pool-fraction", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds per C")
    parser.add_argument(
        "--jit", action="store_true", help="compile the steps with XLA (jit_compile=True)"
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


# ------------------------------------------------------------------------------------------
# The worker: one (method, C) measurement in this process.
def build_step(method, classes, args):
    """`(run, state_bytes)`: one compiled training step and the classifier state's bytes."""
    # TensorFlow is imported in the worker processes only: the driver stays small, so
    # that the memory it leaves available is what the workers measure against.
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_face import heads
    from keras_face.training import L2SGD

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch, args.dim)).astype("float32"))
    y = tf.constant(rng.integers(0, classes, size=args.batch).astype("int32"))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    if method == "pool":
        # Optional: the pools are issue 10's part 3 (keras_face.class_pools).
        from keras_face.class_pools import ClassPool

        # F2C's classifier side: the gallery batch written into an LRU pool of
        # pool_fraction * C identities (two rows), then the probes' CosFace
        # cross-entropy against both weight sets. No kernel, no gradient, no slot.
        pool = ClassPool(int(args.pool_fraction * classes), args.dim, policy="lru", seed=1)
        gallery = tf.math.l2_normalize(tf.constant(rng.normal(size=x.shape), "float32"), 1)
        margin = heads.CosFace(1, scale=32.0, margin=0.4)

        def pool_logits(normalized, weights, slots):
            cosine = tf.matmul(normalized, weights, transpose_b=True)
            indices = tf.stack([tf.range(args.batch), slots], 1)
            target = margin.target_logits(tf.gather_nd(cosine, indices), None)
            return tf.tensor_scatter_nd_update(margin.scale * cosine, indices, target)

        @tf.function(jit_compile=args.jit)
        def step(x, y):
            new_state, touched = pool.insert(gallery, y, pool.state())
            pool.commit(new_state)
            first, second = pool.weight_sets(new_state, touched)
            slots = pool.lookup(y, new_state)
            with tf.GradientTape() as tape:
                tape.watch(x)
                normalized = tf.math.l2_normalize(x, 1)
                loss = loss_fn(slots, pool_logits(normalized, first, slots))
                loss += loss_fn(slots, pool_logits(normalized, second, slots))
            return loss, tape.gradient(loss, x)

        state = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in pool.weights)
        return (lambda: step(x, y)), state

    head = heads.ArcFace(classes, scale=64.0)
    if method.startswith("pfc"):
        layout = "columns" if method == "pfc-columns" else "rows"
        head = heads.PartialFC(head, sample_rate=args.rate, seed=0, kernel_layout=layout)
    head.build([(args.batch, args.dim), (args.batch,)])
    optimizer = L2SGD(0.1, momentum=0.9, l2=5e-4)
    optimizer.build(head.trainable_variables)

    @tf.function(jit_compile=args.jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = head([x, y], training=True)
            targets = head.remap_labels(y) if method.startswith("pfc") else y
            loss = loss_fn(targets, logits)
        gradients = tape.gradient(loss, [x] + head.trainable_variables)
        optimizer.apply(gradients[1:], head.trainable_variables)
        return loss, gradients[0]

    variables = list(head.weights) + list(optimizer.variables)
    state = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return (lambda: step(x, y)), state


def measure_bandwidth(repeats=5):
    """Memory bandwidth in bytes per second: the best of `repeats` `a + b -> c`."""
    import numpy as np

    size = 2**27  # float32 elements: 512 MiB per array
    a = np.ones(size, np.float32)
    b = np.ones(size, np.float32)
    c = np.empty(size, np.float32)
    np.add(a, b, out=c)  # touch the pages
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.add(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    return 3 * 4 * size / best


def worker(args):
    if args.worker == "bandwidth":
        print(json.dumps({"bandwidth": measure_bandwidth()}), flush=True)
        return 0
    method, classes = args.worker.split(":")
    classes = int(classes)
    try:
        run, state = build_step(method, classes, args)
    except ImportError as error:
        print(json.dumps({"skipped": f"{method} unavailable ({error})"}), flush=True)
        return 0
    loss, _ = run()  # trace + first step
    loss = float(loss)
    walls, cpus = [], []
    for _ in range(args.steps):
        wall, cpu = time.perf_counter(), cpu_seconds()
        loss, _ = run()
        loss = float(loss)  # waits for the step
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    result = {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "peak_rss": peak_rss_bytes(),
        "state": state,
        "loss": loss,
    }
    print(json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------------------------------
# The driver: interleaved processes, one table.
def measure(method, classes, args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", f"{method}:{classes}"]
    command += ["--batch", str(args.batch), "--dim", str(args.dim), "--rate", str(args.rate)]
    command += ["--pool-fraction", str(args.pool_fraction), "--steps", str(args.steps)]
    if args.jit:
        command.append("--jit")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode == -9:
        return {"skipped": "killed (SIGKILL: out of memory)"}
    if completed.returncode != 0 or not lines:
        tail = completed.stderr.strip().splitlines()[-1:] or [f"exit {completed.returncode}"]
        return {"skipped": f"failed: {tail[0][:120]}"}
    return json.loads(lines[-1])


def bandwidth_bytes_per_second():
    command = [sys.executable, os.path.abspath(__file__), "--worker", "bandwidth"]
    completed = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])["bandwidth"] if lines else None


def run_class_count(classes, args):
    results = {method: [] for method in args.methods}
    skipped = {}
    available = available_memory_bytes()
    for method in args.methods:
        needed = estimated_bytes(
            method, classes, args.batch, args.dim, args.rate, args.pool_fraction
        )
        if available is not None and needed > available:
            skipped[method] = (
                f"skipped: needs about {needed / GIB:.1f} GiB, {available / GIB:.1f} GiB available"
            )
    for _ in range(args.rounds):
        for method in args.methods:
            if method in skipped:
                continue
            result = measure(method, classes, args)
            if "skipped" in result:
                skipped[method] = result["skipped"]
            else:
                results[method].append(result)
    summary = {}
    for method in args.methods:
        runs = results[method]
        if not runs:
            summary[method] = {"skipped": skipped.get(method, "no result")}
            continue
        summary[method] = {
            key: statistics.median(run[key] for run in runs)
            for key in ("wall", "cpu", "peak_rss", "state")
        }
    return summary


def print_table(all_results, args):
    print(
        f"One head training step (forward, loss, backward, L2SGD update), B={args.batch}, "
        f"D={args.dim}, float32, CPU (TensorFlow); Partial FC r={args.rate}, "
        f"pool {args.pool_fraction:.0%}; median of {args.steps} steps x {args.rounds} round(s)"
    )
    header = (
        f"{'classes':>10}  {'method':<11}  {'wall s':>8}  {'cpu s':>8}  {'x full wall':>11}  "
        f"{'x full cpu':>10}  {'peak RSS GiB':>12}  {'state GiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for classes, summary in all_results.items():
        full = summary.get("full", {})
        for method, result in summary.items():
            if "skipped" in result:
                print(f"{classes:>10,}  {method:<11}  {result['skipped']}")
                continue
            wall_ratio = f"{result['wall'] / full['wall']:.3f}" if "wall" in full else "-"
            cpu_ratio = f"{result['cpu'] / full['cpu']:.3f}" if "cpu" in full else "-"
            print(
                f"{classes:>10,}  {method:<11}  {result['wall']:>8.3f}  {result['cpu']:>8.3f}  "
                f"{wall_ratio:>11}  {cpu_ratio:>10}  {result['peak_rss'] / GIB:>12.2f}  "
                f"{result['state'] / GIB:>9.3f}"
            )


def print_update_floor(classes_list, args, bandwidth):
    """The dense v2 update's bytes per step and its time at the measured bandwidth."""
    if bandwidth is None:
        return
    print(f"Memory bandwidth (NumPy a + b -> c, 512 MiB arrays): {bandwidth / GIB:.1f} GiB/s")
    for classes in classes_list:
        for what, arrays in (("row-sparse gradient", 4), ("dense gradient", 5)):
            # Read w and momentum (and a dense gradient); write w and momentum.
            moved = arrays * 4 * args.dim * classes
            print(
                f"{classes:>10,}  dense L2SGD update (v2), {what}: at least "
                f"{moved / GIB:.1f} GiB moved a step, {moved / bandwidth:.3f} s at that bandwidth"
            )


def main():
    args = parse_args()
    if args.worker:
        return worker(args)
    all_results = {}
    for classes in args.classes:
        all_results[classes] = run_class_count(classes, args)
    bandwidth = bandwidth_bytes_per_second()
    print_table(all_results, args)
    print_update_floor(args.classes, args, bandwidth)
    if args.json:
        results = {str(c): r for c, r in all_results.items()}
        results["bandwidth"] = bandwidth
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
