"""Xception, drop-in for ``keras.applications.xception``: :func:`Xception`, :func:`preprocess_input`, :func:`decode_predictions`."""

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

    A drop-in for ``keras.applications.Xception``: the same arguments and weighted layers (names,
    order, shapes), so weight files of either load into both. Beyond it: ``weights`` may be the
    path of a ``.h5``, ``.weights.h5`` or ``.keras`` file, and other input channels or class counts
    adapt the first convolution or give a new ``predictions`` layer, with a warning;
    ``include_preprocessing=True`` takes raw 0..255 pixels; ``residual``,
    ``intermediate_activation``, ``middle_flow_blocks``, ``width_multiplier`` and ``output_stride``
    build the paper's ablations and atrous variants (docs/variants.md). ``ValueError`` for an
    invalid argument or a weights file that does not fit.
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
