"""Pretrained weights: the registry of weight sets, verified downloads, weight-file formats,
and the one load step that puts weights into a built model.

Also importable as ``keras_xception.weights`` (its name before 0.2)."""

from keras_xception.pretrained.download import (
    MIRROR_ENV,
    WeightsDownloadError,
    cache_dir,
    cached_path,
    file_digest,
    get_file,
    verify_file,
)
from keras_xception.pretrained.formats import (
    WeightsFileError,
    adapt_first_conv,
    match_layers,
    read_weights,
    top_classes,
)
from keras_xception.pretrained.loading import convert_weights, load_pretrained, xception_from_file
from keras_xception.pretrained.registry import (
    WeightRecord,
    get_record,
    is_registered,
    list_records,
    register,
    unregister,
)

__all__ = [
    # registry
    "WeightRecord",
    "register",
    "unregister",
    "get_record",
    "list_records",
    "is_registered",
    # download
    "get_file",
    "cache_dir",
    "cached_path",
    "verify_file",
    "file_digest",
    "MIRROR_ENV",
    "WeightsDownloadError",
    # formats
    "WeightsFileError",
    "read_weights",
    "top_classes",
    "match_layers",
    "adapt_first_conv",
    # loading
    "load_pretrained",
    "xception_from_file",
    "convert_weights",
]
