"""Face-recognition data: insightface RecordIO packs, verification `.bin` files, image folders,
TFRecord shards, preprocessing, 5-point alignment and the synthetic identity generator.

Uses TensorFlow (`tf.data`); `keras_face` imports this package lazily, on first use.
"""

from keras_face.data.alignment import ARCFACE_TEMPLATE
from keras_face.data.alignment import align_face
from keras_face.data.alignment import arcface_template
from keras_face.data.alignment import estimate_similarity_transform
from keras_face.data.alignment import warp_affine
from keras_face.data.data_stats import DataStats
from keras_face.data.data_stats import DataStatsCallback
from keras_face.data.data_stats import UndecodableImageError
from keras_face.data.image_folder import list_image_folder
from keras_face.data.image_folder import read_image_folder
from keras_face.data.image_folder import write_image_folder
from keras_face.data.preprocessing import PREPROCESSING_MODES
from keras_face.data.preprocessing import preprocess
from keras_face.data.preprocessing import random_flip
from keras_face.data.recordio import RECORDIO_MAGIC
from keras_face.data.recordio import IRHeader
from keras_face.data.recordio import RecordIOError
from keras_face.data.recordio import RecordIOReader
from keras_face.data.recordio import RecordIOWriter
from keras_face.data.recordio import pack_header
from keras_face.data.recordio import unpack_header
from keras_face.data.recordio_dataset import RecordIOImagePack
from keras_face.data.recordio_dataset import pack_image_folder
from keras_face.data.recordio_dataset import read_recordio
from keras_face.data.recordio_dataset import write_recordio
from keras_face.data.tfrecord import read_tfrecord
from keras_face.data.tfrecord import write_tfrecord
from keras_face.data.verification_bin import load_bin_pickle
from keras_face.data.verification_bin import read_bin
from keras_face.data.verification_bin import write_bin

from keras_face.data.synthetic import SyntheticFaces, synthetic_faces, synthetic_pairs  # noqa: E402
from keras_face.data.digits import load_digits_dataset  # noqa: E402
