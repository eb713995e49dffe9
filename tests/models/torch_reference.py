"""Straightforward PyTorch re-implementations of the backbones, written from the papers
and the reference code's layer order (insightface arcface_torch for IR-ResNet and "mbf",
the authors' MXNet code for VarGFaceNet), in NCHW with PyTorch's symmetric padding.

They read their weights from a keras_face model by layer name and run in inference mode,
so comparing outputs checks the op order, strides, padding alignment, grouped-conv
layout, BN/PReLU parameters and the flatten order of the embedding FC.
"""

import keras
import numpy as np
import torch
from torch.nn import functional as F


class KerasWeights:
    """Reads a keras_face model's weights as torch tensors, by layer name."""

    def __init__(self, model):
        self.model = model

    def _numpy(self, variable):
        return np.array(keras.ops.convert_to_numpy(variable), dtype="float32")

    def tensor(self, variable):
        return torch.from_numpy(self._numpy(variable))

    def conv(self, x, name, stride=1, groups=1, padding=None):
        layer = self.model.get_layer(name)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel = self._numpy(layer.kernel)  # (kh, kw, channels, multiplier)
            height, width, channels, multiplier = kernel.shape
            weight = torch.from_numpy(
                kernel.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, height, width)
            )
            groups = channels
        else:
            kernel = self._numpy(layer.kernel)  # (kh, kw, in / groups, out)
            weight = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        bias = self.tensor(layer.bias) if layer.use_bias else None
        if padding is None:
            padding = weight.shape[-1] // 2
        return F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=groups)

    def bn(self, x, name, epsilon):
        layer = self.model.get_layer(name)
        return F.batch_norm(
            x,
            self.tensor(layer.moving_mean),
            self.tensor(layer.moving_variance),
            self.tensor(layer.gamma),
            self.tensor(layer.beta),
            training=False,
            eps=epsilon,
        )

    def prelu(self, x, name):
        return F.prelu(x, self.tensor(self.model.get_layer(name).alpha).reshape(-1))

    def dense_on_nchw(self, x, name):
        """`x.flatten(1)` (NCHW order) through the Keras Dense (NHWC-flatten kernel)."""
        layer = self.model.get_layer(name)
        kernel = self._numpy(layer.kernel)
        _, channels, height, width = x.shape
        kernel = kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3)
        out = x.flatten(1) @ torch.from_numpy(kernel.reshape(channels * height * width, -1).copy())
        if layer.use_bias:
            out = out + self.tensor(layer.bias)
        return out

    def se(self, x, name):
        gate = F.adaptive_avg_pool2d(x, 1)
        gate = self.conv(gate, f"{name}_se_conv1")
        gate = self.prelu(gate, f"{name}_se_prelu")
        gate = torch.sigmoid(self.conv(gate, f"{name}_se_conv2"))
        return x * gate


def _to_nchw(images, scale=1.0 / 128.0):
    x = torch.from_numpy(np.asarray(images, dtype="float32")).permute(0, 3, 1, 2)
    return (x - 127.5) * scale


def iresnet_forward(model, images, blocks_per_stage, se=False):
    """arcface_torch `IResNet.forward` with `IBasicBlock`s; output "E"."""
    w = KerasWeights(model)
    eps = 1e-5
    x = _to_nchw(images)
    x = w.prelu(w.bn(w.conv(x, "stem_conv"), "stem_bn", eps), "stem_prelu")
    for stage, blocks in enumerate(blocks_per_stage, start=1):
        for block in range(1, blocks + 1):
            name = f"stage{stage}_block{block}"
            stride = 2 if block == 1 else 1
            out = w.bn(x, f"{name}_bn1", eps)
            out = w.conv(out, f"{name}_conv1")
            out = w.prelu(w.bn(out, f"{name}_bn2", eps), f"{name}_prelu")
            out = w.bn(w.conv(out, f"{name}_conv2", stride=stride), f"{name}_bn3", eps)
            if se:
                out = w.se(out, name)
            identity = x
            if block == 1:
                identity = w.bn(
                    w.conv(x, f"{name}_shortcut_conv", stride=stride), f"{name}_shortcut_bn", eps
                )
            x = out + identity
    x = w.bn(x, "embedding_bn", eps)
    x = w.dense_on_nchw(x, "embedding_fc")
    return w.bn(x, "embedding_features", eps)


def mobilefacenet_forward(model, images, scale):
    """arcface_torch `MobileFaceNet.forward` (blocks (1, 4, 6, 2)) with its GDC output."""
    w = KerasWeights(model)
    eps = 1e-5

    def conv_block(x, name, stride=1, groups=1, activation=True):
        x = w.bn(w.conv(x, f"{name}_conv", stride=stride, groups=groups), f"{name}_bn", eps)
        return w.prelu(x, f"{name}_prelu") if activation else x

    def depthwise(x, name, expanded, stride, residual):
        out = conv_block(x, f"{name}_expand")
        out = conv_block(out, f"{name}_depthwise", stride=stride, groups=expanded)
        out = conv_block(out, f"{name}_project", activation=False)
        return x + out if residual else out

    x = _to_nchw(images)
    x = conv_block(x, "stem", stride=2)
    x = conv_block(x, "stem_depthwise", groups=64)
    stages = [(128, 5, 2), (256, 1, 2), (256, 6, 1), (512, 1, 2), (256, 2, 1)]
    for stage, (expanded, blocks, stride) in enumerate(stages, start=1):
        for block in range(1, blocks + 1):
            # insightface: a strided `DepthWise` opens a stride-2 stage, `Residual`s follow.
            first_of_strided = block == 1 and stride == 2
            x = depthwise(
                x,
                f"stage{stage}_block{block}",
                expanded,
                stride if first_of_strided else 1,
                residual=not first_of_strided,
            )
    x = conv_block(x, "head")
    x = w.bn(w.conv(x, "embedding_gdc_conv", padding=0), "embedding_gdc_bn", eps)
    x = w.dense_on_nchw(x, "embedding_fc")
    return w.bn(x, "embedding_features", eps)


def vargfacenet_forward(model, images):
    """The authors' MXNet VarGFaceNet `get_symbol` (multiplier 1.25, SE in normal blocks)."""
    w = KerasWeights(model)
    eps = 2e-5

    def separable(x, name, out_channels, stride, factor, act_pw):
        in_channels = x.shape[1]
        x = w.conv(x, f"{name}_group_conv", stride=stride, groups=in_channels // 8)
        x = w.prelu(w.bn(x, f"{name}_group_bn", eps), f"{name}_group_prelu")
        assert x.shape[1] == in_channels * factor
        x = w.bn(w.conv(x, f"{name}_pointwise_conv"), f"{name}_pointwise_bn", eps)
        return w.prelu(x, f"{name}_pointwise_prelu") if act_pw else x

    def vargnet_block(x, name, channels, stride, factor, dim_match):
        shortcut = (
            x if dim_match else separable(x, f"{name}_shortcut", channels, stride, factor, False)
        )
        out = separable(x, f"{name}_separable1", channels, stride, factor, True)
        out = separable(out, f"{name}_separable2", channels, 1, factor, False)
        out = w.se(out, name)
        return w.prelu(out + shortcut, f"{name}_prelu")

    def branch_merge_block(x, name, channels):
        shortcut = separable(x, f"{name}_shortcut", channels, 2, 2, False)
        branch1 = separable(x, f"{name}_branch1", channels, 2, 2, False)
        branch2 = separable(x, f"{name}_branch2", channels, 2, 2, False)
        out = w.prelu(branch1 + branch2, f"{name}_branch_prelu")
        out = separable(out, f"{name}_separable", channels, 1, 2, False)
        return w.prelu(out + shortcut, f"{name}_prelu")

    x = _to_nchw(images)
    x = w.prelu(w.bn(w.conv(x, "head_conv"), "head_bn", eps), "head_prelu")
    x = vargnet_block(x, "head_block", 40, 2, 1, dim_match=False)
    for stage, (channels, units) in enumerate([(80, 3), (160, 7), (320, 4)], start=1):
        x = branch_merge_block(x, f"stage{stage}_block1", channels)
        for unit in range(2, units + 1):
            x = vargnet_block(x, f"stage{stage}_block{unit}", channels, 1, 2, dim_match=True)
    x = w.prelu(
        w.bn(w.conv(x, "embedding_expand_conv"), "embedding_expand_bn", eps),
        "embedding_expand_prelu",
    )
    x = w.conv(x, "embedding_group_conv", groups=1024 // 8, padding=0)
    x = w.bn(x, "embedding_group_bn", eps)
    x = w.bn(w.conv(x, "embedding_pointwise_conv"), "embedding_pointwise_bn", eps)
    x = w.prelu(x, "embedding_pointwise_prelu")
    x = w.dense_on_nchw(x, "embedding_fc")
    return w.bn(x, "embedding_features", eps)
