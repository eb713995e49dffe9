"""Backbone sizes and throughput on the current Keras backend.

Prints, per model: parameters (PyTorch counting), FLOPs (multiply-accumulates, as
insightface reports them) next to the published figures, and forward and training
images/s at the given batch size (training: backbone + `keras_face.heads.ArcFace`, SGD).

Only Keras and keras_face are imported, so it runs unchanged with `KERAS_BACKEND=jax`
or `torch` on a machine without TensorFlow:

    python benchmarks/backbones.py --models iresnet18,mobilefacenet --batch-size 16
    KERAS_BACKEND=jax python benchmarks/backbones.py --mixed-precision bfloat16 --jit-compile

With `--compare-torch`, it prints instead images/s of inference (the compiled forward
of `keras_face.evaluation.embeddings.inference_function`) and of an ArcFace training step
for `mobilefacenet`, `mobilefacenet_mbf`, `vargfacenet` and `iresnet50`, next to
arcface_torch's equivalent PyTorch models (written below from the published
architectures, same parameter counts), in interleaved rounds, with the median of the
per-round ratios (keras_face / PyTorch; above 1 is keras_face faster). On TensorFlow it
measures graph mode and XLA, on JAX the jitted step:

    python benchmarks/backbones.py --compare-torch --batch-size 32 --rounds 3
    KERAS_BACKEND=jax python benchmarks/backbones.py --compare-torch --batch-size 32

`--keep-freed-memory` calls `keras_face.runtime.keep_freed_memory()` (glibc keeps freed
memory for reuse; both frameworks, one process): without it, XLA's per-step temporary
buffers are fresh pages on every step, which costs JAX's CPU steps up to a third of their
time.

This is a benchmark, not a test: the numbers depend on the machine.
"""

import argparse
import os
import time

import keras
import numpy as np
from tqdm import tqdm

import keras_face.runtime
from keras_face import heads
from keras_face import models
from keras_face.evaluation.embeddings import inference_function
from keras_face.models.mobile_face_net import BOTTLENECK_STAGES

TORCH_MODELS = ("mobilefacenet", "mobilefacenet_mbf", "vargfacenet", "iresnet50")

# Published sizes at 112x112 (parameters, FLOPs as multiply-accumulates); see docs/models.md.
PUBLISHED = {
    "iresnet18": (24.03e6, 2.6e9),
    "iresnet34": (34.14e6, None),
    "iresnet50": (43.59e6, 6.3e9),
    "iresnet100": (65.16e6, 12.1e9),
    "iresnet200": (118.83e6, 23.5e9),
    "mobilefacenet": (0.99e6, 0.221e9),
    "mobilefacenet_mbf": (None, 0.45e9),
    # The paper's 1.022 G FLOPs count a multiply-accumulate as two operations.
    "vargfacenet": (None, 1.022e9 / 2),
}


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=",".join(models.names()),
        help="comma-separated names from keras_face.models.names() (default: all)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    parser.add_argument(
        "--steps", type=int, default=10, help="timed steps per measure (default 10)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument(
        "--mixed-precision",
        choices=("none", "float16", "bfloat16"),
        default="none",
        help="global dtype policy mixed_float16 / mixed_bfloat16 (default none)",
    )
    parser.add_argument("--jit-compile", action="store_true", help="compile with jit_compile=True")
    parser.add_argument("--input-size", type=int, nargs=2, default=(112, 112), metavar=("H", "W"))
    parser.add_argument(
        "--num-classes", type=int, default=1000, help="identities of the ArcFace head"
    )
    parser.add_argument("--no-training", action="store_true", help="skip the training measure")
    parser.add_argument(
        "--compare-torch",
        action="store_true",
        help="side by side with arcface_torch's PyTorch models (interleaved rounds)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds with --compare-torch")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="glibc malloc: no mmap for large blocks, keep freed memory (both frameworks)",
    )
    parser.add_argument(
        "--modes",
        default="graph,xla",
        help="TensorFlow modes with --compare-torch: graph, xla or both (default both)",
    )
    return parser.parse_args(argv)


def describe_device():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return str(jax.devices()[0])
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return gpus[0].name if gpus else "cpu"
    return backend


def images_per_second(step, batch_size, steps, warmup):
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def arcface_training_model(backbone, input_shape, num_classes, jit_compile):
    """`[image, label] -> ArcFace logits` over `backbone`, compiled with SGD momentum 0.9.

    The assembly of `keras_face.training.FaceTrainingModel`, written with keras only
    (`keras_face.training` needs TensorFlow; these benchmarks also run on JAX and PyTorch).
    """
    image = keras.Input(input_shape, name="image")
    label = keras.Input((), dtype="int32", name="label")
    logits = heads.ArcFace(num_classes)([backbone(image), label])
    model = keras.Model([image, label], logits)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def benchmark(name, args):
    input_shape = tuple(args.input_size) + (3,)
    backbone = models.get(name, input_shape=input_shape)
    row = {
        "model": name,
        "parameters": models.count_parameters(backbone),
        "flops": models.count_flops(backbone, input_shape),
    }
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch_size,) + input_shape).astype("float32")
    labels = rng.integers(0, args.num_classes, (args.batch_size,)).astype("int32")

    backbone.compile(jit_compile=args.jit_compile)
    row["forward"] = images_per_second(
        lambda: backbone.predict_on_batch(images), args.batch_size, args.steps, args.warmup
    )
    if not args.no_training:
        model = arcface_training_model(backbone, input_shape, args.num_classes, args.jit_compile)
        row["training"] = images_per_second(
            lambda: model.train_on_batch([images, labels], labels),
            args.batch_size,
            args.steps,
            args.warmup,
        )
    return row


def format_published(value, scale):
    return "-" if value is None else f"{value / scale:.2f}"


def keras_forward(backbone, jit_compile):
    """The compiled inference forward; with `jit_compile` on TensorFlow, an XLA function."""
    if keras.backend.backend() == "tensorflow" and jit_compile:
        import tensorflow as tf

        compiled = tf.function(lambda batch: backbone(batch, training=False), jit_compile=True)
        return lambda batch: compiled(batch).numpy()
    return inference_function(backbone)


def torch_training_step(model, num_classes, embedding_size):
    """arcface_torch's ArcFace (s=64, m=0.5) + cross-entropy + SGD step, as a closure."""
    import torch

    weight = torch.nn.Parameter(torch.randn(num_classes, embedding_size) * 0.01)
    optimizer = torch.optim.SGD(list(model.parameters()) + [weight], lr=0.01, momentum=0.9)

    def step(images, labels):
        model.train()
        embeddings = torch.nn.functional.normalize(model(images))
        cosine = embeddings @ torch.nn.functional.normalize(weight).t()
        target = cosine.gather(1, labels[:, None]).clamp(-1 + 1e-7, 1 - 1e-7)
        target_margin = torch.cos(torch.acos(target) + 0.5)
        logits = 64.0 * cosine.scatter(1, labels[:, None], target_margin)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(function, steps):
    start = time.perf_counter()
    for _ in range(steps):
        function()
    return (time.perf_counter() - start) / steps


def compare_with_torch(name, args):
    """Per mode: median images/s of keras_face and PyTorch and median per-round ratio."""
    import torch

    torch.set_num_threads(os.cpu_count())
    input_shape = tuple(args.input_size) + (3,)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch_size,) + input_shape).astype("float32")
    labels = rng.integers(0, args.num_classes, (args.batch_size,)).astype("int32")
    torch_images = (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous() - 127.5) / 128.0
    torch_labels = torch.from_numpy(labels).long()
    torch_model = TORCH_BUILDERS[name]()
    torch_train = torch_training_step(torch_model, args.num_classes, torch_model_embedding(name))

    def torch_infer():
        torch_model.eval()
        with torch.no_grad():
            torch_model(torch_images)

    modes = {"tensorflow": tuple(args.modes.split(",")), "jax": ("jax",), "torch": ("torch",)}
    rows = []
    for mode in modes.get(keras.backend.backend(), (keras.backend.backend(),)):
        jit_compile = mode == "xla"
        backbone = models.get(name, input_shape=input_shape)
        forward = keras_forward(backbone, jit_compile)
        training = arcface_training_model(
            backbone, input_shape, args.num_classes, jit_compile if mode != "jax" else True
        )
        measures = {
            "inference": (lambda forward=forward: forward(images), torch_infer),
            "training": (
                lambda training=training: training.train_on_batch([images, labels], labels),
                lambda: torch_train(torch_images, torch_labels),
            ),
        }
        if args.no_training:
            del measures["training"]
        for what, (keras_step, torch_step) in measures.items():
            for _ in range(args.warmup):
                keras_step()
                torch_step()
            keras_seconds, torch_seconds = [], []
            for _ in range(args.rounds):
                keras_seconds.append(timed(keras_step, args.steps))
                torch_seconds.append(timed(torch_step, args.steps))
            ratios = np.array(torch_seconds) / np.array(keras_seconds)
            rows.append(
                {
                    "model": name,
                    "mode": mode,
                    "what": what,
                    "keras": args.batch_size / float(np.median(keras_seconds)),
                    "torch": args.batch_size / float(np.median(torch_seconds)),
                    "ratio": float(np.median(ratios)),
                }
            )
        keras.backend.clear_session()
    return rows


def torch_model_embedding(name):
    return 128 if name == "mobilefacenet" else 512


def format_load():
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def main_compare(args, names):
    print(
        f"backend={keras.backend.backend()} device={describe_device()} "
        f"malloc={'keep-freed' if args.keep_freed_memory else 'default'} "
        f"batch={args.batch_size} input={args.input_size[0]}x{args.input_size[1]} "
        f"steps/round={args.steps} rounds={args.rounds} cpus={os.cpu_count()} "
        f"load={format_load()}"
    )
    rows = []
    for name in tqdm(names, desc="backbones", unit="model"):
        rows.extend(compare_with_torch(name, args))
    # Other jobs on the machine slow both sides, PyTorch's thread pool more: say so.
    print(f"load average at the end: {format_load()}")
    header = (
        f"{'model':<18} {'mode':<6} {'measure':<10} {'keras_face img/s':>17} "
        f"{'PyTorch img/s':>14} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['model']:<18} {row['mode']:<6} {row['what']:<10} {row['keras']:>17.1f} "
            f"{row['torch']:>14.1f} {row['ratio']:>6.2f}"
        )


def main(argv=None):
    args = parse_arguments(argv)
    if args.keep_freed_memory:
        keras_face.runtime.keep_freed_memory()
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    if args.compare_torch:
        if args.models == ",".join(models.names()):
            names = list(TORCH_MODELS)
        main_compare(args, names)
        return
    if args.mixed_precision != "none":
        keras.config.set_dtype_policy(f"mixed_{args.mixed_precision}")
    print(
        f"backend={keras.backend.backend()} device={describe_device()} "
        f"policy={keras.config.dtype_policy().name} jit_compile={args.jit_compile} "
        f"batch={args.batch_size} input={args.input_size[0]}x{args.input_size[1]} "
        f"steps={args.steps}"
    )
    rows = []
    for name in tqdm(names, desc="backbones", unit="model"):
        rows.append(benchmark(name, args))
        keras.backend.clear_session()
    header = (
        f"{'model':<18} {'params M':>9} {'(paper)':>8} {'FLOPs G':>8} {'(paper)':>8} "
        f"{'fwd img/s':>10} {'train img/s':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        published_parameters, published_flops = PUBLISHED.get(row["model"], (None, None))
        training = f"{row['training']:.1f}" if "training" in row else "-"
        print(
            f"{row['model']:<18} {row['parameters'] / 1e6:>9.2f} "
            f"{format_published(published_parameters, 1e6):>8} "
            f"{row['flops'] / 1e9:>8.3f} {format_published(published_flops, 1e9):>8} "
            f"{row['forward']:>10.1f} {training:>12}"
        )


# ---------------------------------------------------------------------------------------
# arcface_torch's equivalents in PyTorch, written from the published architectures
# (insightface arcface_torch `iresnet.py` and `mobilefacenet.py`, the VarGFaceNet authors'
# MXNet symbol), NCHW, for the side-by-side throughput only (imported when torch is).


def torch_modules():
    """The PyTorch backbones by keras_face name (built lazily: torch is optional)."""
    import torch
    from torch import nn

    def conv_bn(in_channels, out_channels, kernel, stride=1, groups=1, act=True, padding=None):
        padding = kernel // 2 if padding is None else padding
        layers = [
            nn.Conv2d(
                in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels, eps=1e-5),
        ]
        if act:
            layers.append(nn.PReLU(out_channels))
        return nn.Sequential(*layers)

    class Embedding(nn.Module):
        """arcface_torch's output: BN → flatten → FC → BN1d (option "E")."""

        def __init__(self, channels, size, embedding_size, pre_bn=True):
            super().__init__()
            self.bn = nn.BatchNorm2d(channels) if pre_bn else nn.Identity()
            self.fc = nn.Linear(channels * size * size, embedding_size)
            self.features = nn.BatchNorm1d(embedding_size)

        def forward(self, x):
            return self.features(self.fc(torch.flatten(self.bn(x), 1)))

    class IBasicBlock(nn.Module):
        def __init__(self, in_channels, channels, stride):
            super().__init__()
            self.residual = nn.Sequential(
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
                nn.BatchNorm2d(channels),
                nn.PReLU(channels),
                nn.Conv2d(channels, channels, 3, stride, 1, bias=False),
                nn.BatchNorm2d(channels),
            )
            self.shortcut = (
                conv_bn(in_channels, channels, 1, stride, act=False, padding=0)
                if stride != 1 or in_channels != channels
                else nn.Identity()
            )

        def forward(self, x):
            return self.residual(x) + self.shortcut(x)

    def iresnet(blocks_per_stage, embedding_size=512):
        layers = [conv_bn(3, 64, 3)]
        in_channels = 64
        for channels, blocks in zip((64, 128, 256, 512), blocks_per_stage):
            for index in range(blocks):
                layers.append(IBasicBlock(in_channels, channels, 2 if index == 0 else 1))
                in_channels = channels
        return nn.Sequential(*layers, Embedding(512, 7, embedding_size))

    class Bottleneck(nn.Module):
        def __init__(self, in_channels, channels, expanded, stride):
            super().__init__()
            self.block = nn.Sequential(
                conv_bn(in_channels, expanded, 1, padding=0),
                conv_bn(expanded, expanded, 3, stride, groups=expanded),
                conv_bn(expanded, channels, 1, act=False, padding=0),
            )
            self.residual = stride == 1 and in_channels == channels

        def forward(self, x):
            return x + self.block(x) if self.residual else self.block(x)

    def mobilefacenet(scale, embedding_size):
        layers = [conv_bn(3, 64 * scale, 3, 2), conv_bn(64 * scale, 64 * scale, 3, groups=64)]
        in_channels = 64 * scale
        for filters, expanded, repeats, stride in BOTTLENECK_STAGES:
            for index in range(repeats):
                layers.append(
                    Bottleneck(in_channels, filters * scale, expanded, stride if index == 0 else 1)
                )
                in_channels = filters * scale
        layers += [conv_bn(in_channels, 512, 1, padding=0)]
        gdc = nn.Sequential(
            nn.Conv2d(512, 512, 7, groups=512, bias=False),
            nn.BatchNorm2d(512),
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )
        return nn.Sequential(*layers, gdc)

    class SqueezeExcitation(nn.Module):
        def __init__(self, channels, reduction):
            super().__init__()
            self.gate = nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(channels, channels // reduction, 1),
                nn.PReLU(channels // reduction),
                nn.Conv2d(channels // reduction, channels, 1),
                nn.Sigmoid(),
            )

        def forward(self, x):
            return x * self.gate(x)

    def separable(in_channels, channels, stride, expansion, act):
        return nn.Sequential(
            conv_bn(in_channels, in_channels * expansion, 3, stride, groups=in_channels // 8),
            conv_bn(in_channels * expansion, channels, 1, act=act, padding=0),
        )

    class NormalBlock(nn.Module):
        def __init__(self, in_channels, channels, stride=1, expansion=2):
            super().__init__()
            self.shortcut = (
                separable(in_channels, channels, stride, expansion, False)
                if stride != 1 or in_channels != channels
                else nn.Identity()
            )
            self.block = nn.Sequential(
                separable(in_channels, channels, stride, expansion, True),
                separable(channels, channels, 1, expansion, False),
                SqueezeExcitation(channels, 4),
            )
            self.prelu = nn.PReLU(channels)

        def forward(self, x):
            return self.prelu(self.block(x) + self.shortcut(x))

    class DownsamplingBlock(nn.Module):
        def __init__(self, in_channels, channels):
            super().__init__()
            self.shortcut = separable(in_channels, channels, 2, 2, False)
            self.branch1 = separable(in_channels, channels, 2, 2, False)
            self.branch2 = separable(in_channels, channels, 2, 2, False)
            self.branch_prelu = nn.PReLU(channels)
            self.separable = separable(channels, channels, 1, 2, False)
            self.prelu = nn.PReLU(channels)

        def forward(self, x):
            merged = self.branch_prelu(self.branch1(x) + self.branch2(x))
            return self.prelu(self.separable(merged) + self.shortcut(x))

    def vargfacenet(embedding_size=512):
        widths = [40, 80, 160, 320]
        layers = [conv_bn(3, 40, 3), NormalBlock(40, 40, 2, 1)]
        for in_channels, channels, blocks in zip(widths, widths[1:], (3, 7, 4)):
            layers.append(DownsamplingBlock(in_channels, channels))
            layers += [NormalBlock(channels, channels) for _ in range(blocks - 1)]
        layers += [
            conv_bn(320, 1024, 1, padding=0),
            conv_bn(1024, 1024, 7, groups=128, act=False, padding=0),
            conv_bn(1024, 512, 1, padding=0),
            Embedding(512, 1, embedding_size, pre_bn=False),
        ]
        return nn.Sequential(*layers)

    return {
        "iresnet50": lambda: iresnet((3, 4, 14, 3)),
        "mobilefacenet": lambda: mobilefacenet(1, 128),
        "mobilefacenet_mbf": lambda: mobilefacenet(2, 512),
        "vargfacenet": vargfacenet,
    }


def _torch_builder(name):
    return lambda: torch_modules()[name]()


TORCH_BUILDERS = {name: _torch_builder(name) for name in TORCH_MODELS}


if __name__ == "__main__":
    main()
