"""Transfer learning with a pretrained Xception: the standard recipe as helpers.

The recipe:

1. :func:`build_classifier` - a frozen pretrained backbone (BatchNormalization
   in inference mode) + a new head: global average pooling, dropout, Dense.
2. :func:`train_head` - train the head. With ``cached=True`` (the default,
   the fast path) the backbone runs **once** over the data to compute pooled
   features, the head is trained on those cached features, and the classifier
   (which shares the head) is ready: one ordinary Keras model, backbone +
   trained head, that saves to ``.keras`` and reloads with
   ``keras.saving.load_model(path)`` (safe mode, no custom objects).
   ``cached=False`` is plain ``fit`` on backbone + head.
3. :func:`fine_tune` (optional) - unfreeze the top blocks of the backbone
   (BatchNormalization stays frozen), recompile with a low learning rate, fit.

Data: ``tf.data.Dataset`` (or any iterable) of batches ``(images, labels)``
with integer labels; images in [0, 255] when the classifier includes the
preprocessing (the default), else already scaled by ``preprocess_input``.

Why BatchNormalization is frozen rather than only called with
``training=False``: in Keras 3 a functional model passes its own ``training``
flag to nested models, overriding the ``training=False`` given when the graph
was built (checked with Keras 3.15). A BatchNormalization layer whose
``trainable`` is False always runs in inference mode, so that is what keeps
the pretrained statistics intact, in both phases.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_xception.model.features import feature_model
from keras_xception.model.introspect import find_xception, spec_of
from keras_xception.model.preprocessing import preprocessing_layer
from keras_xception.tasks.extraction import predict_batches
from keras_xception.xception import Xception

__all__ = [
    "build_backbone",
    "build_head",
    "build_classifier",
    "find_backbone",
    "pooled_features",
    "compute_features",
    "train_head",
    "fit_head",
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


def _check_int(value, name, low, high=None):
    bad = isinstance(value, bool) or not isinstance(value, (int, np.integer))
    if bad or value < low or (high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"`{name}` must be {allowed}; received {name}={value!r}.")
    return int(value)


def build_head(num_classes, feature_dim=2048, dropout=0.2, activation="softmax", name="head", dtype=None):
    """The new classifier head: a small Keras model, pooled features -> class scores.

    ``Input(feature_dim) -> Dropout(dropout) -> Dense(num_classes, activation)``;
    the Dense layer is called ``predictions``. ``dtype``: the layers' dtype
    policy (default: the global one); ``"float32"`` keeps the head, and so
    the class scores, in float32 under a mixed-precision policy.
    """
    num_classes = _check_int(num_classes, "num_classes", 2)
    feature_dim = _check_int(feature_dim, "feature_dim", 1)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be a number in [0, 1); received dropout={dropout!r}.")
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
    if backbone is None:
        backbone = build_backbone(weights, input_shape)
    if not isinstance(backbone, keras.Model) or len(backbone.output.shape) != 4:
        raise ValueError(
            "`backbone` must be a keras.Model with a 4D feature-map output (e.g. "
            "Xception(include_top=False, pooling=None)); received "
            f"{type(backbone).__name__} with output {getattr(backbone, 'output', None)}."
        )
    backbone.trainable = False
    channels = (
        backbone.output.shape[-1] if keras.config.image_data_format() == "channels_last" else backbone.output.shape[1]
    )
    if head is None:
        if num_classes is None:
            raise ValueError("Pass `num_classes` (a new head) or `head` (an existing one).")
        head = build_head(num_classes, feature_dim=channels, dropout=dropout)
    elif head.input.shape[-1] != channels:
        raise ValueError(f"`head` takes {head.input.shape[-1]}-d features but the backbone gives {channels}.")
    inputs = keras.Input(input_shape or backbone.input.shape[1:], name="image")
    x = preprocessing_layer()(inputs) if include_preprocessing else inputs
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name=_POOL_NAME)(x)
    return keras.Model(inputs, head(x), name=name)


def find_backbone(model):
    """The Xception inside ``model`` (nested at any depth, or ``model`` itself when built inline).

    Raises ``ValueError`` when there is none; see
    :func:`keras_xception.model.introspect.find_xception`.
    """
    return find_xception(model)


def _find_head(model):
    backbone = find_backbone(model)
    for layer in model.layers[::-1]:
        if isinstance(layer, keras.Model) and layer is not backbone:
            return layer
    raise ValueError(f"Model {model.name!r} has no nested head model; build it with build_classifier.")


def pooled_features(classifier):
    """The part of ``classifier`` up to its pooled features (``avg_pool``; shares its layers)."""
    return feature_model(classifier, _POOL_NAME, name="features")


def _num_batches(data):
    """The number of batches of ``data`` if known without iterating, else None."""
    try:
        n = len(data)
    except TypeError:
        n = int(data.cardinality()) if hasattr(data, "cardinality") else -1
    return n if n >= 0 else None


def compute_features(model, data, verbose=1):
    """Run ``model`` once over ``data`` (batches of ``(x, y)``); returns ``(features, labels)``.

    Images and labels are read in one pass, so shuffled datasets stay aligned.
    """
    labels = []

    def images():  # (images, 1 batch) per batch, keeping the labels
        for batch in data:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError("Data must yield batches of (images, labels).")
            labels.append(np.asarray(batch[1]))
            yield batch[0], 1

    feats = predict_batches(
        model.predict_on_batch, images(), total=_num_batches(data), unit_name="batch", verbose=verbose
    )
    if feats is None:
        raise ValueError("The dataset is empty: no batches to compute features from.")
    return feats, np.concatenate(labels)


def _compile(model, learning_rate, head, optimizer=None):
    from_logits = head.get_layer("predictions").activation in (None, keras.activations.linear)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


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
):
    """Train the head of ``classifier`` with the backbone frozen; returns a ``History``.

    With ``cached=True`` (the fast path) the pooled features of
    ``train_data`` and ``validation_data`` are computed once
    (:func:`compute_features`) and the head is fit on them for ``epochs``
    epochs (mini-batches of ``batch_size``, shuffled); the classifier shares
    the head, so afterwards it is the trained model. With ``cached=False`` it
    is ``classifier.fit(train_data, ...)``, the backbone running every epoch.
    Either way the classifier is left compiled (Adam at ``learning_rate``).
    """
    epochs = _check_int(epochs, "epochs", 1)
    if not isinstance(learning_rate, (int, float)) or isinstance(learning_rate, bool) or learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be a positive number; received {learning_rate!r}.")
    backbone, head = find_backbone(classifier), _find_head(classifier)
    backbone.trainable = False
    if not cached:
        _compile(classifier, learning_rate, head)
        return classifier.fit(
            train_data,
            validation_data=validation_data,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            shuffle=False,  # datasets shuffle themselves
        )
    batch_size = _check_int(batch_size, "batch_size", 1)
    extractor = pooled_features(classifier)
    if verbose:
        print("Computing backbone features (once) for the training data")
    x, y = compute_features(extractor, train_data, verbose)
    val = None
    if validation_data is not None:
        if verbose:
            print("Computing backbone features (once) for the validation data")
        val = compute_features(extractor, validation_data, verbose)
    return fit_head(
        classifier,
        x,
        y,
        validation=val,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        verbose=verbose,
        callbacks=callbacks,
    )


def fit_head(
    classifier,
    features,
    labels,
    validation=None,
    epochs=5,
    learning_rate=1e-3,
    batch_size=32,
    verbose=1,
    callbacks=None,
    class_weight=None,
):
    """Fit the head of ``classifier`` on pooled ``features`` (N x D) and integer ``labels``; a ``History``.

    The training step of :func:`train_head`'s fast path, for features computed
    elsewhere (:func:`compute_features`, or a pipeline that also records which
    files it skipped). ``features`` may also be a ``tf.data.Dataset`` of
    ``(features, labels)`` batches (then ``labels`` is None and ``batch_size``
    is the dataset's). ``validation``: ``(features, labels)`` or None;
    ``class_weight``: as in ``Model.fit``. Mini-batches of ``batch_size``,
    reshuffled every epoch. Afterwards ``classifier`` (which shares the head)
    is the trained model, compiled with the optimizer and its state. Call it
    in the ``tf.distribute`` strategy scope the classifier was built in.
    """
    epochs = _check_int(epochs, "epochs", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    if not isinstance(learning_rate, (int, float)) or isinstance(learning_rate, bool) or learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be a positive number; received {learning_rate!r}.")
    head = _find_head(classifier)
    find_backbone(classifier).trainable = False
    # Fit a throw-away wrapper that shares the head's layers, so that the head itself stays
    # uncompiled (a compiled sub-model would take the optimizer into the saved file).
    trainer = keras.Model(head.inputs, head.outputs, name="head_trainer")
    _compile(trainer, learning_rate, head)
    dataset = labels is None
    history = trainer.fit(
        features,
        labels,
        validation_data=validation,
        epochs=epochs,
        batch_size=None if dataset else batch_size,
        shuffle=not dataset,
        verbose=verbose,
        callbacks=callbacks,
        class_weight=class_weight,
    )
    # The classifier's trainable weights are exactly the head's: it takes over the optimizer
    # (and its state), so training can go on and the saved optimizer matches on reload.
    _compile(classifier, learning_rate, head, optimizer=trainer.optimizer)
    return history


def unfreeze_top_blocks(classifier, blocks):
    """Make the top ``blocks`` Xception blocks of the backbone trainable, BatchNorm excluded.

    Blocks are those of the backbone's own spec (:func:`~keras_xception.model.introspect.spec_of`:
    ``block2`` .. ``block14`` for the official model, fewer or more for a
    variant); ``blocks=2`` unfreezes the last two (``block13`` and ``block14``).
    Returns the names of the layers made trainable.
    """
    backbone = find_backbone(classifier)
    spec = spec_of(backbone)
    blocks = _check_int(blocks, "blocks", 1, len(spec.blocks))
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
    """Fine-tune the top ``blocks`` backbone blocks and the head at a low learning rate.

    Unfreezes as :func:`unfreeze_top_blocks` (BatchNormalization stays frozen,
    so in inference mode), recompiles with Adam(``learning_rate``) and fits
    (``class_weight`` as in ``Model.fit``).
    Train the head first (:func:`train_head`): a random head's large
    gradients would wreck the pretrained features. Returns a ``History``.
    """
    epochs = _check_int(epochs, "epochs", 1)
    if not isinstance(learning_rate, (int, float)) or isinstance(learning_rate, bool) or learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be a positive number; received {learning_rate!r}.")
    unfreeze_top_blocks(classifier, blocks)
    _compile(classifier, learning_rate, _find_head(classifier))
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
