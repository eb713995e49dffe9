"""Training configurations: nested dicts (YAML files) merged onto the embedded default, validated.

A configuration has the sections below; a YAML file (or dict) only lists what differs
from `DEFAULT_CONFIG`, the main job (synthetic identities, a small backbone, ArcFace).
When a file changes `backbone.name` or `head.name`, that section is replaced, not merged
(another network takes other arguments). Every key is checked: a typo is an error naming
the key and the valid ones; the `backbone` and `head` arguments are checked against the
signature of the factory or layer they go to. Every option's default, type, bound and
doc line live in `keras_face.training.CONFIG_SCHEMA` (`config_schema.py`); the checks
here are derived from it.

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

from keras_face import heads
from keras_face import models
from keras_face.errors import ConfigError
from keras_face.training.atomic_write import atomic_write
from keras_face.training.config_schema import ARGUMENT_SECTIONS
from keras_face.training.config_schema import CONFIG_SCHEMA
from keras_face.training.config_schema import DATA_SOURCES
from keras_face.training.config_schema import build_default_config
from keras_face.training.softmax_head import SoftmaxHead

__all__ = [
    "ConfigError",
    "DATA_SOURCES",
    "DEFAULT_CONFIG",
    "backbone_factory",
    "default_run_name",
    "dump_config",
    "head_factory",
    "load_config",
    "merge_config",
    "parse_override",
    "validate_config",
]

# The main job: `keras-face train` with no arguments. Built from CONFIG_SCHEMA, as is
# configs/default.yaml (a test keeps the file equal to the schema).
DEFAULT_CONFIG = build_default_config()

# Sections that hold the arguments of a factory (checked against its signature).
_FREE_SECTIONS = tuple(section.key for section in ARGUMENT_SECTIONS)


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
                for argument, setting in copy.deepcopy(value).items():
                    # A nested mapping (`head.partial_fc`) is merged key by key, so that
                    # `--set head.partial_fc.seed=1` keeps an earlier `sample_rate`.
                    previous = merged[key].get(argument)
                    if isinstance(previous, dict) and isinstance(setting, dict):
                        previous.update(setting)
                    else:
                        merged[key][argument] = setting
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
        raise ConfigError(
            f"Cannot parse the value of {key!r} as YAML ({error}). Received: {text!r}"
        ) from None
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
            raise ConfigError(
                f"The config must be a YAML file, not a directory. Received: config={path!r}"
            )
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
    if config["name"] == DEFAULT_CONFIG["name"]:
        config["name"] = default_run_name(config)
    return config


def default_run_name(config):
    """The run name of a config that leaves `name` at its default: `<data>_<head>`.

    `<data>` is `synthetic`, or the name of the `.rec` file or image folder of
    `data.path` (the parent folder's for a pack named `train.rec`, as insightface names
    them); `<head>` is `head.name`. The default config gives `synthetic_arcface`.

    Args:
        config: dict. A configuration.

    Returns:
        str.

    Example:
        ```python
        config = keras_face.training.load_config(
            overrides=["data.source=recordio", "data.path=/data/casia/train.rec"])
        keras_face.training.config.default_run_name(config)  # 'casia_arcface'
        ```
    """
    data = config["data"]
    if data["source"] == "synthetic" or not data["path"]:
        label = "synthetic"
    else:
        path = os.path.normpath(os.fspath(data["path"]))
        label = os.path.splitext(os.path.basename(path))[0]
        if label == "train":
            label = os.path.basename(os.path.dirname(os.path.abspath(path))) or label
    head = str(config["head"]["name"]).lower().replace("-", "_")
    return f"{label}_{head}"


def _check(condition, key, value, expectation):
    if not condition:
        raise ConfigError(f"{key} must be {expectation}. Received: {key}={value!r}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_arguments(section, callable_, config, skip=()):
    """Check the keys of a free section against the signature of what receives them."""
    # `**kwargs` (a Layer's name/dtype/trainable) is not offered: a typo must not slip
    # through to the constructor.
    parameters = inspect.signature(callable_).parameters
    valid = [
        name
        for name, p in parameters.items()
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


def _normalised_head_name(name):
    return str(name).lower().replace("_", "").replace("-", "")


def head_factory(name):
    """The class (or factory) a `head.name` refers to, without building a head.

    Args:
        name: str. `"softmax"` or a `keras_face.heads.get` name (case, `-` and `_`
            ignored).

    Returns:
        `keras_face.training.SoftmaxHead` or the `keras_face.heads` class or function
        that `keras_face.heads.get(name, ...)` calls.

    Example:
        ```python
        keras_face.training.config.head_factory("arc_face")  # keras_face.heads.ArcFace
        ```
    """
    key = _normalised_head_name(name)
    if key == "softmax":
        return SoftmaxHead
    if key not in heads.names():
        valid = ["softmax"] + heads.names()
        raise ConfigError(
            f"Unknown head.{_suggest(key, valid)} Valid names: {', '.join(valid)}. "
            f"Received: head.name={name!r}"
        )
    # The public names of keras_face.heads, normalised as `heads.get` normalises its key
    # (`ArcFace` -> `arcface`, `am_softmax` -> `amsoftmax`).
    public = {_normalised_head_name(attribute): attribute for attribute in heads.__all__}
    return getattr(heads, public[key])


def backbone_factory(name):
    """The factory a `backbone.name` refers to (a `keras_face.models.get` name).

    Args:
        name: str. A `keras_face.models.names()` entry (case-insensitive, `-` read as `_`).

    Returns:
        The backbone factory function, e.g. `keras_face.models.mobilefacenet`.

    Example:
        ```python
        keras_face.training.config.backbone_factory("iresnet50")  # keras_face.models.iresnet50
        ```
    """
    key = str(name).lower().replace("-", "_")
    if key not in models.names():
        raise ConfigError(
            f"Unknown backbone.{_suggest(key, models.names())} Valid names: "
            f"{', '.join(models.names())}. Received: backbone.name={name!r}"
        )
    return getattr(models, key)


def _value_at(config, key):
    for part in key.split("."):
        config = config[part]
    return config


def _check_data_rules(data):
    """The `data` checks that depend on the source."""
    if data["source"] != "synthetic":
        _check(
            isinstance(data["path"], str) and data["path"],
            "data.path",
            data["path"],
            f"the path of the training data for source {data['source']!r}",
        )
    else:
        for key in ("images_per_identity", "heldout_identities"):
            _check(data[key] >= 2, f"data.{key}", data[key], "at least 2")


def _check_argument_sections(config):
    backbone = config["backbone"]
    _check("name" in backbone, "backbone.name", None, "the name of a keras_face.models backbone")
    _check_arguments("backbone", backbone_factory(backbone["name"]), backbone)
    if "embedding_size" in backbone:
        size = backbone["embedding_size"]
        _check(_is_int(size) and size > 0, "backbone.embedding_size", size, "a positive integer")
    head = config["head"]
    _check("name" in head, "head.name", None, "a head name (arcface, cosface, ..., softmax)")
    arguments = {key: value for key, value in head.items() if key != "partial_fc"}
    _check_arguments("head", head_factory(head["name"]), arguments, skip=("num_classes",))
    if "partial_fc" in head:
        _check_partial_fc(head)
    _check(
        "num_classes" not in head,
        "head.num_classes",
        head.get("num_classes"),
        "left out (it comes from the data; set data.num_classes to check it)",
    )


def _check_partial_fc(head):
    # `head.partial_fc: {sample_rate, seed}` wraps the head in keras_face.heads.PartialFC.
    sampling = head["partial_fc"]
    _check(
        isinstance(sampling, dict),
        "head.partial_fc",
        sampling,
        "a mapping of keras_face.heads.PartialFC arguments (sample_rate, seed)",
    )
    _check_arguments(
        "head.partial_fc", heads.PartialFC, {"name": head["name"], **sampling}, skip=("head",)
    )
    rate = sampling.get("sample_rate", 0.1)
    _check(
        isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate <= 1,
        "head.partial_fc.sample_rate",
        rate,
        "a number in [0, 1]",
    )
    _check(
        _normalised_head_name(head["name"]) != "softmax",
        "head.name",
        head["name"],
        "a margin head (keras_face.heads) when head.partial_fc is given",
    )


def validate_config(config):
    """Check the values of a merged configuration; raise `ConfigError` naming the bad one.

    Every option of `keras_face.training.CONFIG_SCHEMA` is checked against its type and
    bounds, then the rules that tie options together (a file source needs `data.path`,
    a piecewise schedule needs `decay_epochs` or `decay_steps`) and the `backbone` /
    `head` arguments against the signature of what receives them.

    Args:
        config: dict. A complete configuration (e.g. from `merge_config`).

    Returns:
        The same dict.

    Example:
        ```python
        config = keras_face.training.config.validate_config(keras_face.training.DEFAULT_CONFIG)
        ```
    """
    for key in config:
        if key not in DEFAULT_CONFIG:
            raise _unknown_key_error("", key, DEFAULT_CONFIG)
    for option in CONFIG_SCHEMA:
        problem = option.problem(_value_at(config, option.key))
        if problem is not None:
            raise ConfigError(problem)
    _check_data_rules(config["data"])
    schedule = config["schedule"]
    if schedule["name"] == "piecewise":
        _check(
            (schedule["decay_epochs"] is None) != (schedule["decay_steps"] is None),
            "schedule.decay_epochs",
            schedule["decay_epochs"],
            "a list of epochs (or give schedule.decay_steps instead, not both)",
        )
    _check_argument_sections(config)
    return config


def dump_config(config, path):
    """Write a configuration as YAML (the run folder's `config.yaml`).

    Args:
        config: dict. The configuration.
        path: str. The YAML file to write.

    Example:
        ```python
        keras_face.training.config.dump_config(keras_face.training.load_config(), "config.yaml")
        ```
    """
    with atomic_write(path) as temporary, open(temporary, "w") as file:
        yaml.safe_dump(config, file, sort_keys=False)
