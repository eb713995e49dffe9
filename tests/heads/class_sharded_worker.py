"""Worker of `test_class_sharded_classifier.py`: 8 simulated CPU devices (JAX backend).

`XLA_FLAGS=--xla_force_host_platform_device_count=8` must be set before JAX starts, so
the test runs this script in its own process. It prints one JSON line of measurements.
"""

import json
import os
import re

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_face  # noqa: E402
from keras_face.heads import ClassShardedClassifier  # noqa: E402

EMBEDDING_DIM = 24
NUM_CLASSES = 64
BATCH = 16
FEATURES = 8


def all_gather_shapes(hlo_text):
    """Result shapes of every all-gather of a compiled HLO module, e.g. `f32[24,64]`."""
    return [
        re.sub(r"\{.*\}", "", shape)
        for shape in re.findall(r"= (\S+) all-gather(?:-start)?\(", hlo_text)
    ]


def build_model(sample_rate=1.0, seed=0):
    inputs = keras.Input((FEATURES,), name="x")
    labels = keras.Input((), dtype="int32", name="y")
    embeddings = keras.layers.Dense(EMBEDDING_DIM, name="embed")(inputs)
    head = ClassShardedClassifier(
        keras_face.heads.CosFace(
            NUM_CLASSES, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0)
        ),
        sample_rate=sample_rate,
        num_shards=8,
        seed=seed,
        name="class_sharded_classifier",
    )
    model = keras.Model([inputs, labels], head([embeddings, labels], training=True))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def full_step(rng):
    x = rng.normal(size=(BATCH, FEATURES)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, BATCH).astype("int32")
    keras.utils.set_random_seed(1)
    single = build_model()
    initial = [w.numpy() for w in single.weights]
    single_loss = float(single.train_on_batch([x, y], y))
    distribution = ClassShardedClassifier.model_parallel(NUM_CLASSES)
    with distribution.scope():
        sharded = build_model()
        sharded.set_weights(initial)
        kernel = sharded.get_layer("class_sharded_classifier").kernel
        sharded_loss = float(sharded.train_on_batch([x, y], y))
        momentum = [v for v in sharded.optimizer.variables if "kernel_momentum" in v.path]
        momentum = [v for v in momentum if "embed" not in v.path][0]
        # The program `fit` compiles: Keras' own train step, jitted over the same state.
        state = (
            [v.value for v in sharded.trainable_variables],
            [v.value for v in sharded.non_trainable_variables],
            [v.value for v in sharded.optimizer.variables],
            [v.value for v in sharded.metrics_variables],
        )
        layout = distribution.get_data_layout
        xs = keras.distribution.distribute_tensor(x, layout(x.shape))
        ys = keras.distribution.distribute_tensor(y, layout(y.shape))
        hlo = jax.jit(sharded.train_step).lower(state, ([xs, ys], ys, None)).compile().as_text()
    single_head = single.get_layer("class_sharded_classifier")
    kernel_before = initial[[w.path for w in single.weights].index(single_head.kernel.path)]
    single_kernel = single_head.kernel.numpy()
    return {
        "devices": len(jax.devices()),
        "kernel_spec": [str(a) for a in kernel.value.sharding.spec],
        "kernel_shards": sorted({tuple(s.data.shape) for s in kernel.value.addressable_shards}),
        "momentum_spec": [str(a) for a in momentum.value.sharding.spec],
        "momentum_shards": sorted({tuple(s.data.shape) for s in momentum.value.addressable_shards}),
        "single_loss": single_loss,
        "sharded_loss": sharded_loss,
        "kernel_difference": float(np.abs(kernel.numpy() - single_kernel).max()),
        "kernel_update": float(np.abs(single_kernel - kernel_before).max()),
        "all_gathers": all_gather_shapes(hlo),
    }


def sampled_step(rng, sharded):
    """One differentiated step of the head alone at r = 0.25 (loss on remapped labels)."""
    x = rng.normal(size=(BATCH, EMBEDDING_DIM)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, BATCH).astype("int32")
    head = ClassShardedClassifier(
        keras_face.heads.ArcFace(NUM_CLASSES, fallback="none", gradient="detached"),
        sample_rate=0.25,
        num_shards=8,
        seed=3,
        name="class_sharded_classifier",
    )
    head.build([(BATCH, EMBEDDING_DIM), (BATCH,)])
    kernel = np.random.default_rng(5).normal(size=(EMBEDDING_DIM, NUM_CLASSES)).astype("float32")
    head.kernel.assign(kernel)
    trainable = [v.value for v in head.trainable_variables]
    non_trainable = [v.value for v in head.non_trainable_variables]
    columns_index = [v.path for v in head.non_trainable_variables].index(head.class_columns.path)

    def loss_fn(trainable, non_trainable, x, y):
        logits, new_state = head.stateless_call(trainable, non_trainable, [x, y], training=True)
        columns = ops.take(new_state[columns_index], y)
        loss = keras.losses.sparse_categorical_crossentropy(columns, logits, from_logits=True)
        return ops.mean(loss), (logits, new_state)

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    if sharded:
        layout = head.kernel._layout
        trainable = [jax.device_put(trainable[0], layout.backend_layout)]
    (loss, (logits, new_state)), grads = step(trainable, non_trainable, x, y)
    hlo = step.lower(trainable, non_trainable, x, y).compile().as_text() if sharded else ""
    columns = np.asarray(new_state[columns_index])[:NUM_CLASSES]
    return {
        "x": x,
        "y": y,
        "kernel": kernel,
        "loss": float(loss),
        "logits_shape": list(logits.shape),
        "sampled": np.flatnonzero(columns >= 0).tolist(),
        "kernel_gradient": np.asarray(grads[0]),
        "shard_map": head._uses_shard_map(),
        "kernel_gradient_spec": [str(a) for a in grads[0].sharding.spec] if sharded else [],
        "all_gathers": all_gather_shapes(hlo),
    }


def main():
    rng = np.random.default_rng(0)
    result = full_step(rng)
    looped = sampled_step(np.random.default_rng(1), sharded=False)
    distribution = ClassShardedClassifier.model_parallel(NUM_CLASSES)
    with distribution.scope():
        sharded = sampled_step(np.random.default_rng(1), sharded=True)
    gradient = sharded["kernel_gradient"]
    unsampled = np.setdiff1d(np.arange(NUM_CLASSES), sharded["sampled"])
    result.update(
        {
            "sampled_loss": sharded["loss"],
            "looped_loss": looped["loss"],
            "shard_map": [looped["shard_map"], sharded["shard_map"]],
            "sampled_equal_looped": sharded["sampled"] == looped["sampled"],
            "gradient_difference": float(np.abs(gradient - looped["kernel_gradient"]).max()),
            "sampled_logits_shape": sharded["logits_shape"],
            "sampled": sharded["sampled"],
            "labels": sharded["y"].tolist(),
            "unsampled_gradient_max": float(np.abs(gradient[:, unsampled]).max()),
            "sampled_gradient_max": float(np.abs(gradient).max()),
            "sampled_gradient_spec": sharded["kernel_gradient_spec"],
            "sampled_all_gathers": sharded["all_gathers"],
            "sampled_x": sharded["x"],
            "sampled_kernel": sharded["kernel"],
        }
    )
    print(json.dumps(result, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


if __name__ == "__main__":
    main()
