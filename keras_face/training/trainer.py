"""`train(config)`: data, model, distribution, `fit` with backups, evaluation, run folder.

The run folder (`output_dir`):

```
config.yaml                 the complete configuration used
embedding_model.keras       the trained embedding model (backbone), for deployment
models/last.keras           embedding model after the latest epoch
models/best.keras           embedding model of the best verification epoch
logs/training_log.csv       per-epoch loss, accuracy, learning rate, verification
logs/tensorboard/           TensorBoard events
backup/                     step-level backups (rerun the same command to resume)
roc.png                     ROC of the final held-out / verification evaluation
training_curves.png         loss, training accuracy, learning rate, verification accuracy
results.json                everything above in numbers
```
"""

import datetime
import json
import math
import os
import platform
import time

import numpy as np

from keras_face.training.config import ConfigError
from keras_face.training.config import backbone_factory
from keras_face.training.config import dump_config
from keras_face.training.config import head_factory
from keras_face.training.config import load_config
from keras_face.training.strategy import check_global_batch_size
from keras_face.training.strategy import configure_cpu_replicas
from keras_face.training.strategy import get_strategy
from keras_face.training.strategy import is_chief

HELDOUT_NAME = "heldout"
# Identity ids of the synthetic held-out set start here, far from the training ids.
HELDOUT_IDENTITY_OFFSET = 10**6


def default_output_dir(config, root="runs"):
    """`runs/<name>-<YYYYmmdd-HHMMSS>` under the current directory."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(root, f"{config['name']}-{stamp}")


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
    """

    def __init__(self, num_classes, num_images, make_dataset, verification, description, stats=None):
        self.num_classes = num_classes
        self.num_images = num_images
        self.make_dataset = make_dataset
        self.verification = verification
        self.description = description
        self.stats = stats


def _synthetic_data(config, global_batch, epochs, progress):
    from keras_face.data.synthetic import synthetic_faces
    from keras_face.data.synthetic import synthetic_pairs
    from keras_face.training.datasets import make_training_dataset

    data = config["data"]
    seed = config["seed"]
    if progress:
        print(
            f"Rendering {data['identities']} x {data['images_per_identity']} training and "
            f"{data['heldout_identities']} x {data['heldout_images_per_identity']} held-out "
            f"synthetic faces ({data['image_size']} px)..."
        )
    train = synthetic_faces(
        data["identities"],
        data["images_per_identity"],
        seed=seed,
        image_size=data["image_size"],
        quality=data["quality"],
        verbose=progress,
    )
    heldout = synthetic_faces(
        data["heldout_identities"],
        data["heldout_images_per_identity"],
        seed=seed + 1,
        image_size=data["image_size"],
        quality=data["quality"],
        identity_offset=HELDOUT_IDENTITY_OFFSET,
        verbose=progress,
    )
    pairs = synthetic_pairs(
        heldout, num_pairs=data["heldout_pairs"], seed=seed + 2,
        n_folds=config["evaluation"]["n_folds"],
    )

    def make_dataset(first_epoch):
        return make_training_dataset(
            train.images,
            train.labels,
            global_batch,
            epochs,
            seed=seed,
            first_epoch=first_epoch,
            random_flip=data["random_flip"],
        )

    return TrainingData(
        num_classes=int(train.labels.max()) + 1,
        num_images=len(train),
        make_dataset=make_dataset,
        verification={HELDOUT_NAME: pairs},
        description=(
            f"{data['heldout_pairs']} pairs of {data['heldout_identities']} held-out "
            "synthetic identities"
        ),
    )


def _file_data(config, global_batch, progress):
    import keras_face.data as face_data
    from keras_face.training.datasets import as_training_pairs

    data = config["data"]
    path = data["path"]
    if not os.path.exists(path):
        raise FileNotFoundError(f"Training data not found. Received: data.path={path!r}")
    reader = face_data.read_recordio if data["source"] == "recordio" else face_data.read_image_folder
    # Reshuffled every pass from (seed, pass); after a resume the passes restart at 0,
    # so the weights, optimizer and head state resume exactly but the order is new.
    dataset = reader(
        path,
        batch_size=global_batch,
        shuffle=True,
        seed=config["seed"],
        repeat=True,
        flip=data["random_flip"],
        drop_remainder=True,
    )
    num_classes = int(dataset.num_classes)
    num_images = int(dataset.num_images)
    return TrainingData(
        num_classes=num_classes,
        num_images=num_images,
        make_dataset=lambda first_epoch: as_training_pairs(dataset),
        verification={},
        description=f"{num_images} images of {num_classes} identities in {path}",
        stats=getattr(dataset, "stats", None),
    )


def load_training_data(config, global_batch, progress=True):
    """The training data and verification sets of a configuration (`TrainingData`)."""
    data = config["data"]
    if data["source"] == "synthetic":
        training_data = _synthetic_data(config, global_batch, config["training"]["epochs"], progress)
    else:
        training_data = _file_data(config, global_batch, progress)
    for path in data["verification"]:
        from keras_face.data import read_bin

        if not os.path.exists(path):
            raise FileNotFoundError(f"Verification file not found. Received: data.verification={path!r}")
        name = os.path.splitext(os.path.basename(path))[0]
        training_data.verification[name] = read_bin(path, progress=progress)
    expected = data["num_classes"]
    if expected is not None and expected != training_data.num_classes:
        raise ConfigError(
            f"data.num_classes={expected} does not match the training data, which has "
            f"{training_data.num_classes} identities (labels 0..{training_data.num_classes - 1}"
            f" in {data['path'] or 'the synthetic set'}). Fix data.num_classes or the data. "
            f"Received: data.num_classes={expected}"
        )
    return training_data


def build_backbone(config):
    """The backbone of `config["backbone"]`, input shape from `data.image_size` unless given."""
    import inspect

    settings = dict(config["backbone"])
    factory = backbone_factory(settings.pop("name"))
    size = config["data"]["image_size"]
    if "input_shape" not in settings and "input_shape" in inspect.signature(factory).parameters:
        settings["input_shape"] = (size, size, 3)
    return factory(**settings)


def build_head(config, num_classes):
    """The head of `config["head"]` for `num_classes` identities."""
    settings = dict(config["head"])
    return head_factory(settings.pop("name"))(num_classes, **settings)


def _callbacks(config, output_dir, model, training_data, backup, chief):
    import keras

    from keras_face.training.embedding_model_checkpoint import EmbeddingModelCheckpoint
    from keras_face.training.learning_rate_logger import LearningRateLogger
    from keras_face.training.stop_on_nan import StopOnNaN

    evaluation = config["evaluation"]
    callbacks = [LearningRateLogger()]
    monitor = None
    if training_data.verification and evaluation["every_n_epochs"] > 0:
        from keras_face.evaluation import VerificationCallback

        callbacks.append(
            VerificationCallback(
                training_data.verification,
                embedding_model=model.embedding_model,
                every_n_epochs=evaluation["every_n_epochs"],
                batch_size=evaluation["batch_size"],
                # Per-epoch monitoring skips the flip test (half the cost); the final
                # evaluation uses evaluation.flip.
                flip=False,
                n_folds=evaluation["n_folds"],
                verbose=config["training"]["verbose"],
            )
        )
        monitor = f"{next(iter(training_data.verification))}_accuracy"
    callbacks.append(
        EmbeddingModelCheckpoint(os.path.join(output_dir, "models"), monitor=monitor)
    )
    if chief:
        logs = os.path.join(output_dir, "logs")
        os.makedirs(logs, exist_ok=True)
        resumed = backup is not None and backup.read_state() is not None
        callbacks.append(
            keras.callbacks.CSVLogger(os.path.join(logs, "training_log.csv"), append=resumed)
        )
        if _tensorboard_available():
            callbacks.append(
                keras.callbacks.TensorBoard(os.path.join(logs, "tensorboard"), write_graph=False)
            )
        else:
            print("TensorBoard logs skipped: pip install tensorboard to write them.")
    if backup is not None:
        callbacks.append(backup)
    hint = (
        f"The last good backup is in {backup.backup_dir}: after changing a setting, run the "
        "same command with the same output folder to resume from it."
        if backup is not None
        else None
    )
    callbacks.append(StopOnNaN(hint=hint))
    return callbacks


def _tensorboard_available():
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _read_history(csv_path):
    """Per-epoch columns of the CSV log (all epochs, also across resumes)."""
    import csv

    if not os.path.exists(csv_path):
        return {}
    rows = {}
    with open(csv_path) as file:
        for row in csv.DictReader(file):
            rows[int(row["epoch"])] = row  # a resumed epoch overwrites its first attempt
    history = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            try:
                history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                history.setdefault(key, []).append(float("nan"))
    return history


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _summarise_verification(result, num_pairs):
    return {
        "accuracy": float(result["accuracy"]),
        "accuracy_std": float(result["accuracy_std"]),
        "threshold": float(result["threshold"]),
        "val_at_far_1e-3": float(result["val_at_far_1e-3"]),
        "auc": _finite_or_none(result.get("auc", float("nan"))),
        "tar_at_far": {str(far): _finite_or_none(tar) for far, tar in result["tar_at_far"].items()},
        "pairs": int(num_pairs),
    }


def _cpu_seconds():
    """User + system CPU time of this process (all threads) so far, or None."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _format_duration(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def train(config=None, output_dir=None, overrides=(), backbone=None, progress=True):
    """Train, evaluate and save a face-recognition model from a configuration.

    With no arguments this is the main job: render synthetic identities, train the
    default small backbone with ArcFace for a few epochs, evaluate 10-fold verification
    on held-out identities and write the run folder (see the module docstring).
    Rerunning with the same `output_dir` resumes from the latest backup.

    Args:
        config: `None` (the embedded default), a dict or a YAML path; see
            `keras_face.training.load_config`. Defaults to `None`.
        output_dir: str. The run folder. Defaults to `runs/<name>-<time>`.
        overrides: iterable of `"key=value"` overrides. Defaults to `()`.
        backbone: `keras.Model`. Use this backbone instead of `config["backbone"]`
            (built in the strategy's scope by the caller). Defaults to `None`.
        progress: bool. Progress bars and messages. Defaults to `True`.

    Returns:
        dict: the content of `results.json` (with `"output_dir"`).

    Example:
        ```python
        results = keras_face.training.train(overrides=["training.epochs=2"])
        print(results["verification"]["heldout"]["accuracy"])
        ```
    """
    started = time.perf_counter()
    config = load_config(config, overrides)
    training = config["training"]
    if training["cpu_replicas"]:
        configure_cpu_replicas(training["cpu_replicas"])

    import keras

    from keras_face.evaluation import extract_embeddings
    from keras_face.evaluation import verify
    from keras_face.training.backup_and_restore import BackupAndRestore
    from keras_face.training.face_training_model import FaceTrainingModel
    from keras_face.training.optimizers import build_optimizer
    from keras_face.training.optimizers import build_schedule
    from keras_face.training.precision import dtype_policy_scope

    strategy = get_strategy(training["strategy"])
    global_batch = training["batch_size"]
    check_global_batch_size(global_batch, strategy)
    chief = is_chief(strategy)
    output_dir = os.fspath(output_dir or default_output_dir(config))
    os.makedirs(output_dir, exist_ok=True)
    if chief:
        dump_config(config, os.path.join(output_dir, "config.yaml"))
    keras.utils.set_random_seed(config["seed"])

    training_data = load_training_data(config, global_batch, progress=progress)
    natural_steps = training_data.num_images // global_batch
    steps_per_epoch = training["steps_per_epoch"] or natural_steps
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
    epochs = training["epochs"]

    with dtype_policy_scope(training["mixed_precision"]), strategy.scope():
        backbone = backbone if backbone is not None else build_backbone(config)
        head = build_head(config, training_data.num_classes)
        model = FaceTrainingModel(backbone, head)
        optimizer_settings = dict(config["optimizer"])
        optimizer_settings.pop("learning_rate")
        schedule = build_schedule(
            config["optimizer"]["learning_rate"], steps_per_epoch, epochs, **config["schedule"]
        )
        model.compile(
            optimizer=build_optimizer(learning_rate=schedule, **optimizer_settings),
            jit_compile=training["jit_compile"],
        )

    backup = None
    if training["backup_every_steps"]:
        backup = BackupAndRestore(
            os.path.join(output_dir, "backup"),
            save_freq=training["backup_every_steps"],
            delete_on_finish=False,
        )
        backup.set_model(model)
    state = backup.read_state() if backup is not None else None
    first_epoch = state["epoch"] if state else 0
    if progress and state:
        print(
            f"Resuming from the backup at epoch {state['epoch'] + 1}, step "
            f"{state['step_in_epoch']} (optimizer step {state['global_step']})"
            + (": training already finished." if state.get("finished") else ".")
        )
    dataset = training_data.make_dataset(first_epoch)
    callbacks = _callbacks(config, output_dir, model, training_data, backup, chief)

    if progress:
        print(
            f"Training {backbone.name} ({backbone.count_params():,} parameters) + "
            f"{type(head).__name__} on {training_data.num_images} images of "
            f"{training_data.num_classes} identities: {epochs} epochs x {steps_per_epoch} "
            f"steps, global batch {global_batch} over {strategy.num_replicas_in_sync} "
            f"replica(s)."
        )
    fit_started = time.perf_counter()
    model.fit(
        dataset,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        shuffle=False,  # the dataset is already shuffled, reproducibly per epoch
        verbose=training["verbose"] if progress else 0,
    )
    fit_seconds = time.perf_counter() - fit_started
    steps_trained = (epochs - first_epoch) * steps_per_epoch - (state["step_in_epoch"] if state else 0)

    results = {
        "name": config["name"],
        "output_dir": output_dir,
        "backbone": backbone.name,
        "head": type(head).__name__,
        "parameters": int(backbone.count_params()),
        "num_classes": training_data.num_classes,
        "num_images": training_data.num_images,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "global_batch_size": global_batch,
        "replicas": int(strategy.num_replicas_in_sync),
        "strategy": type(strategy).__name__,
        "mixed_precision": training["mixed_precision"],
        "resumed_from": state,
        "fit_seconds": fit_seconds,
        "training_images_per_second": steps_trained * global_batch / fit_seconds if steps_trained > 0 else None,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "verification": {},
    }
    stats = training_data.stats
    if stats is not None:
        # Undecodable images were skipped and counted by the reader, never mislabelled.
        results["data"] = {
            "images_decoded": int(stats.delivered),
            "undecodable_skipped": int(stats.skipped),
            "undecodable_keys": [str(key) for key in stats.skipped_keys[:100]],
        }
        if stats.skipped or progress:
            print(f"Training data: {stats.summary()}")

    evaluation = config["evaluation"]
    curves = {}
    for name, (images, issame) in training_data.verification.items():
        if progress:
            print(f"Evaluating {name} ({len(issame)} pairs, {evaluation['n_folds']}-fold)...")
        embeddings = extract_embeddings(
            backbone, images, batch_size=evaluation["batch_size"], flip=evaluation["flip"],
            verbose=progress,
        )
        result = verify(embeddings, issame, n_folds=evaluation["n_folds"])
        results["verification"][name] = _summarise_verification(result, len(issame))
        curves[name] = result

    if chief:
        backbone.save(os.path.join(output_dir, "embedding_model.keras"))
        history = _read_history(os.path.join(output_dir, "logs", "training_log.csv"))
        results["history"] = {key: [_finite_or_none(v) for v in values] for key, values in history.items()}
        _write_plots(output_dir, curves, history, config)
    results["wall_seconds"] = time.perf_counter() - started
    results["cpu_seconds"] = _cpu_seconds()
    if chief:
        with open(os.path.join(output_dir, "results.json"), "w") as file:
            json.dump(results, file, indent=2)
    if progress:
        print(summary_line(results, training_data.description))
    return results


def _write_plots(output_dir, curves, history, config):
    from keras_face.evaluation import plot_roc
    from keras_face.training.training_curves import plot_training_curves

    if curves:
        # FAR ticks down to the resolution of the smallest set (1 / impostor pairs).
        impostors = min(int(np.sum(~np.asarray(r["issame"], bool))) for r in curves.values())
        fars = tuple(far for far in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6) if far >= 1.0 / max(impostors, 1))
        figure = plot_roc(
            curves if len(curves) > 1 else next(iter(curves.values())),
            fars=fars or (1e-1,),
            title=f"ROC ({config['name']})",
        )
        figure.savefig(os.path.join(output_dir, "roc.png"), dpi=120)
    if history:
        figure = plot_training_curves(history, title=config["name"])
        figure.savefig(os.path.join(output_dir, "training_curves.png"), dpi=120)


def summary_line(results, description=""):
    """The one-line summary printed at the end of `train`."""
    parts = []
    for name, result in results["verification"].items():
        label = "held-out verification accuracy" if name == HELDOUT_NAME else f"{name} accuracy"
        parts.append(
            f"{label} {100 * result['accuracy']:.2f}% +- {100 * result['accuracy_std']:.2f}%"
        )
    scores = "; ".join(parts) if parts else "no verification set"
    where = f" ({description})" if description and parts else ""
    return (
        f"keras-face train: {scores}{where}, {results['backbone']} + {results['head']}, "
        f"{results['epochs']} epochs in {_format_duration(results['wall_seconds'])} -> "
        f"{results['output_dir']}"
    )
