"""KerasHub out (:func:`write_hub_preset`): a classifier as a preset that ``keras_hub.models.ImageClassifier.
from_preset`` loads with keras_hub alone; class names in its ``metadata.json``, scaling in its image converter."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings

import numpy as np

from keras_xception.deploy.runtimes import ParityError, RuntimeNotInstalledError
from keras_xception.deploy.serving import output_names
from keras_xception.model.introspect import find_layer, find_xception, spec_of
from keras_xception.pretrained.formats import hub_layout
from keras_xception.pretrained.loading import transfer_weights

__all__ = ["write_hub_preset", "hub_differences"]


def _hub_model(model, transform):
    """The ``XceptionImageClassifier`` of ``model`` (its Xception and ``predictions`` top, weights copied)."""
    try:
        import keras_hub
    except ImportError:
        raise RuntimeNotInstalledError('format="keras-hub" needs: pip install "keras-xception[keras-hub]"') from None
    try:
        spec = spec_of(model)
    except ValueError as e:
        raise ValueError(f"KerasHub's XceptionBackbone cannot express this model: {e}") from None
    if not spec.residual or spec.intermediate_activation or spec.output_stride != 32:
        raise ValueError(
            "KerasHub's XceptionBackbone has residual connections, no intermediate activation and output stride 32; "
            f"this model has {spec.options}. Export it in another format (savedmodel, onnx, openvino, litert)."
        )
    top = find_layer(model, "predictions")
    if top is None or len(model.output_shape) != 2:
        raise ValueError("export --format keras-hub writes a classifier: the model has no 'predictions' top.")
    height, width = transform.target_size
    backbone = keras_hub.models.XceptionBackbone(**hub_layout(spec), image_shape=(height, width, 3))
    transfer_weights(find_xception(model), backbone)
    converter = keras_hub.layers.XceptionImageConverter(
        image_size=(height, width), scale=1 / 127.5, offset=-1.0, interpolation=transform.interpolation
    )
    task = keras_hub.models.XceptionImageClassifier(
        backbone=backbone,
        num_classes=top.units,
        preprocessor=keras_hub.models.XceptionImageClassifierPreprocessor(image_converter=converter),
        activation=top.get_config()["activation"],
    )
    task.get_layer("predictions").set_weights(top.get_weights())
    return task


def hub_differences(transform) -> list[str]:
    """What KerasHub's image converter does differently from ``transform`` (empty: nothing)."""
    (h, w), f, notes = transform.target_size, transform.crop_fraction, []
    if transform.resize_mode == "central" or f != 1:
        ours = f"the central {f:g} of each side" if transform.resize_mode == "central" else f"{f:g} of that region"
        notes.append(
            f"crop: KerasHub's image converter resizes the largest central region of aspect {h}:{w} to {h}x{w}; "
            f"this model's transform resizes {ours} (equal only for crop_fraction=1 and images of aspect {h}:{w})."
        )
    if transform.exif_orientation:
        notes.append("EXIF orientation: KerasHub takes decoded pixels; turn photos upright before (PIL.ImageOps).")
    return notes


def write_hub_preset(model, path, transform, class_names=None, *, rtol=1e-4, seed=0) -> str:
    """Write ``model`` (an Xception classifier) as a KerasHub preset directory at ``path``, checked against
    ``model`` on random images (``ParityError`` otherwise; nothing written); warns each of :func:`hub_differences`.
    ``ValueError`` for a model KerasHub cannot express (a variant, no classifier) or an existing ``path``."""
    if os.path.exists(path):
        raise ValueError(f"{path!r} exists; export --format keras-hub writes a new directory.")
    task = _hub_model(model, transform)
    x = np.random.default_rng(seed).uniform(0, 255, (2, *transform.target_size, 3)).astype(np.float32)
    expected = np.asarray(model(transform.preprocess(x), training=False))  # eager: predict would trace each model
    diff = float(np.max(np.abs(task(task.preprocessor(x)) - expected)) / max(float(np.max(np.abs(expected))), 1e-12))
    if not diff <= rtol:
        raise ParityError(f"The KerasHub model differs from this one: relative max difference {diff:.3g} > {rtol:g}.")
    tmp = tempfile.mkdtemp(prefix=".keras-hub-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        task.save_to_preset(tmp)
        with open(os.path.join(tmp, "metadata.json"), encoding="utf-8") as f:
            metadata = json.load(f)
        metadata.update(class_names=output_names(task.num_classes, class_names), transform=transform.to_dict())
        with open(os.path.join(tmp, "metadata.json"), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=4)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for note in hub_differences(transform):
        warnings.warn(f"KerasHub preset {path}: {note}", stacklevel=3)
    return path
