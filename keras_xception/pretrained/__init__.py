"""Pretrained weights: registry, verified downloads, weight-file formats, the one load step.

Exports the registry and download API, which import neither Keras nor TensorFlow (also reachable as
``keras_xception.weights``, its name before 0.2).
"""

from keras_xception.pretrained.download import (
    MIRROR_ENV,
    WeightsDownloadError,
    cache_dir,
    cached_path,
    file_digest,
    get_file,
    verify_file,
)
from keras_xception.pretrained.registry import (
    WeightRecord,
    get_record,
    is_registered,
    list_records,
    register,
    unregister,
)

__all__ = [
    "WeightRecord",
    "register",
    "unregister",
    "get_record",
    "list_records",
    "is_registered",
    "get_file",
    "cache_dir",
    "cached_path",
    "verify_file",
    "file_digest",
    "MIRROR_ENV",
    "WeightsDownloadError",
]
