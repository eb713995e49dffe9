"""The MXNet side of the RecordIO round trip; runs in its own environment (MXNet 1.9.1).

It imports only MXNet, NumPy and the standard library (never keras_face), so that every
byte it writes and every value it reads comes from MXNet's own RecordIO writer, reader,
image decoder and `ImageRecordIter`. `tests/interop/test_mxnet_round_trip.py` drives it:

    python mxnet_client.py write WORKDIR   # WORKDIR/input.json -> mx_*.rec / .idx
    python mxnet_client.py read WORKDIR PREFIX  # PREFIX*.rec / .idx -> PREFIXread.npz, .json

`write` packs the encoded images listed in `input.json` the way insightface's tools do
(header record 0 with labels [first identity key, end], images at keys 1..N, one identity
record per class with its key range, and a two-line `property` file), the way `im2rec`
does (images at keys 0..N-1), and raw payloads at keys 0..R-1. `read` reads the three
packs named PREFIX (`kf_` for keras_face's, `mx_` for MXNet's own) with `MXIndexedRecordIO`
(every header, payload and the pixels MXNet's decoder gives) and the plain pack with
`ImageRecordIter`.
"""

import json
import os
import sys

import mxnet as mx
import numpy as np


def _read_bytes(path):
    with open(path, "rb") as file:
        return file.read()


def write(workdir):
    with open(os.path.join(workdir, "input.json")) as file:
        spec = json.load(file)
    images = [_read_bytes(os.path.join(workdir, name)) for name in spec["images"]]
    labels = spec["labels"]
    num_classes = spec["num_classes"]
    num_images = len(images)

    def path(name):
        return os.path.join(workdir, f"{name}.idx"), os.path.join(workdir, f"{name}.rec")

    record = mx.recordio.MXIndexedRecordIO(*path("mx_insightface"), "w")
    first_identity = num_images + 1
    header = mx.recordio.IRHeader(0, [first_identity, first_identity + num_classes], 0, 0)
    record.write_idx(0, mx.recordio.pack(header, b""))
    starts = {}
    for key, (image, label) in enumerate(zip(images, labels), start=1):
        starts.setdefault(label, key)
        record.write_idx(
            key, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), key, 0), image)
        )
    for label in range(num_classes):
        end = max(key for key, value in enumerate(labels, start=1) if value == label) + 1
        header = mx.recordio.IRHeader(0, [starts[label], end], first_identity + label, 0)
        record.write_idx(first_identity + label, mx.recordio.pack(header, b""))
    record.close()
    height, width = spec["image_size"]
    with open(os.path.join(workdir, "property"), "w") as file:
        file.write(f"{num_classes},{height},{width}\n{num_images}\n")

    record = mx.recordio.MXIndexedRecordIO(*path("mx_plain"), "w")
    for key, (image, label) in enumerate(zip(images, labels)):
        record.write_idx(
            key, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), key, 0), image)
        )
    record.close()

    record = mx.recordio.MXIndexedRecordIO(*path("mx_raw"), "w")
    for key, name in enumerate(spec["raw"]):
        record.write_idx(key, _read_bytes(os.path.join(workdir, name)))
    record.close()


def _read_indexed(workdir, name, unpack):
    record = mx.recordio.MXIndexedRecordIO(
        os.path.join(workdir, f"{name}.idx"), os.path.join(workdir, f"{name}.rec"), "r"
    )
    keys = sorted(record.keys)
    result = {"keys": keys, "headers": [], "payloads": [], "pixels": []}
    for key in keys:
        item = record.read_idx(key)
        if not unpack:
            result["payloads"].append(item)
            continue
        header, payload = mx.recordio.unpack(item)
        label = header.label
        label = [float(value) for value in np.ravel(label)] if header.flag > 0 else float(label)
        result["headers"].append([int(header.flag), label, int(header.id), int(header.id2)])
        result["payloads"].append(payload)
        if payload:
            result["pixels"].append(mx.image.imdecode(payload, to_rgb=1).asnumpy())
    record.close()
    return result


def read(workdir, prefix):
    insightface = _read_indexed(workdir, f"{prefix}insightface", unpack=True)
    plain = _read_indexed(workdir, f"{prefix}plain", unpack=True)
    raw = _read_indexed(workdir, f"{prefix}raw", unpack=False)
    height, width = plain["pixels"][0].shape[:2]
    iterator = mx.io.ImageRecordIter(
        path_imgrec=os.path.join(workdir, f"{prefix}plain.rec"),
        path_imgidx=os.path.join(workdir, f"{prefix}plain.idx"),
        data_shape=(3, height, width),
        batch_size=len(plain["keys"]),
        shuffle=False,
        label_width=1,
        preprocess_threads=1,
        prefetch_buffer=1,
    )
    batch = iterator.next()
    metadata = {
        "insightface": {"keys": insightface["keys"], "headers": insightface["headers"]},
        "plain": {"keys": plain["keys"], "headers": plain["headers"]},
        "raw": {"keys": raw["keys"]},
        "image_record_iter_pad": int(batch.pad),
        "mxnet_version": mx.__version__,
    }
    arrays = {
        "insightface_pixels": np.stack(insightface["pixels"]),
        "plain_pixels": np.stack(plain["pixels"]),
        "iter_data": batch.data[0].asnumpy(),
        "iter_label": batch.label[0].asnumpy(),
    }
    for group, values in (("insightface", insightface), ("plain", plain), ("raw", raw)):
        for index, payload in enumerate(values["payloads"]):
            arrays[f"{group}_payload_{index}"] = np.frombuffer(payload, dtype=np.uint8)
    np.savez(os.path.join(workdir, f"{prefix}read.npz"), **arrays)
    with open(os.path.join(workdir, f"{prefix}read.json"), "w") as file:
        json.dump(metadata, file)


if __name__ == "__main__":
    if sys.argv[1:2] == ["write"] and len(sys.argv) == 3:
        write(sys.argv[2])
    elif sys.argv[1:2] == ["read"] and len(sys.argv) == 4:
        read(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"usage: {sys.argv[0]} write WORKDIR | read WORKDIR PREFIX")
