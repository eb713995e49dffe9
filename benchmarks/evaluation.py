"""Speed of the verification protocol and of the synthetic face renderer.

1. `keras_face.evaluation.verify` on 6,000 pairs of 512-d unit embeddings, 10 folds (the
   LFW / CFP / AgeDB `.bin` size), against the 0.5 s target, and against a per-threshold
   loop written like insightface's `verification.evaluate` (same numbers, checked here).
2. `keras_face.data.synthetic_faces`: images per second (wall clock) and per CPU-second
   (process CPU time, all threads: the fair number on a shared machine) for pristine
   images, the default "realistic" quality mix and uniform quality, with and without JPEG.

    python benchmarks/evaluation.py --repeats 5
    python benchmarks/evaluation.py --skip-reference --num-images 2000
"""

import argparse
import resource
import statistics
import time

import numpy as np

from keras_face.data.synthetic import synthetic_faces
from keras_face.evaluation import verify
from keras_face.evaluation.verification import _interp1d_slinear


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pair_embeddings(num_pairs, dim, seed):
    rng = np.random.default_rng(seed)
    issame = (np.arange(num_pairs) % 600) < 300  # LFW layout: 300 genuine, then 300 impostor
    first = rng.normal(size=(num_pairs, dim))
    noise = rng.normal(size=(num_pairs, dim))
    second = np.where(issame[:, None], first + 7.0 * noise, rng.normal(size=(num_pairs, dim)))
    embeddings = np.empty((2 * num_pairs, dim))
    embeddings[0::2] = first
    embeddings[1::2] = second
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings, issame


def loop_evaluate(embeddings, issame, n_folds=10):
    """insightface's evaluate as written there: Python loops over thresholds and folds."""
    distances = np.sum(np.square(embeddings[0::2] - embeddings[1::2]), 1)
    num_pairs = len(issame)
    sizes = np.full(n_folds, num_pairs // n_folds)
    sizes[: num_pairs % n_folds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    folds = [
        (np.setdiff1d(np.arange(num_pairs), np.arange(a, b)), np.arange(a, b))
        for a, b in zip(bounds[:-1], bounds[1:])
    ]

    def accuracy(threshold, d, same):
        predicted = d < threshold
        return float(np.sum(predicted & same) + np.sum(~predicted & ~same)) / d.size

    thresholds = np.arange(0, 4, 0.01)
    accuracies = []
    for train, test in folds:
        train_accuracy = [accuracy(t, distances[train], issame[train]) for t in thresholds]
        best = thresholds[int(np.argmax(train_accuracy))]
        for threshold in thresholds:  # the per-threshold test-fold ROC insightface also computes
            predicted = distances[test] < threshold
            np.sum(predicted & issame[test]), np.sum(predicted & ~issame[test])
        accuracies.append(accuracy(best, distances[test], issame[test]))
    thresholds = np.arange(0, 4, 0.001)
    vals = []
    for train, test in folds:
        negatives = ~issame[train]
        far_train = np.array(
            [np.sum((distances[train] < t) & negatives) / np.sum(negatives) for t in thresholds]
        )
        threshold = (
            _interp1d_slinear(far_train, thresholds, 1e-3) if far_train.max() >= 1e-3 else 0.0
        )
        predicted = distances[test] < threshold
        vals.append(np.sum(predicted & issame[test]) / np.sum(issame[test]))
    return np.mean(accuracies), np.mean(vals)


def time_verify(repeats, skip_reference):
    embeddings, issame = pair_embeddings(6000, 512, seed=0)
    verify(embeddings, issame)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = verify(embeddings, issame, n_folds=10)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(
        f"verify, 6000 pairs x 512-d, 10 folds: median {median:.3f} s over {repeats} runs "
        f"(target < 0.5 s: {'met' if median < 0.5 else 'NOT met'})"
    )
    print(
        f"    accuracy {result['accuracy']:.4f} +- {result['accuracy_std']:.4f}, "
        f"VAL@FAR=1e-3 {result['val_at_far_1e-3']:.4f}"
    )
    if not skip_reference:
        start = time.perf_counter()
        accuracy, val = loop_evaluate(embeddings, issame)
        loop_time = time.perf_counter() - start
        same = accuracy == result["accuracy"] and val == result["val_at_far_1e-3"]
        print(
            f"per-threshold loop (insightface style): {loop_time:.2f} s -> verify is "
            f"{loop_time / median:.0f}x faster; same numbers: {same}"
        )


def time_rendering(num_images, repeats):
    identities = max(num_images // 20, 1)
    synthetic_faces(4, 4)  # warm-up (noise bank, caches)
    print(f"synthetic_faces, {identities} identities x 20 images, 112x112:")
    for label, quality, jpeg in (
        ("pristine (quality=None)", None, True),
        ("realistic quality mix, JPEG", "realistic", True),
        ("realistic quality mix, no JPEG", "realistic", False),
        ("uniform quality, JPEG", "uniform", True),
    ):
        walls, cpus = [], []
        for repeat in range(repeats):
            start_wall, start_cpu = time.perf_counter(), cpu_seconds()
            faces = synthetic_faces(identities, 20, seed=repeat, quality=quality, jpeg=jpeg)
            walls.append(len(faces) / (time.perf_counter() - start_wall))
            cpus.append(len(faces) / (cpu_seconds() - start_cpu))
        print(
            f"    {label:32s} {statistics.median(walls):7.0f} images/s   "
            f"{statistics.median(cpus):7.0f} images/CPU-s"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-images", type=int, default=4000)
    parser.add_argument(
        "--skip-reference", action="store_true", help="skip the slow loop implementation"
    )
    args = parser.parse_args()
    time_verify(args.repeats, args.skip_reference)
    time_rendering(args.num_images, max(args.repeats // 2, 1))


if __name__ == "__main__":
    main()
