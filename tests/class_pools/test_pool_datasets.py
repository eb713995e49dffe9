"""The pools' `tf.data` pipelines: identity pairs + instances (F2C), query/key pairs (DCQ)."""

import numpy as np
import pytest

from keras_face import class_pools

pytestmark = pytest.mark.tf_only


def feature_data(num_ids=6, per_id=(1, 2, 3, 4, 2, 3)):
    labels = np.repeat(np.arange(num_ids) * 10, per_id).astype(np.int32)
    images = np.arange(labels.size, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    return images, labels


def batches(dataset):
    return [
        ({key: value.numpy() for key, value in inputs.items()}, target.numpy())
        for inputs, target in dataset
    ]


def test_dual_loader_layout_pairs_and_epochs():
    images, labels = feature_data()
    dataset = class_pools.make_dual_loader_dataset(images, labels, batch_size=4, epochs=2, seed=3)
    steps = batches(dataset)
    assert len(steps) == 2 * (labels.size // 4)
    seen_ids = []
    for epoch in range(2):
        instance = np.concatenate(
            [inputs["instance_images"][:, 0] for inputs, _ in steps[epoch * 3 : epoch * 3 + 3]]
        ).astype(int)
        assert len(set(instance)) == 12  # every image at most once per epoch
    for inputs, target in steps:
        assert inputs["id_images"].shape == (4, 2, 3)
        np.testing.assert_array_equal(target, inputs["instance_labels"])
        first, second = inputs["id_images"][:, 0, 0].astype(int), inputs["id_images"][:, 1, 0]
        second = second.astype(int)
        np.testing.assert_array_equal(labels[first], inputs["id_labels"])
        np.testing.assert_array_equal(labels[second], inputs["id_labels"])
        several = np.bincount(labels)[inputs["id_labels"]] > 1
        assert (first != second)[several].all()  # two distinct images when there are two
        assert (first == second)[~several].all()  # the one image twice otherwise
        np.testing.assert_array_equal(
            labels[inputs["instance_images"][:, 0].astype(int)], inputs["instance_labels"]
        )
        seen_ids.extend(inputs["id_labels"])
    # The identity stream visits every identity once per identity-epoch (6 ids, 4 a step).
    assert sorted(seen_ids[:6]) == sorted(set(labels)) == sorted(seen_ids[6:12])
    assert seen_ids[:6] != seen_ids[6:12]  # reshuffled


def test_dual_loader_resumes_exactly_and_can_keep_the_authors_order():
    images, labels = feature_data()
    full = batches(class_pools.make_dual_loader_dataset(images, labels, 4, 3, seed=1))
    resumed = batches(
        class_pools.make_dual_loader_dataset(images, labels, 4, 3, seed=1, first_epoch=2)
    )
    for (a, _), (b, _) in zip(full[6:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    fixed = batches(class_pools.make_dual_loader_dataset(images, labels, 4, 3, reshuffle_ids=False))
    ids = np.concatenate([inputs["id_labels"] for inputs, _ in fixed])
    np.testing.assert_array_equal(ids[:6], ids[6:12])


def test_dual_loader_flips_images_independently():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(16, 4, 4, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(8), 2)
    inputs, _ = batches(class_pools.make_dual_loader_dataset(images, labels, 8, 1, seed=2))[0]
    flipped = 0
    for pair in inputs["id_images"]:
        for image in pair:
            index = [
                i
                for i in range(16)
                if np.array_equal(images[i], image) or np.array_equal(images[i][:, ::-1], image)
            ]
            assert len(index) == 1
            flipped += not np.array_equal(images[index[0]], image)
    assert 0 < flipped < 16


def test_pair_dataset_keys_share_the_identity():
    images, labels = feature_data()
    steps = batches(class_pools.make_pair_dataset(images, labels, batch_size=4, epochs=1, seed=0))
    assert len(steps) == 3
    queries = []
    for inputs, target in steps:
        query = inputs["query_images"][:, 0].astype(int)
        key = inputs["key_images"][:, 0].astype(int)
        np.testing.assert_array_equal(labels[query], inputs["labels"])
        np.testing.assert_array_equal(labels[key], inputs["labels"])
        np.testing.assert_array_equal(target, inputs["labels"])
        queries.extend(query)
    assert len(set(queries)) == 12


def test_bad_inputs_name_the_values():
    images, labels = feature_data()
    with pytest.raises(ValueError, match=r"batch_size=7"):
        class_pools.make_dual_loader_dataset(images, labels, 7, 1)  # 6 identities
    with pytest.raises(ValueError, match=r"batch_size=32"):
        class_pools.make_pair_dataset(images, labels, 32, 1)
    with pytest.raises(ValueError, match=r"labels.shape=\(3,\)"):
        class_pools.make_pair_dataset(images, labels[:3], 2, 1)
    with pytest.raises(ValueError, match=r"labels.min\(\)=-1"):
        class_pools.make_pair_dataset(images, labels - 1, 2, 1)
