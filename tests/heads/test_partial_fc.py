"""`keras_face.heads.PartialFC`: class-centre sampling around every margin head.

Numbers from the specification (`large-scale-classification.md` §1, §4): the sample-count
rounding, the sampling example with given draws and the golden toy losses and gradients
(printed by the float64 reference `ref_partial_fc.py`). Everything else is checked
against the wrapped head itself: the sampled logits are the columns of the full head's
logits, `sample_rate=1` is the head bit for bit.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_face import heads
from keras_face.heads import partial_fc
from tests.heads.gradients import head_gradients

# The draws of the specification's sampling example (§4 item 3): class j draws DRAWS[j].
LABELS = np.array([3, 17, 3, 12, 0, 9], np.int32)
DRAWS = np.array(
    [0.05, 0.91, 0.40, 0.10, 0.77, 0.30, 0.66, 0.52, 0.88, 0.25]
    + [0.13, 0.99, 0.45, 0.71, 0.02, 0.60, 0.35, 0.84, 0.18, 0.95]
)
TOY_INDEX = [0, 1, 3, 4, 8, 9, 11, 12, 17, 19]
# Golden toy (§4 item 6), s = 64: loss over the sampled classes, and over all 20.
GOLDEN_LOSS = {"arcface": 7.382102253920407, "cosface": 6.293470141755627}
GOLDEN_FULL_LOSS = {"arcface": 14.233021492043683, "cosface": 13.916813016452858}
GOLDEN_KERNEL_COLUMN_3 = {
    # keras_face ArcFace (exact gradient) and CosFace m = 0.4.
    "arcface": [101.19050069956668, -138.6076982996413, 293.6520545851395, 148.7770083426584]
    + [-196.55790393030858, 306.1319152698921, 77.98458598406162, 282.53911392745863],
    "cosface": [71.4937689724675, -100.30113650603381, 213.69444380554347, 109.84668668436126]
    + [-147.11886709760066, 224.5895008917709, 59.05215859493531, 209.75796318420478],
    # arcface_torch's ArcFace: no fallback, detached margin gradient.
    "arcface_torch": [71.6944717694987, -100.44967422256278, 213.94527796553075]
    + [109.88957311369924, -147.06924516037628, 224.7543479730969, 58.99609064482126]
    + [209.77808408268646],
}
GOLDEN_EMBEDDING_ROW_0 = {
    "arcface": [-0.9131036542008876, -1.5797276931052135, 0.9119150487862876]
    + [1.741677814052338, 2.1995011527815946, -1.4603648167291663, 1.885701945908174]
    + [-3.018711331648231],
    "arcface_torch": [-1.1051186115081924, -1.4010363218437363, 1.2555173309697285]
    + [1.7569855188953831, 1.280903600454545, -1.6154555838691846, 1.6174697073858253]
    + [-2.35003681190593],
}
GOLDEN_LOGITS_ROW_0 = [-36.4475669811, -12.1623638075, 17.2101353021, -22.7403533678]
GOLDEN_LOGITS_ROW_0 += [33.1165165396, 16.7302591183, -17.4208005416, -18.8669874539]
GOLDEN_LOGITS_ROW_0 += [-46.2719964311, -18.1051815152]


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def _toy():
    """The specification's toy problem: 6 embeddings near their centres, D = 8, C = 20."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(scale=0.01, size=(8, 20))
    embeddings = 100.0 * kernel[:, LABELS].T + rng.normal(scale=0.7, size=(6, 8))
    return embeddings.astype(np.float32), kernel.astype(np.float32)


def _draw_keys(draws):
    # Keys with the order of the draws (distinct draws give distinct keys).
    return ops.convert_to_tensor((np.asarray(draws) * 2**30).astype(np.int32))


def _mix32(x):
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> np.uint32(16))


def _numpy_keys(seed, step, num_classes):
    """The sampler's keys in NumPy uint32 arithmetic (the layer uses int32 bits)."""
    with np.errstate(over="ignore"):
        golden = np.uint32(0x9E3779B9)
        stream = _mix32(_mix32(np.uint32(seed)) + np.uint32(step) * golden)
        counters = np.arange(num_classes, dtype=np.uint32) * golden
        keys = _mix32(counters + stream) >> np.uint32(1)
    return np.minimum(keys, 2**31 - 2).astype(np.int64)


def _cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def _softmax_gradient(logits, labels):
    """d mean-CE / d logits: (softmax - onehot) / N."""
    logits = np.asarray(logits, np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(labels)), labels] -= 1.0
    return (probs / len(labels)).astype(np.float32)


def _built(head, kernel):
    head.build((None, kernel.shape[0]))
    head.kernel.assign(kernel)
    return head


# ------------------------------------------------------------------------------------------
# The sample.
@pytest.mark.parametrize(
    "rate, num_classes, expected",
    [(0.29, 100, 28), (0.57, 100, 56), (0.3, 10, 3), (0.1, 93431, 9343), (0.0, 10, 0)],
)
def test_num_sample_truncates_the_float_product(rate, num_classes, expected):
    # int(0.29 * 100) == 28: the double product is just under the integer (§1.1).
    layer = heads.PartialFC(heads.CosFace(num_classes), sample_rate=rate, seed=0)
    assert layer.num_sample == expected


def test_select_classes_reproduces_the_specification_example():
    labels = ops.convert_to_tensor(LABELS)
    sampled, count = partial_fc.select_classes(labels, _draw_keys(DRAWS), 10, 10)
    assert _numpy(sampled).tolist() == TOY_INDEX
    assert int(count) == 10
    assert np.searchsorted(TOY_INDEX, LABELS).tolist() == [2, 8, 2, 7, 0, 5]
    # Budget 4 < 5 positives: the positives only, then padding (20 + j) in order.
    sampled, count = partial_fc.select_classes(labels, _draw_keys(DRAWS), 4, 6)
    assert _numpy(sampled).tolist() == [0, 3, 9, 12, 17, 25]
    assert int(count) == 5


def test_sampling_keys_are_the_same_hash_on_every_backend():
    for seed, step in [(0, 0), (7, 1), (2**31 - 2, 123456)]:
        keys = _numpy(partial_fc.sampling_keys(seed, step, 257)).astype(np.int64)
        np.testing.assert_array_equal(keys, _numpy_keys(seed, step, 257))
        assert keys.min() >= 0 and keys.max() <= 2**31 - 2
    assert not np.array_equal(
        _numpy(partial_fc.sampling_keys(0, 0, 64)), _numpy(partial_fc.sampling_keys(0, 1, 64))
    )
    assert not np.array_equal(
        _numpy(partial_fc.sampling_keys(0, 0, 64)), _numpy(partial_fc.sampling_keys(1, 0, 64))
    )


def test_negatives_are_uniform_without_replacement():
    # 2,000 steps, C = 40, 4 fixed positives, budget 12: each negative is kept with
    # probability (12 - 4) / (40 - 4), within 5 sigma; no class twice in a step.
    num_classes, num_sample, steps = 40, 12, 2000
    labels = ops.convert_to_tensor(np.array([5, 5, 11, 30, 38, 11], np.int32))
    counts = np.zeros(num_classes)
    for step in range(steps):
        keys = partial_fc.sampling_keys(3, step, num_classes)
        sampled, count = partial_fc.select_classes(labels, keys, num_sample, num_sample)
        sampled = _numpy(sampled)
        assert int(count) == num_sample
        assert len(set(sampled.tolist())) == num_sample
        counts[sampled] += 1
    positives = [5, 11, 30, 38]
    assert np.all(counts[positives] == steps)
    p = (num_sample - 4) / (num_classes - 4)
    negatives = np.delete(counts, positives) / steps
    sigma = math.sqrt(p * (1 - p) / steps)
    assert np.max(np.abs(negatives - p)) < 5 * sigma


def test_sampled_set_over_steps_keeps_every_positive():
    rng = np.random.default_rng(0)
    layer = heads.PartialFC(heads.ArcFace(30), sample_rate=0.2, seed=1)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    seen = []
    for step in range(12):
        labels = rng.integers(0, 30, size=8).astype(np.int32)
        if step % 3 == 0:
            labels[:] = rng.permutation(30)[:8]  # 8 distinct positives > budget 6
        logits = _numpy(layer([x, labels], training=True))
        sampled = layer.sampled_classes
        positives = np.unique(labels)
        assert np.all(np.diff(sampled) > 0)
        assert set(positives.tolist()) <= set(sampled.tolist())
        assert layer.num_sampled == max(6, len(positives))
        # S = max(num_sample, min(batch, C)) = 8 columns, padding past the sampled ones.
        assert logits.shape == (8, 8)
        assert np.all(logits[:, layer.num_sampled :] == partial_fc.PADDING_LOGIT)
        remapped = _numpy(layer.remap_labels(labels))
        np.testing.assert_array_equal(sampled[remapped], labels)
        seen.append(sampled.tolist())
    assert _numpy(layer.step.value) == 12
    assert len({tuple(s) for s in seen}) > 6  # a new draw every step


def test_positives_only_at_rate_zero():
    layer = heads.PartialFC(heads.CosFace(50), sample_rate=0.0, seed=0)
    x = np.ones((6, 4), np.float32)
    logits = _numpy(layer([x, LABELS], training=True))
    assert layer.sampled_classes.tolist() == [0, 3, 9, 12, 17]
    assert logits.shape == (6, 6) and np.all(logits[:, 5] == partial_fc.PADDING_LOGIT)


# ------------------------------------------------------------------------------------------
# Logits and gradients.
@pytest.mark.parametrize(
    "make_head",
    [
        lambda: heads.ArcFace(20, scale=64.0),
        lambda: heads.CosFace(20),
        lambda: heads.NormFace(20),
        lambda: heads.SubCenterArcFace(20, sub_centers=3),
        lambda: heads.CurricularFace(20),
        lambda: heads.AdaFace(20),
        lambda: heads.SphereFace(20),
    ],
    ids=["arcface", "cosface", "normface", "subcenter", "curricular", "adaface", "sphereface"],
)
def test_rate_one_is_the_head_bit_for_bit(make_head):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 8)).astype(np.float32)
    head, reference = make_head(), make_head()
    kernel = rng.normal(size=(8, 20 * head.columns_per_class)).astype(np.float32)
    wrapped = heads.PartialFC(_built(head, kernel), sample_rate=1.0)
    _built(reference, kernel)
    got = head_gradients(wrapped, x, LABELS)
    expected = head_gradients(reference, x, LABELS)
    np.testing.assert_array_equal(got.logits, expected.logits)
    np.testing.assert_array_equal(got.embeddings, expected.embeddings)
    np.testing.assert_array_equal(got.kernel, expected.kernel)
    np.testing.assert_array_equal(_numpy(wrapped.remap_labels(LABELS)), LABELS)
    inference = _numpy(wrapped([x, LABELS], training=False))
    np.testing.assert_array_equal(inference, _numpy(reference([x, LABELS], training=False)))


@pytest.mark.parametrize(
    "make_head",
    [
        lambda: heads.ArcFace(40, scale=64.0),
        lambda: heads.ArcFace(40, scale=64.0, fallback="none", gradient="detached"),
        lambda: heads.CosFace(40),
        lambda: heads.NormFace(40),
        lambda: heads.CombinedMargin(40),
        lambda: heads.SubCenterArcFace(40, sub_centers=3),
        lambda: heads.CosFace(40, sub_centers=2),
        lambda: heads.CurricularFace(40),
        lambda: heads.AdaFace(40),
        lambda: heads.MagFace(40),
        lambda: heads.SphereFace(40),
    ],
    ids=[
        "arcface",
        "arcface_torch",
        "cosface",
        "normface",
        "combined",
        "subcenter_arcface",
        "subcenter_cosface",
        "curricular",
        "adaface",
        "magface",
        "sphereface",
    ],
)
def test_sampled_logits_are_the_full_heads_columns(make_head):
    rng = np.random.default_rng(3)
    x = (5.0 * rng.normal(size=(6, 8))).astype(np.float32)
    head, reference = make_head(), make_head()
    kernel = rng.normal(size=(8, 40 * head.columns_per_class)).astype(np.float32)
    wrapped = heads.PartialFC(_built(head, kernel), sample_rate=0.25, seed=4)
    _built(reference, kernel)
    logits = _numpy(wrapped([x, LABELS], training=True))
    full = _numpy(reference([x, LABELS], training=True))
    sampled = wrapped.sampled_classes
    assert len(sampled) == 10 and logits.shape == (6, 10)
    np.testing.assert_allclose(logits, full[:, sampled], rtol=1e-5, atol=1e-5 * 64)
    # Stateful heads: the same state as the full head after one step.
    for mine, theirs in zip(head.non_trainable_variables, reference.non_trainable_variables):
        np.testing.assert_allclose(_numpy(mine.value), _numpy(theirs.value), rtol=1e-6)
    assert len(wrapped.losses) == len(reference.losses)


@pytest.mark.parametrize("sub_centers", [1, 2])
def test_unsampled_columns_get_exactly_zero_gradient(sub_centers):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 8)).astype(np.float32)
    head = heads.ArcFace(40, sub_centers=sub_centers)
    kernel = rng.normal(size=(8, 40 * sub_centers)).astype(np.float32)
    wrapped = heads.PartialFC(_built(head, kernel), sample_rate=0.25, seed=6)
    weights = rng.normal(size=(6, 10)).astype(np.float32)
    gradients = head_gradients(wrapped, x, LABELS, weights=weights)
    sampled = wrapped.sampled_classes
    per_class = np.abs(gradients.kernel).reshape(8, 40, sub_centers).sum(axis=(0, 2))
    unsampled = np.setdiff1d(np.arange(40), sampled)
    assert np.all(per_class[unsampled] == 0.0)
    assert np.all(per_class[sampled] > 0.0)
    assert np.all(np.isfinite(gradients.embeddings)) and np.any(gradients.embeddings != 0)


@pytest.mark.parametrize(
    "name, make_head",
    [
        ("arcface", lambda: heads.ArcFace(20, scale=64.0)),
        ("arcface_torch", lambda: heads.ArcFace(20, 64.0, fallback="none", gradient="detached")),
        ("cosface", lambda: heads.CosFace(20, scale=64.0, margin=0.4)),
    ],
)
def test_golden_toy_loss_and_gradients(monkeypatch, name, make_head):
    # The specification's toy, sampled with its draws at r = 0.5 (index TOY_INDEX).
    monkeypatch.setattr(partial_fc, "sampling_keys", lambda seed, step, n: _draw_keys(DRAWS))
    x, kernel = _toy()
    layer = heads.PartialFC(_built(make_head(), kernel), sample_rate=0.5, seed=0)
    logits = _numpy(layer([x, LABELS], training=True))
    assert layer.sampled_classes.tolist() == TOY_INDEX
    targets = _numpy(layer.remap_labels(LABELS))
    assert targets.tolist() == [2, 8, 2, 7, 0, 5]
    golden = GOLDEN_LOSS["cosface" if name == "cosface" else "arcface"]
    np.testing.assert_allclose(_cross_entropy(logits, targets), golden, rtol=1e-5)
    if name != "cosface":
        np.testing.assert_allclose(logits[0], GOLDEN_LOGITS_ROW_0, rtol=1e-5, atol=64e-5)
    full = _numpy(layer.head([x, LABELS], training=True))
    golden_full = GOLDEN_FULL_LOSS["cosface" if name == "cosface" else "arcface"]
    np.testing.assert_allclose(_cross_entropy(full, LABELS), golden_full, rtol=1e-5)
    # Gradients of the mean cross-entropy: sum(R * logits) with R = dCE/dlogits.
    gradients = head_gradients(layer, x, LABELS, weights=_softmax_gradient(logits, targets))
    column_3 = gradients.kernel[:, 3]
    expected = np.array(GOLDEN_KERNEL_COLUMN_3[name])
    np.testing.assert_allclose(column_3, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    if name in GOLDEN_EMBEDDING_ROW_0:
        expected = np.array(GOLDEN_EMBEDDING_ROW_0[name])
        np.testing.assert_allclose(gradients.embeddings[0], expected, rtol=1e-4, atol=1e-5)
    unsampled = np.setdiff1d(np.arange(20), TOY_INDEX)
    assert np.all(gradients.kernel[:, unsampled] == 0.0)


# ------------------------------------------------------------------------------------------
# State, serialization, bad input.
def test_config_and_keras_round_trip(tmp_path):
    layer = heads.PartialFC(heads.SubCenterArcFace(30, sub_centers=2), sample_rate=0.3, seed=9)
    x = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    layer([x, LABELS], training=True)
    config = layer.get_config()
    assert config["sample_rate"] == 0.3 and config["seed"] == 9
    assert config["kernel_layout"] == "rows" and config["head"]["config"]["kernel_layout"] == "rows"
    clone = heads.PartialFC.from_config(config)
    assert clone.head.sub_centers == 2 and clone.num_sample == 9
    assert clone.head.kernel_layout == "rows"
    embeddings = keras.Input((8,))
    labels = keras.Input((), dtype="int32")
    model = keras.Model([embeddings, labels], layer([embeddings, labels]))
    path = str(tmp_path / "partial_fc.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    loaded_layer = loaded.layers[-1]
    assert isinstance(loaded_layer, heads.PartialFC)
    # The checkpoint holds the head's whole kernel, in class order, and the sampler state;
    # the unbuilt head was built with a class per row, (C * K, D).
    np.testing.assert_array_equal(_numpy(loaded_layer.kernel.value), _numpy(layer.kernel.value))
    assert tuple(loaded_layer.kernel.shape) == (60, 8)
    assert loaded_layer.sampled_classes.tolist() == layer.sampled_classes.tolist()
    assert int(_numpy(loaded_layer.step.value)) == 1
    np.testing.assert_array_equal(
        _numpy(loaded([x, LABELS], training=False)), _numpy(model([x, LABELS], training=False))
    )
    # The same draws after a reload: the sampler is a function of (seed, step).
    loaded_layer([x, LABELS], training=True)
    layer([x, LABELS], training=True)
    assert loaded_layer.sampled_classes.tolist() == layer.sampled_classes.tolist()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sample_rate": -0.1}, "sample_rate=-0.1"),
        ({"sample_rate": 1.5}, "sample_rate=1.5"),
        ({"sample_rate": float("nan")}, "sample_rate=nan"),
        ({"sample_rate": True}, "sample_rate=True"),
        ({"sample_rate": "0.1"}, "sample_rate='0.1'"),
        ({"sample_rate": 0.05}, "sample_rate=0.05 with num_classes=10"),
        ({"seed": -1}, "seed=-1"),
        ({"seed": 1.5}, "seed=1.5"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        heads.PartialFC(heads.ArcFace(10), **kwargs)


def test_bad_head_is_rejected():
    with pytest.raises(ValueError, match="Received: head="):
        heads.PartialFC(keras.layers.Dense(3))


@pytest.mark.parametrize("bad", [10, 11, -1])
def test_labels_out_of_range_raise(bad):
    layer = heads.PartialFC(heads.ArcFace(10), sample_rate=0.5, seed=0)
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=f"Received: labels containing {bad}"):
        layer([x, np.array([1, bad, 2], np.int32)], training=True)
