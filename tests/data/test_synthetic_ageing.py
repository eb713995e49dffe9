"""Synthetic ages and forced occluders: new streams that leave the default images unchanged."""

import numpy as np
import pytest

from keras_face.data.synthetic import sample_ageing_traits
from keras_face.data.synthetic import sample_ages
from keras_face.data.synthetic import synthetic_faces
from keras_face.data.synthetic import synthetic_pairs


@pytest.fixture(scope="module")
def aged():
    return synthetic_faces(4, 6, seed=2, image_size=64, ages="uniform", jpeg=False)


def test_sample_ages_is_per_seed_identity_and_image():
    five = sample_ages([3, 8], 5, seed=1)
    three = sample_ages([3, 8], 3, seed=1)
    np.testing.assert_array_equal(five.reshape(2, 5)[:, :3], three.reshape(2, 3))
    assert five.min() >= 2 and five.max() <= 80
    assert not np.array_equal(five, sample_ages([3, 8], 5, seed=2))
    confounded = sample_ages(np.arange(40), 20, seed=0, ages=("per_identity", 4)).reshape(40, 20)
    centres = sample_ageing_traits(np.arange(40), seed=0)["age_centre"]
    # Ages cluster around each identity's centre: identity explains most of the variance.
    assert np.corrcoef(confounded.mean(1), centres)[0, 1] > 0.98
    assert confounded.std(1).mean() < 5
    np.testing.assert_array_equal(sample_ages([0], 3, ages=30.0), [30.0, 30.0, 30.0])
    with pytest.raises(ValueError, match=r"ages\[1\]=130"):
        sample_ages([0], 2, ages=[20.0, 130.0])
    with pytest.raises(ValueError, match="ages='old'"):
        sample_ages([0], 2, ages="old")


def test_default_images_do_not_change_with_ageing_off(aged):
    plain = synthetic_faces(4, 6, seed=2, image_size=64, jpeg=False)
    assert plain.ages is None
    # Ageing changes only what age drives: the faces differ, the rest is the same draw.
    assert not np.array_equal(plain.images, aged.images)
    np.testing.assert_array_equal(plain.labels, aged.labels)
    np.testing.assert_array_equal(plain.quality, aged.quality)


def test_an_age_that_drives_nothing_renders_the_unaged_face(aged):
    plain = synthetic_faces(4, 6, seed=2, image_size=64, jpeg=False)
    onset = aged.ageing_traits["age_grey_onset"]
    assert onset.min() >= 30
    # At 25 no effect applies (child < 18, wrinkles > 35, greying > onset >= 30,
    # recession > 30): the pixels are those of the unaged face, bit for bit.
    np.testing.assert_array_equal(aged.with_age(25.0).images, plain.images)


def test_the_age_ladder_ages_the_same_face(aged):
    ladder = aged.with_age([5.0, 25.0, 45.0, 65.0, 85.0], indices=[0] * 5)
    np.testing.assert_array_equal(ladder.labels, 0)
    np.testing.assert_array_equal(ladder.ages, [5, 25, 45, 65, 85])
    differences = [
        np.abs(ladder.images[i].astype(int) - ladder.images[1].astype(int)).mean() for i in range(5)
    ]
    assert differences[1] == 0
    # The further from 25, the more the face changes (childhood on one side, age on the other).
    assert differences[0] > 1.0 and differences[4] > differences[3] > differences[2] > 0.2
    with pytest.raises(ValueError, match=r"ages\[0\]=-3"):
        aged.with_age(-3.0, indices=[0])


def test_cross_age_pairs_have_the_gap(aged):
    images, issame = synthetic_pairs(aged, num_pairs=20, seed=0, n_folds=2, min_age_gap=30)
    assert len(images) == 40 and issame.sum() == 10
    # Find each genuine image's age by matching pixels.
    flat = aged.images.reshape(len(aged), -1)
    for pair in np.flatnonzero(issame):
        a, b = (
            int(np.flatnonzero((flat == images[2 * pair + k].reshape(-1)).all(1))[0])
            for k in (0, 1)
        )
        assert aged.labels[a] == aged.labels[b]
        assert abs(aged.ages[a] - aged.ages[b]) >= 30
    plain = synthetic_faces(2, 2, seed=0, image_size=32)
    with pytest.raises(ValueError, match="min_age_gap=30"):
        synthetic_pairs(plain, 4, min_age_gap=30)


def test_forced_occluders_and_their_masks():
    faces = synthetic_faces(
        3, 4, seed=1, image_size=32, quality=None, jpeg=False, occlusion_probability=0.0
    )
    assert faces.image_parameters["occlusion"].max() == 0
    assert faces.occlusion_masks.max() == 0
    for kind in (1, 2, 3):
        occluded = faces.with_occlusion(kind, indices=[0, 5])
        masks = occluded.occlusion_masks
        assert masks.shape == (2, 32, 32) and masks.min() >= 0 and masks.max() == 1
        assert 0.02 < masks.mean() < 0.6
        changed = np.abs(occluded.images.astype(int) - faces.images[[0, 5]].astype(int)).sum(-1)
        # Pristine images (no blur): pixels change where the occluder is, and only there.
        assert (changed[masks == 0] == 0).all()
        assert (changed[masks == 1] > 0).mean() > 0.9
    none = faces.with_occlusion(0, indices=[2])
    np.testing.assert_array_equal(none.images, faces.images[[2]])
    bar = faces.with_occlusion(2, indices=[1, 1], occlusion_angle=[0.0, 1.5])
    assert not np.array_equal(bar.occlusion_masks[0], bar.occlusion_masks[1])
    with pytest.raises(ValueError, match="kind="):
        faces.with_occlusion(4)
    with pytest.raises(ValueError, match="occlusion_colour"):
        faces.with_occlusion(1, occlusion_colour=0)
    with pytest.raises(ValueError, match="occlusion_probability=1.5"):
        synthetic_faces(1, 1, occlusion_probability=1.5)
    default = synthetic_faces(30, 4, seed=1, image_size=16, jpeg=False)
    more = synthetic_faces(30, 4, seed=1, image_size=16, jpeg=False, occlusion_probability=0.5)
    # The same uniform decides: raising the probability only adds occluders.
    assert (more.image_parameters["occlusion"][default.image_parameters["occlusion"] > 0] > 0).all()
    assert (more.image_parameters["occlusion"] > 0).sum() > (
        default.image_parameters["occlusion"] > 0
    ).sum()
