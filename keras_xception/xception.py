"""Xception, drop-in for ``keras.applications.xception``.

Same names as Keras's module (``Xception``, ``preprocess_input``,
``decode_predictions``), built from :mod:`keras_xception.architecture`.
"""

from __future__ import annotations

import os
import warnings

import keras

from keras_xception import architecture, loading, variants
from keras_xception import weights as weights_lib
from keras_xception.imagenet import decode_predictions
from keras_xception.preprocessing import preprocess_input, preprocessing_layer

__all__ = ["Xception", "preprocess_input", "decode_predictions"]

MIN_SIZE = 71
DEFAULT_SIZE = 299
_POOLINGS = (None, "avg", "max")


def _resolve_weights(weights):
    """``None``, a registered :class:`WeightRecord`, or an existing file path."""
    if weights is None:
        return None, None
    if isinstance(weights, str) and weights_lib.is_registered(weights):
        return weights_lib.get_record(weights), None
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return None, os.fspath(weights)
    known = sorted(r.name for r in weights_lib.list_records())
    raise ValueError(
        "`weights` must be None (random initialization), a registered weight set "
        f"{known}, or the path of an existing weights file (.h5, .weights.h5, .keras); "
        f"received weights={weights!r}"
        + (" (no such file)." if isinstance(weights, (str, os.PathLike)) else ".")
    )


def _input_shape(input_shape, input_tensor, include_top, record, channels_first):
    default_channels = 3
    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise ValueError(
                "`input_tensor` must be a symbolic Keras tensor (e.g. `keras.Input(...)` or "
                f"another model's output); received {type(input_tensor).__name__}."
            )
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise ValueError(
                f"`input_shape`={tuple(input_shape)} does not match the shape of "
                f"`input_tensor` {tensor_shape}; pass one of them."
            )
        input_shape = tensor_shape
    if input_shape is None:
        size = (DEFAULT_SIZE, DEFAULT_SIZE) if include_top else (None, None)
        if include_top and record is not None:
            size = tuple(record.input_size)
        input_shape = (default_channels,) + size if channels_first else size + (default_channels,)
    try:
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"`input_shape` must be a tuple of 3 integers; received {input_shape!r}.") from None
    layout = "(channels, height, width)" if channels_first else "(height, width, channels)"
    if len(input_shape) != 3:
        raise ValueError(f"`input_shape` must have 3 entries {layout}; received {input_shape}.")
    channels = input_shape[0] if channels_first else input_shape[2]
    spatial = input_shape[1:] if channels_first else input_shape[:2]
    if channels is None or channels < 1:
        raise ValueError(f"`input_shape` {layout} needs a known, positive channel count; received {input_shape}.")
    for d in spatial:
        if d is not None and d < MIN_SIZE:
            raise ValueError(
                f"Xception needs inputs of at least {MIN_SIZE}x{MIN_SIZE} pixels; received "
                f"input_shape={input_shape} {layout}. Resize the images or pass a larger input_shape."
            )
    if record is not None:
        if include_top and tuple(spatial) != tuple(record.input_size):
            raise ValueError(
                f"With include_top=True and weights={record.name!r} the input must be "
                f"{tuple(record.input_size)}; received input_shape={input_shape}. Use "
                "include_top=False (with pooling='avg') for other sizes."
            )
    return input_shape


def Xception(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="xception",
    *,
    include_preprocessing=False,
    residual=True,
    intermediate_activation=None,
    middle_flow_blocks=8,
    width_multiplier=1.0,
    output_stride=32,
):
    """Instantiates the Xception architecture (Chollet, CVPR 2017).

    A drop-in for ``keras.applications.Xception``: same arguments, same layers
    (names and order), so weight files written for either load into both.
    Differences: bad arguments raise ``ValueError`` instead of being ignored,
    the residual layers have names (``block2_residual_conv``, ...), and
    ``include_preprocessing=True`` lets the model take raw 0..255 images.

    Input: images of at least 71x71 pixels (299x299 by default), scaled to
    [-1, 1] by :func:`preprocess_input` (or by the model itself with
    ``include_preprocessing=True``).

    Args:
        include_top: Whether to include the classifier (global average pooling
            ``avg_pool`` + Dense ``predictions``).
        weights: ``None`` (random init), ``"imagenet"`` (or another name from
            :func:`keras_xception.weights.list_records`), or the path of a
            weights file: legacy Keras 2 ``.h5``, Keras 3 ``.weights.h5``, or a
            ``.keras`` model that contains an Xception (also nested in a
            fine-tuned model). With other than 3 input channels the pretrained
            first convolution is adapted (summed for 1 channel; repeated and
            rescaled by 3/C for C channels).
        input_tensor: Optional Keras tensor (e.g. ``keras.Input`` or another
            model's output) to use as the model's input.
        input_shape: Optional shape tuple without the batch axis, e.g.
            ``(299, 299, 3)`` (channels_last) or ``(3, 299, 299)``
            (channels_first). Spatial sizes of at least 71, or ``None`` for
            any size when ``include_top=False``. Defaults to 299x299x3 with the
            top and to ``(None, None, 3)`` without.
        pooling: With ``include_top=False``: ``None`` (4D feature map output),
            ``"avg"`` or ``"max"`` (global pooling, 2D output).
        classes: Number of classes of the classifier (``include_top=True``).
            With pretrained weights and a different count, the backbone is
            loaded and the ``predictions`` layer is new (a warning says so).
        classifier_activation: Activation of the classifier: a name, a
            callable, or ``None`` for logits. Only ``None`` or ``"softmax"``
            with registered pretrained weights.
        name: Model name.
        include_preprocessing: Put :func:`preprocessing_layer` (0..255 ->
            -1..1) in front, so the model takes raw pixel values.
        residual, intermediate_activation, middle_flow_blocks,
        width_multiplier, output_stride: Architecture variants (the paper's
            ablations, DeepLab-style atrous output stride); the defaults give
            the official model. See
            :func:`keras_xception.architecture.xception_spec`. Pretrained
            weights load into variants with unchanged weight shapes
            (``intermediate_activation``, ``output_stride``, ``residual``);
            see :mod:`keras_xception.variants`.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for any invalid argument combination (the message names
            the argument, the value received and what is allowed), or a weights
            file that does not fit the model.
    """
    if not isinstance(include_top, bool):
        raise ValueError(f"`include_top` must be True or False; received {include_top!r}.")
    if pooling not in _POOLINGS:
        raise ValueError(f"`pooling` must be one of {_POOLINGS}; received pooling={pooling!r}.")
    if include_top and pooling is not None:
        warnings.warn(
            f"`pooling={pooling!r}` is ignored when include_top=True (the top always uses "
            "global average pooling).",
            stacklevel=2,
        )
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"`classes` must be a positive integer; received classes={classes!r}.")
    spec = architecture.xception_spec(
        middle_flow_blocks,
        residual=residual,
        intermediate_activation=intermediate_activation,
        width_multiplier=width_multiplier,
        output_stride=output_stride,
    )
    record, path = _resolve_weights(weights)
    variants.check_pretrained(spec, record)
    if record is not None and include_top:
        if classifier_activation not in (None, "softmax"):
            raise ValueError(
                f"With pretrained weights {record.name!r} `classifier_activation` must be None "
                f"or 'softmax'; received {classifier_activation!r}."
            )
        if classes != record.classes:
            warnings.warn(
                f"weights={record.name!r} has a {record.classes}-class top; building the "
                f"pretrained backbone with a new, randomly initialised {classes}-class "
                "'predictions' layer. Train it before use (see keras_xception.transfer).",
                stacklevel=2,
            )
    channels_first = keras.config.image_data_format() == "channels_first"
    channel_axis = 1 if channels_first else -1
    input_shape = _input_shape(input_shape, input_tensor, include_top, record, channels_first)

    if input_tensor is None:
        inputs = img_input = keras.Input(shape=input_shape, name="input_layer")
    else:
        img_input = input_tensor
        inputs = keras.utils.get_source_inputs(input_tensor)
    x = img_input
    if include_preprocessing:
        x = preprocessing_layer()(x)
    x = architecture.build_features(x, spec, channel_axis)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)

    if record is None and path is None:
        return model
    if variants.is_official(spec):
        _load_pretrained(model, record, path, include_top, classes, input_shape, channels_first)
    else:  # weights of the official layout, copied into the variant's layers by name
        variants.load_pretrained(
            model, weights, spec, include_top=include_top, input_shape=input_shape,
            classes=classes, classifier_activation=classifier_activation,
        )
    return model


def _load_pretrained(model, record, path, include_top, classes, input_shape, channels_first):
    """Load a registered weight set or a file into ``model``.

    A model whose classifier does not fit the weights (other ``classes``) gets
    only the backbone; an input with other than 3 channels gets an adapted
    first convolution (both with a warning).
    """
    targets = loading.weighted_layers(model)
    new_head = include_top and record is not None and classes != record.classes
    if new_head:
        targets = targets[:-1]  # the fresh 'predictions' layer keeps its initialisation
    if record is not None:
        if record.include_top and record.notop and (not include_top or new_head):
            record = weights_lib.get_record(record.notop)  # smaller download
        path = weights_lib.get_file(record)
    channels = input_shape[0] if channels_first else input_shape[-1]
    loading.load_weights(
        model,
        path,
        targets=targets,
        allow_top_mismatch=not include_top or new_head,
        adapt_input_channels=channels != 3,
    )
