"""The training data of a run: `load_training_data` -> `TrainingData`, and its step count."""

import os

from keras_face import data as face_data
from keras_face.errors import ConfigError
from keras_face.errors import DataError
from keras_face.training.datasets import as_training_pairs
from keras_face.training.datasets import make_training_dataset
from keras_face.training.training_methods import training_method

HELDOUT_NAME = "heldout"
# Identity ids of the synthetic held-out set start here, far from the training ids.
HELDOUT_IDENTITY_OFFSET = 10**6


class TrainingData:
    """What `train` needs from a data source.

    Attributes:
        num_classes: int. Number of training identities.
        num_images: int. Training images.
        make_dataset: callable `(first_epoch) -> tf.data.Dataset` of global batches
            `((images, labels), labels)`.
        verification: dict `{name: (images, issame)}` evaluated every epoch and at the end.
        description: str. One line for the summary.
        stats: `keras_face.data.DataStats` or `None`: the reader's counts of decoded and
            skipped (undecodable) images, reported at the end. Defaults to `None`.

    Example:
        ```python
        data = keras_face.training.load_training_data(keras_face.training.load_config(), 64)
        dataset = data.make_dataset(0)
        ```
    """

    def __init__(
        self, num_classes, num_images, make_dataset, verification, description, stats=None
    ):
        self.num_classes = num_classes
        self.num_images = num_images
        self.make_dataset = make_dataset
        self.verification = verification
        self.description = description
        self.stats = stats


def load_training_data(config, global_batch, progress=True):
    """The training data and verification sets of a configuration.

    Synthetic data renders the training and held-out identities and draws the held-out
    pairs; `.rec` and folder data are read with the reader of `data.source`, images of
    another size resized to `data.image_size`. The `.bin`
    files of `data.verification` are added to the verification sets. A
    `training.method` that reads more than `(image, label)` batches adapts the result
    (`TrainingMethod.adapt_data`).

    Args:
        config: dict. A validated configuration.
        global_batch: int. Examples per optimizer step over all replicas.
        progress: bool. Messages and progress bars. Defaults to `True`.

    Returns:
        A `TrainingData`.

    Raises:
        FileNotFoundError: a data or verification file is missing.
        DataError: the training data has fewer than 2 identities.
        ConfigError: `data.num_classes` does not match the data.

    Example:
        ```python
        data = keras_face.training.load_training_data(keras_face.training.load_config(), 64)
        print(data.num_classes, data.num_images)
        ```
    """
    data = config["data"]
    if data["source"] == "synthetic":
        training_data = _synthetic_data(config, global_batch, progress)
    else:
        training_data = _file_data(config, global_batch)
    for path in data["verification"]:
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"Verification file not found. Received: data.verification={path!r}"
            )
        name = os.path.splitext(os.path.basename(path))[0]
        training_data.verification[name] = face_data.read_bin(
            path, progress=progress, jpeg_dct_method=data["jpeg_dct_method"]
        )
    if training_data.num_classes < 2:
        raise DataError(
            f"The training data has {training_data.num_classes} identity; a face-recognition "
            "model is trained as a classifier over at least 2 identities (with one, the "
            "loss is 0 from the first step and nothing is learned). Received: "
            f"data.path={data['path'] or 'the synthetic set'!r}"
        )
    expected = data["num_classes"]
    if expected is not None and expected != training_data.num_classes:
        raise ConfigError(
            f"data.num_classes={expected} does not match the training data, which has "
            f"{training_data.num_classes} identities (labels 0..{training_data.num_classes - 1}"
            f" in {data['path'] or 'the synthetic set'}). Fix data.num_classes or the data. "
            f"Received: data.num_classes={expected}"
        )
    method = training_method(config["training"]["method"])
    return method.adapt_data(config, training_data, global_batch)


def _synthetic_data(config, global_batch, progress):
    data = config["data"]
    seed = config["seed"]
    epochs = config["training"]["epochs"]
    if progress:
        print(
            f"Rendering {data['identities']} x {data['images_per_identity']} training and "
            f"{data['heldout_identities']} x {data['heldout_images_per_identity']} held-out "
            f"synthetic faces ({data['image_size']} px)..."
        )
    train_faces = face_data.synthetic_faces(
        data["identities"],
        data["images_per_identity"],
        seed=seed,
        image_size=data["image_size"],
        quality=data["quality"],
        verbose=progress,
    )
    heldout = face_data.synthetic_faces(
        data["heldout_identities"],
        data["heldout_images_per_identity"],
        seed=seed + 1,
        image_size=data["image_size"],
        quality=data["quality"],
        identity_offset=HELDOUT_IDENTITY_OFFSET,
        verbose=progress,
    )
    pairs = face_data.synthetic_pairs(
        heldout,
        num_pairs=data["heldout_pairs"],
        seed=seed + 2,
        n_folds=config["evaluation"]["n_folds"],
    )

    def make_dataset(first_epoch):
        return make_training_dataset(
            train_faces.images,
            train_faces.labels,
            global_batch,
            epochs,
            seed=seed,
            first_epoch=first_epoch,
            random_flip=data["random_flip"],
        )

    return TrainingData(
        num_classes=int(train_faces.labels.max()) + 1,
        num_images=len(train_faces),
        make_dataset=make_dataset,
        verification={HELDOUT_NAME: pairs},
        description=(
            f"{data['heldout_pairs']} pairs of {data['heldout_identities']} held-out "
            "synthetic identities"
        ),
    )


def _file_data(config, global_batch):
    data = config["data"]
    path = data["path"]
    if not os.path.exists(path):
        raise FileNotFoundError(f"Training data not found. Received: data.path={path!r}")
    # Reshuffled every pass from (seed, pass); after a resume the passes restart at 0,
    # so the weights, optimizer and head state resume exactly but the order is new.
    faces = face_data.read_face_dataset(
        path,
        source=data["source"],
        batch_size=global_batch,
        shuffle=True,
        seed=config["seed"],
        repeat=True,
        flip=data["random_flip"],
        drop_remainder=True,
        # Images of another size are resized to the backbone's input (not a batching
        # error naming no file).
        image_size=data["image_size"],
        jpeg_dct_method=data["jpeg_dct_method"],
    )
    num_classes = int(faces.num_classes)
    num_images = int(faces.num_images)
    return TrainingData(
        num_classes=num_classes,
        num_images=num_images,
        make_dataset=lambda first_epoch: as_training_pairs(faces),
        verification={},
        description=f"{num_images} images of {num_classes} identities in {path}",
        stats=faces.stats,
    )


def count_steps_per_epoch(config, training_data, global_batch):
    """Optimizer steps per epoch: `training.steps_per_epoch`, or images // global batch.

    Args:
        config: dict. A validated configuration.
        training_data: `TrainingData`.
        global_batch: int. Examples per optimizer step over all replicas.

    Returns:
        int.

    Raises:
        ConfigError: synthetic data with a `steps_per_epoch` other than one pass, or
            fewer images than one global batch.

    Example:
        ```python
        steps = keras_face.training.count_steps_per_epoch(config, data, 64)
        ```
    """
    natural_steps = training_data.num_images // global_batch
    steps_per_epoch = config["training"]["steps_per_epoch"] or natural_steps
    if config["data"]["source"] == "synthetic" and steps_per_epoch != natural_steps:
        # The in-memory epochs are exactly one pass (what makes resuming exact).
        raise ConfigError(
            "training.steps_per_epoch only applies to .rec and folder data; an epoch of the "
            f"synthetic set is one pass of {training_data.num_images} // {global_batch} = "
            f"{natural_steps} steps. Received: training.steps_per_epoch={steps_per_epoch}"
        )
    if steps_per_epoch < 1:
        raise ConfigError(
            f"The training set has {training_data.num_images} images, fewer than one global "
            f"batch. Received: training.batch_size={global_batch}"
        )
    return steps_per_epoch
