"""Transfer learning step by step: :func:`build_classifier`, :func:`train_head`, :func:`fine_tune` (docs/training.md).

BatchNormalization is frozen (``trainable=False``) rather than only called with ``training=False``:
a Keras 3 functional model passes its own ``training`` flag to nested models.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_xception import checks
from keras_xception.model.features import feature_model
from keras_xception.model.introspect import find_xception, spec_of
from keras_xception.model.preprocessing import preprocessing_layer
from keras_xception.xception import build

__all__ = ["build_backbone", "build_head", "build_classifier", "train_head", "unfreeze_top_blocks", "fine_tune"]

_POOL_NAME = "avg_pool"


def build_backbone(weights="imagenet", input_shape=None, arch=None):
    """A frozen Xception without its top (4D feature map output), named ``xception`` (or ``arch``).

    ``weights``: anything :func:`keras_xception.Xception` accepts (``None``, a registered name, a
    weights file or a ``.keras`` model containing an Xception); ``input_shape``: default any size;
    ``arch``: :func:`keras_xception.build`'s (default: the registered weights' own, else Xception).
    """
    backbone = build(arch, include_top=False, weights=weights, input_shape=input_shape)
    backbone.trainable = False
    return backbone


def build_head(num_classes, feature_dim=2048, dropout=0.2, activation="softmax", name="head", dtype=None):
    """The new classifier head: a small Keras model, pooled features -> class scores.

    ``Input(feature_dim) -> Dropout(dropout) -> Dense(num_classes, activation)`` (named ``predictions``).
    ``dtype``: the layers' dtype policy (default: the global one); ``"float32"`` keeps the head, and
    so the class scores, in float32 under a mixed-precision policy.
    """
    num_classes = checks.positive_int(num_classes, "num_classes", minimum=2)
    feature_dim = checks.positive_int(feature_dim, "feature_dim")
    dropout = checks.fraction(dropout, "dropout", low_open=False, high_open=True)
    inputs = keras.Input((feature_dim,), name="features")
    x = keras.layers.Dropout(dropout, name="dropout", dtype=dtype)(inputs) if dropout else inputs
    outputs = keras.layers.Dense(num_classes, activation=activation, name="predictions", dtype=dtype)(x)
    return keras.Model(inputs, outputs, name=name)


def build_classifier(
    num_classes=None,
    *,
    backbone=None,
    head=None,
    weights="imagenet",
    input_shape=None,
    dropout=0.2,
    include_preprocessing=True,
    name="xception_classifier",
):
    """Backbone + head as one ordinary Keras model (saves to ``.keras``, reloads safely).

    Layers: [``preprocess_input`` (Rescaling)] -> backbone (frozen, called with ``training=False``)
    -> ``avg_pool`` (GlobalAveragePooling2D) -> ``head`` (see :func:`build_head`).

    Args:
        num_classes: Number of classes of a new head (ignored when ``head`` is given).
        backbone: A Keras model with a 4D feature-map output (default: :func:`build_backbone`
            with ``weights`` and ``input_shape``); frozen, BatchNormalization included.
        head: A trained or new head (default: :func:`build_head` with ``dropout``).
        weights: Backbone weights when ``backbone`` is None.
        input_shape: Image shape, e.g. ``(224, 224, 3)``; default: the backbone's.
        dropout: Dropout rate of a new head.
        include_preprocessing: Whether the model takes raw [0, 255] images (the default) or
            images already scaled by ``preprocess_input``.
        name: Model name.
    """
    backbone = build_backbone(weights, input_shape) if backbone is None else backbone
    if not isinstance(backbone, keras.Model) or len(backbone.output.shape) != 4:
        raise ValueError(
            "`backbone` must be a keras.Model with a 4D feature-map output (e.g. "
            "Xception(include_top=False, pooling=None)); received "
            f"{type(backbone).__name__} with output {getattr(backbone, 'output', None)}."
        )
    backbone.trainable = False
    channels = backbone.output.shape[-1 if keras.config.image_data_format() == "channels_last" else 1]
    if head is None:
        if num_classes is None:
            raise ValueError("Pass `num_classes` (a new head) or `head` (an existing one).")
        head = build_head(num_classes, feature_dim=channels, dropout=dropout)
    elif head.input.shape[-1] != channels:
        raise ValueError(f"`head` takes {head.input.shape[-1]}-d features but the backbone gives {channels}.")
    inputs = keras.Input(input_shape or backbone.input.shape[1:], name="image")
    x = preprocessing_layer()(inputs) if include_preprocessing else inputs
    x = keras.layers.GlobalAveragePooling2D(name=_POOL_NAME)(backbone(x, training=False))
    return keras.Model(inputs, head(x), name=name)


def _find_head(model):
    backbone = find_xception(model)
    for layer in model.layers[::-1]:
        if isinstance(layer, keras.Model) and layer is not backbone:
            return layer
    raise ValueError(f"Model {model.name!r} has no nested head model; build it with build_classifier.")


def even_batch(n, batch_size, what="images"):
    """``batch_size``, or for fewer examples the largest batch that splits evenly over the replicas.

    Keras 3.15's ``fit`` under a multi-replica strategy fails ("Inputs to operation AddN ... must
    have the same size and shape") when the first batch splits unevenly over the replicas, e.g. 3
    validation images on 2; later uneven batches are fine (tests/test_tasks_training.py reproduces it).
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1 or n >= batch_size:
        return batch_size
    if n < replicas:
        raise ValueError(f"{n} {what} for {replicas} replicas: each replica needs at least one; add images.")
    return n - n % replicas


def _fit(model, data, validation_data, **fit):
    """``model.fit`` on batched data, without the "Your input ran out of data" warning that Keras gives
    at the end of the first epoch of a dataset of unknown length (one that skips unreadable files)."""
    with warnings.catch_warnings():
        if any(hasattr(d, "cardinality") and int(d.cardinality()) < 0 for d in (data, validation_data)):
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        return model.fit(data, validation_data=validation_data, shuffle=False, **fit)


def _compile(model, learning_rate, head, optimizer=None):
    from_logits = head.get_layer("predictions").activation in (None, keras.activations.linear)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(checks.positive_float(learning_rate, "learning_rate")),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    model.optimizer.build(model.trainable_variables)  # now: if fit's first trace built it, fit would trace twice


def _pooled(extractor, data):
    """``(features, labels)``: ``data`` as given when it is a pair of 2-D features and labels, else
    ``extractor`` over its batches of ``(images, labels)`` (images and labels read in one pass, so a
    shuffled dataset stays aligned)."""
    if isinstance(data, tuple) and len(data) == 2 and np.ndim(data[0]) == 2:
        return np.asarray(data[0], np.float32), np.asarray(data[1])
    features, labels = [], []
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError("Data must yield batches of (images, labels).")
        features.append(np.asarray(extractor.predict_on_batch(batch[0])))
        labels.append(np.asarray(batch[1]))
    if not features:
        raise ValueError("The dataset is empty: no batches to compute features from.")
    return np.concatenate(features), np.concatenate(labels)


def train_head(
    classifier, train_data, validation_data=None, epochs=5, learning_rate=1e-3, cached=True, batch_size=32, **fit
):
    """Train the head of ``classifier`` with the backbone frozen; returns the ``History``.

    With ``cached=True`` (the fast path) the pooled features of ``train_data`` and
    ``validation_data`` are computed once (or given: a pair ``(features, labels)`` of 2-D
    features) and the head, which the classifier shares, is fit on them in mini-batches of
    ``batch_size``, reshuffled every epoch. With ``cached=False`` it is
    ``classifier.fit(train_data, ...)``, the backbone running every epoch. ``fit``: further
    ``Model.fit`` arguments (``verbose``, ``callbacks``, ``class_weight``). The classifier is left
    compiled (Adam at ``learning_rate``). Call it in the strategy scope the classifier was built in.
    """
    fit["epochs"] = checks.positive_int(epochs, "epochs")
    head = _find_head(classifier)
    find_xception(classifier).trainable = False
    if not cached:
        _compile(classifier, learning_rate, head)
        return _fit(classifier, train_data, validation_data, **fit)
    batch_size = checks.positive_int(batch_size, "batch_size")
    extractor = feature_model(classifier, _POOL_NAME, pool=True, name="features")
    x, y = _pooled(extractor, train_data)
    val = None if validation_data is None else _pooled(extractor, validation_data)
    # Fit a throw-away model sharing the head's layers: the head itself stays uncompiled.
    trainer = keras.Model(head.inputs, head.outputs, name="head_trainer")
    _compile(trainer, learning_rate, head)
    history = trainer.fit(
        x,
        y,
        batch_size=even_batch(len(y), batch_size, "training images"),
        validation_data=val,
        validation_batch_size=None if val is None else even_batch(len(val[1]), batch_size, "validation images"),
        **fit,
    )
    # The classifier's trainable weights are exactly the head's: it takes over the optimizer.
    _compile(classifier, learning_rate, head, optimizer=trainer.optimizer)
    return history


def unfreeze_top_blocks(classifier, blocks):
    """Make the top ``blocks`` Xception blocks of the backbone trainable, BatchNorm excluded.

    Blocks are those of the backbone's own spec (:func:`~keras_xception.model.introspect.spec_of`:
    ``block2`` .. ``block14`` for the official model, fewer or more for a variant); ``blocks=2``
    unfreezes the last two (``block13`` and ``block14``). Returns the names of the layers made trainable.
    """
    backbone = find_xception(classifier)
    spec = spec_of(backbone)
    blocks = checks.positive_int(blocks, "blocks")
    if blocks > len(spec.blocks):
        raise ValueError(f"`blocks` must be at most the backbone's {len(spec.blocks)} blocks; received {blocks}.")
    names = {b.name for b in spec.blocks[-blocks:]}
    backbone.trainable = True  # sets every sub-layer; now choose
    for layer in backbone.layers:
        batchnorm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name.split("_", 1)[0] in names and not batchnorm
    return [layer.name for layer in backbone.layers if layer.trainable and layer.weights]


def fine_tune(classifier, train_data, validation_data=None, epochs=2, blocks=2, learning_rate=1e-5, **fit):
    """Fine-tune the top ``blocks`` backbone blocks and the head at a low learning rate; the ``History``.

    Unfreezes as :func:`unfreeze_top_blocks`, recompiles with Adam(``learning_rate``) and fits
    ``epochs`` more epochs (``fit``: further ``Model.fit`` arguments, ``initial_epoch`` included).
    Train the head first (:func:`train_head`): a random head's large gradients would wreck the
    pretrained features.
    """
    epochs = checks.positive_int(epochs, "epochs")
    unfreeze_top_blocks(classifier, blocks)
    _compile(classifier, learning_rate, _find_head(classifier))
    fit["epochs"] = fit.get("initial_epoch", 0) + epochs  # Keras counts to `epochs` from `initial_epoch`
    return _fit(classifier, train_data, validation_data, **fit)
