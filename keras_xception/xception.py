"""Xception, drop-in for ``keras.applications.xception``.

Same names as Keras's module (``Xception``, ``preprocess_input``,
``decode_predictions``). :func:`Xception` builds the graph
(:func:`keras_xception.model.graph.build_model`), then loads the weights in
one step (:func:`keras_xception.pretrained.loading.load_pretrained`).
"""

from __future__ import annotations

import keras

from keras_xception.model.graph import build_model, check_input_shape
from keras_xception.model.imagenet import decode_predictions
from keras_xception.model.preprocessing import preprocess_input
from keras_xception.model.spec import xception_spec
from keras_xception.pretrained.loading import check_pretrained, load_pretrained, resolve_weights

__all__ = ["Xception", "preprocess_input", "decode_predictions"]


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
            :func:`keras_xception.pretrained.registry.list_records`), or the path of a
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
            :func:`keras_xception.model.spec.xception_spec`. Pretrained
            weights load into variants with unchanged weight shapes
            (``intermediate_activation``, ``output_stride``, ``residual``);
            see :mod:`keras_xception.pretrained.loading`.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for any invalid argument combination (the message names
            the argument, the value received and what is allowed), or a weights
            file that does not fit the model.
    """
    spec = xception_spec(
        middle_flow_blocks,
        residual=residual,
        intermediate_activation=intermediate_activation,
        width_multiplier=width_multiplier,
        output_stride=output_stride,
    )
    record, path = resolve_weights(weights)
    check_pretrained(spec, record)
    if record is not None and include_top is True and classifier_activation not in (None, "softmax"):
        raise ValueError(
            f"With pretrained weights {record.name!r} `classifier_activation` must be None "
            f"or 'softmax'; received {classifier_activation!r}."
        )
    if record is not None and include_top is True:  # checked before the graph is built
        shape = check_input_shape(input_shape, input_tensor, include_top, tuple(record.input_size))
        spatial = shape[1:] if keras.config.image_data_format() == "channels_first" else shape[:2]
        if tuple(spatial) != tuple(record.input_size):
            raise ValueError(
                f"With include_top=True and weights={record.name!r} the input must be "
                f"{tuple(record.input_size)}; received input_shape={shape}. Use "
                "include_top=False (with pooling='avg') for other sizes."
            )
    model = build_model(
        spec,
        include_top=include_top,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        include_preprocessing=include_preprocessing,
        default_size=None if record is None else tuple(record.input_size),
    )
    if record is not None or path is not None:
        load_pretrained(model, record or path, stacklevel=2)
    return model
