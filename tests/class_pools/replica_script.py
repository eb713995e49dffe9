"""Train the pools' toy runs with N logical CPU replicas; save losses, weights and pools.

Usage: python replica_script.py REPLICAS OUTPUT.npz

F2C: ref_f2c.py's `two_rank_check` (2 ranks x (2 identity pairs + 2 instances), 2 steps,
seed 5): the global batch of the replicas in replica order. DCQ: ref_dcq.py's toy.
Run as a separate process: logical devices must be configured before TensorFlow starts.
"""

import os
import sys

import numpy as np

from keras_face import training

replicas, output = int(sys.argv[1]), sys.argv[2]
training.configure_cpu_replicas(replicas)

import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toy_runs  # noqa: E402

from keras_face import class_pools  # noqa: E402
from keras_face import heads  # noqa: E402

strategy = training.get_strategy("mirrored" if replicas > 1 else "default")
assert strategy.num_replicas_in_sync == replicas, strategy.num_replicas_in_sync


def two_rank_batches():
    """ref_f2c.two_rank_check's data: rank r holds 2 identity pairs and 2 instances."""
    rng = np.random.default_rng(5)
    a = rng.normal(size=(6, 4))
    pool = toy_runs.unit(rng.random((2, 8, 4)), 2)
    prototypes = rng.normal(size=(12, 6))
    steps = [[((0, 1), (2, 3)), ((4, 5), (6, 1))], [((7, 2), (8, 0)), ((9, 3), (2, 10))]]
    batches = []
    for step in steps:
        parts = []
        for id_ids, instance_ids in step:
            id_ids, instance_ids = np.asarray(id_ids), np.asarray(instance_ids)
            first = prototypes[id_ids] + 0.5 * rng.normal(size=(2, 6))
            second = prototypes[id_ids] + 0.5 * rng.normal(size=(2, 6))
            instances = prototypes[instance_ids] + 0.5 * rng.normal(size=(2, 6))
            parts.append(
                {
                    "id_images": np.stack([first, second], axis=1),
                    "id_labels": id_ids,
                    "instance_images": instances,
                    "instance_labels": instance_ids,
                }
            )
        batches.append({key: np.concatenate([part[key] for part in parts]) for key in parts[0]})
    return a, pool, batches


def cast(batch):
    return {
        key: value.astype(np.int32 if "labels" in key else np.float32)
        for key, value in batch.items()
    }


def run(model, batches):
    losses = []
    for batch in batches:
        batch = cast(batch)
        size = len(next(iter(batch.values())))
        data = tf.data.Dataset.from_tensors((batch, np.zeros((size,), np.float32)))
        history = model.fit(data, epochs=1, verbose=0)
        losses.append(history.history["loss"][0])
    return losses


with strategy.scope():
    a, pool, batches = two_rank_batches()
    f2c = class_pools.F2CTrainingModel(
        toy_runs.linear_backbone(6, 4, a),
        pool_size=8,
        margin_head=heads.ArcFace(1, scale=32.0, margin=0.5, fallback="none"),
    )
    f2c.pool.pool.assign(pool.astype(np.float32))
    f2c.compile(optimizer=training.L2SGD(0.1, momentum=0.9, nesterov=True, l2=1e-4))
    dcq, dcq_steps = toy_runs.dcq_model()
f2c_losses = run(f2c, batches)
dcq_losses = run(dcq, dcq_steps)
np.savez(
    output,
    f2c_losses=np.asarray(f2c_losses),
    f2c_a=np.asarray(f2c.probe.weights[0]),
    f2c_b=np.asarray(f2c.gallery.weights[0]),
    f2c_recency=np.asarray(f2c.pool.recency()),
    f2c_rows=np.asarray(f2c.pool.pool),
    f2c_slot_ids=np.asarray(f2c.pool.slot_ids),
    dcq_losses=np.asarray(dcq_losses),
    dcq_a=np.asarray(dcq.probe.weights[0]),
    dcq_b=np.asarray(dcq.gallery.weights[0]),
    dcq_queue=np.asarray(dcq.queue.pool),
    dcq_slot_ids=np.asarray(dcq.queue.slot_ids),
)
