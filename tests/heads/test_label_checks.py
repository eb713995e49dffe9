"""Label checks in every execution mode, for every head (`keras_face.heads.names()`).

| mode | a label outside `[0, C)` or labels of another length than the embeddings |
|---|---|
| eager (every backend) | `ValueError` naming the values (`test_bad_input.py`) |
| JAX `jit` | the `ValueError` of a host callback |
| TensorFlow graph, unknown batch | `InvalidArgumentError` naming the values |
| TensorFlow XLA (`jit_compile=True`), `fit` | finite logits, no gradient on those rows, |
| | counted; `raise_for_invalid_labels` / `LabelRangeCheck` raise the `ValueError` |
"""

import keras
import numpy as np
import pytest

import keras_face

C, DIM, BATCH = 5, 8, 8
NAMES = keras_face.heads.names()
BAD_LABELS = (-1, C, C + 1000)


def batch(size=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(size, DIM)).astype("float32")
    labels = (np.arange(size) % C).astype("int32")
    return embeddings, labels


def with_bad(labels, bad, row=3):
    labels = labels.copy()
    labels[row] = bad
    return labels


def tf_step(head, jit_compile):
    """`(embeddings, labels) -> (logits, loss, kernel gradient)`, batch dimension `None`."""
    import tensorflow as tf

    @tf.function(
        jit_compile=jit_compile,
        input_signature=[tf.TensorSpec([None, DIM]), tf.TensorSpec([None], tf.int32)],
    )
    def step(embeddings, labels):
        with tf.GradientTape() as tape:
            logits = head([embeddings, labels], training=True)
            rows = tf.shape(logits)[0]  # targets in range, of the logits' length
            loss = keras.ops.mean(
                keras.losses.sparse_categorical_crossentropy(
                    keras.ops.clip(tf.concat([labels, tf.zeros_like(labels)], 0)[:rows], 0, C - 1),
                    logits,
                    from_logits=True,
                )
            )
        return logits, loss, tape.gradient(loss, head.kernel)

    return step


def built_head(name):
    head = keras_face.heads.get(name, C)
    embeddings, labels = batch()
    head([embeddings, labels], training=False)
    return head


@pytest.mark.tf_only
@pytest.mark.parametrize("name", NAMES)
def test_graph_mode_with_unknown_batch_raises_naming_the_values(name):
    import tensorflow as tf

    head = built_head(name)
    step = tf_step(head, jit_compile=False)
    embeddings, labels = batch()
    assert np.all(np.isfinite(step(embeddings, labels)[0].numpy()))
    for bad in BAD_LABELS:
        pattern = rf"num_classes={C}\b.*Received: labels containing\] \[{bad}\]"
        with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
            step(embeddings, with_bad(labels, bad))
    for size in (BATCH - 1, BATCH + 1):
        cut = np.resize(labels, size)
        pattern = rf"Received: embeddings batch={BATCH}, labels batch={size}\]"
        with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
            step(embeddings, cut)


@pytest.mark.tf_only
@pytest.mark.parametrize("name", NAMES)
def test_xla_counts_bad_labels_and_keeps_everything_finite(name):
    head = built_head(name)
    step = tf_step(head, jit_compile=True)
    embeddings, labels = batch()
    reference, _, _ = step(embeddings, labels)
    assert head.invalid_labels().count == 0
    head.raise_for_invalid_labels()  # nothing counted: no error
    for bad in BAD_LABELS:
        logits, loss, kernel_gradient = step(embeddings, with_bad(labels, bad))
        assert np.all(np.isfinite(logits.numpy()))
        assert np.isfinite(loss.numpy())
        assert np.all(np.isfinite(kernel_gradient.numpy()))
        record = head.invalid_labels()
        assert (record.count, record.example) == (1, bad)
        with pytest.raises(ValueError, match=rf"num_classes={C}\b.*labels containing {bad} "):
            head.raise_for_invalid_labels()
        assert head.invalid_labels().count == 0  # reset by the raise
    # The other rows are unchanged (stateless heads: the whole output is deterministic).
    if name in ("normface", "cosface", "amsoftmax", "arcface", "combinedmargin"):
        logits, _, _ = step(embeddings, with_bad(labels, -1))
        rows = np.arange(BATCH) != 3
        np.testing.assert_allclose(logits.numpy()[rows], reference.numpy()[rows], rtol=1e-6)
        with pytest.raises(ValueError):
            head.raise_for_invalid_labels()


@pytest.mark.tf_only
@pytest.mark.parametrize("name", NAMES)
def test_xla_names_both_batch_sizes(name):
    head = built_head(name)
    step = tf_step(head, jit_compile=True)
    embeddings, labels = batch()
    for size in (BATCH - 1, BATCH + 1):
        logits, _, kernel_gradient = step(embeddings, np.resize(labels, size))
        assert logits.shape == (BATCH, C)
        assert np.all(np.isfinite(logits.numpy()))
        assert np.all(np.isfinite(kernel_gradient.numpy()))
        pattern = rf"same batch size.*Received: embeddings batch={BATCH}, labels batch={size}$"
        with pytest.raises(ValueError, match=pattern):
            head.raise_for_invalid_labels()


def all_heads_model():
    """One projection feeding every head: one `fit` exercises them all."""
    features = keras.Input((DIM,), name="features")
    label_input = keras.Input((), dtype="int32", name="labels")
    embeddings = keras.layers.Dense(DIM, name="projection")(features)
    heads = {name: keras_face.heads.get(name, C) for name in NAMES}
    outputs = {name: head([embeddings, label_input]) for name, head in heads.items()}
    model = keras.Model([features, label_input], outputs)
    model.compile(
        optimizer="sgd",
        loss={name: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for name in NAMES},
        jit_compile=True,
    )
    return model, heads


@pytest.mark.tf_only
def test_fit_under_xla_raises_through_the_callback_and_keeps_weights_finite():
    keras.utils.set_random_seed(0)
    model, heads = all_heads_model()
    embeddings, labels = batch(16)
    bad_labels = labels.copy()
    bad_labels[[1, 3, 9]] = BAD_LABELS  # two in the first batch, one in the second
    targets = {name: bad_labels for name in NAMES}
    # Without the callback: TensorFlow's XLA cross-entropy makes the loss NaN, but no
    # weight becomes non-finite, and every head counted the labels.
    model.fit([embeddings, bad_labels], targets, batch_size=BATCH, shuffle=False, verbose=0)
    for variable in model.weights:
        if "float" in variable.dtype:
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(variable))), variable.path
    for name in NAMES:
        record = heads[name].invalid_labels()
        assert (record.count, record.example) == (3, C + 1000), name
    # With it: the first batch's error, naming its first bad label.
    with pytest.raises(ValueError, match=rf"num_classes={C}\b.*labels containing -1 "):
        model.fit(
            [embeddings, bad_labels],
            targets,
            batch_size=BATCH,
            shuffle=False,
            verbose=0,
            callbacks=[keras_face.heads.LabelRangeCheck()],
        )
    # Good labels train on, without errors.
    model.fit(
        [embeddings, labels],
        {name: labels for name in NAMES},
        batch_size=BATCH,
        shuffle=False,
        verbose=0,
        callbacks=[keras_face.heads.LabelRangeCheck()],
    )


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX jit")
@pytest.mark.parametrize("name", NAMES)
def test_jax_jit_raises_naming_the_label(name):
    import jax

    head = built_head(name)
    embeddings, labels = batch()

    @jax.jit
    def call(trainable, non_trainable, embeddings, labels):
        return head.stateless_call(trainable, non_trainable, [embeddings, labels], training=True)[0]

    trainable = [v.value for v in head.trainable_variables]
    non_trainable = [v.value for v in head.non_trainable_variables]
    out = call(trainable, non_trainable, embeddings, labels)
    assert np.all(np.isfinite(np.asarray(out)))
    for bad in BAD_LABELS:
        with pytest.raises(Exception, match=rf"num_classes={C}\b(.|\n)*{bad}"):
            jax.block_until_ready(call(trainable, non_trainable, embeddings, with_bad(labels, bad)))


@pytest.mark.parametrize("name", NAMES)
def test_label_errors_are_reported_on_every_backend(name):
    head = built_head(name)
    embeddings, labels = batch()
    for bad in BAD_LABELS:
        with pytest.raises(ValueError, match=rf"num_classes={C}\b.*{bad}"):
            head([embeddings, with_bad(labels, bad)], training=True)
    # Nothing to report afterwards outside XLA.
    assert head.invalid_labels() == (0, None, None, None)
    head.raise_for_invalid_labels()
