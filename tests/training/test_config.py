import functools
import os

import pytest
import yaml

from keras_face import training
from keras_face.training import config as config_module
from keras_face.training import config_schema

CONFIGS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs"
)


def test_default_yaml_is_the_embedded_default():
    with open(os.path.join(CONFIGS, "default.yaml")) as file:
        assert yaml.safe_load(file) == training.DEFAULT_CONFIG
    assert training.load_config() == training.DEFAULT_CONFIG


@pytest.mark.parametrize(
    "name", ["default.yaml", "ms1mv3_r50.yaml", "casia_webface.yaml", "tutorial_2d.yaml"]
)
def test_shipped_configs_validate(name):
    config = training.load_config(os.path.join(CONFIGS, name))
    assert config["training"]["batch_size"] > 0


def test_ms1mv3_recipe_has_insightface_numbers():
    config = training.load_config(os.path.join(CONFIGS, "ms1mv3_r50.yaml"))
    assert config["backbone"] == {"name": "iresnet50", "embedding_size": 512}
    assert config["head"]["name"] == "arcface" and config["head"]["scale"] == 64.0
    assert config["head"]["margin"] == 0.5
    assert config["optimizer"]["name"] == "sgd" and config["optimizer"]["learning_rate"] == 0.1
    assert config["optimizer"]["momentum"] == 0.9 and config["optimizer"]["weight_decay"] == 5e-4
    assert config["schedule"]["name"] == "poly" and config["schedule"]["warmup_epochs"] == 0
    assert config["training"]["batch_size"] == 1024 and config["training"]["epochs"] == 20
    assert config["training"]["mixed_precision"] == "mixed_float16"
    assert config["data"]["num_classes"] == 93431


def test_typo_names_the_key_and_the_valid_ones():
    with pytest.raises(training.ConfigError) as error:
        training.load_config(overrides=["training.epoch=3"])
    message = str(error.value)
    assert "Unknown config key 'training.epoch'" in message
    assert "Did you mean 'epochs'?" in message
    assert "batch_size" in message and "jit_compile" in message
    assert message.endswith("Received: training.epoch")
    with pytest.raises(
        training.ConfigError, match="Valid keys of the top level: age, backbone, data"
    ):
        training.load_config({"optimiser": {"name": "sgd"}})


def test_backbone_and_head_arguments_are_checked_against_their_signatures():
    with pytest.raises(
        training.ConfigError, match=r"Unknown config key 'head.margn'.*Did you mean 'margin'"
    ):
        training.load_config(overrides=["head.margn=0.4"])
    with pytest.raises(training.ConfigError, match="Valid names: softmax, adaface"):
        training.load_config(overrides=["head=arcfase"])
    with pytest.raises(
        training.ConfigError, match="Unknown backbone.*Received: backbone.name='resnet50'"
    ):
        training.load_config(overrides=["backbone=resnet50"])
    with pytest.raises(training.ConfigError, match="Unknown config key 'backbone.width'"):
        training.load_config(overrides=["backbone.width=2"])


def test_overrides_replace_a_section_by_name():
    config = training.load_config(
        overrides=["head=softmax", "training.epochs=2", "optimizer.global_clipnorm=5"]
    )
    assert config["head"] == {"name": "softmax"}
    assert config["training"]["epochs"] == 2
    assert config["optimizer"]["global_clipnorm"] == 5
    merged = training.load_config(overrides=["head.margin=0.3"])
    assert merged["head"]["name"] == "arcface" and merged["head"]["margin"] == 0.3


def test_value_errors():
    with pytest.raises(
        training.ConfigError,
        match=r"training.batch_size must be a positive integer .*Received: training.batch_size=0",
    ):
        training.load_config(overrides=["training.batch_size=0"])
    with pytest.raises(training.ConfigError, match="data.path"):
        training.load_config(overrides=["data.source=recordio"])
    with pytest.raises(training.ConfigError, match="mixed_precision"):
        training.load_config(overrides=["training.mixed_precision=float16"])
    with pytest.raises(training.ConfigError, match="key=value"):
        training.load_config(overrides=["training.epochs"])
    with pytest.raises(training.ConfigError, match="head.num_classes"):
        training.load_config(overrides=["head.num_classes=10"])


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(training.ConfigError, match="Config file not found. Received: config="):
        training.load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [1, 2\n")
    with pytest.raises(training.ConfigError, match="is not valid YAML"):
        training.load_config(bad)


def test_parse_override_types():
    assert config_module.parse_override("a.b=3") == {"a": {"b": 3}}
    assert config_module.parse_override("a=null") == {"a": None}
    assert config_module.parse_override("a=[1, 2]") == {"a": [1, 2]}
    assert config_module.parse_override("a=mixed_float16") == {"a": "mixed_float16"}


DOCS = os.path.join(os.path.dirname(CONFIGS), "docs", "training.md")


def test_default_yaml_is_generated_from_the_schema():
    # Fails when configs/default.yaml drifts from CONFIG_SCHEMA (a default, a doc line).
    with open(os.path.join(CONFIGS, "default.yaml")) as file:
        assert file.read() == training.default_config_yaml()
    assert yaml.safe_load(training.default_config_yaml()) == training.build_default_config()


def test_docs_option_table_is_generated_from_the_schema():
    with open(DOCS) as file:
        page = file.read()
    begin = config_schema.DOCS_TABLE_BEGIN
    table = page[page.index(begin) + len(begin) : page.index(config_schema.DOCS_TABLE_END)]
    assert table == training.config_options_markdown()
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == len(training.CONFIG_SCHEMA) + len(training.ARGUMENT_SECTIONS)
    assert "| `training.batch_size` | `64` | a positive integer (the global batch) |" in table


def test_every_default_comes_from_one_schema_entry():
    keys = [option.key for option in training.CONFIG_SCHEMA]
    assert len(keys) == len(set(keys))
    for option in training.CONFIG_SCHEMA:
        value = training.DEFAULT_CONFIG
        for part in option.key.split("."):
            value = value[part]
        assert value == option.default, option.key
        assert option.doc and "\n" not in option.doc, option.key
    assert training.DEFAULT_CONFIG["head"] == {"name": "arcface", "scale": 16.0, "margin": 0.5}


def test_option_messages_come_from_type_and_bounds():
    schema = {option.key: option for option in training.CONFIG_SCHEMA}
    assert schema["optimizer.momentum"].problem(1.0) == (
        "optimizer.momentum must be a number in [0, 1). Received: optimizer.momentum=1.0"
    )
    assert (
        schema["evaluation.n_folds"]
        .problem(1)
        .startswith("evaluation.n_folds must be an integer >= 2")
    )
    assert schema["training.cpu_replicas"].problem(None) is None
    assert (
        schema["training.cpu_replicas"]
        .problem(0)
        .startswith("training.cpu_replicas must be a positive integer or null.")
    )
    assert (
        schema["optimizer.nesterov"]
        .problem("yes")
        .startswith("optimizer.nesterov must be true or false")
    )
    assert schema["training.mixed_precision"].problem(None) is None
    assert schema["seed"].problem(True) == "seed must be an integer. Received: seed=True"
    with pytest.raises(
        training.ConfigError,
        match=r"optimizer.epsilon must be a positive number\. Received: optimizer.epsilon=0",
    ):
        training.load_config(overrides=["optimizer.epsilon=0"])
    with pytest.raises(ValueError, match="fails its own check"):
        training.ConfigOption("training.example", -1, "An example.", type="int", minimum=0)


def test_a_new_option_is_one_schema_entry(monkeypatch):
    option = training.ConfigOption(
        "calibration.temperature",
        4.0,
        "Softmax temperature of the calibration.",
        type="number",
        above=0,
    )
    monkeypatch.setattr(config_schema, "CONFIG_SCHEMA", config_schema.CONFIG_SCHEMA + (option,))
    default = config_schema.build_default_config()
    assert default["calibration"] == {"temperature": 4.0}
    assert "calibration:\n  temperature: 4.0  # Softmax temperature of the calibration.\n" in (
        config_schema.default_config_yaml()
    )
    assert (
        "| `calibration.temperature` | `4.0` | a positive number |"
        in config_schema.config_options_markdown()
    )


def test_head_factory_builds_no_head(monkeypatch):
    from keras_face import heads

    @functools.wraps(heads.ArcFace.__init__)  # keeps the signature that load_config checks
    def refuse(*args, **kwargs):
        raise AssertionError("a head was built")

    monkeypatch.setattr(heads.ArcFace, "__init__", refuse)
    assert config_module.head_factory("arc_face") is heads.ArcFace
    assert config_module.head_factory("AM-Softmax") is heads.am_softmax
    assert config_module.head_factory("softmax") is training.SoftmaxHead
    for name in heads.names():
        assert callable(config_module.head_factory(name))
    assert training.load_config()["head"]["name"] == "arcface"


def test_training_method_selects_a_registered_method():
    config = training.load_config(None, ["training.method=classification"])
    assert training.training_method(config["training"]["method"]).name == "classification"
    with pytest.raises(training.ConfigError, match="training.method='clasification'"):
        training.load_config(None, ["training.method=clasification"])
    with pytest.raises(training.ConfigError, match="Did you mean 'classification'"):
        training.training_method("clasification")
