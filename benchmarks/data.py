"""Throughput of the RecordIO input pipeline against decoding the same JPEG bytes from memory.

Writes N synthetic 112x112 JPEG (quality 95) face-sized images into a temporary `.rec`, then
times, alternately and several times each, full passes of

- rec:          keras_face.data.read_recordio(...): .rec -> decode -> flip -> normalise -> batch
- rec (uint8):  the same without normalising (keras_face models normalise on the device)
- memory:       tf.data.Dataset.from_tensor_slices(jpeg_bytes) -> decode -> flip -> batch
- memory+norm:  the same plus the same normalisation, for an like-for-like comparison

and prints images/s (median and best wall clock), images per CPU-second (process CPU time,
all threads: the fairer number on a machine shared with other work) and the ratios.

Normalising writes float32 batches, four times the bytes of uint8 ones; the faults/img column
counts the fresh memory pages this touches. `--allocator bfc` sets
`TF_CPU_ALLOCATOR_USE_BFC=true` (TensorFlow's caching CPU allocator, no page faults) for
comparison.

    python benchmarks/data.py --num-images 4000 --repeats 5
    python benchmarks/data.py --allocator bfc
"""

import argparse
import os
import resource
import statistics
import tempfile
import time

import numpy as np


def synthetic_jpegs(count, size, quality, seed):
    """Smooth, face-crop-like images: low-frequency colour fields plus fine texture."""
    import tensorflow as tf
    from PIL import Image

    rng = np.random.default_rng(seed)
    encoded = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.int16)
        texture = rng.normal(0, 6, (size, size, 1))
        image = np.clip(field + texture, 0, 255).astype(np.uint8)
        encoded.append(tf.io.encode_jpeg(image, quality=quality).numpy())
    return encoded


def time_pass(dataset):
    """Iterates one pass; returns (images, images/s wall, images per CPU-second, faults/image)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    count = 0
    for images, _ in dataset:
        count += int(images.shape[0])
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return count, count / wall, count / cpu, (after.ru_minflt - before.ru_minflt) / max(count, 1)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-images", type=int, default=4000)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allocator", choices=("default", "bfc"), default="default")
    args = parser.parse_args()
    if args.allocator == "bfc":
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"  # read when TensorFlow starts

    import tensorflow as tf

    import keras_face.data

    encoded = synthetic_jpegs(args.num_images, args.image_size, args.quality, args.seed)
    labels = np.arange(args.num_images) // 10
    print(
        f"{args.num_images} images {args.image_size}x{args.image_size}, "
        f"JPEG quality {args.quality}, "
        f"mean {np.mean([len(e) for e in encoded]):.0f} bytes; batch {args.batch_size}; "
        f"{os.cpu_count()} CPUs; allocator {args.allocator}"
    )
    normalise = keras_face.data.preprocessing.fused_preprocess_function("arcface")

    def decode_and_flip(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return tf.image.random_flip_left_right(image)

    def in_memory(normalised):
        dataset = (
            tf.data.Dataset.from_tensor_slices(encoded)
            .map(decode_and_flip, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(args.batch_size)
        )
        if normalised:
            dataset = dataset.map(normalise, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
        return tf.data.Dataset.zip(dataset, tf.data.Dataset.range(10**9))  # (images, _)

    with tempfile.TemporaryDirectory() as directory:
        rec_path = os.path.join(directory, "bench.rec")
        keras_face.data.write_recordio(rec_path, list(zip(encoded, labels)), progress=False)

        options = keras_face.data.ReadOptions(
            batch_size=args.batch_size, shuffle=True, seed=args.seed, flip=True
        )
        packs = {
            "arcface": keras_face.data.read_recordio(rec_path, options, preprocessing="arcface"),
            "uint8": keras_face.data.read_recordio(rec_path, options),
        }

        pipelines = {
            "rec: .rec->decode->flip->normalise->batch": packs["arcface"].dataset,
            "rec (uint8): .rec->decode->flip->batch": packs["uint8"].dataset,
            "memory: bytes->decode->flip->batch": in_memory(False),
            "memory+norm: ...->normalise": in_memory(True),
        }
        results = {name: [] for name in pipelines}
        for dataset in pipelines.values():
            time_pass(dataset)  # warm-up: tracing, XLA compilation, autotuning, page cache
        for _ in range(args.repeats):
            for name, dataset in pipelines.items():
                count, *rates = time_pass(dataset)
                if count != args.num_images:
                    raise RuntimeError(
                        f"{name} delivered {count} images, expected {args.num_images}"
                    )
                results[name].append(rates)
        skipped = [faces.stats.skipped for faces in packs.values()]

    summary = {}
    print(
        f"{'pipeline':<44} {'median img/s':>12} {'best img/s':>10} {'img/CPU-s':>9} "
        f"{'faults/img':>10}"
    )
    for name, rows in results.items():
        wall = statistics.median(row[0] for row in rows)
        best = max(row[0] for row in rows)
        cpu = statistics.median(row[1] for row in rows)
        faults = statistics.median(row[2] for row in rows)
        summary[name] = (wall, best, cpu)
        print(f"{name:<44} {wall:>12.0f} {best:>10.0f} {cpu:>9.0f} {faults:>10.1f}")

    def ratio(a, b):
        (wa, ba, ca), (wb, bb, cb) = summary[a], summary[b]
        return f"median wall {wa / wb:.0%}, best wall {ba / bb:.0%}, per CPU-second {ca / cb:.0%}"

    names = list(summary)
    print(f"rec / memory         ({ratio(names[0], names[2])})  <- target >= 80%")
    print(f"rec (uint8) / memory ({ratio(names[1], names[2])})")
    print(f"rec / memory+norm    ({ratio(names[0], names[3])})")
    print(f"undecodable images skipped: {skipped}")


if __name__ == "__main__":
    main()
