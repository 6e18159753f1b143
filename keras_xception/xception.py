"""Xception, drop-in for ``keras.applications.xception``.

Same names as Keras's module. :func:`Xception` builds the graph
(:func:`keras_xception.model.graph.build_model`), then loads the weights
(:func:`keras_xception.pretrained.loading.load_pretrained`).
"""

from __future__ import annotations

from keras_xception.model.graph import build_model
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

    A drop-in for ``keras.applications.Xception``: same arguments, same weighted
    layers (names, order, shapes), so weight files written for either load into
    both. Differences: bad arguments raise ``ValueError`` naming the argument,
    the residual layers have names (``block2_residual_conv``, ...), and
    ``include_preprocessing=True`` puts :func:`preprocessing_layer` (0..255 ->
    -1..1) in front so the model takes raw pixels; otherwise scale inputs with
    :func:`preprocess_input`. Inputs are at least 71x71 (299x299 by default).

    Args:
        include_top: Whether to include the classifier (``avg_pool`` + Dense ``predictions``).
        weights: ``None`` (random), ``"imagenet"`` (or another name from
            :func:`keras_xception.pretrained.registry.list_records`), or the path
            of a legacy Keras 2 ``.h5``, a Keras 3 ``.weights.h5`` or a ``.keras``
            model containing an Xception (nested too). With other than 3 input
            channels the first convolution is adapted (summed for 1 channel,
            repeated and rescaled by 3/C for C). With another class count than
            the weights' the ``predictions`` layer is new (a warning says so).
        input_tensor: Optional Keras tensor to use as the model's input.
        input_shape: Shape without the batch axis, ``(299, 299, 3)`` or
            ``(3, 299, 299)`` for channels_first; ``None`` sides allowed without
            the top. Default: 299x299x3 with the top, ``(None, None, 3)`` without.
        pooling: Without the top: ``None`` (4D map), ``"avg"`` or ``"max"``.
        classes: Classes of the classifier.
        classifier_activation: Name, callable, or ``None`` for logits (only
            ``None`` or ``"softmax"`` with registered weights).
        name: Model name.
        include_preprocessing: Take raw 0..255 images (see above).
        residual, intermediate_activation, middle_flow_blocks, width_multiplier,
        output_stride: Architecture variants (the paper's ablations, atrous output
            stride): :func:`keras_xception.model.spec.xception_spec`. Pretrained
            weights load into those with the official shapes: see
            :mod:`keras_xception.pretrained.loading`.

    Raises:
        ValueError: an invalid argument (named, with the value received and what
            is allowed), or a weights file that does not fit the model.
    """
    spec = xception_spec(
        middle_flow_blocks,
        residual=residual,
        intermediate_activation=intermediate_activation,
        width_multiplier=width_multiplier,
        output_stride=output_stride,
    )
    record, path = resolve_weights(weights)
    check_pretrained(spec, record, include_top, classifier_activation, input_shape, input_tensor)
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
