"""The pools as training methods (`training.method: f2c | dcq`), and a quick timed run.

`build_f2c_model` / `build_dcq_model` and `adapt_pool_data` plug the pools into
`keras_face.training.train` (see `keras_face.training.training_methods`); the `pool.*`
options of the configuration set them. `train_pool_model` trains either model on
in-memory images for a few epochs and reports its step time (for notebooks).
"""

import math
import time

import keras
import numpy as np

from keras_face import data as face_data
from keras_face.class_pools.dcq_training_model import DCQTrainingModel
from keras_face.class_pools.f2c_training_model import F2CTrainingModel
from keras_face.class_pools.pool_datasets import make_dual_loader_dataset
from keras_face.class_pools.pool_datasets import make_pair_dataset
from keras_face.errors import ConfigError
from keras_face.training.l2_sgd import L2SGD
from keras_face.training.training_data import TrainingData

METHODS = ("f2c", "dcq")
# The authors' rates of G's moving average: FFC `--alpha 0.99`, DCQ `--dcq-momentum 0.999`.
DEFAULT_MOMENTUM = {"f2c": 0.99, "dcq": 0.999}
DEFAULT_EMBEDDING = {"f2c": "probe", "dcq": "gallery"}


def pool_size_for(method, num_classes, global_batch, size=None, fraction=0.1):
    """The pool size K of a run: `size`, or `fraction` of the identities made valid.

    Without `size`, K = round(fraction * num_classes), raised to the smallest valid
    size: F²C needs K >= 1.5 B (one gallery batch of 1.5 B identities), DCQ a multiple of
    the global batch B. A given `size` that is not valid raises an error.

    Args:
        method: str. `"f2c"` or `"dcq"`.
        num_classes: int. Training identities.
        global_batch: int. Global batch `B`.
        size: int. An explicit K. Defaults to `None`.
        fraction: float. Fraction of the identities when `size` is `None`.
            Defaults to `0.1`.

    Returns:
        int.

    Example:
        ```python
        keras_face.class_pools.pool_size_for("f2c", 10_000, 64)  # 1000
        ```
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
    minimum = math.ceil(1.5 * global_batch) if method == "f2c" else global_batch
    if size is None:
        size = max(int(round(fraction * num_classes)), 1)
        size = max(size, minimum)
        if method == "dcq":
            size = global_batch * math.ceil(size / global_batch)
        return size
    if method == "f2c" and 2 * size < 3 * global_batch:
        raise ConfigError(
            "The F2C pool must hold at least 1.5 times the global batch (one gallery batch "
            f"of 1.5 B identities). Received: pool.size={size}, training.batch_size="
            f"{global_batch}"
        )
    if method == "dcq" and size % global_batch:
        raise ConfigError(
            "The DCQ queue size must be a multiple of the global batch, as the authors "
            f"assert. Received: pool.size={size}, training.batch_size={global_batch}"
        )
    return size


def _method_of(config):
    method = config["training"]["method"]
    if method not in METHODS:
        raise ConfigError(
            f"keras_face.class_pools builds the f2c and dcq methods. Received: "
            f"training.method={method!r}"
        )
    return method


def build_pool_model(config, backbone, head):
    """The training model of `training.method` `f2c` or `dcq` (the `pool.*` options).

    The margin of the pool's cross-entropy is the configured head's (`head.name`,
    `head.scale`, `head.margin`): its `target_logits` and scale, without its kernel.

    Args:
        config: dict. A validated configuration.
        backbone: `keras.Model` from images to embeddings (P).
        head: the head of `config["head"]`, built for the training identities.

    Returns:
        An uncompiled `F2CTrainingModel` or `DCQTrainingModel`.

    Raises:
        ConfigError: a `pool.size` that is not valid for the global batch, or a head
            with state (the pools take a stateless margin).

    Example:
        ```python
        config = keras_face.training.load_config(overrides=["training.method=f2c"])
        model = keras_face.class_pools.build_pool_model(config, backbone, head)
        ```
    """
    method = _method_of(config)
    pool = config["pool"]
    global_batch = config["training"]["batch_size"]
    num_classes = head.num_classes
    size = pool_size_for(method, num_classes, global_batch, pool["size"], pool["fraction"])
    momentum = pool["momentum"] if pool["momentum"] is not None else DEFAULT_MOMENTUM[method]
    embedding = pool["embedding"] or DEFAULT_EMBEDDING[method]
    common = dict(
        momentum=momentum,
        margin_head=head,
        num_classes=num_classes,
        embedding=embedding,
        seed=config["seed"],
    )
    try:
        if method == "f2c":
            return F2CTrainingModel(
                backbone,
                pool_size=size,
                hard_negatives=pool["hard_negatives"],
                untouched_row=pool["untouched_row"],
                **common,
            )
        return DCQTrainingModel(backbone, queue_size=size, **common)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def adapt_pool_data(config, training_data, global_batch):
    """The batches of `f2c` (identity pairs + instances) or `dcq` (query/key pairs).

    The pools draw identities and pairs from in-memory images: the synthetic training
    images, rendered again from the configuration (the same images as the
    classification run).

    Args:
        config: dict. A validated configuration.
        training_data: `keras_face.training.TrainingData` of the configuration.
        global_batch: int. Global batch.

    Returns:
        A `TrainingData` whose `make_dataset(first_epoch)` gives the method's batches.

    Raises:
        ConfigError: data other than synthetic.

    Example:
        ```python
        data = keras_face.class_pools.adapt_pool_data(config, data, 64)
        ```
    """
    method = _method_of(config)
    data = config["data"]
    if data["source"] != "synthetic":
        raise ConfigError(
            "The f2c and dcq methods draw identity pairs from in-memory images, which only "
            f"the synthetic source provides for now. Received: data.source={data['source']!r}"
        )
    faces = face_data.synthetic_faces(
        data["identities"],
        data["images_per_identity"],
        seed=config["seed"],
        image_size=data["image_size"],
        quality=data["quality"],
        verbose=False,
    )
    epochs = config["training"]["epochs"]

    def make_dataset(first_epoch):
        if method == "f2c":
            return make_dual_loader_dataset(
                faces.images,
                faces.labels,
                global_batch,
                epochs,
                seed=config["seed"],
                first_epoch=first_epoch,
                random_flip=data["random_flip"],
                reshuffle_ids=config["pool"]["reshuffle_ids"],
            )
        return make_pair_dataset(
            faces.images,
            faces.labels,
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


class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.durations = []
        self._started = None

    def on_train_batch_begin(self, batch, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.durations.append(time.perf_counter() - self._started)


def train_pool_model(
    model,
    images,
    labels,
    batch_size,
    epochs,
    optimizer=None,
    seed=0,
    random_flip=True,
    verbose=0,
):
    """Train an F²C or DCQ model on in-memory images and time its steps.

    Args:
        model: an uncompiled (or compiled) `F2CTrainingModel` or `DCQTrainingModel`.
        images: uint8 array `(N, H, W, 3)`.
        labels: int array `(N,)`.
        batch_size: int. Global batch `B` (F²C: B identities + B instances per step).
        epochs: int. Instance epochs (`N // B` steps each).
        optimizer: a Keras optimizer. Defaults to `None`: `L2SGD(0.1, momentum=0.9,
            nesterov=True, l2=1e-4)` (the F²C authors' SGD) when not compiled yet.
        seed: int. Seed of the batches. Defaults to `0`.
        random_flip: bool. Random horizontal flips. Defaults to `True`.
        verbose: int. `fit`'s verbosity. Defaults to `0`.

    Returns:
        dict: `history` (`fit`'s), `step_seconds` (median over the steps after the
        first, which compiles), `steps`, `images_per_step` (images through P per step).

    Example:
        ```python
        faces = keras_face.data.synthetic_faces(500, 8, image_size=32)
        model = keras_face.class_pools.F2CTrainingModel(
            keras_face.models.mobilefacenet(input_shape=(32, 32, 3)), pool_size=50)
        result = keras_face.class_pools.train_pool_model(
            model, faces.images, faces.labels, batch_size=16, epochs=1)
        print(result["step_seconds"])
        ```
    """
    if isinstance(model, F2CTrainingModel):
        dataset = make_dual_loader_dataset(
            images, labels, batch_size, epochs, seed=seed, random_flip=random_flip
        )
        images_per_step = 3 * batch_size
    elif isinstance(model, DCQTrainingModel):
        dataset = make_pair_dataset(
            images, labels, batch_size, epochs, seed=seed, random_flip=random_flip
        )
        images_per_step = batch_size
    else:
        raise ValueError(
            "model must be an F2CTrainingModel or a DCQTrainingModel. "
            f"Received: model={type(model).__name__}"
        )
    if getattr(model, "optimizer", None) is None or optimizer is not None:
        model.compile(optimizer=optimizer or L2SGD(0.1, momentum=0.9, nesterov=True, l2=1e-4))
    timer = _StepTimer()
    steps = len(labels) // batch_size
    history = model.fit(
        dataset, epochs=epochs, steps_per_epoch=steps, callbacks=[timer], verbose=verbose
    )
    timed = timer.durations[1:] or timer.durations
    return {
        "history": history.history,
        "step_seconds": float(np.median(timed)),
        "steps": len(timer.durations),
        "images_per_step": images_per_step,
    }
