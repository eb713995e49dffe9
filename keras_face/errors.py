"""The error types of keras_face: expected failures caused by the user's input.

Every error that keras_face raises because of something the user gave it (a config typo,
a corrupt data file, a class count that does not match the data, a run that diverged)
derives from `KerasFaceError`. Its message is complete on its own (what is wrong, the bad
value as `Received: name=value`, what to do), so the `keras-face` command prints it as one
line without a traceback. Any other exception is a programming error and keeps its
traceback.

This module imports nothing heavy: `keras-face --help` and `import keras_face` stay free
of TensorFlow.
"""


class KerasFaceError(Exception):
    """Base of the errors that keras_face raises for a bad input (config, data, run).

    Subclasses also derive from the built-in type that fits (`ValueError` for a bad
    value or file, `RuntimeError` for a diverged run), so code that catches those keeps
    working.

    Example:
        ```python
        try:
            keras_face.training.load_config(overrides=["training.epoch=3"])
        except keras_face.errors.KerasFaceError as error:
            print(error)  # Unknown config key 'training.epoch'. Did you mean 'epochs'? ...
        ```
    """


class ConfigError(KerasFaceError, ValueError):
    """An invalid training configuration (unknown key, bad value, missing file).

    Example:
        ```python
        try:
            keras_face.training.load_config(overrides=["training.batch_size=0"])
        except keras_face.training.ConfigError as error:
            print(error)  # training.batch_size must be a positive integer ...
        ```
    """


class DataError(KerasFaceError, ValueError):
    """A data file or folder that cannot be read as its format says (corrupt, truncated,
    inconsistent counts, an undecodable image in strict mode).

    The message names the file (and where it helps, the offset or record key) and the bad
    value. `keras_face.data.RecordIOError` and `keras_face.data.UndecodableImageError` are
    subclasses.

    Example:
        ```python
        try:
            keras_face.data.read_recordio("damaged.rec")
        except keras_face.errors.DataError as error:
            print(error)  # damaged.rec: ... Received: ...
        ```
    """
