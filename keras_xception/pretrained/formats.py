"""Xception weight files of every format: reading, checked assignment, writing.

Supported files:

* legacy Keras 2 HDF5 (``.h5``/``.hdf5``, the official ImageNet files and what
  ``tf_keras`` writes): weighted layers matched **by order**, as Keras does;
* Keras 3 ``.weights.h5``: layers keyed by class name and order
  (``layers/separable_conv2d_3/vars/0``), also when the Xception is nested
  inside a larger model;
* Keras 3 ``.keras`` model files (loaded with ``safe_mode=True``) that contain
  an Xception, inline or as a nested model: the backbone's weights are taken.

Unlike ``model.load_weights`` the loader checks every layer before it assigns
anything, and names the first layer that does not fit with both shapes.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile

import numpy as np

from keras_xception.model.introspect import backbone_weighted_layers, weighted_layers

__all__ = [
    "load_weights",
    "WeightsFileError",
    "layer_key",
    "save_legacy_h5",
    "top_classes",
    "adapt_input_kernel",
]


class WeightsFileError(ValueError):
    """A weights file that cannot be loaded into the model (wrong layout, shapes, corrupt)."""


def _snake_case(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def layer_key(model):
    """Map each layer of ``model`` to its Keras 3 ``.weights.h5`` key (class name + count)."""
    counts: dict[str, int] = {}
    keys = {}
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        n = counts.get(base, 0)
        counts[base] = n + 1
        keys[layer.name] = base if n == 0 else f"{base}_{n}"
    return keys


# ----------------------------------------------------------------------------
# Readers: each returns an ordered list of (source layer name, [arrays]).


def _decode(s):
    return s.decode("utf8") if isinstance(s, bytes) else str(s)


def _read_legacy_h5(f):
    group = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in group.attrs:
        raise WeightsFileError("it has no 'layer_names' attribute (not a Keras 2 weights file)")
    out = []
    for lname in (_decode(n) for n in group.attrs["layer_names"]):
        g = group[lname]
        names = [_decode(n) for n in g.attrs.get("weight_names", [])]
        if names:
            out.append((lname, [np.asarray(g[n]) for n in names]))
    return out


def _vars(group):
    v = group.get("vars")
    if v is None:
        return []
    return [np.asarray(v[str(i)]) for i in range(len(v))]


def _find_keras3_layers_group(f, expected_keys):
    """The ``layers`` group holding the backbone: the top one, or a nested model's."""
    import h5py

    candidates = []

    def visit(group, depth):
        if "layers" in group and depth < 4:
            layers = group["layers"]
            hits = sum(k in layers for k in expected_keys)
            candidates.append((hits, layers))
            for key in layers:
                if isinstance(layers[key], h5py.Group) and "layers" in layers[key]:
                    visit(layers[key], depth + 1)

    visit(f, 0)
    if not candidates:
        raise WeightsFileError("it has no 'layers' group (not a Keras 3 .weights.h5 file)")
    return max(candidates, key=lambda c: c[0])[1]


def _read_keras3_h5(f, model):
    keys = layer_key(model)
    targets = weighted_layers(model)
    layers = _find_keras3_layers_group(f, [keys[t.name] for t in targets])
    out = []
    for t in targets:
        key = keys[t.name]
        if key not in layers:
            raise WeightsFileError(
                f"it has no weights for layer {t.name!r} (looked for key {key!r}; "
                f"the file has {len(layers)} layer entries)"
            )
        out.append((key, _vars(layers[key])))
    return out


def _read_keras_file(path):
    import keras

    try:
        loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # keras raises many types for a bad archive
        raise WeightsFileError(f"Keras could not load it as a model ({type(e).__name__}: {e})") from e
    try:
        layers = backbone_weighted_layers(loaded)
    except ValueError:
        raise WeightsFileError("it holds no Xception (no model with layers 'block1_conv1' and 'block2_sepconv1')") from None
    return [(l.name, [np.asarray(w) for w in l.get_weights()]) for l in layers]


def _read(path, model):
    import h5py

    if path.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise WeightsFileError("it is not a zip archive, as .keras files are (truncated or corrupt?)")
        return _read_keras_file(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsFileError(f"it is not a readable HDF5 file (truncated or corrupt?): {e}") from e
    try:
        with f:
            if path.endswith(".weights.h5") or ("layers" in f and "layer_names" not in f.attrs):
                return _read_keras3_h5(f, model)
            return _read_legacy_h5(f)
    except (OSError, KeyError, RuntimeError) as e:
        raise WeightsFileError(f"reading it failed (truncated or corrupt?): {e}") from e


# ----------------------------------------------------------------------------


def _skip_top(source, targets):
    """Drop a trailing classifier in the file when the model has none (top -> no-top)."""
    if len(source) == len(targets) + 1 and len(source[-1][1]) == 2 and source[-1][1][0].ndim == 2:
        return source[:-1]
    return source


def adapt_input_kernel(kernel, channels):
    """Adapt an RGB first-convolution kernel ``(kh, kw, 3, out)`` to ``channels`` inputs.

    One channel: the sum over RGB (a grey image then gives the response the RGB
    kernel gives to that grey replicated in R, G and B). More channels: the RGB
    kernel repeated cyclically and scaled by ``3 / channels``, which keeps the
    expected activation for inputs of similar statistics.
    """
    if channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    reps = -(-channels // kernel.shape[2])
    tiled = np.concatenate([kernel] * reps, axis=2)[:, :, :channels, :]
    return tiled * (kernel.shape[2] / channels)


def _adapt_first_conv(source, layer):
    name, arrays = source[0]
    have = arrays[0].shape if arrays else ()
    want = tuple(layer.weights[0].shape) if layer.weights else ()
    rgb_kernel = len(have) == 4 and have[2] == 3
    if rgb_kernel and len(want) == 4 and want[2] != 3 and (have[0], have[1], have[3]) == (want[0], want[1], want[3]):
        warnings.warn(
            f"Adapting the pretrained 3-channel kernel of {layer.name!r} to {want[2]} input "
            "channels (summed for 1 channel, repeated and rescaled by 3/channels for more).",
            stacklevel=4,
        )
        source = [(name, [adapt_input_kernel(arrays[0], want[2])] + arrays[1:])] + source[1:]
    return source


def load_weights(
    model, path, *, targets=None, allow_top_mismatch=False, adapt_input_channels=False
):
    """Load the weight file at ``path`` into ``model`` (or into the layers ``targets``).

    Every layer's shapes are checked before any weight is assigned. With
    ``allow_top_mismatch=True`` a file with a classifier may be loaded into a
    model without one (the classifier is ignored). With
    ``adapt_input_channels=True`` an RGB first convolution is adapted to the
    model's input channel count (:func:`adapt_input_kernel`).

    Raises:
        WeightsFileError: naming the file, the first layer that does not fit
            and the shapes involved.
    """
    path = os.fspath(path)
    targets = weighted_layers(model) if targets is None else list(targets)
    try:
        source = _read(path, model)
    except WeightsFileError as e:
        raise WeightsFileError(f"Cannot load weights from {path!r}: {e}") from None
    if allow_top_mismatch:
        source = _skip_top(source, targets)
    if adapt_input_channels and source and targets:
        source = _adapt_first_conv(source, targets[0])
    for i, (layer, (src_name, arrays)) in enumerate(zip(targets, source)):
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise WeightsFileError(
                f"Cannot load weights from {path!r}: weighted layer #{i} {layer.name!r} "
                f"({type(layer).__name__}) expects shapes {expected}, but the file's "
                f"layer {src_name!r} has {got}. The file is for a different architecture, "
                "input channel count or number of classes, or a model with/without the top."
            )
    if len(source) != len(targets):
        first = targets[len(source)].name if len(source) < len(targets) else source[len(targets)][0]
        where = "model" if len(source) < len(targets) else "file"
        raise WeightsFileError(
            f"Cannot load weights from {path!r}: the model has {len(targets)} weighted layers "
            f"but the file has {len(source)}; the first unmatched layer (in the {where}) is "
            f"{first!r}. Is it a file with the top (include_top=True) loaded into a model "
            "without it, or the other way round?"
        )
    for layer, (_, arrays) in zip(targets, source):
        layer.set_weights(arrays)
    return model


# ----------------------------------------------------------------------------
# Writing and converting


def save_legacy_h5(model, path):
    """Write ``model``'s weights in the legacy Keras 2 HDF5 layout of the official files.

    Root attributes ``layer_names``/``backend``/``keras_version``; one group per
    layer with a ``weight_names`` attribute. ``keras.applications.Xception``,
    ``tf_keras`` and this package load such files by layer order.
    """
    import h5py
    import keras

    tmp = f"{path}.part"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
            f.attrs["backend"] = keras.backend.backend().encode("utf8")
            f.attrs["keras_version"] = keras.__version__.encode("utf8")
            for layer in model.layers:
                g = f.create_group(layer.name)
                names = [f"{layer.name}/{w.path.rsplit('/', 1)[-1]}:0" for w in layer.weights]
                g.attrs["weight_names"] = [n.encode("utf8") for n in names]
                for n, value in zip(names, layer.get_weights()):
                    g.create_dataset(n, data=value)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def top_classes(path):
    """The class count of the file's ``predictions`` layer, or None if it has no top."""
    import keras

    if path.endswith(".keras"):
        return None if not zipfile.is_zipfile(path) else _keras_top(keras, path)
    import h5py

    try:
        with h5py.File(path, "r") as f:
            found = []

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.ndim == 2 and obj.shape[0] == 2048:
                    found.append(obj.shape[1])

            f.visititems(visit)
            return found[-1] if found else None
    except OSError:
        return None


def _keras_top(keras, path):
    try:
        layers = backbone_weighted_layers(keras.saving.load_model(path, compile=False, safe_mode=True))
    except (ValueError, OSError):  # no Xception inside, or not a readable model: the load step says why
        return None
    if layers and layers[-1].name == "predictions":
        return int(layers[-1].weights[0].shape[-1])
    return None
