"""keras-xception: Xception (Chollet, CVPR 2017) for Keras 3, a drop-in for
``keras.applications.Xception``.

The public API, by layer (each name is importable from here; nothing heavy is
imported until a name is first used, so ``import keras_xception`` is instant):

Model (:mod:`keras_xception.model`, :mod:`keras_xception.xception`)
    :func:`Xception` (the builder, same signature as Keras's),
    :func:`preprocess_input` / :func:`preprocessing_layer` (0..255 -> -1..1),
    :func:`decode_predictions` (ImageNet class names, offline),
    :func:`xception_spec` (the architecture as data), :func:`spec_of` and
    :func:`find_xception` (read a built model back), :func:`feature_extractor`
    / :func:`feature_layers` / :func:`feature_model` (feature maps),
    :func:`count_macs`.
Pretrained weights (:mod:`keras_xception.pretrained`, also as ``keras_xception.weights``)
    the registry (``weights.register``, ``weights.list_records``), verified
    downloads, :func:`load_pretrained` (the one load step).
Data (:mod:`keras_xception.data`)
    :class:`Transform` / :func:`resolve_transform` (the input transform of a
    weight set), :func:`load_image`, ``data.image_dataset`` and the ImageNet
    sources.
Tasks (:mod:`keras_xception.tasks`)
    :func:`train` (transfer learning in one call: a class-per-folder image
    tree in, a :class:`Classifier` and its report out; the classifier's
    ``.keras`` file carries its class names and transform, read back by
    :func:`load_classifier`),
    ``transfer`` (:func:`build_classifier`, ``train_head``, ``fine_tune``),
    ``extraction`` (:func:`extract_features`), ``evaluation``
    (:func:`evaluate`), ``gradcam`` (:func:`grad_cam`).
Deployment (:mod:`keras_xception.deploy`)
    :class:`Predictor` (fast CPU inference in fp32, bf16 or int8, from a
    Keras model or an exported file), :func:`export`, :func:`quantize`
    (reduced precision measured against fp32, written only if it agrees),
    :func:`agreement`, :func:`fold_batchnorm`.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# name -> module that defines it
_NAMES = {
    "Xception": "keras_xception.xception",
    "preprocess_input": "keras_xception.model.preprocessing",
    "preprocessing_layer": "keras_xception.model.preprocessing",
    "decode_predictions": "keras_xception.model.imagenet",
    "xception_spec": "keras_xception.model.spec",
    "XceptionSpec": "keras_xception.model.spec",
    "spec_of": "keras_xception.model.introspect",
    "find_xception": "keras_xception.model.introspect",
    "feature_extractor": "keras_xception.model.features",
    "feature_layers": "keras_xception.model.features",
    "feature_model": "keras_xception.model.features",
    "count_macs": "keras_xception.model.analysis",
    "load_pretrained": "keras_xception.pretrained.loading",
    "Transform": "keras_xception.data.transform",
    "resolve_transform": "keras_xception.data.transform",
    "load_image": "keras_xception.data.transform",
    "build_classifier": "keras_xception.tasks.transfer",
    "train": "keras_xception.tasks.training",
    "Classifier": "keras_xception.tasks.classifier",
    "load_classifier": "keras_xception.tasks.classifier",
    "extract_features": "keras_xception.tasks.extraction",
    "evaluate": "keras_xception.tasks.evaluation",
    "grad_cam": "keras_xception.tasks.gradcam",
    "Predictor": "keras_xception.deploy.predictor",
    "export": "keras_xception.deploy.export",
    "quantize": "keras_xception.deploy.quantization",
    "agreement": "keras_xception.deploy.quantization",
    "fold_batchnorm": "keras_xception.deploy.folding",
}
# module names kept from the flat layout of 0.1 (and taught by the README) -> their module now
_MODULES = {
    "weights": "keras_xception.pretrained",
    "architecture": "keras_xception.model.spec",
    "analysis": "keras_xception.model.analysis",
    "folders": "keras_xception.data",
    "transfer": "keras_xception.tasks.transfer",
    "training": "keras_xception.tasks.training",
    "extraction": "keras_xception.tasks.extraction",
    "evaluation": "keras_xception.tasks.evaluation",
    "gradcam": "keras_xception.tasks.gradcam",
}

__all__ = sorted(_NAMES) + sorted(_MODULES) + ["__version__"]


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'keras_xception' has no attribute {name!r}")
    globals()[name] = value  # resolve once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
