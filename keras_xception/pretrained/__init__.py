"""Pretrained weights: the registry of weight sets (:mod:`.registry`), verified downloads
(:mod:`.download`), weight-file formats (:mod:`.formats`) and the one load step that puts
weights into a built model (:mod:`.loading`).

This package exports the registry and download API, which needs neither Keras nor
TensorFlow (so ``keras-xception weights list`` starts at once); it is also reachable as
``keras_xception.weights``, its name before 0.2. Loading: :func:`keras_xception.load_pretrained`.
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
