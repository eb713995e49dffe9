import keras
import numpy as np
import pytest

from keras_face import heads
from keras_face import training
from tests.training import training_testing

pytestmark = pytest.mark.tf_only


def _nan_data():
    images, labels = training_testing.identity_images(4, 6)
    images = images.astype("float32")
    images[8:16] = np.nan  # the second batch of 8
    return images, labels


def test_stop_on_nan_says_where_and_what_to_try(tmp_path):
    images, labels = _nan_data()
    keras.utils.set_random_seed(0)
    model = training.build_training_model(training_testing.tiny_backbone(), heads.ArcFace(4))
    model.compile(optimizer=training.L2SGD(0.01))
    backup = training.BackupAndRestore(tmp_path / "backup", save_freq=1, delete_on_finish=False)
    with pytest.raises(training.TrainingDivergedError) as error:
        model.fit(
            [images, labels],
            labels,
            batch_size=8,
            epochs=3,
            shuffle=False,
            verbose=0,
            callbacks=[backup, training.StopOnNaN(hint="The last backup is fine.")],
        )
    message = str(error.value)
    assert "the loss became nan at epoch 1/3, step 2/3 (optimizer step 2)" in message
    assert "learning rate 0.01" in message and "dtype policy float32" in message
    for advice in (
        "lower the learning rate",
        "global_clipnorm",
        "check the data",
        "mixed_bfloat16",
    ):
        assert advice in message
    assert message.endswith("The last backup is fine.")
    assert int(model.optimizer.iterations) == 2  # stopped right there
    # The diverged step was never backed up.
    assert training.read_backup_state(tmp_path / "backup")["global_step"] == 1


def test_stop_on_nan_without_raising(capsys):
    images, labels = _nan_data()
    model = training.build_training_model(training_testing.tiny_backbone(), heads.ArcFace(4))
    model.compile(optimizer=training.L2SGD(0.01))
    callback = training.StopOnNaN(raise_error=False)
    model.fit(
        [images, labels],
        labels,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[callback],
    )
    assert callback.where["epoch"] == 1 and callback.where["step"] == 2
    assert "Training diverged" in capsys.readouterr().out


def test_finite_training_is_untouched():
    images, labels = training_testing.identity_images(4, 4)
    model = training.build_training_model(training_testing.tiny_backbone(), heads.ArcFace(4))
    model.compile(optimizer=training.L2SGD(0.01))
    callback = training.StopOnNaN()
    history = model.fit(
        [images, labels], labels, batch_size=8, epochs=2, verbose=0, callbacks=[callback]
    )
    assert len(history.history["loss"]) == 2 and callback.message is None
