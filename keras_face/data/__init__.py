"""Face-recognition data: insightface RecordIO packs, verification `.bin` files, image folders,
TFRecord shards, preprocessing, 5-point alignment and the synthetic identity generator.

Uses TensorFlow (`tf.data`); imported lazily by `keras_face` on first use.
"""

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
