"""The toy runs of the pool references, rebuilt in float32 Keras (data and golden numbers).

The draws follow the float64 NumPy references of the design notes
(`reference/ref_dcq.py`, `reference/ref_f2c.py`): linear encoders `P(x) = x @ A`
(trained) and `G(x) = x @ B` (B = A at start), the same `default_rng(0)` draws in the
same order, so the golden numbers they print apply here.
"""

import keras
import numpy as np

from keras_face import class_pools
from keras_face import heads
from keras_face import training

# ref_dcq.py: two steps, D = 4, K = 8, N = 4, scale 50, margin 0.3, m 0.999.
DCQ_LABELS = ([0, 1, 2, 3], [2, 5, 0, 6])
DCQ_LOSSES = (11.21245115158208, 5.6226784500103175)
DCQ_B_STEP2_ROW0 = (
    0.12584355105498338,
    -0.13212616770870209,
    0.6404072412156797,
    0.1047626186906163,
)
DCQ_A_AFTER_STEP2_ROW0 = (
    0.6185346917230283,
    -0.2175871951132633,
    0.6685019107578946,
    -0.2383074444705975,
)
DCQ_GRAD_A_STEP1_ROW0 = (
    -1.8888452661897535,
    0.3550868338226485,
    0.2567564177741395,
    2.2916305503783447,
)

# ref_f2c.py: three steps, in_dim 6, D = 4, K = 8 (h = 3), 12 identities, Arc s 32 m 0.5.
F2C_STEPS = (
    ((0, 1, 2, 3), (4, 9, 5, 1)),
    ((6, 2, 7, 10), (2, 11, 5, 3)),
    ((8, 2, 0, 6), (7, 5, 2, 2)),
)
F2C_LOSSES = (27.128205887334197, 70.607077034768, 54.74330463480291)
F2C_LOSSES_COSFACE = (33.817986315043015, 50.82653311907325, 56.235420623364746)
F2C_A_AFTER_ROW0 = (
    (0.1457357519256745, 0.852412535917835, 0.5660004319834226, -0.49217198278946084),
    (-1.0122510634607904, -0.11252228488630467, 3.533968857128365, 0.8054367473438071),
    (-0.9737409880341052, -0.0008675543515589135, 4.825231226898015, 1.1076116529137399),
)
F2C_B_USED_ROW0 = (
    (0.1257302210933933, -0.1321048632913019, 0.6404226504432821, 0.10490011715303971),
    (0.1259302764017161, -0.12225968929921051, 0.6396784282586835, 0.0989293961536147),
    (0.11454846300309104, -0.12216231525508145, 0.6686213325473803, 0.10599446966551662),
)
F2C_GRAD_A_STEP1_ROW0 = (
    -0.10530484056043152,
    -5.181657311667023,
    0.3916318443657947,
    3.142474246527761,
)
# LRU (identity, slot) from the most to the least recent, and row pointers, after each step.
F2C_RECENCY = (
    [(9, 5), (4, 4), (3, 3), (2, 2), (1, 1), (0, 0)],
    [(11, 1), (2, 2), (10, 0), (7, 7), (6, 6), (9, 5), (4, 4), (3, 3)],
    [(5, 5), (7, 7), (6, 6), (0, 4), (2, 2), (8, 3), (11, 1), (10, 0)],
)
F2C_ROW_PTR = ([1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 1, 0, 0])


def linear_backbone(in_dim, dim, kernel, name="linear"):
    """`x @ A` as a functional Keras model."""
    inputs = keras.Input((in_dim,), name="features")
    dense = keras.layers.Dense(dim, use_bias=False, name="projection")
    model = keras.Model(inputs, dense(inputs), name=name)
    dense.kernel.assign(np.asarray(kernel, np.float32))
    return model


def unit(values, axis):
    return values / np.linalg.norm(values, axis=axis, keepdims=True)


def dcq_toy():
    """The initial A, queue and the two steps' inputs of ref_dcq.py."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 4))
    queue = unit(rng.normal(size=(4, 8)), 0)
    steps = []
    for labels in DCQ_LABELS:
        query = rng.normal(size=(4, 5))
        key = query + 0.3 * rng.normal(size=(4, 5))
        steps.append(
            {
                "query_images": query.astype(np.float32),
                "key_images": key.astype(np.float32),
                "labels": np.asarray(labels, np.int32),
            }
        )
    return a, queue, steps


def dcq_model(**kwargs):
    a, queue, steps = dcq_toy()
    model = class_pools.DCQTrainingModel(
        linear_backbone(5, 4, a), queue_size=8, momentum=0.999, **kwargs
    )
    model.queue.pool.assign(queue.T[None].astype(np.float32))
    model.compile(optimizer=training.L2SGD(0.06, momentum=0.9, l2=1e-4))
    return model, steps


def f2c_toy(steps=F2C_STEPS):
    """The initial A, pool and the steps' inputs of ref_f2c.py (the model's dict layout)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 4))
    pool = unit(rng.random((2, 8, 4)), 2)
    prototypes = rng.normal(size=(12, 6))
    batches = []
    for id_ids, instance_ids in steps:
        id_ids, instance_ids = np.asarray(id_ids), np.asarray(instance_ids)
        first = prototypes[id_ids] + 0.5 * rng.normal(size=(id_ids.size, 6))
        second = prototypes[id_ids] + 0.5 * rng.normal(size=(id_ids.size, 6))
        instances = prototypes[instance_ids] + 0.5 * rng.normal(size=(instance_ids.size, 6))
        batches.append(
            {
                "id_images": np.stack([first, second], axis=1).astype(np.float32),
                "id_labels": id_ids.astype(np.int32),
                "instance_images": instances.astype(np.float32),
                "instance_labels": instance_ids.astype(np.int32),
            }
        )
    return a, pool, batches


def f2c_model(margin_head=None, steps=F2C_STEPS, **kwargs):
    a, pool, batches = f2c_toy(steps)
    if margin_head is None:
        margin_head = heads.ArcFace(1, scale=32.0, margin=0.5, fallback="none")
    model = class_pools.F2CTrainingModel(
        linear_backbone(6, 4, a), pool_size=8, margin_head=margin_head, **kwargs
    )
    model.pool.pool.assign(pool.astype(np.float32))
    model.compile(optimizer=training.L2SGD(0.1, momentum=0.9, nesterov=True, l2=1e-4))
    return model, batches


def dummy_targets(batch):
    """The `y` of a batch (ignored by `PrecomputedLoss`)."""
    first = next(iter(batch.values()))
    return np.zeros((first.shape[0],), np.float32)
