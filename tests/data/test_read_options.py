import dataclasses
import inspect
import re

import pytest

tf = pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402

pytestmark = pytest.mark.tf_only

READERS = (data.read_recordio, data.read_image_folder, data.read_tfrecord)


def documented_arguments(function):
    """The names in the `Args:` section of a docstring."""
    args = inspect.getdoc(function).split("Args:")[1]
    args = re.split(r"\n(?:Returns|Example|Raises):", args)[0]
    return re.findall(r"^    (\*{0,2}\w+):", args, re.M)


def test_defaults_are_the_old_reader_defaults():
    options = data.ReadOptions()
    assert dataclasses.asdict(options) == {
        "batch_size": None,
        "shuffle": True,
        "seed": None,
        "repeat": False,
        "num_shards": 1,
        "shard_index": 0,
        "input_context": None,
        "image_size": None,
        "size_mismatch": "resize",
        "flip": False,
        "preprocessing": None,
        "augmentation": None,
        "drop_remainder": False,
        "strict": False,
        "stats": None,
        "num_parallel_calls": tf.data.AUTOTUNE,
        "prefetch": True,
        "jpeg_dct_method": "INTEGER_ACCURATE",
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 3


def test_options_are_documented_once():
    names = data.ReadOptions.field_names()
    assert documented_arguments(data.ReadOptions) == list(names)
    for reader in READERS:
        documented = documented_arguments(reader)
        assert not set(documented) & set(names), reader.__name__  # documented in ReadOptions
        assert documented[:2] == [inspect.getfullargspec(reader).args[0], "options"]
        assert documented[-1] == "**option_overrides"
        signature = inspect.signature(reader)
        assert not set(signature.parameters) & set(names), reader.__name__


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("batch_size", 0, "batch_size=0"),
        ("batch_size", 2.0, "batch_size=2.0"),
        ("batch_size", True, "batch_size=True"),
        ("seed", "7", "seed='7'"),
        ("num_shards", 0, "num_shards=0"),
        ("shard_index", 3, r"num_shards=1\). Received: shard_index=3"),
        ("image_size", (0, 4), r"image_size=\(0, 4\)"),
        ("image_size", "big", "image_size='big'"),
        ("preprocessing", "caffe", "preprocessing='caffe'"),
        ("augmentation", 3, "augmentation=3"),
        ("augmentation", [abs, 3], r"augmentation=\[<built-in function abs>, 3\]"),
        ("stats", {}, r"stats=\{\}"),
        ("num_parallel_calls", 0, "num_parallel_calls=0"),
        ("flip", "yes", "flip='yes'"),
        ("strict", None, "strict=None"),
    ],
)
def test_bad_values_raise_naming_them(name, value, message):
    with pytest.raises(
        ValueError, match=rf"Received: {message}" if "Received" not in message else message
    ):
        data.ReadOptions(**{name: value})
    with pytest.raises(ValueError, match=message):
        data.ReadOptions().replace(**{name: value})


def test_replace_and_unknown_names():
    options = data.ReadOptions(batch_size=8, image_size=112, seed=3)
    assert options.image_size == (112, 112)
    changed = options.replace(shuffle=False, batch_size=4)
    assert (changed.batch_size, changed.shuffle, changed.seed) == (4, False, 3)
    assert options.batch_size == 8  # unchanged
    with pytest.raises(
        TypeError, match=r"'batchsize'. Did you mean 'batch_size'\? Received: batchsize=4"
    ):
        options.replace(batchsize=4)
    with pytest.raises(TypeError, match="Did you mean 'shuffle'"):
        data.read_recordio("missing.rec", shufle=False)
    with pytest.raises(ValueError, match="Received: options=64"):
        data.read_recordio("missing.rec", 64)


def test_input_context_sets_the_shard():
    context = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=2)
    options = data.ReadOptions(input_context=context)
    assert (options.num_shards, options.shard_index) == (4, 2)
    changed = options.replace(shard_index=1)  # an explicit shard replaces the context
    assert (changed.num_shards, changed.shard_index, changed.input_context) == (4, 1, None)
    assert options.replace(seed=1).shard_index == 2
    with pytest.raises(ValueError, match="input_context=3"):
        data.ReadOptions(input_context=3)


def test_augmentation_function_applies_layers_in_order():
    import keras

    options = data.ReadOptions(augmentation=[lambda x: x + 1, keras.layers.Rescaling(2.0)])
    result = options.augmentation_function()(tf.constant([1.0, 2.0]))
    assert result.numpy().tolist() == [4.0, 6.0]
    assert data.ReadOptions().augmentation_function() is None
