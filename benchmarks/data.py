"""Throughput of the RecordIO input pipeline against decoding the same JPEG bytes from memory.

Writes N synthetic 112x112 JPEG (quality 95) face-sized images into a temporary `.rec`, then
times, alternately and several times each:

- rec:    keras_face.data.read_recordio(...): .rec -> decode -> flip -> normalise -> batch
- memory: tf.data.Dataset.from_tensor_slices(jpeg_bytes) -> decode -> flip -> batch

and prints images/s (wall clock) for both, the ratio, and images per CPU-second (process CPU
time, all threads), which is the fairer comparison on a machine shared with other work.

    python benchmarks/data.py --num-images 4000 --repeats 5
"""

import argparse
import os
import resource
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf
from PIL import Image

import keras_face.data


def synthetic_jpegs(count, size, quality, seed):
    """Smooth, face-crop-like images: low-frequency colour fields plus fine texture."""
    rng = np.random.default_rng(seed)
    encoded = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.int16)
        texture = rng.normal(0, 6, (size, size, 1))
        image = np.clip(field + texture, 0, 255).astype(np.uint8)
        buffer = tf.io.encode_jpeg(image, quality=quality).numpy()
        encoded.append(buffer)
    return encoded


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_pass(dataset):
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    count = 0
    for images, _ in dataset:
        count += int(images.shape[0])
    wall, cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
    return count, count / wall, count / cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=4000)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    encoded = synthetic_jpegs(args.num_images, args.image_size, args.quality, args.seed)
    labels = np.arange(args.num_images) // 10
    print(
        f"{args.num_images} images {args.image_size}x{args.image_size}, JPEG quality {args.quality}, "
        f"mean {np.mean([len(e) for e in encoded]):.0f} bytes; batch {args.batch_size}; "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as directory:
        rec_path = os.path.join(directory, "bench.rec")
        keras_face.data.write_recordio(rec_path, list(zip(encoded, labels)), progress=False)

        rec = keras_face.data.read_recordio(
            rec_path,
            batch_size=args.batch_size,
            shuffle=True,
            seed=args.seed,
            flip=True,
            preprocessing="arcface",
        )

        def decode_and_flip(data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            image.set_shape([None, None, 3])
            return tf.image.random_flip_left_right(image)

        memory = (
            tf.data.Dataset.from_tensor_slices(encoded)
            .map(decode_and_flip, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(args.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        memory = tf.data.Dataset.zip(memory, tf.data.Dataset.range(10**9))  # (images, _) like rec

        results = {"rec": [], "memory": []}
        for name, dataset in (("rec", rec), ("memory", memory)):
            time_pass(dataset)  # warm-up: graph construction, autotuning, page cache
        for _ in range(args.repeats):
            for name, dataset in (("rec", rec), ("memory", memory)):
                count, wall_rate, cpu_rate = time_pass(dataset)
                if count != args.num_images:
                    raise RuntimeError(f"{name} delivered {count} images, expected {args.num_images}")
                results[name].append((wall_rate, cpu_rate))

    def summary(name):
        wall = [r[0] for r in results[name]]
        cpu = [r[1] for r in results[name]]
        return statistics.median(wall), max(wall), statistics.median(cpu)

    rec_wall, rec_best, rec_cpu = summary("rec")
    mem_wall, mem_best, mem_cpu = summary("memory")
    print(f"{'pipeline':<40} {'median img/s':>13} {'best img/s':>11} {'img per CPU-s':>14}")
    print(f"{'rec: .rec->decode->flip->normalise->batch':<40} {rec_wall:>13.0f} {rec_best:>11.0f} {rec_cpu:>14.0f}")
    print(f"{'memory: bytes->decode->flip->batch':<40} {mem_wall:>13.0f} {mem_best:>11.0f} {mem_cpu:>14.0f}")
    print(
        f"ratio rec/memory: median wall {rec_wall / mem_wall:.1%}, best wall {rec_best / mem_best:.1%}, "
        f"per CPU-second {rec_cpu / mem_cpu:.1%} (target >= 80%)"
    )
    print("rec pipeline stats:", rec.stats.summary())


if __name__ == "__main__":
    main()
