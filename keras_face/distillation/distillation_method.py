"""`training.method: distillation`: the model builder, the data adapter and the generations.

`keras_face.training.train` (and `keras-face train`) select these through the
`"distillation"` entry of `keras_face.training.TRAINING_METHODS` and the `distillation.*`
options of the configuration:

- `distillation.teacher`: a `.keras` embedding model (online teacher, any data source) or
  an `.npz` of precomputed teacher embeddings (`TeacherEmbeddings.save`; offline, for the
  in-memory synthetic data, one row per training image in the order of
  `keras_face.data.synthetic_faces`);
- `distillation.loss`, `distillation.weight`, `distillation.projection`;
- `distillation.generations` and `distillation.recursive_teacher`, run by
  `train_generations` (one run folder per generation).
"""

import contextvars
import os

import keras

from keras_face import data as face_data
from keras_face.distillation.distillation_dataset import make_distillation_dataset
from keras_face.distillation.distillation_training_model import DistillationTrainingModel
from keras_face.distillation.recursive_distillation import frozen_copy
from keras_face.distillation.teacher_embeddings import load_teacher_embeddings
from keras_face.errors import ConfigError
from keras_face.training import TrainingData
from keras_face.training import load_config
from keras_face.training import train

# Set by `train_generations` around each generation's `train`: the generation number,
# the training model it starts from, whether that model's student is the teacher, and
# the training model that `build_distillation_model` built (read back after `train`).
# The contextvar carries them through `train`, whose signature is the same for every
# training method.
_GENERATION = contextvars.ContextVar("keras_face_distillation_generation", default=None)


class _Generation:
    def __init__(self, number, initial_model=None, previous_student_teaches=False):
        self.number = number
        self.initial_model = initial_model
        self.previous_student_teaches = previous_student_teaches and initial_model is not None
        self.model = None


def _teacher_kind(path):
    if path is None:
        raise ConfigError(
            "training.method=distillation needs a teacher: a .keras embedding model or an "
            ".npz of teacher embeddings. Received: distillation.teacher=None"
        )
    if path.endswith(".keras"):
        kind = "model"
    elif path.endswith(".npz"):
        kind = "embeddings"
    else:
        raise ConfigError(
            "distillation.teacher must be a .keras model or an .npz of teacher embeddings. "
            f"Received: distillation.teacher={path!r}"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"Teacher not found. Received: distillation.teacher={path!r}")
    return kind


def build_distillation_model(config, backbone, head):
    """The `DistillationTrainingModel` of a configuration (`training.method=distillation`).

    Args:
        config: dict. A validated configuration with a `distillation` section.
        backbone: the student `keras.Model`.
        head: the margin head.

    Returns:
        An uncompiled `DistillationTrainingModel`; its `embedding_model` is the student.

    Raises:
        ConfigError: no teacher, a teacher that does not fit the student (the message
            names both shapes), or `distillation.generations > 1` outside
            `train_generations`.

    Example:
        ```python
        model = keras_face.distillation.build_distillation_model(config, backbone, head)
        ```
    """
    settings = config["distillation"]
    generation = _GENERATION.get()
    if generation is None and settings["generations"] > 1:
        raise ConfigError(
            "Several generations are trained by keras_face.distillation.train_generations "
            "(one run per generation); keras_face.training.train trains one. Received: "
            f"distillation.generations={settings['generations']}"
        )
    teacher, teacher_dim = None, None
    if generation is not None and generation.previous_student_teaches:
        # Built here, inside the run's strategy scope, like every variable of the run.
        teacher = frozen_copy(
            generation.initial_model.embedding_model,
            name=f"generation_{generation.number - 1}_student",
        )
    else:
        path = settings["teacher"]
        if _teacher_kind(path) == "model":
            teacher = keras.saving.load_model(path, compile=False)
        else:
            teacher_dim = load_teacher_embeddings(path).dim
    try:
        model = DistillationTrainingModel(
            backbone,
            head,
            teacher=teacher,
            teacher_dim=teacher_dim,
            loss=settings["loss"],
            weight=settings["weight"],
            projection=settings["projection"],
        )
    except ValueError as error:
        raise ConfigError(
            f"{error}. Received: distillation.teacher={settings['teacher']!r}"
        ) from error
    if generation is not None:
        if generation.initial_model is not None:
            for part in ("backbone", "head"):
                getattr(model, part).set_weights(
                    getattr(generation.initial_model, part).get_weights()
                )
        generation.model = model
    return model


def adapt_distillation_data(config, training_data, global_batch):
    """The training batches of a distillation run.

    An online teacher (`.keras`) reads the images of the classification batches:
    `training_data` is returned as it is. Offline teacher embeddings (`.npz`) are paired
    with the synthetic training images (`make_distillation_dataset`: same batches, the
    flipped-image embedding for a flipped image); the images are rendered again from the
    same arguments as `keras_face.training.load_training_data` (deterministic).

    Args:
        config: dict. A validated configuration.
        training_data: the `TrainingData` of classification.
        global_batch: int. Examples per optimizer step.

    Returns:
        `TrainingData`.

    Raises:
        ConfigError: offline embeddings with `.rec` or folder data, or embeddings whose
            rows do not match the training images or that are not finite.

    Example:
        ```python
        data = keras_face.distillation.adapt_distillation_data(config, data, 64)
        ```
    """
    settings = config["distillation"]
    generation = _GENERATION.get()
    if generation is not None and generation.previous_student_teaches:
        return training_data
    path = settings["teacher"]
    if _teacher_kind(path) == "model":
        return training_data
    data = config["data"]
    if data["source"] != "synthetic":
        raise ConfigError(
            "Offline teacher embeddings pair rows with in-memory (synthetic) training images; "
            "for .rec or folder data give an online teacher (.keras). Received: "
            f"data.source={data['source']!r}, distillation.teacher={path!r}"
        )
    faces = face_data.synthetic_faces(
        data["identities"],
        data["images_per_identity"],
        seed=config["seed"],
        image_size=data["image_size"],
        quality=data["quality"],
    )
    try:
        teacher_embeddings = load_teacher_embeddings(path, num_images=len(faces))
    except ValueError as error:
        raise ConfigError(f"{error}. Received: distillation.teacher={path!r}") from error
    epochs = config["training"]["epochs"]

    def make_dataset(first_epoch):
        return make_distillation_dataset(
            faces.images,
            faces.labels,
            teacher_embeddings,
            global_batch,
            epochs,
            seed=config["seed"],
            first_epoch=first_epoch,
            random_flip=data["random_flip"],
        )

    return TrainingData(
        num_classes=training_data.num_classes,
        num_images=training_data.num_images,
        make_dataset=make_dataset,
        verification=training_data.verification,
        description=training_data.description,
        stats=training_data.stats,
    )


def train_generations(config=None, output_dir=None, overrides=(), backbone=None, progress=True):
    """Train `distillation.generations` generations, each in its own run folder.

    Generation 1 is `keras_face.training.train` with `training.method=distillation`;
    generation k + 1 is another run whose student (backbone and head) starts from the
    weights generation k ended with, with a new optimizer and schedule, and the same
    teacher (`distillation.recursive_teacher: fixed`, the paper's recursion) or a frozen
    copy of generation k's student (`previous_student`). See
    `keras_face.distillation.recursive_distillation` for the same in Python.

    Args:
        config: `None`, a dict or a YAML path (see `keras_face.training.load_config`).
            Defaults to `None`.
        output_dir: str. Parent folder; generation k is written to
            `output_dir/generation_k`. Defaults to `runs/<name>-generations`.
        overrides: iterable of `"key=value"` overrides. Defaults to `()`.
        backbone: callable `() -> keras.Model` building a new student backbone for each
            generation instead of `config["backbone"]` (see `keras_face.training.train`).
            Defaults to `None`.
        progress: bool. Progress bars and messages. Defaults to `True`.

    Returns:
        list of dict: the `results.json` content of each generation.

    Example:
        ```python
        results = keras_face.distillation.train_generations(overrides=[
            "training.method=distillation", "distillation.teacher=teacher.keras",
            "distillation.generations=2"])
        ```
    """
    config = load_config(config, overrides)
    settings = config["distillation"]
    if config["training"]["method"] != "distillation":
        raise ConfigError(
            "train_generations trains distillation runs. Received: "
            f"training.method={config['training']['method']!r}"
        )
    output_dir = os.fspath(output_dir or os.path.join("runs", f"{config['name']}-generations"))
    results, previous = [], None
    for number in range(1, settings["generations"] + 1):
        previous_teaches = settings["recursive_teacher"] == "previous_student"
        generation = _Generation(number, previous, previous_student_teaches=previous_teaches)
        token = _GENERATION.set(generation)
        try:
            if progress:
                print(f"Distillation generation {number} of {settings['generations']}")
            result = train(
                config,
                os.path.join(output_dir, f"generation_{number}"),
                backbone=backbone() if backbone is not None else None,
                progress=progress,
            )
        finally:
            _GENERATION.reset(token)
        result["generation"] = number
        result["teacher"] = (
            f"generation_{number - 1}_student"
            if generation.previous_student_teaches
            else settings["teacher"]
        )
        results.append(result)
        previous = generation.model
    return results
