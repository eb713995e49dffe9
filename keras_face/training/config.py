"""Training configurations: nested dicts (YAML files) merged onto the embedded default, validated.

A configuration has the sections below; a YAML file (or dict) only lists what differs
from `DEFAULT_CONFIG`, the main job (synthetic identities, a small backbone, ArcFace).
When a file changes `backbone.name` or `head.name`, that section is replaced, not merged
(another network takes other arguments). Every key is checked: a typo is an error naming
the key and the valid ones; the `backbone` and `head` arguments are checked against the
signature of the factory or layer they go to.

```yaml
name: ...            # run name (default output folder runs/<name>-<time>)
seed: 0
data: {...}          # source: synthetic | recordio | folder
backbone: {name: ..., <keras_face.models.get arguments>}
head: {name: ..., <keras_face.heads.get arguments>}   # or name: softmax
optimizer: {...}     # keras_face.training.build_optimizer arguments
schedule: {...}      # keras_face.training.build_schedule arguments
training: {...}      # epochs, batch_size (global), precision, strategy, backups
evaluation: {...}    # 10-fold verification settings
```
"""

import copy
import difflib
import inspect
import os

import yaml

from keras_face.training.optimizers import OPTIMIZERS
from keras_face.training.optimizers import SCHEDULES
from keras_face.training.optimizers import WEIGHT_DECAY_MODES
from keras_face.training.precision import PRECISIONS
from keras_face.training.strategy import STRATEGIES


class ConfigError(ValueError):
    """An invalid training configuration (unknown key, bad value, missing file)."""


DATA_SOURCES = ("synthetic", "recordio", "folder")

# The main job: `keras-face train` with no arguments. Keep configs/default.yaml equal.
DEFAULT_CONFIG = {
    "name": "synthetic_arcface",
    "seed": 0,
    "data": {
        "source": "synthetic",
        "path": None,
        "num_classes": None,
        "image_size": 32,
        "identities": 300,
        "images_per_identity": 16,
        "heldout_identities": 100,
        "heldout_images_per_identity": 10,
        "heldout_pairs": 1000,
        "quality": "realistic",
        "random_flip": True,
        "verification": [],
    },
    "backbone": {
        "name": "mobilefacenet",
        "embedding_size": 128,
    },
    "head": {
        "name": "arcface",
        "scale": 16.0,
        "margin": 0.5,
    },
    "optimizer": {
        "name": "sgd",
        "learning_rate": 0.02,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "weight_decay_mode": "auto",
        "nesterov": False,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-8,
        "clipnorm": None,
        "global_clipnorm": None,
        "exclude_from_weight_decay": None,
    },
    "schedule": {
        "name": "poly",
        "warmup_epochs": 0,
        "power": 2.0,
        "decay_epochs": None,
        "decay_steps": None,
        "decay_factor": 0.1,
    },
    "training": {
        "epochs": 8,
        "batch_size": 64,
        "steps_per_epoch": None,
        "mixed_precision": None,
        "jit_compile": False,
        "strategy": "auto",
        "cpu_replicas": None,
        "backup_every_steps": 50,
        "verbose": 1,
    },
    "evaluation": {
        "n_folds": 10,
        "flip": True,
        "batch_size": 256,
        "every_n_epochs": 1,
    },
}

# Keys whose sections hold the arguments of a factory (checked against its signature).
_FREE_SECTIONS = ("backbone", "head")
# Which section keys mean what, for messages and checks.
_SCALARS = ("name", "seed")


def _suggest(key, valid):
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _unknown_key_error(path, key, valid):
    where = f"'{path}'" if path else "the top level"
    return ConfigError(
        f"Unknown config key {(path + '.' if path else '') + str(key)!r}."
        f"{_suggest(key, valid)} Valid keys of {where}: {', '.join(sorted(valid))}. "
        f"Received: {(path + '.' if path else '') + str(key)}"
    )


def merge_config(base, update, path=""):
    """Merge `update` onto a copy of `base`, checking every key of the fixed sections.

    Args:
        base: dict. A complete configuration (e.g. `DEFAULT_CONFIG`).
        update: dict. Keys to change.
        path: str. Dotted prefix for messages.

    Returns:
        The merged dict.
    """
    merged = copy.deepcopy(base)
    if update is None:
        return merged
    if not isinstance(update, dict):
        raise ConfigError(
            f"Config section {path or 'root'!r} must be a mapping. Received: {update!r}"
        )
    for key, value in update.items():
        full = f"{path}.{key}" if path else str(key)
        if not path and key in _FREE_SECTIONS:
            if isinstance(value, str):
                value = {"name": value}
            if not isinstance(value, dict):
                raise ConfigError(f"Config section {full!r} must be a mapping. Received: {value!r}")
            if "name" in value and value["name"] != merged[key].get("name"):
                merged[key] = copy.deepcopy(value)
            else:
                merged[key].update(copy.deepcopy(value))
            continue
        if key not in merged:
            raise _unknown_key_error(path, key, merged)
        if isinstance(merged[key], dict):
            merged[key] = merge_config(merged[key], value, full)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text):
    """Turn `"a.b=value"` into `{"a": {"b": value}}` (value parsed as YAML).

    `head=softmax` and `backbone=mobilefacenet` replace that section by `{name: ...}`.
    """
    if "=" not in text:
        raise ConfigError(
            f"An override must look like key=value (e.g. training.epochs=3). Received: {text!r}"
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"An override needs a key before '='. Received: {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"Cannot parse the value of {key!r} as YAML ({error}). Received: {text!r}")
    result = value
    for part in reversed(key.split(".")):
        result = {part: result}
    return result


def load_config(source=None, overrides=()):
    """Load, merge and validate a training configuration.

    Args:
        source: `None` (the embedded default, the main job), a dict, or the path of a
            YAML (or JSON) file. Defaults to `None`.
        overrides: iterable of `"dotted.key=value"` strings or dicts, applied in order
            (e.g. `["training.epochs=3", "head=softmax"]`). Defaults to `()`.

    Returns:
        The complete, validated configuration dict.

    Example:
        ```python
        config = keras_face.training.load_config(
            "configs/casia_webface.yaml", ["data.path=/data/faces_webface_112x112/train.rec"])
        ```
    """
    config = copy.deepcopy(DEFAULT_CONFIG)
    if isinstance(source, dict):
        config = merge_config(config, source)
    elif source is not None:
        path = os.fspath(source)
        if not os.path.exists(path):
            raise ConfigError(f"Config file not found. Received: config={path!r}")
        if os.path.isdir(path):
            raise ConfigError(f"The config must be a YAML file, not a directory. Received: config={path!r}")
        with open(path) as file:
            try:
                loaded = yaml.safe_load(file)
            except yaml.YAMLError as error:
                raise ConfigError(f"{path} is not valid YAML: {error}") from None
        config = merge_config(config, loaded or {})
    for override in overrides:
        if isinstance(override, str):
            override = parse_override(override)
        config = merge_config(config, override)
    validate_config(config)
    return config


def _check(condition, key, value, expectation):
    if not condition:
        raise ConfigError(f"{key} must be {expectation}. Received: {key}={value!r}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_arguments(section, callable_, config, skip=()):
    """Check the keys of a free section against the signature of what receives them."""
    # `**kwargs` (a Layer's name/dtype/trainable) is not offered: a typo must not slip
    # through to the constructor.
    parameters = inspect.signature(callable_).parameters
    valid = [
        name for name, p in parameters.items()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        and name not in skip
    ]
    for key in config:
        if key == "name":
            continue
        if key not in valid:
            raise ConfigError(
                f"Unknown config key '{section}.{key}' for {section} "
                f"{config['name']!r}.{_suggest(key, valid)} Valid keys: "
                f"name, {', '.join(valid)}. Received: {section}.{key}"
            )


def head_factory(name):
    """The class a `head.name` refers to (`"softmax"` or a `keras_face.heads` name)."""
    from keras_face import heads
    from keras_face.training.softmax_head import SoftmaxHead

    key = str(name).lower().replace("_", "").replace("-", "")
    if key == "softmax":
        return SoftmaxHead
    if key not in heads.names():
        valid = ["softmax"] + heads.names()
        raise ConfigError(
            f"Unknown head.{_suggest(key, valid)} Valid names: {', '.join(valid)}. "
            f"Received: head.name={name!r}"
        )
    return type(heads.get(key, 2))


def backbone_factory(name):
    """The factory a `backbone.name` refers to (a `keras_face.models.get` name)."""
    from keras_face import models

    key = str(name).lower().replace("-", "_")
    if key not in models.names():
        raise ConfigError(
            f"Unknown backbone.{_suggest(key, models.names())} Valid names: "
            f"{', '.join(models.names())}. Received: backbone.name={name!r}"
        )
    return getattr(models, key, None) or (lambda **kwargs: models.get(key, **kwargs))


def validate_config(config):
    """Check the values of a merged configuration; raise `ConfigError` naming the bad one."""
    for key in config:
        if key not in DEFAULT_CONFIG:
            raise _unknown_key_error("", key, DEFAULT_CONFIG)
    _check(isinstance(config["name"], str) and config["name"], "name", config["name"], "a non-empty string")
    _check(_is_int(config["seed"]), "seed", config["seed"], "an integer")

    data = config["data"]
    _check(data["source"] in DATA_SOURCES, "data.source", data["source"], f"one of {list(DATA_SOURCES)}")
    if data["source"] != "synthetic":
        _check(
            isinstance(data["path"], str) and data["path"],
            "data.path", data["path"], f"the path of the training data for source {data['source']!r}",
        )
    if data["num_classes"] is not None:
        _check(_is_int(data["num_classes"]) and data["num_classes"] > 0, "data.num_classes", data["num_classes"], "a positive integer or null")
    for key in ("image_size", "identities", "images_per_identity", "heldout_identities",
                "heldout_images_per_identity", "heldout_pairs"):
        _check(_is_int(data[key]) and data[key] > 0, f"data.{key}", data[key], "a positive integer")
    if data["source"] == "synthetic":
        _check(data["images_per_identity"] >= 2, "data.images_per_identity", data["images_per_identity"], "at least 2")
        _check(data["heldout_identities"] >= 2, "data.heldout_identities", data["heldout_identities"], "at least 2")
    _check(isinstance(data["random_flip"], bool), "data.random_flip", data["random_flip"], "true or false")
    verification = data["verification"]
    _check(
        isinstance(verification, list) and all(isinstance(p, str) for p in verification),
        "data.verification", verification, "a list of .bin paths",
    )

    backbone = config["backbone"]
    _check("name" in backbone, "backbone.name", None, "the name of a keras_face.models backbone")
    _check_arguments("backbone", backbone_factory(backbone["name"]), backbone)
    if "embedding_size" in backbone:
        _check(_is_int(backbone["embedding_size"]) and backbone["embedding_size"] > 0,
               "backbone.embedding_size", backbone["embedding_size"], "a positive integer")
    head = config["head"]
    _check("name" in head, "head.name", None, "a head name (arcface, cosface, ..., softmax)")
    _check_arguments("head", head_factory(head["name"]), head, skip=("num_classes",))
    _check("num_classes" not in head, "head.num_classes", head.get("num_classes"),
           "left out (it comes from the data; set data.num_classes to check it)")

    optimizer = config["optimizer"]
    _check(optimizer["name"] in OPTIMIZERS, "optimizer.name", optimizer["name"], f"one of {list(OPTIMIZERS)}")
    _check(optimizer["weight_decay_mode"] in WEIGHT_DECAY_MODES, "optimizer.weight_decay_mode",
           optimizer["weight_decay_mode"], f"one of {list(WEIGHT_DECAY_MODES)}")
    _check(_is_number(optimizer["learning_rate"]) and optimizer["learning_rate"] > 0,
           "optimizer.learning_rate", optimizer["learning_rate"], "a positive number")
    _check(_is_number(optimizer["momentum"]) and 0 <= optimizer["momentum"] < 1,
           "optimizer.momentum", optimizer["momentum"], "a number in [0, 1)")
    _check(_is_number(optimizer["weight_decay"]) and optimizer["weight_decay"] >= 0,
           "optimizer.weight_decay", optimizer["weight_decay"], "a non-negative number")
    for key in ("clipnorm", "global_clipnorm"):
        value = optimizer[key]
        _check(value is None or (_is_number(value) and value > 0), f"optimizer.{key}", value, "a positive number or null")

    schedule = config["schedule"]
    _check(schedule["name"] in SCHEDULES, "schedule.name", schedule["name"], f"one of {list(SCHEDULES)}")
    _check(_is_number(schedule["warmup_epochs"]) and schedule["warmup_epochs"] >= 0,
           "schedule.warmup_epochs", schedule["warmup_epochs"], "a non-negative number")
    if schedule["name"] == "piecewise":
        _check((schedule["decay_epochs"] is None) != (schedule["decay_steps"] is None),
               "schedule.decay_epochs", schedule["decay_epochs"],
               "a list of epochs (or give schedule.decay_steps instead, not both)")

    training = config["training"]
    _check(_is_int(training["epochs"]) and training["epochs"] > 0, "training.epochs", training["epochs"], "a positive integer")
    _check(_is_int(training["batch_size"]) and training["batch_size"] > 0, "training.batch_size", training["batch_size"], "a positive integer (the global batch)")
    steps = training["steps_per_epoch"]
    _check(steps is None or (_is_int(steps) and steps > 0), "training.steps_per_epoch", steps, "a positive integer or null")
    _check(training["mixed_precision"] in PRECISIONS, "training.mixed_precision", training["mixed_precision"],
           "null, mixed_float16 or mixed_bfloat16")
    _check(isinstance(training["jit_compile"], bool), "training.jit_compile", training["jit_compile"], "true or false")
    _check(training["strategy"] in STRATEGIES, "training.strategy", training["strategy"], f"one of {list(STRATEGIES)}")
    replicas = training["cpu_replicas"]
    _check(replicas is None or (_is_int(replicas) and replicas > 0), "training.cpu_replicas", replicas, "a positive integer or null")
    backup = training["backup_every_steps"]
    _check(backup is None or (_is_int(backup) and backup > 0), "training.backup_every_steps", backup, "a positive integer or null (no backups)")
    _check(training["verbose"] in (0, 1, 2), "training.verbose", training["verbose"], "0, 1 or 2")

    evaluation = config["evaluation"]
    _check(_is_int(evaluation["n_folds"]) and evaluation["n_folds"] >= 2, "evaluation.n_folds", evaluation["n_folds"], "an integer >= 2")
    _check(isinstance(evaluation["flip"], bool), "evaluation.flip", evaluation["flip"], "true or false")
    _check(_is_int(evaluation["batch_size"]) and evaluation["batch_size"] > 0, "evaluation.batch_size", evaluation["batch_size"], "a positive integer")
    every = evaluation["every_n_epochs"]
    _check(_is_int(every) and every >= 0, "evaluation.every_n_epochs", every, "a non-negative integer (0: only at the end)")
    return config


def dump_config(config, path):
    """Write a configuration as YAML (the run folder's `config.yaml`)."""
    with open(path, "w") as file:
        yaml.safe_dump(config, file, sort_keys=False)
