"""Transfer learning with a pretrained Xception: the recipe's steps.

1. :func:`build_classifier`: a frozen pretrained backbone + a new head (global average pooling,
   dropout, Dense): one ordinary Keras model that saves to ``.keras`` and reloads with
   ``keras.saving.load_model(path)`` (safe mode, no custom objects).
2. :func:`train_head`: the backbone runs **once** over the data (``cached=True``, the fast path)
   and the head, which the classifier shares, is fit on the pooled features; ``cached=False`` is
   plain ``fit`` on backbone + head.
3. :func:`fine_tune` (optional): the top blocks unfrozen, recompiled at a low learning rate, fit.

Data: a ``tf.data.Dataset`` (or any iterable) of batches ``(images, labels)`` with integer labels;
images in [0, 255] when the classifier includes the preprocessing (the default).

BatchNormalization is frozen (``trainable=False``, so always in inference mode) rather than only
called with ``training=False``: in Keras 3 a functional model passes its own ``training`` flag to
nested models, overriding the one given when the graph was built (checked with Keras 3.15).
"""

from __future__ import annotations

import contextlib
import warnings

import keras
import numpy as np

from keras_xception import checks
from keras_xception.model.features import feature_model
from keras_xception.model.introspect import find_xception, spec_of
from keras_xception.model.preprocessing import preprocessing_layer
from keras_xception.xception import Xception

__all__ = [
    "build_backbone",
    "build_head",
    "build_classifier",
    "even_batch",
    "train_head",
    "unfreeze_top_blocks",
    "fine_tune",
]

_POOL_NAME = "avg_pool"


def build_backbone(weights="imagenet", input_shape=None):
    """A frozen Xception without its top (4D feature map output), named ``xception``.

    ``weights`` is anything :func:`keras_xception.Xception` accepts (``None``,
    a registered name, or a weights file, including a ``.keras`` model that
    contains an Xception). ``input_shape`` defaults to ``(None, None, 3)``.
    """
    backbone = Xception(include_top=False, weights=weights, input_shape=input_shape)
    backbone.trainable = False
    return backbone


def build_head(num_classes, feature_dim=2048, dropout=0.2, activation="softmax", name="head", dtype=None):
    """The new classifier head: a small Keras model, pooled features -> class scores.

    ``Input(feature_dim) -> Dropout(dropout) -> Dense(num_classes, activation)``;
    the Dense layer is called ``predictions``. ``dtype``: the layers' dtype
    policy (default: the global one); ``"float32"`` keeps the head, and so
    the class scores, in float32 under a mixed-precision policy.
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

    Layers: [``preprocess_input`` (Rescaling, with ``include_preprocessing``)] ->
    backbone (called with ``training=False``; frozen) -> ``avg_pool``
    (GlobalAveragePooling2D) -> ``head`` (see :func:`build_head`).

    Args:
        num_classes: Number of classes of a new head (ignored when ``head`` is given).
        backbone: A Keras model with a 4D feature-map output (default:
            :func:`build_backbone` with ``weights`` and ``input_shape``).
            It is frozen, BatchNormalization included.
        head: A trained or new head (default: :func:`build_head`).
        weights: Backbone weights when ``backbone`` is None.
        input_shape: Image shape, e.g. ``(224, 224, 3)``; default: the backbone's.
        dropout: Dropout rate of a new head.
        include_preprocessing: Whether the model takes raw [0, 255] images
            (the default) or images already scaled by ``preprocess_input``.
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
    """``batch_size``, or for fewer than ``batch_size`` examples the largest batch that splits evenly over the replicas.

    Keras 3.15's ``fit``/``evaluate`` under a multi-replica ``tf.distribute`` strategy build the
    model from the first distributed batch and fail (``InvalidArgumentError``: "Inputs to operation
    AddN ... must have the same size and shape") when the replicas' shares of it differ, e.g. 3
    validation images on 2 replicas; later uneven batches are fine
    (tests/test_tasks_training.py reproduces both). Uses the replicas of the current strategy.
    """
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1 or n >= batch_size:
        return batch_size
    if n < replicas:
        raise ValueError(f"{n} {what} for {replicas} replicas: each replica needs at least one; add images.")
    return n - n % replicas


@contextlib.contextmanager
def _unknown_length_ok(*datasets):
    """Keras warns "Your input ran out of data" at the end of the first epoch of a dataset whose length
    it cannot know (e.g. one that skips unreadable files), though a finite dataset is expected here."""
    with warnings.catch_warnings():
        if any(hasattr(d, "cardinality") and int(d.cardinality()) < 0 for d in datasets):
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        yield


def _compile(model, learning_rate, head, optimizer=None):
    from_logits = head.get_layer("predictions").activation in (None, keras.activations.linear)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(checks.positive_float(learning_rate, "learning_rate")),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


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
    classifier,
    train_data,
    validation_data=None,
    epochs=5,
    learning_rate=1e-3,
    cached=True,
    batch_size=32,
    verbose=1,
    callbacks=None,
    class_weight=None,
):
    """Train the head of ``classifier`` with the backbone frozen; returns the ``History``.

    With ``cached=True`` (the fast path) the pooled features of ``train_data``
    and ``validation_data`` are computed once (or given: a pair ``(features,
    labels)`` of 2-D features) and the head is fit on them in mini-batches of
    ``batch_size``, reshuffled every epoch; the classifier shares the head, so
    afterwards it is the trained model. With ``cached=False`` it is
    ``classifier.fit(train_data, ...)``, the backbone running every epoch.
    ``callbacks`` and ``class_weight`` as in ``Model.fit``. The classifier is
    left compiled (Adam at ``learning_rate``, with the optimizer's state).
    Call it in the ``tf.distribute`` strategy scope the classifier was built in.
    """
    epochs = checks.positive_int(epochs, "epochs")
    head = _find_head(classifier)
    find_xception(classifier).trainable = False
    fit = dict(epochs=epochs, verbose=verbose, callbacks=callbacks, class_weight=class_weight)
    if not cached:
        _compile(classifier, learning_rate, head)
        with _unknown_length_ok(train_data, validation_data):
            return classifier.fit(train_data, validation_data=validation_data, shuffle=False, **fit)
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
    ``block2`` .. ``block14`` for the official model, fewer or more for a
    variant); ``blocks=2`` unfreezes the last two (``block13`` and ``block14``).
    Returns the names of the layers made trainable.
    """
    backbone = find_xception(classifier)
    spec = spec_of(backbone)
    blocks = checks.positive_int(blocks, "blocks")
    if blocks > len(spec.blocks):
        raise ValueError(f"`blocks` must be at most the backbone's {len(spec.blocks)} blocks; received {blocks}.")
    names = {b.name for b in spec.blocks[-blocks:]}
    backbone.trainable = True  # sets every sub-layer; now choose
    unfrozen = []
    for layer in backbone.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name.split("_", 1)[0] in names and not is_bn
        if layer.trainable and layer.weights:
            unfrozen.append(layer.name)
    return unfrozen


def fine_tune(
    classifier,
    train_data,
    validation_data=None,
    epochs=2,
    blocks=2,
    learning_rate=1e-5,
    verbose=1,
    callbacks=None,
    initial_epoch=0,
    class_weight=None,
):
    """Fine-tune the top ``blocks`` backbone blocks and the head at a low learning rate; the ``History``.

    Unfreezes as :func:`unfreeze_top_blocks` (BatchNormalization stays frozen,
    so in inference mode), recompiles with Adam(``learning_rate``) and fits
    (``callbacks``, ``class_weight`` as in ``Model.fit``). Train the head first
    (:func:`train_head`): a random head's large gradients would wreck the
    pretrained features.
    """
    epochs = checks.positive_int(epochs, "epochs")
    unfreeze_top_blocks(classifier, blocks)
    _compile(classifier, learning_rate, _find_head(classifier))
    with _unknown_length_ok(train_data, validation_data):
        return classifier.fit(
            train_data,
            validation_data=validation_data,
            epochs=initial_epoch + epochs,
            initial_epoch=initial_epoch,
            verbose=verbose,
            callbacks=callbacks,
            shuffle=False,
            class_weight=class_weight,
        )
