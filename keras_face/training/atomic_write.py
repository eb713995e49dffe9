"""`atomic_write`: write a file under a temporary name, then rename it into place."""

import contextlib
import os


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path beside `path`; on success rename it to `path` in one step.

    Whatever writes the temporary path (`model.save`, `figure.savefig`, `open`) can be
    killed at any instant: `path` then holds either its previous content or the new one,
    never a truncated file. The temporary name keeps the suffix of `path` (Keras and
    Matplotlib choose the format from it) and starts with `.partial-`; it is removed when
    the block raises. The rename (`os.replace`) is atomic within one file system, which
    is why the temporary file lives in the same folder.

    Args:
        path: str or path-like. The file to (re)write.

    Example:
        ```python
        from keras_face.training.atomic_write import atomic_write

        with atomic_write("runs/a/embedding_model.keras") as temporary:
            model.save(temporary)
        ```
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".partial-{os.getpid()}-{name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
