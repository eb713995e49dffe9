"""`training.method: age_invariant`: MTLFace's training from a config, on aged synthetic faces."""

from keras_face import data as face_data
from keras_face.age_invariant.age_invariant_training_model import AgeInvariantTrainingModel
from keras_face.errors import ConfigError
from keras_face.training.datasets import make_training_dataset
from keras_face.training.training_data import HELDOUT_IDENTITY_OFFSET
from keras_face.training.training_data import HELDOUT_NAME
from keras_face.training.training_data import TrainingData

CROSS_AGE_NAME = "heldout_cross_age"


def build_age_invariant_model(config, backbone, head):
    """An `AgeInvariantTrainingModel` from the `age.*` options of a config.

    Args:
        config: dict. A validated configuration.
        backbone: `keras.Model` from images to embeddings (a `keras_face.models` backbone).
        head: the margin head (MTLFace: CosFace).

    Returns:
        An uncompiled `AgeInvariantTrainingModel`.

    Example:
        ```python
        config = keras_face.training.load_config(None, ["training.method=age_invariant"])
        model = keras_face.age_invariant.build_age_invariant_model(config, backbone, head)
        ```
    """
    options = config["age"]
    return AgeInvariantTrainingModel(
        backbone,
        head,
        num_groups=options["num_groups"],
        age_weight=options["age_weight"],
        da_weight=options["da_weight"],
        grl_scale=options["grl_scale"],
        reduction=options["reduction"],
        age_hidden=options["hidden"],
    )


def adapt_age_data(config, training_data, global_batch):
    """Aged synthetic faces: `((images, labels, ages), labels)` and cross-age pairs.

    The training identities are rendered with ages (uniform, or around each identity's
    own age with `age.confound_spread`: the shortcut the adversary must remove), the
    held-out identities with uniform ages; the held-out set gives the usual pairs and
    cross-age pairs whose genuine images are `age.min_age_gap` years apart or more.

    Args:
        config: dict. A validated configuration.
        training_data: the `TrainingData` of the config (replaced).
        global_batch: int.

    Returns:
        `TrainingData`.

    Raises:
        ConfigError: a data source without ages (only the synthetic set has them).

    Example:
        ```python
        data = keras_face.age_invariant.adapt_age_data(config, data, 64)
        ```
    """
    data = config["data"]
    if data["source"] != "synthetic":
        raise ConfigError(
            "training.method=age_invariant needs the age of every training image; the "
            "synthetic set has them (.rec and folder data carry no ages). "
            f"Received: data.source={data['source']!r}"
        )
    options = config["age"]
    seed = config["seed"]
    spread = options["confound_spread"]
    train = face_data.synthetic_faces(
        data["identities"],
        data["images_per_identity"],
        seed=seed,
        image_size=data["image_size"],
        quality=data["quality"],
        ages="uniform" if spread is None else ("per_identity", spread),
        age_strength=options["strength"],
    )
    heldout = face_data.synthetic_faces(
        data["heldout_identities"],
        data["heldout_images_per_identity"],
        seed=seed + 1,
        image_size=data["image_size"],
        quality=data["quality"],
        identity_offset=HELDOUT_IDENTITY_OFFSET,
        ages="uniform",
        age_strength=options["strength"],
    )
    n_folds = config["evaluation"]["n_folds"]
    verification = dict(training_data.verification)
    verification[HELDOUT_NAME] = face_data.synthetic_pairs(
        heldout, num_pairs=data["heldout_pairs"], seed=seed + 2, n_folds=n_folds
    )
    verification[CROSS_AGE_NAME] = face_data.synthetic_pairs(
        heldout,
        num_pairs=data["heldout_pairs"],
        seed=seed + 3,
        n_folds=n_folds,
        min_age_gap=options["min_age_gap"],
    )

    def make_dataset(first_epoch):
        return make_training_dataset(
            train.images,
            train.labels,
            global_batch,
            config["training"]["epochs"],
            seed=seed,
            first_epoch=first_epoch,
            random_flip=data["random_flip"],
            extras=(train.ages,),
        )

    return TrainingData(
        num_classes=int(train.labels.max()) + 1,
        num_images=len(train),
        make_dataset=make_dataset,
        verification=verification,
        description=(
            f"{data['heldout_pairs']} pairs (and as many cross-age pairs, gap >= "
            f"{options['min_age_gap']:g} years) of {data['heldout_identities']} held-out "
            "aged synthetic identities"
        ),
    )
