import json
import os
import signal

import keras
import numpy as np
import pytest

from keras_face import heads
from keras_face import training
from tests.training import training_testing

pytestmark = pytest.mark.tf_only


def _load(path):
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _kill_and_resume(tmp_path, head_name, kill_at_step):
    reference_path = tmp_path / "reference.npz"
    training_testing.run_script(
        "resume_script.py", tmp_path / "reference", reference_path, head_name
    )
    run_dir = tmp_path / "interrupted"
    killed = training_testing.run_script(
        "resume_script.py", run_dir, tmp_path / "never.npz", head_name, kill_at_step, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "never.npz").exists()
    resumed_path = tmp_path / "resumed.npz"
    training_testing.run_script("resume_script.py", run_dir, resumed_path, head_name)
    return _load(reference_path), _load(resumed_path)


@pytest.mark.parametrize(
    "head_name, kill_at_step",
    [
        ("curricularface", 7),  # mid-epoch 2 (steps 5..8), last backup at step 6
        pytest.param("adaface", 5, marks=pytest.mark.slow),  # first step of an epoch
        pytest.param("sphereface", 11, marks=pytest.mark.slow),
    ],
)
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, head_name, kill_at_step):
    reference, resumed = _kill_and_resume(tmp_path, head_name, kill_at_step)
    restored = json.loads(str(resumed["restored"]))
    backup_step = kill_at_step // 2 * 2  # save_freq=2
    assert restored["global_step"] == backup_step
    assert restored["epoch"] == backup_step // 4 and restored["step_in_epoch"] == backup_step % 4
    # The resumed process trained only the remaining steps...
    assert int(resumed["trained_steps"]) == 12 - backup_step
    assert int(reference["trained_steps"]) == 12
    # ...and reached exactly the uninterrupted state: optimizer step, weights, head state.
    assert int(resumed["iterations"]) == int(reference["iterations"]) == 12
    state_keys = [key for key in reference if key.startswith(head_name.replace("face", "_face"))]
    assert state_keys, sorted(reference)
    for key in reference:
        if key.startswith("w") or key in state_keys:
            np.testing.assert_allclose(
                resumed[key], reference[key], rtol=1e-6, atol=1e-7, err_msg=key
            )


@pytest.fixture
def small_model():
    keras.utils.set_random_seed(0)
    model = training.build_training_model(
        training_testing.tiny_backbone(), heads.CurricularFace(4, scale=16.0)
    )
    model.compile(optimizer=training.L2SGD(0.05, momentum=0.9))
    return model


def test_backup_files_and_finished_state(tmp_path, small_model):
    images, labels = training_testing.identity_images(4, 4)
    backup = training.BackupAndRestore(
        tmp_path / "backup", save_freq=3, keep=2, delete_on_finish=False
    )
    dataset = training.make_training_dataset(images, labels, 4, epochs=2)
    small_model.fit(dataset, epochs=2, steps_per_epoch=4, callbacks=[backup], verbose=0)
    files = sorted(os.listdir(tmp_path / "backup"))
    # Saved at steps 3, 4 (epoch end), 7 and 8 (epoch end); the last two are kept.
    assert files == ["ckpt-0000000007.weights.h5", "ckpt-0000000008.weights.h5", "latest.json"]
    state = training.read_backup_state(tmp_path / "backup")
    assert state == {
        "epoch": 2,
        "step_in_epoch": 0,
        "global_step": 8,
        "checkpoint": "ckpt-0000000008.weights.h5",
        "finished": True,
    }
    # Running the same fit again restores the finished state and trains no further.
    before = [np.asarray(w).copy() for w in small_model.weights]
    history = small_model.fit(dataset, epochs=2, steps_per_epoch=4, callbacks=[backup], verbose=0)
    assert history.history == {}
    for old, new in zip(before, small_model.weights):
        np.testing.assert_array_equal(old, np.asarray(new))
    assert small_model._initial_epoch is None  # later fits start from epoch 0 again


def test_backup_deleted_on_finish(tmp_path, small_model):
    images, labels = training_testing.identity_images(4, 4)
    backup = training.BackupAndRestore(tmp_path / "backup", save_freq=2)
    small_model.fit(
        training.make_training_dataset(images, labels, 4, epochs=1),
        epochs=1,
        steps_per_epoch=4,
        callbacks=[backup],
        verbose=0,
    )
    assert os.listdir(tmp_path / "backup") == []
    assert backup.read_state() is None


def test_backup_arguments():
    with pytest.raises(ValueError, match="save_freq"):
        training.BackupAndRestore("x", save_freq=0)
    with pytest.raises(ValueError, match="backup_dir"):
        training.BackupAndRestore("")
    with pytest.raises(ValueError, match="keep"):
        training.BackupAndRestore("x", keep=0)
