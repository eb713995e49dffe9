"""`train(config)`: a training run as public steps, from configuration to run folder.

`train` reads top to bottom as the steps below; each is public, so that a notebook or a
test can run a step alone or replace one:

1. `load_config` (`keras_face.training.config`): defaults, YAML file, overrides, checks;
2. `prepare_run`: CPU replicas, distribution strategy, batch check, seed;
3. `load_training_data`: the training batches and the verification sets;
4. `count_steps_per_epoch`;
5. `compile_training_model`: backbone, head, schedule, optimizer, in the strategy's scope
   (a batch normalisation needs 2 examples per replica, `check_batch_norm_batch`);
6. `start_run_folder`: the folder and its `config.yaml` (a resume is checked first,
   `check_resume`), only once the data has loaded and the model is built;
7. `build_backup` and `build_callbacks`: resume point, logs, checkpoints, NaN guard;
8. `fit`: `model.fit` over the dataset;
9. `collect_results` and `evaluate` (one `VerificationSummary` per set);
10. `write_run_folder`: embedding model, plots, `results.json`.

The run folder is described in `keras_face.training.run_folder`.
"""

import contextlib
import dataclasses
import datetime
import importlib.util
import inspect
import os
import shutil
import time

import keras
import yaml

from keras_face.evaluation import VerificationCallback
from keras_face.evaluation.verification_summary import evaluate_pairs
from keras_face.heads import LabelRangeCheck
from keras_face.heads import PartialFC
from keras_face.training.backup_and_restore import BackupAndRestore
from keras_face.training.backup_and_restore import read_backup_state
from keras_face.training.config import ConfigError
from keras_face.training.config import backbone_factory
from keras_face.training.config import dump_config
from keras_face.training.config import head_factory
from keras_face.training.config import load_config
from keras_face.training.embedding_model_checkpoint import BEST_SCORE_FILE
from keras_face.training.embedding_model_checkpoint import EmbeddingModelCheckpoint
from keras_face.training.learning_rate_logger import LearningRateLogger
from keras_face.training.optimizers import build_optimizer
from keras_face.training.optimizers import build_schedule
from keras_face.training.precision import dtype_policy_scope
from keras_face.training.run_folder import collect_results
from keras_face.training.run_folder import summary_line
from keras_face.training.run_folder import write_run_folder
from keras_face.training.stop_on_nan import StopOnNaN
from keras_face.training.strategy import check_global_batch_size
from keras_face.training.strategy import configure_cpu_replicas
from keras_face.training.strategy import get_strategy
from keras_face.training.strategy import is_chief
from keras_face.training.training_data import count_steps_per_epoch
from keras_face.training.training_data import load_training_data
from keras_face.training.training_methods import training_method

BACKUP_FOLDER = "backup"
CONFIG_FILE = "config.yaml"


def train(config=None, output_dir=None, overrides=(), backbone=None, progress=True, restart=False):
    """Train, evaluate and save a face-recognition model from a configuration.

    With no arguments this is the main job: render synthetic identities, train the
    default small backbone with ArcFace for a few epochs, evaluate 10-fold verification
    on held-out identities and write the run folder (see the module docstring).
    Rerunning with the same `output_dir` resumes from the latest backup, provided that
    the settings the backup depends on are unchanged (`check_resume`); `restart=True`
    starts that folder over instead.

    Args:
        config: `None` (the embedded default), a dict or a YAML path; see
            `keras_face.training.load_config`. Defaults to `None`.
        output_dir: str. The run folder. Defaults to `runs/<name>-<time>`.
        overrides: iterable of `"key=value"` overrides. Defaults to `()`.
        backbone: `keras.Model`. Use this backbone instead of `config["backbone"]`
            (built in the strategy's scope by the caller). Defaults to `None`.
        progress: bool. Progress bars and messages. Defaults to `True`.
        restart: bool. Discard the backup, logs and checkpoints of an earlier run in
            `output_dir` and train from scratch. Defaults to `False`.

    Returns:
        dict: the content of `results.json` (with `"output_dir"`).

    Raises:
        ConfigError: a bad setting, or a resume whose settings differ from the backup's.
        TrainingInterrupted: on Ctrl-C (a `KeyboardInterrupt` naming the run folder).

    Example:
        ```python
        results = keras_face.training.train(overrides=["training.epochs=2"])
        print(results["verification"]["heldout"]["accuracy"])
        ```
    """
    started = time.perf_counter()
    config = load_config(config, overrides)
    run = prepare_run(config, output_dir, create_folder=False)
    try:
        training_data = load_training_data(config, run.global_batch, progress=progress)
        steps_per_epoch = count_steps_per_epoch(config, training_data, run.global_batch)
        model = compile_training_model(
            config, training_data.num_classes, steps_per_epoch, run.strategy, backbone=backbone
        )
        # The folder and its config.yaml appear once the data has loaded and the model
        # is built: an error in either leaves no folder behind.
        start_run_folder(run, config, restart=restart)
        backup = build_backup(config, run.output_dir, model)
        state = backup.read_state() if backup is not None else None
        if progress and state:
            print(resume_message(state))
        dataset = training_data.make_dataset(state["epoch"] if state else 0)
        callbacks = build_callbacks(
            config, run.output_dir, model, training_data.verification, backup, run.chief
        )
        if progress:
            print(start_message(model, training_data, config, steps_per_epoch, run))
        fit_started = time.perf_counter()
        fit(model, dataset, config, steps_per_epoch, callbacks, progress=progress)
    except KeyboardInterrupt as interrupt:
        raise TrainingInterrupted(
            run.output_dir, os.path.isdir(os.path.join(run.output_dir, BACKUP_FOLDER))
        ) from interrupt
    fit_seconds = time.perf_counter() - fit_started
    results = collect_results(
        config, run, training_data, model, steps_per_epoch, fit_seconds, state, progress
    )
    summaries = evaluate(model.embedding_model, training_data.verification, config, progress)
    results["verification"] = {name: summary.as_dict() for name, summary in summaries.items()}
    write_run_folder(run, config, results, model.embedding_model, summaries, started)
    if progress:
        print(summary_line(results, training_data.description))
    return results


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `train`, with the run folder to resume from.

    A `KeyboardInterrupt` (it stops the program the same way) that carries where the
    run was writing, so that `keras-face train` can print how to resume.

    Args:
        output_dir: str. The run folder.
        has_backup: bool. Whether the folder holds a backup to resume from.

    Example:
        ```python
        try:
            keras_face.training.train(overrides=["training.epochs=20"])
        except keras_face.training.TrainingInterrupted as interrupted:
            print("resume with output_dir =", interrupted.output_dir)
        ```
    """

    def __init__(self, output_dir, has_backup):
        super().__init__(output_dir)
        self.output_dir = output_dir
        self.has_backup = has_backup


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """Where and how a run trains (what `prepare_run` returns).

    Args:
        strategy: the `tf.distribute.Strategy`.
        global_batch: int. Examples per optimizer step over all replicas.
        chief: bool. Whether this process writes the run folder.
        output_dir: str. The run folder.

    Example:
        ```python
        run = keras_face.training.prepare_run(keras_face.training.load_config(), "runs/a")
        print(run.strategy.num_replicas_in_sync)
        ```
    """

    strategy: object
    global_batch: int
    chief: bool
    output_dir: str


def default_output_dir(config, root="runs"):
    """`runs/<name>-<YYYYmmdd-HHMMSS>` under the current directory.

    Args:
        config: dict. The configuration (its `name`).
        root: str. The parent folder. Defaults to `"runs"`.

    Example:
        ```python
        keras_face.training.default_output_dir({"name": "r50"})  # 'runs/r50-20261207-010203'
        ```
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(root, f"{config['name']}-{stamp}")


def prepare_run(config, output_dir=None, create_folder=True):
    """Set up a run: CPU replicas, strategy, batch check, run folder, `config.yaml`, seed.

    Args:
        config: dict. A validated configuration (`load_config`).
        output_dir: str. The run folder. Defaults to `runs/<name>-<time>`.
        create_folder: bool. Create the folder and write `config.yaml` now
            (`start_run_folder`); `train` passes `False` and does it once the data has
            loaded. Defaults to `True`.

    Returns:
        A `RunSetup`.

    Raises:
        ConfigError: when `training.strategy` cannot be set up (no `TF_CONFIG` for
            `multi_worker`) or `training.batch_size` does not split over the replicas.

    Example:
        ```python
        run = keras_face.training.prepare_run(keras_face.training.load_config(), "runs/a")
        ```
    """
    training = config["training"]
    if training["cpu_replicas"]:
        configure_cpu_replicas(training["cpu_replicas"])
    global_batch = training["batch_size"]
    with _as_config_error():
        strategy = get_strategy(training["strategy"])
        check_global_batch_size(global_batch, strategy)
    chief = is_chief(strategy)
    output_dir = os.fspath(output_dir or default_output_dir(config))
    run = RunSetup(strategy, global_batch, chief, output_dir)
    if create_folder:
        start_run_folder(run, config)
    keras.utils.set_random_seed(config["seed"])
    return run


def start_run_folder(run, config, restart=False):
    """Create the run folder and write `config.yaml`, after checking a resume.

    When the folder holds a backup of an earlier run, the settings that the backup and
    the logs depend on must be unchanged (`check_resume`); `restart=True` deletes the
    earlier run's backup, logs and checkpoints instead, and the run starts over. Without
    a backup the run starts over too: the best score of an earlier run
    (`models/best.json`) is dropped, so its first evaluated epoch saves `best.keras`.

    Args:
        run: `RunSetup` (`output_dir`, `chief`).
        config: dict. A validated configuration.
        restart: bool. Start over in a folder that holds an earlier run.
            Defaults to `False`.

    Raises:
        ConfigError: a resume with changed settings (`check_resume`).

    Example:
        ```python
        run = keras_face.training.prepare_run(config, "runs/a", create_folder=False)
        keras_face.training.start_run_folder(run, config)
        ```
    """
    output_dir = run.output_dir
    if restart:
        for folder in (BACKUP_FOLDER, "logs", "models"):
            shutil.rmtree(os.path.join(output_dir, folder), ignore_errors=True)
    else:
        check_resume(config, output_dir)
    if read_backup_state(os.path.join(output_dir, BACKUP_FOLDER)) is None:
        # A fresh start: the best score of an earlier run in this folder does not apply.
        best_score = os.path.join(output_dir, "models", BEST_SCORE_FILE)
        if os.path.exists(best_score):
            os.remove(best_score)
    os.makedirs(output_dir, exist_ok=True)
    if run.chief:
        dump_config(config, os.path.join(output_dir, CONFIG_FILE))


# The settings a backup and the run's logs depend on: the step count (batch, epochs,
# steps per epoch, replicas), the weights' shapes and dtypes (backbone, head, data,
# precision), the data order (seed) and the log's columns (per-epoch evaluation). The
# others (learning rate, schedule, optimizer, ...) may change on a resume, e.g. after a
# diverged run.
RESUME_KEYS = (
    "seed",
    "data",
    "backbone",
    "head",
    "training.method",
    "training.batch_size",
    "training.epochs",
    "training.steps_per_epoch",
    "training.strategy",
    "training.cpu_replicas",
    "training.mixed_precision",
    "evaluation.every_n_epochs",
)


def check_resume(config, output_dir):
    """Raise when `output_dir` holds a backup taken with other `RESUME_KEYS` settings.

    A resume continues the backup's optimizer step, epoch and CSV log; with another batch
    size, epoch count or per-epoch evaluation it would train a different number of steps
    or misalign the log's columns without saying so.

    Args:
        config: dict. The configuration of the run about to start.
        output_dir: str. Its run folder.

    Raises:
        ConfigError: naming every changed key with its old and new value.

    Example:
        ```python
        keras_face.training.check_resume(config, "runs/a")  # None: nothing to resume
        ```
    """
    config_path = os.path.join(output_dir, CONFIG_FILE)
    if read_backup_state(os.path.join(output_dir, BACKUP_FOLDER)) is None:
        return
    if not os.path.exists(config_path):
        return
    with open(config_path) as file:
        previous = _flatten(yaml.safe_load(file) or {})
    current = _flatten(yaml.safe_load(yaml.safe_dump(config)))
    changed = [
        key
        for key in sorted(set(previous) | set(current))
        if _is_resume_key(key) and previous.get(key) != current.get(key)
    ]
    if not changed:
        return
    details = ", ".join(f"{key}: {previous.get(key)!r} -> {current.get(key)!r}" for key in changed)
    received = ", ".join(f"{key}={current.get(key)!r}" for key in changed)
    raise ConfigError(
        f"{output_dir} holds a backup of a run with other settings ({details}); resuming "
        "would not continue it. Use the settings of its config.yaml to resume, another "
        "output folder, or start this one over (keras-face train --restart, "
        f"train(restart=True)). Received: {received}"
    )


def _is_resume_key(key):
    return any(key == prefix or key.startswith(prefix + ".") for prefix in RESUME_KEYS)


def _flatten(config, prefix=""):
    flat = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


@contextlib.contextmanager
def _as_config_error():
    """A `ValueError` raised on a value that comes from the config is a `ConfigError`.

    The message is kept: it names the bad value (`Received: batch_size=15`).
    """
    try:
        yield
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from error


def build_backbone(config):
    """The backbone of `config["backbone"]`, input shape from `data.image_size` unless given.

    Args:
        config: dict. A validated configuration.

    Returns:
        `keras.Model` from images to embeddings.

    Example:
        ```python
        backbone = keras_face.training.build_backbone(keras_face.training.load_config())
        ```
    """
    settings = dict(config["backbone"])
    factory = backbone_factory(settings.pop("name"))
    size = config["data"]["image_size"]
    if "input_shape" not in settings and "input_shape" in inspect.signature(factory).parameters:
        settings["input_shape"] = (size, size, 3)
    with _as_config_error():
        return factory(**settings)


def build_head(config, num_classes):
    """The head of `config["head"]` for `num_classes` identities.

    Args:
        config: dict. A validated configuration.
        num_classes: int. Number of training identities.

    Returns:
        A `keras_face.heads` head or a `keras_face.training.SoftmaxHead`; wrapped in
        `keras_face.heads.PartialFC` when `head.partial_fc` is given (e.g.
        `--set head.partial_fc.sample_rate=0.1`).

    Example:
        ```python
        head = keras_face.training.build_head(keras_face.training.load_config(), 300)
        ```
    """
    settings = dict(config["head"])
    sampling = settings.pop("partial_fc", None)
    with _as_config_error():
        head = head_factory(settings.pop("name"))(num_classes, **settings)
        if sampling is not None:
            # Class-centre sampling around the head (`head.partial_fc.sample_rate`).
            head = PartialFC(head, **sampling)
        return head


def compile_training_model(config, num_classes, steps_per_epoch, strategy, backbone=None):
    """Backbone, head, schedule and optimizer of a config, compiled in the strategy's scope.

    Args:
        config: dict. A validated configuration.
        num_classes: int. Number of training identities.
        steps_per_epoch: int. Optimizer steps per epoch (for the schedule).
        strategy: the `tf.distribute.Strategy` whose scope holds the variables.
        backbone: `keras.Model`. Use this backbone instead of `config["backbone"]`.
            Defaults to `None`.

    Returns:
        The compiled training model of `training.method` (see
        `keras_face.training.training_methods`): a `FaceTrainingModel` for
        classification; `model.embedding_model` is what the run evaluates and saves.

    Example:
        ```python
        model = keras_face.training.compile_training_model(
            config, num_classes=300, steps_per_epoch=75, strategy=run.strategy)
        ```
    """
    training = config["training"]
    with dtype_policy_scope(training["mixed_precision"]), strategy.scope():
        backbone = backbone if backbone is not None else build_backbone(config)
        method = training_method(training["method"])
        model = method.build_model(config, backbone, build_head(config, num_classes))
        optimizer_settings = dict(config["optimizer"])
        learning_rate = optimizer_settings.pop("learning_rate")
        with _as_config_error():
            schedule = build_schedule(
                learning_rate, steps_per_epoch, training["epochs"], **config["schedule"]
            )
            optimizer = build_optimizer(learning_rate=schedule, **optimizer_settings)
        model.compile(optimizer=optimizer, jit_compile=training["jit_compile"])
    check_batch_norm_batch(model.embedding_model, training["batch_size"], strategy)
    return model


def check_batch_norm_batch(embedding_model, global_batch, strategy):
    """Raise when batch normalisation would train on fewer than 2 examples per replica.

    Batch statistics of one example are its own values: the normalised activations are
    zero, the moving variance collapses, and the model's embeddings explode (norms near
    1e11 after a few epochs) while the run seems to succeed. A per-replica batch of 2
    already gives usable statistics; the references train with 64 to 128 per GPU.

    Args:
        embedding_model: `keras.Model`. The backbone (its `BatchNormalization` layers,
            nested models included, are looked for).
        global_batch: int. Examples per optimizer step over all replicas.
        strategy: the `tf.distribute.Strategy` (its `num_replicas_in_sync`).

    Raises:
        ConfigError: per-replica batch below 2 with a trainable batch normalisation.

    Example:
        ```python
        keras_face.training.check_batch_norm_batch(backbone, 64, strategy)
        ```
    """
    per_replica = int(global_batch) // int(strategy.num_replicas_in_sync)
    if per_replica >= 2 or not _has_batch_norm(embedding_model):
        return
    raise ConfigError(
        f"{embedding_model.name} has batch normalisation, which needs at least 2 examples "
        f"per replica to compute batch statistics; the batch of {global_batch} over "
        f"{strategy.num_replicas_in_sync} replica(s) gives {per_replica}. Raise "
        f"training.batch_size. Received: training.batch_size={global_batch}"
    )


def _has_batch_norm(layer):
    if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
        return True
    return any(_has_batch_norm(child) for child in getattr(layer, "layers", ()))


def build_backup(config, output_dir, model):
    """The step-level `BackupAndRestore` of a run, or `None` without backups.

    Args:
        config: dict. A validated configuration (`training.backup_every_steps`).
        output_dir: str. The run folder (backups go to `backup/`).
        model: the compiled training model.

    Returns:
        A `BackupAndRestore` bound to `model`, or `None`.

    Example:
        ```python
        backup = keras_face.training.build_backup(config, "runs/a", model)
        state = backup.read_state()  # None on a fresh run
        ```
    """
    every = config["training"]["backup_every_steps"]
    if not every:
        return None
    backup = BackupAndRestore(
        os.path.join(output_dir, BACKUP_FOLDER), save_freq=every, delete_on_finish=False
    )
    backup.set_model(model)
    return backup


def resume_message(state):
    """The line printed when a run resumes from a backup state."""
    return (
        f"Resuming from the backup at epoch {state['epoch'] + 1}, step "
        f"{state['step_in_epoch']} (optimizer step {state['global_step']})"
        + (": training already finished." if state.get("finished") else ".")
    )


def build_callbacks(config, output_dir, model, verification, backup=None, chief=True):
    """The callbacks of a run: learning rate, verification, checkpoints, logs, backup, NaN.

    Args:
        config: dict. A validated configuration.
        output_dir: str. The run folder.
        model: the training model (`model.embedding_model` is evaluated and saved).
        verification: dict `{name: (images, issame)}` evaluated every
            `evaluation.every_n_epochs` epochs (the first one picks the best model).
        backup: `BackupAndRestore` or `None`. Defaults to `None`.
        chief: bool. Whether this process writes the logs. Defaults to `True`.

    Returns:
        list of `keras.callbacks.Callback`, `StopOnNaN` last.

    Example:
        ```python
        callbacks = keras_face.training.build_callbacks(config, "runs/a", model, {})
        ```
    """
    evaluation = config["evaluation"]
    callbacks = [LearningRateLogger()]
    monitor = None
    if verification and evaluation["every_n_epochs"] > 0:
        # Keras appends its progress bar after the user's callbacks, so the verification
        # line would print before the bar's line ends; an explicit bar here ends it first.
        callbacks.append(keras.callbacks.ProgbarLogger())
        callbacks.append(
            VerificationCallback(
                verification,
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
        monitor = f"{next(iter(verification))}_accuracy"
    callbacks.append(EmbeddingModelCheckpoint(os.path.join(output_dir, "models"), monitor=monitor))
    if chief:
        callbacks.extend(_log_callbacks(output_dir, backup))
    if backup is not None:
        callbacks.append(backup)
    hint = (
        f"The last good backup is in {backup.backup_dir}: after changing a setting, run the "
        "same command with the same output folder to resume from it."
        if backup is not None
        else None
    )
    # Under XLA a head cannot raise on a bad label inside the step: it counts it, and
    # this raises after the batch (naming the label) before StopOnNaN sees a NaN loss.
    callbacks.append(LabelRangeCheck())
    callbacks.append(StopOnNaN(hint=hint))
    return callbacks


def _log_callbacks(output_dir, backup):
    logs = os.path.join(output_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    resumed = backup is not None and backup.read_state() is not None
    callbacks = [_TrainingLog(os.path.join(logs, "training_log.csv"), append=resumed)]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(
            keras.callbacks.TensorBoard(os.path.join(logs, "tensorboard"), write_graph=False)
        )
    else:
        print("TensorBoard logs skipped: pip install tensorboard to write them.")
    return callbacks


class _TrainingLog(keras.callbacks.CSVLogger):
    """`CSVLogger` with the columns of the epoch's logs only.

    Keras' logger adds a `val_<key>` column for every key when the logs have none (for a
    validation set that `train` never passes), columns that would always read `NA`.
    """

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None and logs:
            self.keys = sorted(logs)
        super().on_epoch_end(epoch, logs)


def start_message(model, training_data, config, steps_per_epoch, run):
    """The line printed before `fit`: networks, data, epochs, steps, batch, replicas."""
    backbone = model.embedding_model
    return (
        f"Training {backbone.name} ({backbone.count_params():,} parameters) + "
        f"{type(model.head).__name__} on {training_data.num_images} images of "
        f"{training_data.num_classes} identities: {config['training']['epochs']} epochs x "
        f"{steps_per_epoch} steps, global batch {run.global_batch} over "
        f"{run.strategy.num_replicas_in_sync} replica(s)."
    )


def fit(model, dataset, config, steps_per_epoch, callbacks, progress=True):
    """`model.fit` over `training.epochs` epochs of `steps_per_epoch` steps.

    Args:
        model: the compiled training model.
        dataset: `tf.data.Dataset` of global batches `((images, labels), labels)`,
            already shuffled (reproducibly per epoch).
        config: dict. A validated configuration (`training.epochs`, `training.verbose`).
        steps_per_epoch: int.
        callbacks: list of callbacks (`build_callbacks`).
        progress: bool. Progress bars (`training.verbose`); `False` is silent.
            Defaults to `True`.

    Returns:
        The `keras.callbacks.History` of `model.fit`.

    Example:
        ```python
        history = keras_face.training.fit(model, dataset, config, steps, callbacks)
        print(history.history["loss"])
        ```
    """
    training = config["training"]
    return model.fit(
        dataset,
        epochs=training["epochs"],
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        shuffle=False,  # the dataset is already shuffled, reproducibly per epoch
        verbose=training["verbose"] if progress else 0,
    )


def evaluate(embedding_model, verification, config, progress=True):
    """The k-fold verification protocol on every verification set of a run.

    Args:
        embedding_model: `keras.Model` from images to embeddings.
        verification: dict `{name: (images, issame)}`.
        config: dict. A validated configuration (`evaluation.n_folds`, `flip`,
            `batch_size`).
        progress: bool. Messages and progress bars. Defaults to `True`.

    Returns:
        dict `{name: keras_face.evaluation.verification_summary.VerificationSummary}`.

    Example:
        ```python
        summaries = keras_face.training.evaluate(backbone, {"lfw": (images, issame)}, config)
        print(summaries["lfw"].accuracy)
        ```
    """
    evaluation = config["evaluation"]
    summaries = {}
    for name, (images, issame) in verification.items():
        if progress:
            print(f"Evaluating {name} ({len(issame)} pairs, {evaluation['n_folds']}-fold)...")
        summaries[name] = evaluate_pairs(
            embedding_model,
            images,
            issame,
            name=name,
            batch_size=evaluation["batch_size"],
            flip=evaluation["flip"],
            n_folds=evaluation["n_folds"],
            verbose=progress,
        )
    return summaries
