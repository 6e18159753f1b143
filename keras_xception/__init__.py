"""keras-xception: Xception (Chollet, CVPR 2017) for Keras 3, a drop-in for ``keras.applications.Xception``.

Every public name is importable from here and resolved on first use, so ``import keras_xception`` is
instant. The layers, lowest first: ``checks``, ``model``, ``pretrained``, ``xception``, ``data``,
``deploy``, ``tasks``, ``cli``; the reference is in ``docs/``.
"""

from __future__ import annotations

import importlib

__version__ = "0.3.0"

# module -> the public names it defines
_NAMES = {
    name: module
    for module, names in {
        "keras_xception.xception": "Xception xception41 xception65 xception71 xception41p xception65p build",
        "keras_xception.model.preprocessing": "preprocess_input preprocessing_layer",
        "keras_xception.model.imagenet": "decode_predictions",
        "keras_xception.model.spec": "xception_spec XceptionSpec",
        "keras_xception.model.introspect": "spec_of find_xception",
        "keras_xception.model.features": "feature_extractor feature_layers feature_model",
        "keras_xception.model.analysis": "count_macs",
        "keras_xception.pretrained.loading": "load_pretrained",
        "keras_xception.data.transform": "Transform resolve_transform load_image",
        "keras_xception.tasks.transfer": "build_classifier",
        "keras_xception.tasks.training": "train",
        "keras_xception.tasks.classifier": "Classifier load_classifier",
        "keras_xception.tasks.extraction": "extract_features",
        "keras_xception.tasks.evaluation": "evaluate evaluate_classifier",
        "keras_xception.tasks.gradcam": "grad_cam",
        "keras_xception.deploy.predictor": "Predictor",
        "keras_xception.deploy.export": "export",
        "keras_xception.deploy.quantization": "quantize agreement",
        "keras_xception.deploy.folding": "fold_batchnorm",
    }.items()
    for name in names.split()
}
# module names kept from the layouts of 0.1 and 0.2 (used by the docs) -> their module now
_MODULES = {
    "weights": "keras_xception.pretrained",
    "analysis": "keras_xception.model.analysis",
    "folders": "keras_xception.data",
    "transfer": "keras_xception.tasks.transfer",
    "training": "keras_xception.tasks.training",
    "evaluation": "keras_xception.tasks.evaluation",
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
