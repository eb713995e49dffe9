"""The training configuration schema: every option's default, type, bound and doc line.

`CONFIG_SCHEMA` is the one place where a training option is defined. Everything else is
derived from it: `DEFAULT_CONFIG` (the main job), the value checks of
`keras_face.training.load_config`, `configs/default.yaml` (`default_config_yaml()`) and
the option table of the Training page (`config_options_markdown()`); tests fail when the
shipped file or the page drift from the schema.

Adding an option is one `ConfigOption` entry: its dotted key places it in a section
(`"training.method"`, `"distillation.temperature"`, any depth).

The `backbone` and `head` sections are `ArgumentSection`s: their keys are the arguments
of the factory or layer that receives them (checked against its signature), so the
schema gives only their default and doc.
"""

import dataclasses

import yaml

from keras_face.training.optimizers import OPTIMIZERS
from keras_face.training.optimizers import SCHEDULES
from keras_face.training.optimizers import WEIGHT_DECAY_MODES
from keras_face.training.precision import PRECISIONS
from keras_face.training.strategy import STRATEGIES

DATA_SOURCES = ("synthetic", "recordio", "folder")
TYPES = ("int", "number", "bool", "str", "choice", "list[str]", "list[number]", "any")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(number):
    """`0`, `1`, `0.5`: a bound as it reads in a message."""
    return str(int(number)) if float(number).is_integer() else str(number)


@dataclasses.dataclass(frozen=True)
class ConfigOption:
    """One training option: dotted key, default, type, bounds and one-line doc.

    The value check and its message are derived from the type and bounds:
    `"<key> must be <expectation>. Received: <key>=<value>"`.

    Args:
        key: str. Dotted path, e.g. `"training.batch_size"`.
        default: the value of the main job (`keras-face train` with no arguments).
        doc: str. One line: what the option does (the docs table and `default.yaml`).
        type: str. One of `"int"`, `"number"`, `"bool"`, `"str"` (non-empty),
            `"choice"`, `"list[str]"`, `"list[number]"`, `"any"` (not checked here; the
            receiving function checks it). Defaults to `"any"`.
        choices: tuple. The valid values of a `"choice"`. Defaults to `()`.
        minimum: number. Inclusive lower bound of an `"int"` / `"number"`.
            Defaults to `None`.
        above: number. Exclusive lower bound. Defaults to `None`.
        below: number. Exclusive upper bound. Defaults to `None`.
        nullable: bool. `null` is valid too. Defaults to `False`.
        hint: str. Added in parentheses to the expectation of the error message.
            Defaults to `""`.
        expectation: str. Replaces the derived expectation of the error message.
            Defaults to `""`.
        note: str. Comment lines written above the key in `default.yaml` (the reason
            for a default). Defaults to `""`.

    Example:
        ```python
        option = keras_face.training.ConfigOption(
            "training.epochs", 8, "Training epochs.", type="int", minimum=1)
        option.problem(0)  # 'training.epochs must be a positive integer. Received: ...'
        ```
    """

    key: str
    default: object
    doc: str
    type: str = "any"
    choices: tuple = ()
    minimum: float = None
    above: float = None
    below: float = None
    nullable: bool = False
    hint: str = ""
    expectation: str = ""
    note: str = ""

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"`type` must be one of {TYPES}. Received: type={self.type!r}")
        if (self.type == "choice") != bool(self.choices):
            raise ValueError(
                f"`choices` go with type='choice' (and only with it). Received: "
                f"type={self.type!r}, choices={self.choices!r}"
            )
        if self.problem(self.default) is not None:
            raise ValueError(
                f"The default of {self.key} fails its own check. Received: default={self.default!r}"
            )

    @property
    def section(self):
        """The dotted section of the option (`""` at the top level)."""
        return self.key.rpartition(".")[0]

    @property
    def name(self):
        """The last part of the key."""
        return self.key.rpartition(".")[2]

    def describe(self):
        """What a valid value is, as the error message says it."""
        if self.expectation:
            text = self.expectation
        elif self.type == "choice":
            text = f"one of {list(self.choices)}"
        elif self.type == "bool":
            text = "true or false"
        elif self.type == "str":
            text = "a non-empty string"
        elif self.type == "list[str]":
            text = "a list of strings"
        elif self.type == "list[number]":
            text = "a list of numbers"
        elif self.type in ("int", "number"):
            text = self._describe_number()
        else:
            text = "any value"
        if self.nullable and not self.expectation:
            text += " or null"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def _describe_number(self):
        noun = "integer" if self.type == "int" else "number"
        article = "an" if noun == "integer" else "a"
        low = self.minimum if self.minimum is not None else self.above
        if low is not None and self.below is not None:
            opening = "[" if self.minimum is not None else "("
            return f"{article} {noun} in {opening}{_plain(low)}, {_plain(self.below)})"
        if self.above == 0 or (self.type == "int" and self.minimum == 1):
            return f"a positive {noun}"
        if self.minimum == 0:
            return f"a non-negative {noun}"
        if self.minimum is not None:
            return f"{article} {noun} >= {_plain(self.minimum)}"
        if self.above is not None:
            return f"{article} {noun} > {_plain(self.above)}"
        return f"{article} {noun}"

    def accepts(self, value):
        """Whether `value` is valid for this option."""
        if value is None:
            return self.nullable or self.type == "any" or None in self.choices
        if self.type == "any":
            return True
        if self.type == "choice":
            return value in self.choices
        if self.type == "bool":
            return isinstance(value, bool)
        if self.type == "str":
            return isinstance(value, str) and bool(value)
        if self.type == "list[str]":
            return isinstance(value, list) and all(isinstance(item, str) for item in value)
        if self.type == "list[number]":
            return isinstance(value, list) and all(_is_number(item) for item in value)
        if not (_is_int(value) if self.type == "int" else _is_number(value)):
            return False
        return (
            (self.minimum is None or value >= self.minimum)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
        )

    def problem(self, value):
        """`None` when `value` is valid, else the error message naming the key and value."""
        if self.accepts(value):
            return None
        return f"{self.key} must be {self.describe()}. Received: {self.key}={value!r}"


@dataclasses.dataclass(frozen=True)
class ArgumentSection:
    """A section whose keys are the arguments of what receives it (`backbone`, `head`).

    Its `name` key picks the factory or layer; the other keys are checked against that
    callable's signature by `keras_face.training.load_config`. Changing `name` replaces
    the whole section (another network takes other arguments).

    Args:
        key: str. The section, e.g. `"head"`.
        default: dict. The section of the main job, with its `name`.
        doc: str. One line for the docs table and `default.yaml`.
        notes: dict. `{argument: comment}` written above that key in `default.yaml`.
            Defaults to `{}`.

    Example:
        ```python
        section = keras_face.training.ArgumentSection(
            "head", {"name": "arcface", "scale": 16.0}, "The margin head.")
        ```
    """

    key: str
    default: dict
    doc: str
    notes: dict = dataclasses.field(default_factory=dict)


# One entry per option (dotted key, default, type and bounds, one-line doc), kept as a
# table: the formatter leaves it as written.
# fmt: off
CONFIG_SCHEMA = (
    ConfigOption("name", "synthetic_arcface", type="str",
                 doc="Run name; the default output folder is runs/<name>-<time>."),
    ConfigOption("seed", 0, type="int",
                 doc="Seed of the weights, the data order and the synthetic data."),
    # data
    ConfigOption("data.source", "synthetic", type="choice", choices=DATA_SOURCES,
                 doc="Training images: a .rec pack, an image folder or synthetic faces."),
    ConfigOption("data.path", None, type="str", nullable=True,
                 doc=".rec file or image folder for the other sources."),
    ConfigOption("data.num_classes", None, type="int", minimum=1, nullable=True,
                 doc="When given, checked against the data."),
    ConfigOption("data.image_size", 32, type="int", minimum=1,
                 doc="Image side in pixels (synthetic faces at 32: the ArcFace template, scaled)."),
    ConfigOption("data.identities", 300, type="int", minimum=1,
                 doc="Synthetic training identities."),
    ConfigOption("data.images_per_identity", 16, type="int", minimum=1,
                 doc="Synthetic images per training identity."),
    ConfigOption("data.heldout_identities", 100, type="int", minimum=1,
                 doc="Synthetic held-out identities (never trained on)."),
    ConfigOption("data.heldout_images_per_identity", 10, type="int", minimum=1,
                 doc="Images per held-out identity."),
    ConfigOption("data.heldout_pairs", 1000, type="int", minimum=1,
                 doc="Verification pairs of the held-out identities."),
    ConfigOption("data.quality", "realistic", type="any",
                 doc="Synthetic image quality: a keras_face.data.synthetic_faces quality."),
    ConfigOption("data.random_flip", True, type="bool",
                 doc="Random horizontal flips in training."),
    ConfigOption("data.verification", [], type="list[str]", expectation="a list of .bin paths",
                 doc=".bin files evaluated every epoch (real data)."),
    # optimizer
    ConfigOption("optimizer.name", "sgd", type="choice", choices=OPTIMIZERS,
                 doc="Optimizer: SGD (coupled L2 by default) or AdamW."),
    ConfigOption("optimizer.learning_rate", 0.02, type="number", above=0,
                 doc="Peak learning rate."),
    ConfigOption("optimizer.momentum", 0.9, type="number", minimum=0, below=1,
                 doc="SGD momentum."),
    ConfigOption("optimizer.weight_decay", 0.0005, type="number", minimum=0,
                 doc="Weight decay (see weight_decay_mode)."),
    ConfigOption("optimizer.weight_decay_mode", "auto", type="choice", choices=WEIGHT_DECAY_MODES,
                 doc="auto = coupled L2 for SGD (PyTorch's weight_decay), decoupled for AdamW."),
    ConfigOption("optimizer.nesterov", False, type="bool",
                 doc="Nesterov momentum (SGD)."),
    ConfigOption("optimizer.beta_1", 0.9, type="number", minimum=0, below=1,
                 doc="AdamW beta_1."),
    ConfigOption("optimizer.beta_2", 0.999, type="number", minimum=0, below=1,
                 doc="AdamW beta_2."),
    ConfigOption("optimizer.epsilon", 1e-08, type="number", above=0,
                 doc="AdamW epsilon."),
    ConfigOption("optimizer.clipnorm", None, type="number", above=0, nullable=True,
                 doc="Clip each gradient's norm to this."),
    ConfigOption("optimizer.global_clipnorm", None, type="number", above=0, nullable=True,
                 doc="Clip the norm of all gradients together (arcface_torch: 5)."),
    ConfigOption("optimizer.exclude_from_weight_decay", None, type="list[str]", nullable=True,
                 doc="Variable-name parts spared from the decay (e.g. [bias, gamma, beta])."),
    # schedule
    ConfigOption("schedule.name", "poly", type="choice", choices=SCHEDULES,
                 doc="Learning-rate schedule (poly: arcface_torch's PolyScheduler)."),
    ConfigOption("schedule.warmup_epochs", 0, type="number", minimum=0,
                 doc="Linear warm-up length in epochs."),
    ConfigOption("schedule.power", 2.0, type="number", above=0,
                 doc="Exponent of the poly decay."),
    ConfigOption("schedule.decay_epochs", None, type="list[number]", nullable=True,
                 doc="Piecewise: epochs where the rate drops."),
    ConfigOption("schedule.decay_steps", None, type="list[number]", nullable=True,
                 doc="Piecewise: the same in optimizer steps (exclusive with decay_epochs)."),
    ConfigOption("schedule.decay_factor", 0.1, type="number", above=0,
                 doc="Piecewise: multiplier at each drop."),
    # training
    ConfigOption("training.epochs", 8, type="int", minimum=1,
                 doc="Training epochs."),
    ConfigOption("training.batch_size", 64, type="int", minimum=1, hint="the global batch",
                 doc="Global batch (all replicas together)."),
    ConfigOption("training.steps_per_epoch", None, type="int", minimum=1, nullable=True,
                 doc="Default: images // batch_size (.rec and folder data only)."),
    ConfigOption("training.mixed_precision", None,
                 type="choice", choices=PRECISIONS,
                 expectation="null, mixed_float16 or mixed_bfloat16",
                 doc="Dtype policy of the model; null: float32."),
    ConfigOption("training.jit_compile", False, type="bool",
                 doc="Compile the training step with XLA."),
    ConfigOption("training.strategy", "auto", type="choice", choices=STRATEGIES,
                 doc="tf.distribute strategy; auto picks it from TF_CONFIG and the GPUs."),
    ConfigOption("training.cpu_replicas", None, type="int", minimum=1, nullable=True,
                 doc="Split the CPU into N logical devices (testing)."),
    ConfigOption("training.backup_every_steps", 50,
                 type="int", minimum=1, nullable=True, hint="no backups",
                 doc="Step-level backups; null: none."),
    ConfigOption("training.verbose", 1, type="choice", choices=(0, 1, 2), expectation="0, 1 or 2",
                 doc="Verbosity of fit."),
    # evaluation
    ConfigOption("evaluation.n_folds", 10, type="int", minimum=2,
                 doc="Folds of the verification protocol."),
    ConfigOption("evaluation.flip", True, type="bool",
                 doc="Flip test in the final evaluation."),
    ConfigOption("evaluation.batch_size", 256, type="int", minimum=1,
                 doc="Batch of the embedding extraction."),
    ConfigOption("evaluation.every_n_epochs", 1, type="int", minimum=0, hint="0: only at the end",
                 doc="Held-out accuracy after every N epochs (0: only at the end)."),
)
# fmt: on

ARGUMENT_SECTIONS = (
    ArgumentSection(
        "backbone",
        {"name": "mobilefacenet", "embedding_size": 128},
        "keras_face.models.get(name, ...) arguments; input_shape defaults to data.image_size.",
    ),
    ArgumentSection(
        "head",
        {"name": "arcface", "scale": 16.0, "margin": 0.5},
        "keras_face.heads.get(name, num_classes, ...) arguments, or name: softmax.",
        notes={
            "scale": (
                "s = 16 rather than the paper's 64: with 300 classes the NormFace/CosFace bound\n"
                "s >= (C - 1) / C * ln((C - 1) P / (1 - P)) is about 8 for P = 0.9, and a large s\n"
                "saturates the softmax of a small problem (s = 64 trained worse here)."
            )
        },
    ),
)

# Where the argument sections go in the default config (and default.yaml): after `data`.
_ARGUMENT_SECTIONS_AFTER = "data"

YAML_HEADER = """\
# The main job: `keras-face train` with no arguments runs exactly this configuration.
# Generated from keras_face.training.CONFIG_SCHEMA (every option's default, type and doc
# live there): regenerate with
#     python -c "import keras_face.training as t; print(t.default_config_yaml(), end='')" \\
#         > configs/default.yaml
# Every other config in this folder is merged onto it.
#
# 300 synthetic identities x 16 images train a small backbone with ArcFace for 8 epochs;
# 100 held-out identities (never seen in training) give 1,000 verification pairs for the
# 10-fold protocol. About 4 minutes on a free 2-core CPU (6 when it is shared).
"""


def _layout():
    """`[(section, [entries])]` in file order; section `""` holds the top-level options."""
    sections = {}
    for option in CONFIG_SCHEMA:
        top = option.key.split(".")[0] if "." in option.key else ""
        sections.setdefault(top, []).append(option)
    ordered = []
    for top, entries in sections.items():
        ordered.append((top, entries))
        if top == _ARGUMENT_SECTIONS_AFTER:
            ordered.extend((section.key, [section]) for section in ARGUMENT_SECTIONS)
    return ordered


def _set_dotted(config, key, value):
    *parents, last = key.split(".")
    for part in parents:
        config = config.setdefault(part, {})
    config[last] = value


def build_default_config():
    """A fresh copy of the main job's configuration, built from `CONFIG_SCHEMA`.

    Returns:
        dict: `{name, seed, data, backbone, head, optimizer, schedule, training,
        evaluation}` with the schema's defaults.

    Example:
        ```python
        config = keras_face.training.build_default_config()
        config["training"]["epochs"]  # 8
        ```
    """
    config = {}
    for _, entries in _layout():
        for entry in entries:
            if isinstance(entry, ArgumentSection):
                config[entry.key] = dict(entry.default)
            else:
                default = entry.default
                _set_dotted(
                    config, entry.key, list(default) if isinstance(default, list) else default
                )
    return config


def options():
    """`{dotted key: ConfigOption}` of every option of the schema."""
    return {option.key: option for option in CONFIG_SCHEMA}


def _yaml_scalar(value):
    # A one-element flow list renders any scalar (null, 5.0e-04, true, []) as YAML.
    return yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]


def _comment_lines(text, indent):
    return [f"{indent}# {line}".rstrip() for line in text.splitlines()]


def default_config_yaml():
    """The text of `configs/default.yaml`, generated from `CONFIG_SCHEMA`.

    Returns:
        str: YAML with one comment per option (its doc line), equal to the shipped
        `configs/default.yaml` (a test checks it).

    Example:
        ```python
        with open("configs/default.yaml", "w") as file:
            file.write(keras_face.training.default_config_yaml())
        ```
    """
    lines = YAML_HEADER.splitlines()
    for section, entries in _layout():
        if isinstance(entries[0], ArgumentSection):
            argument_section = entries[0]
            lines.append(f"{section}:  # {argument_section.doc}")
            for key, value in argument_section.default.items():
                if key in argument_section.notes:
                    lines.extend(_comment_lines(argument_section.notes[key], "  "))
                lines.append(f"  {key}: {_yaml_scalar(value)}")
            continue
        if section:
            lines.append(f"{section}:")
        rows = []
        for option in entries:
            depth = option.key.count(".")
            rows.append(("  " * depth + f"{option.name}: {_yaml_scalar(option.default)}", option))
        width = max(len(text) for text, _ in rows)
        for text, option in rows:
            if option.note:
                lines.extend(_comment_lines(option.note, "  " * option.key.count(".")))
            lines.append(f"{text.ljust(width)}  # {option.doc}")
    return "\n".join(lines) + "\n"


def _cell(text):
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _markdown_value(value):
    return f"`{_yaml_scalar(value)}`"


def config_options_markdown():
    """The option table of the Training page, generated from `CONFIG_SCHEMA`.

    Returns:
        str: a Markdown table `| key | default | valid values | what |`, one row per
        option (the `backbone` and `head` sections as one row each).

    Example:
        ```python
        print(keras_face.training.config_options_markdown())
        ```
    """
    lines = ["| key | default | valid values | what |", "|---|---|---|---|"]
    for _, entries in _layout():
        for entry in entries:
            if isinstance(entry, ArgumentSection):
                default = ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in entry.default.items())
                lines.append(
                    f"| `{entry.key}` | `{{{default}}}` | the arguments of the "
                    f"named {entry.key} | {entry.doc} |"
                )
            else:
                lines.append(
                    f"| `{entry.key}` | {_markdown_value(entry.default)} | "
                    f"{_cell(entry.describe())} | {_cell(entry.doc)} |"
                )
    return "\n".join(lines) + "\n"
