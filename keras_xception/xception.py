"""Xception, drop-in for ``keras.applications.xception``: :func:`Xception`, :func:`preprocess_input`, :func:`decode_predictions`;
the aligned Xceptions (DeepLabV3+, timm): :func:`xception41`, :func:`xception65`, :func:`xception71`,
:func:`xception41p`, :func:`xception65p`; :func:`build` by architecture name."""

from __future__ import annotations

from keras_xception.model.graph import build_model
from keras_xception.model.imagenet import decode_predictions
from keras_xception.model.preprocessing import preprocess_input
from keras_xception.model.spec import ARCHITECTURES, xception_spec
from keras_xception.pretrained.loading import check_pretrained, load_pretrained, resolve_weights

__all__ = ["Xception", *list(ARCHITECTURES)[1:], "preprocess_input", "decode_predictions", "build", "BUILDERS"]


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
    return _build(spec, weights, include_top, input_tensor, input_shape, pooling, classes, classifier_activation,
                  name, include_preprocessing)  # fmt: skip


def _build(spec, weights, include_top, input_tensor, input_shape, pooling, classes, activation, name, preprocessing):
    """The one path of every builder: weights resolved and checked, the model built, the weights loaded."""
    record, path = resolve_weights(weights, spec.arch)
    check_pretrained(spec, record, include_top, activation, input_shape, input_tensor)
    model = build_model(
        spec,
        include_top=include_top,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=activation,
        name=name,
        include_preprocessing=preprocessing,
        default_size=None if record is None else tuple(record.input_size),
    )
    if record is not None or path is not None:
        load_pretrained(model, record or path, stacklevel=3)
    return model


def _aligned(arch):
    def builder(
        include_top=True,
        weights="imagenet",
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        name=arch,
        *,
        include_preprocessing=False,
        output_stride=32,
    ):
        spec = xception_spec(**ARCHITECTURES[arch], output_stride=output_stride)
        return _build(spec, weights, include_top, input_tensor, input_shape, pooling, classes, classifier_activation,
                      name, include_preprocessing)  # fmt: skip

    builder.__name__ = builder.__qualname__ = arch
    builder.__doc__ = f"""Instantiates the aligned Xception ``{arch}`` (DeepLabV3+, Chen et al. ECCV 2018; timm's layout).

    :func:`Xception`'s arguments and behaviour; ``weights="imagenet"``: timm's default ImageNet-1k weights for
    {arch} (docs/weights.md lists them all); ``weights`` may also be a timm ``.safetensors`` checkpoint.
    """
    return builder


xception41, xception65, xception71, xception41p, xception65p = (_aligned(a) for a in list(ARCHITECTURES)[1:])
#: Architecture name -> its builder.
BUILDERS = {"xception": Xception, **{a: globals()[a] for a in list(ARCHITECTURES)[1:]}}


def build(arch=None, **kwargs):
    """The model of architecture ``arch`` (a :data:`BUILDERS` name; None: that of the registered ``weights``,
    else ``"xception"``), built by its builder with ``kwargs``."""
    if arch is None:
        record = resolve_weights(kwargs.get("weights", "imagenet"))[0]
        arch = "xception" if record is None else record.arch
    if arch not in BUILDERS:
        raise ValueError(f"`arch` must be one of {sorted(BUILDERS)}; received arch={arch!r}.")
    return BUILDERS[arch](**kwargs)
