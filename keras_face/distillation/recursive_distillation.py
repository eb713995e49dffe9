"""Recursive knowledge distillation: generation k + 1 starts from generation k."""

import keras

RECURSIVE_TEACHERS = ("fixed", "previous_student")


def copy_student_weights(source, target):
    """Copy the student backbone and the head of one training model into another.

    Args:
        source: a trained `DistillationTrainingModel` (or `FaceTrainingModel`).
        target: a freshly built model of the same architecture.

    Raises:
        ValueError: the backbones or heads do not have the same weight shapes.

    Example:
        ```python
        keras_face.distillation.copy_student_weights(generation_1, generation_2)
        ```
    """
    for part in ("backbone", "head"):
        source_part, target_part = getattr(source, part), getattr(target, part)
        source_shapes = [tuple(weight.shape) for weight in source_part.weights]
        target_shapes = [tuple(weight.shape) for weight in target_part.weights]
        if source_shapes != target_shapes:
            raise ValueError(
                f"Generation k + 1 must have the {part} of generation k. Received: {part} "
                f"weight shapes {target_shapes} for the new generation, {source_shapes} for "
                "the previous one"
            )
        target_part.set_weights(source_part.get_weights())


def frozen_copy(model, name=None):
    """A frozen copy (same architecture and weights) of a student embedding model.

    Args:
        model: `keras.Model` from images to embeddings.
        name: str. Name of the copy. Defaults to `None` (`f"{model.name}_teacher"`).

    Returns:
        `keras.Model` with `trainable = False`.

    Example:
        ```python
        teacher = keras_face.distillation.frozen_copy(generation_1.embedding_model)
        ```
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.name = name or f"{model.name}_teacher"
    copy.trainable = False
    return copy


def recursive_distillation(build_model, train_generation, teacher, generations=2, mode="fixed"):
    """Train students generation after generation, each initialised from the previous.

    What VarGFaceNet's authors did (first author, zma-c-137/VarGFaceNet#3): generation
    k + 1 is a new model *initialised from* the student (backbone and head) of generation
    k, trained with a **new optimizer** (its momentum and step count start from zero, the
    learning-rate schedule restarts) and the **same teacher**. `mode="previous_student"`
    is the course notes' variant, born-again networks style: the student of generation k
    becomes the teacher of generation k + 1 (a frozen copy). It is not what the paper
    reports.

    Args:
        build_model: callable `(generation, teacher) -> model`, returning a new, compiled
            `DistillationTrainingModel` (with a new optimizer) whose teacher is `teacher`:
            a `keras.Model`, or for an offline teacher whatever the caller passed (e.g.
            `TeacherEmbeddings`). `generation` counts from 1.
        train_generation: callable `(model, generation) -> result`, training the model
            (usually `model.fit(...)`); the results are returned.
        teacher: the fixed teacher (a `keras.Model`, or offline `TeacherEmbeddings`),
            passed to `build_model` for every generation, or for the first only with
            `mode="previous_student"`.
        generations: int. Number of generations. Defaults to `2` (the paper reports 1
            and 2).
        mode: str. `"fixed"` or `"previous_student"`. Defaults to `"fixed"`.

    Returns:
        A tuple `(models, results)`: the trained training models of each generation
        (`models[k].embedding_model` is the student of generation k + 1) and the values
        `train_generation` returned.

    Raises:
        ValueError: a bad `generations` or `mode`, or a `build_model` that returns a model
            whose optimizer has already taken steps (not a new optimizer).

    Example:
        ```python
        def build_model(generation, teacher):
            model = keras_face.distillation.DistillationTrainingModel(
                keras_face.models.vargfacenet(embedding_size=128),
                keras_face.heads.ArcFace(num_classes), teacher=teacher)
            model.compile(optimizer=keras_face.training.L2SGD(0.1, momentum=0.9))
            return model

        models, histories = keras_face.distillation.recursive_distillation(
            build_model, lambda model, generation: model.fit(dataset, epochs=8),
            teacher=teacher, generations=2)
        ```

    References:
        - [Yan et al., VarGFaceNet, ICCV workshops 2019](https://arxiv.org/abs/1910.04985)
        - [Furlanello et al., Born-Again Neural Networks, ICML 2018](https://arxiv.org/abs/1805.04770)
    """
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ValueError(
            f"generations must be a positive integer. Received: generations={generations!r}"
        )
    if mode not in RECURSIVE_TEACHERS:
        raise ValueError(f"mode must be one of {list(RECURSIVE_TEACHERS)}. Received: mode={mode!r}")
    models, results = [], []
    current_teacher = teacher
    for generation in range(1, generations + 1):
        model = build_model(generation, current_teacher)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None or int(keras.ops.convert_to_numpy(optimizer.iterations)) != 0:
            raise ValueError(
                "build_model must return a model compiled with a new optimizer (each "
                f"generation starts its optimizer afresh). Received: generation={generation} "
                f"with optimizer={optimizer!r}"
            )
        if models:
            copy_student_weights(models[-1], model)
        results.append(train_generation(model, generation))
        models.append(model)
        if mode == "previous_student":
            current_teacher = frozen_copy(
                model.embedding_model, name=f"generation_{generation}_student"
            )
    return models, results
