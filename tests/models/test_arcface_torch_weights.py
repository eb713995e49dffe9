"""arcface_torch weights in keras_face models: PyTorch backbones written here with
arcface_torch's parameter names and shapes (`backbones/iresnet.py`, `mobilefacenet.py`),
random weights and batch-norm statistics, saved with `torch.save` and converted back."""

import os
import pickle

import keras
import numpy as np
import pytest

from keras_face import models
from keras_face.models import arcface_torch_weights

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = pytest.mark.tf_only


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    def __init__(self, layers, num_features=512, map_size=7):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * map_size * map_size, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def _make_layer(self, planes, blocks):
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes, 1, 2, bias=False),
            nn.BatchNorm2d(planes, eps=1e-05),
        )
        layers = [IBasicBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


class ConvBlock(nn.Module):
    def __init__(self, in_c, out_c, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
            nn.PReLU(out_c),
        )

    def forward(self, x):
        return self.layers(x)


class LinearBlock(nn.Module):
    def __init__(self, in_c, out_c, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
        )

    def forward(self, x):
        return self.layers(x)


class DepthWise(nn.Module):
    def __init__(self, in_c, out_c, residual=False, stride=2, groups=1):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, groups),
            ConvBlock(groups, groups, 3, stride, 1, groups=groups),
            LinearBlock(groups, out_c),
        )

    def forward(self, x):
        return x + self.layers(x) if self.residual else self.layers(x)


class Residual(nn.Module):
    def __init__(self, channels, num_block, groups):
        super().__init__()
        self.layers = nn.Sequential(
            *[DepthWise(channels, channels, True, 1, groups) for _ in range(num_block)]
        )

    def forward(self, x):
        return self.layers(x)


class GDC(nn.Module):
    def __init__(self, embedding_size, map_size=7):
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(512, 512, kernel=map_size, groups=512),
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x):
        return self.layers(x)


class MobileFaceNet(nn.Module):
    """arcface_torch's `get_mbf(fp16=False, num_features, blocks=(1, 4, 6, 2), scale=2)`."""

    def __init__(self, num_features=512, scale=2, map_size=7):
        super().__init__()
        blocks = (1, 4, 6, 2)
        self.layers = nn.ModuleList()
        self.layers.append(ConvBlock(3, 64 * scale, 3, 2, 1))
        self.layers.append(ConvBlock(64 * scale, 64 * scale, 3, 1, 1, groups=64))
        self.layers.extend(
            [
                DepthWise(64 * scale, 64 * scale, stride=2, groups=128),
                Residual(64 * scale, blocks[1], 128),
                DepthWise(64 * scale, 128 * scale, stride=2, groups=256),
                Residual(128 * scale, blocks[2], 256),
                DepthWise(128 * scale, 128 * scale, stride=2, groups=512),
                Residual(128 * scale, blocks[3], 256),
            ]
        )
        self.conv_sep = ConvBlock(128 * scale, 512)
        self.features = GDC(num_features, map_size)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


IRESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
IRESNET_LAYERS[200] = (6, 26, 60, 6)


def _randomise(module, seed, input_size=32):
    """Random weights, then batch-norm statistics of a random batch (activations of order one).

    With PyTorch's default initialisation and unit running statistics the signal fades
    through the network and every image gets nearly the same embedding; statistics
    measured on a batch keep the embeddings apart, so the comparison tests the whole body.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for submodule in module.modules():
            if isinstance(submodule, (nn.BatchNorm1d, nn.BatchNorm2d)):
                size = submodule.num_features
                if submodule.weight.requires_grad:
                    submodule.weight.copy_(0.5 + torch.rand(size, generator=generator))
                submodule.bias.copy_(0.1 * torch.randn(size, generator=generator))
                submodule.momentum = None  # a cumulative average over the calibration batch
                submodule.reset_running_stats()
            elif isinstance(submodule, nn.PReLU):
                submodule.weight.copy_(
                    0.3 * torch.rand(submodule.weight.shape, generator=generator)
                )
        module.train()
        module(torch.rand((6, 3, input_size, input_size), generator=generator) * 2 - 1)
    return module.eval()


def _save(module, path):
    torch.save(module.state_dict(), path)
    return str(path)


def _compare(torch_model, keras_model, input_size, seed=0):
    images = np.random.default_rng(seed).uniform(0, 255, (2, input_size, input_size, 3))
    images = images.astype(np.float32)
    normalised = (images / 255.0 - 0.5) / 0.5  # arcface_torch's transform
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(normalised.transpose(0, 3, 1, 2))).numpy()
    actual = keras.ops.convert_to_numpy(keras_model(images, training=False))
    relative = np.linalg.norm(actual - expected, axis=1) / np.linalg.norm(expected, axis=1)
    # The two images' embeddings differ: the comparison is not of a constant output.
    spread = np.linalg.norm(expected[0] - expected[1]) / np.linalg.norm(expected[0])
    assert spread > 0.05, spread
    return expected, actual, relative


def _check_iresnet(depth, input_size, tmp_path):
    torch_model = _randomise(
        IResNet(IRESNET_LAYERS[depth], map_size=input_size // 16), depth, input_size
    )
    path = _save(torch_model, tmp_path / f"r{depth}.pth")
    keras_model = models.from_arcface_torch(path)
    assert keras_model.input_shape == (None, input_size, input_size, 3)
    expected, actual, relative = _compare(torch_model, keras_model, input_size)
    assert actual.shape == expected.shape == (2, 512)
    assert np.linalg.norm(expected, axis=1).min() > 1.0
    assert relative.max() <= 1e-5, relative


@pytest.mark.parametrize("depth", [18, 34])
def test_iresnet_embeddings_equal_arcface_torch(depth, tmp_path):
    _check_iresnet(depth, 32, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [50, 100, 200])
def test_deep_iresnet_embeddings_equal_arcface_torch(depth, tmp_path):
    _check_iresnet(depth, 32, tmp_path)


@pytest.mark.slow
def test_iresnet50_at_112_has_arcface_torch_tensor_count(tmp_path):
    """The published r50: 112x112, fc over a 7x7 map; 396 tensors without counters."""
    torch_model = _randomise(IResNet(IRESNET_LAYERS[50]), 50, 112)
    state_dict = torch_model.state_dict()
    weights = [key for key in state_dict if not key.endswith("num_batches_tracked")]
    assert len(weights) == 396
    path = _save(torch_model, tmp_path / "r50.pth")
    keras_model = models.from_arcface_torch(path)
    assert len(keras_model.weights) == 396
    assert models.count_parameters(keras_model) == 43_590_848
    expected, actual, relative = _compare(torch_model, keras_model, 112)
    assert relative.max() <= 1e-5, relative


def test_flatten_reorder_is_what_makes_the_fc_match(tmp_path):
    """Without the (C, H, W) -> (H, W, C) reorder of the fc input the embeddings differ."""
    torch_model = _randomise(IResNet(IRESNET_LAYERS[18], map_size=2), 18)
    path = _save(torch_model, tmp_path / "r18.pth")
    keras_model = models.from_arcface_torch(path)
    fc = torch_model.fc.weight.detach().numpy()
    keras_model.get_layer("embedding_fc").kernel.assign(fc.T)  # naive: no reorder
    expected, actual, relative = _compare(torch_model, keras_model, 32)
    assert relative.min() > 1e-2


def test_mbf_embeddings_equal_arcface_torch(tmp_path):
    torch_model = _randomise(MobileFaceNet(), 1, 112)
    path = _save(torch_model, tmp_path / "mbf.pth")
    keras_model = models.from_arcface_torch(path)
    assert keras_model.name == "mobilefacenet_mbf"
    assert keras_model.input_shape == (None, 112, 112, 3)
    assert models.count_parameters(keras_model) == sum(
        value.numel() for value in torch_model.parameters()
    )
    expected, actual, relative = _compare(torch_model, keras_model, 112)
    assert np.linalg.norm(expected, axis=1).min() > 1.0
    assert relative.max() <= 1e-5, relative
    # The trained scale of mbf's last batch norm is copied into the frozen scale.
    gamma = keras_model.get_layer("embedding_features").gamma
    assert not gamma.trainable
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(gamma), torch_model.features.layers[3].weight.detach().numpy()
    )


def test_load_into_existing_model_and_keras_round_trip(tmp_path):
    torch_model = _randomise(IResNet(IRESNET_LAYERS[18], map_size=2), 3)
    keras_model = models.iresnet18(input_shape=(32, 32, 3), preprocessing="insightface")
    returned = models.load_arcface_torch_weights(keras_model, torch_model.state_dict(), "r18")
    assert returned is keras_model
    _, actual, relative = _compare(torch_model, keras_model, 32)
    assert relative.max() <= 1e-5
    keras_model.save(tmp_path / "r18.keras")
    reloaded = keras.saving.load_model(tmp_path / "r18.keras")
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(images)),
        keras.ops.convert_to_numpy(keras_model(images)),
        rtol=1e-6,
        atol=1e-6,
    )


def test_architecture_detection(tmp_path):
    state_dict = {
        k: v.numpy() for k, v in IResNet(IRESNET_LAYERS[34], map_size=2).state_dict().items()
    }
    assert models.arcface_torch_architecture(state_dict) == "r34"
    mbf = {k: v.numpy() for k, v in MobileFaceNet().state_dict().items()}
    assert models.arcface_torch_architecture(mbf) == "mbf"


def test_mismatched_architecture_lists_missing_unexpected_and_misshaped(tmp_path):
    path = _save(IResNet(IRESNET_LAYERS[18], map_size=2), tmp_path / "r18.pth")
    with pytest.raises(models.WeightConversionError) as info:
        models.from_arcface_torch(path, architecture="r34")
    message = str(info.value)
    assert path in message and "missing [layer1.2.bn1.bias, layer1.2.bn1.running_mean" in message
    assert "mis-shaped" not in message and "unexpected" not in message

    state_dict = IResNet(IRESNET_LAYERS[18], map_size=2).state_dict()
    state_dict["fc.weight"] = state_dict["fc.weight"][:, :100]
    state_dict["extra.weight"] = torch.zeros(3)
    del state_dict["layer2.1.conv1.weight"]
    path = str(tmp_path / "damaged.pth")
    torch.save(state_dict, path)
    keras_model = models.iresnet18(input_shape=(32, 32, 3))
    with pytest.raises(models.WeightConversionError) as info:
        models.load_arcface_torch_weights(keras_model, path)
    message = str(info.value)
    assert message.startswith(path)
    assert "missing [layer2.1.conv1.weight] (1)" in message
    assert "unexpected [extra.weight] (1)" in message
    assert "fc.weight: (512, 100) in the file, (512, 2048) expected" in message


def test_bad_batch_norm_epsilon_is_refused():
    state_dict = IResNet(IRESNET_LAYERS[18], map_size=2).state_dict()
    keras_model = models.iresnet18(input_shape=(32, 32, 3))
    layer = keras_model.get_layer("stem_bn")
    layer.epsilon = 2e-5
    with pytest.raises(models.WeightConversionError, match="stem_bn: 2e-05"):
        models.load_arcface_torch_weights(keras_model, state_dict)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_files_are_refused_naming_the_file(tmp_path):
    other = str(tmp_path / "resnet.pth")
    torch.save(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).state_dict(), other)
    with pytest.raises(models.WeightConversionError, match="not an arcface_torch") as info:
        models.from_arcface_torch(other)
    assert other in str(info.value)

    whole_module = str(tmp_path / "module.pth")
    torch.save(nn.Linear(2, 2), whole_module)  # a pickled module, not a state_dict
    with pytest.raises(models.WeightConversionError, match="weights-only") as info:
        models.from_arcface_torch(whole_module)
    assert whole_module in str(info.value)

    exploit = str(tmp_path / "exploit.pth")
    with open(exploit, "wb") as file:
        pickle.dump({"conv1.weight": _Exploit(tmp_path / "executed")}, file)
    with pytest.raises(models.WeightConversionError, match="weights-only"):
        models.from_arcface_torch(exploit)
    assert not (tmp_path / "executed").exists()

    not_a_dict = str(tmp_path / "list.pth")
    torch.save([torch.zeros(2)], not_a_dict)
    with pytest.raises(models.WeightConversionError, match="expected a state_dict") as info:
        models.from_arcface_torch(not_a_dict)
    assert not_a_dict in str(info.value)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(models.WeightConversionError, match="garbage.pth"):
        models.from_arcface_torch(str(garbage))

    with pytest.raises(FileNotFoundError, match="missing.pth"):
        models.from_arcface_torch(str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="Received: architecture='r99'"):
        models.from_arcface_torch(other, architecture="r99")


def test_training_checkpoint_and_module_prefix(tmp_path):
    torch_model = _randomise(IResNet(IRESNET_LAYERS[18], map_size=2), 5)
    prefixed = {f"module.{key}": value for key, value in torch_model.state_dict().items()}
    path = str(tmp_path / "checkpoint_gpu_0.pt")
    torch.save({"epoch": 3, "state_dict_backbone": prefixed}, path)
    state_dict = arcface_torch_weights.read_arcface_torch_state_dict(path)
    assert "conv1.weight" in state_dict
    _, _, relative = _compare(torch_model, models.from_arcface_torch(path), 32)
    assert relative.max() <= 1e-5


def test_convert_command(tmp_path, capsys):
    from keras_face import cli

    torch_model = _randomise(MobileFaceNet(num_features=128, map_size=2), 7)
    weights = _save(torch_model, tmp_path / "mbf.pth")
    output = tmp_path / "mbf.keras"
    assert cli.main(["convert", "--weights", weights, "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "Converted" in out and "input 32x32" in out and "128-d embeddings" in out
    reloaded = keras.saving.load_model(output)
    _, _, relative = _compare(torch_model, reloaded, 32)
    assert relative.max() <= 1e-5

    other = str(tmp_path / "other.pth")
    torch.save({"weight": torch.zeros(3)}, other)
    assert cli.main(["convert", "--weights", other, "--output", str(tmp_path / "o.keras")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"keras-face convert: error: {other}: not an")
    status = cli.main(["convert", "--weights", weights, "--output", str(tmp_path / "x.h5")])
    assert status == 1
    assert "--output must be a .keras file" in capsys.readouterr().err
    status = cli.main(
        [
            "convert",
            "--weights",
            weights,
            "--output",
            str(tmp_path / "r.keras"),
            "--architecture",
            "r50",
        ]
    )
    assert status == 1
    assert "missing [" in capsys.readouterr().err
