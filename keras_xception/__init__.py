"""keras-xception: Xception (Chollet, CVPR 2017) for Keras 3, a drop-in for
``keras.applications.Xception``.

Public API:

* :func:`Xception` - the model builder (same signature as Keras's).
* :func:`preprocess_input` / :func:`preprocessing_layer` - 0..255 -> -1..1.
* :func:`decode_predictions` - ImageNet class names, offline.
* :func:`load_image` - read an image file exactly as evaluation does.
* :mod:`keras_xception.weights` - pretrained weight registry and download.
* :mod:`keras_xception.architecture` - the architecture as block specs.
* :func:`feature_extractor` / :func:`feature_layers` - multi-scale feature maps.
* :mod:`keras_xception.analysis` - parameters and MACs (:func:`count_macs`).
* :func:`export` - SavedModel / ONNX / OpenVINO export, checked against Keras.
* :class:`Predictor` (:mod:`keras_xception.inference`) - fast CPU inference.
* :func:`fold_batchnorm` - fold BatchNormalization into the convolutions.
"""

from keras_xception import analysis, architecture, weights
from keras_xception.analysis import count_macs
from keras_xception.exporting import export
from keras_xception.features import feature_extractor, feature_layers
from keras_xception.folding import fold_batchnorm
from keras_xception.image import load_image
from keras_xception.inference import Predictor
from keras_xception.imagenet import decode_predictions
from keras_xception.preprocessing import preprocess_input, preprocessing_layer
from keras_xception.xception import Xception

__version__ = "0.1.0"

__all__ = [
    "Xception",
    "preprocess_input",
    "preprocessing_layer",
    "decode_predictions",
    "load_image",
    "weights",
    "architecture",
    "analysis",
    "count_macs",
    "feature_extractor",
    "feature_layers",
    "export",
    "fold_batchnorm",
    "Predictor",
    "__version__",
]
