"""Xception weight files: legacy Keras 2 ``.h5`` (by layer order), Keras 3 ``.weights.h5`` (by key),
``.keras`` models holding an Xception, timm ``.safetensors`` checkpoints of the aligned Xceptions (by
timm's module names), KerasHub preset directories; read, shape-checked against a model, written.
"""

from __future__ import annotations

import os
import re
import zipfile

import numpy as np

from keras_xception.model.introspect import backbone_weighted_layers, find_xception, spec_of

__all__ = [
    "WeightsFileError",
    "read_weights",
    "top_classes",
    "match_layers",
    "shape_mismatch",
    "check_shapes",
    "adapt_input_kernel",
    "adapt_first_conv",
    "layer_key",
    "timm_module",
    "save_legacy_h5",
    "hub_layout",
    "is_hub_preset",
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


# Readers. An entry is one weighted layer of a file: (its name, or its .weights.h5 key; [arrays]).


def _decode(s):
    return s.decode("utf8") if isinstance(s, bytes) else str(s)


def _is_classifier(entry) -> bool:
    """Whether an entry has the weights of a Dense layer (2-D kernel and bias)."""
    arrays = entry[1]
    return len(arrays) == 2 and arrays[0].ndim == 2 and arrays[1].ndim == 1


def _read_legacy_h5(f):
    """``(backbone, top)``: the weighted layers of a Keras 2 HDF5 file, in order; a trailing Dense is the top."""
    group = f.get("model_weights", f)
    if "layer_names" not in group.attrs:
        raise WeightsFileError("it has no 'layer_names' attribute (not a Keras 2 weights file)")
    out = []
    for lname in map(_decode, group.attrs["layer_names"]):
        weight_names = [_decode(n) for n in group[lname].attrs.get("weight_names", [])]
        if weight_names:
            out.append((lname, [np.asarray(group[lname][n]) for n in weight_names]))
    if out and _is_classifier(out[-1]):
        return out[:-1], out[-1]
    return out, None


def _vars(group):
    v = group.get("vars", {})
    return [np.asarray(v[str(i)]) for i in range(len(v))]


#: Key prefixes of the layers that make up an Xception in a ``.weights.h5`` file.
_XCEPTION_KEYS = ("conv2d", "separable_conv2d", "depthwise_conv2d", "batch_normalization")
#: The Xception's only Dense layer is its classifier, so Keras 3 keys it "dense".
_TOP_KEY = "dense"


def _xception_group(f):
    """The ``layers`` group holding the Xception: the top one, or a nested model's (most convolutions wins)."""
    import h5py

    found = []

    def visit(name, obj):
        if (name == "layers" or name.endswith("/layers")) and isinstance(obj, h5py.Group):
            found.append(obj)

    f.visititems(visit)
    layers = max(found, key=lambda group: sum(key.startswith(_XCEPTION_KEYS) for key in group), default=None)
    if layers is None or not any(key.startswith(_XCEPTION_KEYS) for key in layers):
        raise WeightsFileError(
            "it holds no Xception (no 'layers' group with convolutions: not a Keras 3 file of an Xception)"
        )
    return layers


def _read_keras3_h5(f, model):
    """The backbone of ``model`` looked up by key (none without a model), and the file's classifier."""
    layers = _xception_group(f)
    entries = []
    keys = layer_key(find_xception(model)) if model is not None else {}
    for layer in backbone_weighted_layers(model) if model is not None else []:
        if layer.name == "predictions":
            continue
        key = keys[layer.name]
        if key not in layers:
            raise WeightsFileError(
                f"it has no weights for layer {layer.name!r} (looked for key {key!r}; "
                f"the file has {len(layers)} layer entries)"
            )
        entries.append((key, _vars(layers[key])))
    top = (_TOP_KEY, _vars(layers[_TOP_KEY])) if _TOP_KEY in layers else None
    return entries, top if top is not None and _is_classifier(top) else None


def _read_keras_file(path, model):
    """A ``.keras`` model's Xception, read from the archive's ``model.weights.h5`` like a ``.weights.h5`` file
    (by key: the model is not built, which took seconds)."""
    import io

    import h5py

    try:
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                raise WeightsFileError("it has no model.weights.h5 member (not a Keras 3 .keras model)")
            weights = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(weights, "r") as f:
            return _read_keras3_h5(f, model)
    except (OSError, KeyError, RuntimeError, zipfile.BadZipFile) as e:
        raise WeightsFileError(f"reading it failed (truncated or corrupt?): {e}") from e


#: Layer-name endings of an aligned block -> timm's module in ``blocks.<i>[.stack.conv<j>]`` (plain, pre-activation).
_TIMM_PARTS = {
    "depthwise": ("conv_dw", "conv_dw"),
    "depthwise_bn": ("bn_dw", None),
    "pointwise": ("conv_pw", "conv_pw"),
    "bn": ("bn_pw", "norm"),
    "norm": (None, "norm"),
    "residual_conv": ("shortcut.conv", "shortcut"),
    "residual_bn": ("shortcut.bn", None),
}
_TIMM_BN = ("weight", "bias", "running_mean", "running_var")  # Keras's gamma, beta, moving mean and variance


def timm_module(name, preact=False):
    """The timm module (state-dict key prefix) of the aligned Xception layer called ``name``, or None."""
    if name == "predictions":
        return "head.fc"
    if preact and name == "block1_conv2_bn":
        return "blocks.0.norm"  # block 2's pre-activation BatchNormalization follows the stem directly
    stem = re.fullmatch(r"block1_conv([12])(_bn)?", name)
    if stem:
        return f"stem.{int(stem[1]) - 1}" + (".bn" if stem[2] else "" if preact and stem[1] == "2" else ".conv")
    m = re.fullmatch(r"block(\d+)_(?:sepconv(\d)_)?(\w+?)", name)
    part = _TIMM_PARTS.get(m[3], (None, None))[preact] if m else None
    return part and f"blocks.{int(m[1]) - 2}." + (f"stack.conv{m[2]}." if m[2] else "") + part


def _timm_arrays(layer, tensors, module):
    """``layer``'s weights in Keras's layout from timm's ``tensors`` (None for a missing one)."""
    batchnorm, depthwise = (type(layer).__name__ == t for t in ("BatchNormalization", "DepthwiseConv2D"))
    arrays = [tensors.get(f"{module}.{n}") for n in (_TIMM_BN if batchnorm else ("weight", "bias"))]
    arrays = [
        a if a is None or a.ndim != 4 else a.transpose((2, 3, 0, 1) if depthwise else (2, 3, 1, 0)) for a in arrays
    ]
    arrays = [a.T if a is not None and a.ndim == 2 else a for a in arrays]  # Linear: (out, in) -> (in, out)
    return arrays[: max(len(layer.weights), 1)]


def _read_safetensors(path, model):
    """A timm checkpoint's backbone for ``model``'s layers (none without a model) and its classifier ``head.fc``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise WeightsFileError(f"it is not a readable safetensors file (truncated or corrupt?): {e}") from e
    fc = [tensors.get("head.fc.weight"), tensors.get("head.fc.bias")]
    top = ("head.fc", [fc[0].T, fc[1]]) if all(a is not None and a.ndim == 2 - i for i, a in enumerate(fc)) else None
    layers = [layer for layer in backbone_weighted_layers(model) if layer.name != "predictions"] if model else []
    preact = bool(layers) and spec_of(model).kind == "aligned_preact"
    entries, used = [], {"head.fc.weight", "head.fc.bias"}
    for layer in layers:
        module = timm_module(layer.name, preact)
        arrays = _timm_arrays(layer, tensors, module) if module else [None]
        if any(a is None for a in arrays):
            if any(shape_mismatch(lay, arr) for lay, (_, arr) in zip(layers, entries)):
                return entries, top  # the loader names that earlier misfit first
            raise WeightsFileError(
                f"it has no timm tensor {module or '?'}.* for layer {layer.name!r}: not a timm checkpoint of this "
                "architecture (build the one it is for: keras_xception.xception65(...) etc., or --arch)"
            )
        entries.append((module, arrays))
        used.update(f"{module}.{n}" for n in (*_TIMM_BN, "weight", "num_batches_tracked"))
    unused = sorted(k for k in tensors if k not in used and not k.endswith("num_batches_tracked"))
    if layers and unused:
        raise WeightsFileError(f"it has {len(unused)} tensors this model has no layer for, the first {unused[0]!r}: "
                               "a checkpoint of a deeper or other architecture")  # fmt: skip
    return entries, top


#: The ``registered_name`` of a KerasHub Xception preset's ``config.json`` and of its classifier's ``task.json``.
HUB_BACKBONE, HUB_CLASSIFIER = "keras_hub>XceptionBackbone", "keras_hub>XceptionImageClassifier"


def hub_layout(spec) -> dict:
    """``spec`` as ``keras_hub.models.XceptionBackbone`` arguments (the stem and each block: filters, pooling).
    KerasHub names its layers as this package does, and orders them alike in its ``model.weights.h5``."""
    return dict(
        stackwise_conv_filters=[list(spec.stem_filters)] + [list(b.filters) for b in spec.blocks],
        stackwise_pooling=[False] + [b.downsample for b in spec.blocks],
    )


def is_hub_preset(path) -> bool:
    """Whether ``path`` is a directory with a ``config.json`` (a KerasHub preset, to be read as one)."""
    return isinstance(path, (str, os.PathLike)) and os.path.isfile(os.path.join(path, "config.json"))


def _hub_config(path, name, expected):
    import json

    try:
        with open(os.path.join(path, name), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise WeightsFileError(f"its {name} cannot be read ({e})") from None
    found = config.get("registered_name") if isinstance(config, dict) else None
    if found != expected or not isinstance(config.get("config"), dict):
        raise WeightsFileError(
            f"its {name} names {found!r}, not {expected!r}: only KerasHub presets of an XceptionBackbone "
            "(or an XceptionImageClassifier) can be read"
        )
    return config["config"]


def _read_hub_preset(path, model):
    """``(backbone, top)`` of a KerasHub preset: an XceptionBackbone's ``config.json`` and ``model.weights.h5``
    (read as any ``.weights.h5``), and an XceptionImageClassifier's ``task.json`` and ``task.weights.h5``."""
    import h5py

    config, top = _hub_config(path, "config.json", HUB_BACKBONE), None
    if model is not None:
        want = hub_layout(spec_of(model))
        got = {key: config.get(key) for key in want}
        if got != want:
            raise WeightsFileError(f"its backbone is {got}; the model's is {want} (another variant)")
    try:
        if os.path.exists(os.path.join(path, "task.json")):
            task = _hub_config(path, "task.json", HUB_CLASSIFIER)
            if task.get("pooling", "avg") != "avg":
                raise WeightsFileError(f"its classifier pools with {task['pooling']!r}; Xception's top averages")
            with h5py.File(os.path.join(path, "task.weights.h5"), "r") as f:
                top = ("predictions", _vars(f["layers/dense"]))
        with h5py.File(os.path.join(path, "model.weights.h5"), "r") as f:
            return _read_keras3_h5(f, model)[0], top
    except (OSError, KeyError) as e:
        raise WeightsFileError(f"its weights cannot be read (missing, truncated or corrupt?): {e}") from None


def read_weights(path, model):
    """The Xception weights in the file at ``path``: ``(backbone, top)``, nothing checked yet.

    ``backbone``: ``(name, [arrays])`` per weighted layer from ``block1_conv1`` to the last block (a
    ``.weights.h5`` file, a KerasHub preset directory or a ``.safetensors`` file is read under the keys of
    ``model``'s layers, timm's converted to Keras's layout; with ``model=None`` only its classifier).
    ``top``: the file's classifier, or None.

    Raises:
        WeightsFileError: naming the file and what is wrong with it.
    """
    path = os.fspath(path)
    try:
        if path.endswith(".safetensors"):
            return _read_safetensors(path, model)
        if is_hub_preset(path):
            return _read_hub_preset(path, model)
        if path.endswith(".keras"):
            if not zipfile.is_zipfile(path):
                raise WeightsFileError("it is not a zip archive, as .keras files are (truncated or corrupt?)")
            return _read_keras_file(path, model)
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise WeightsFileError(f"it is not a readable HDF5 file (truncated or corrupt?): {e}") from e
        with f:
            try:
                if path.endswith(".weights.h5") or ("layers" in f and "layer_names" not in f.attrs):
                    return _read_keras3_h5(f, model)
                return _read_legacy_h5(f)
            except (OSError, KeyError, RuntimeError) as e:
                raise WeightsFileError(f"reading it failed (truncated or corrupt?): {e}") from e
    except WeightsFileError as e:
        raise WeightsFileError(f"Cannot load weights from {path!r}: {e}") from None


def top_classes(path):
    """The class count of the file's classifier, or None (no classifier, or unreadable: loading says why)."""
    try:
        top = read_weights(path, None)[1]
    except (WeightsFileError, OSError):
        return None
    return None if top is None else int(top[1][0].shape[-1])


def adapt_input_kernel(kernel, channels):
    """An RGB kernel ``(kh, kw, 3, out)`` for ``channels`` inputs: summed over RGB for one channel
    (a grey image responds as grey RGB would), else repeated cyclically and scaled by ``3 / channels``.
    """
    if channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    reps = -(-channels // kernel.shape[2])
    tiled = np.concatenate([kernel] * reps, axis=2)[:, :, :channels, :]
    return tiled * (kernel.shape[2] / channels)


def adapt_first_conv(entries, layer):
    """``entries`` with the first one's RGB kernel adapted to ``layer``'s input channels.

    Returns ``entries`` itself when there is nothing to adapt (the kernel is
    not an RGB kernel of ``layer``'s size, or the channel counts already agree).
    """
    if not entries or not layer.weights:
        return entries
    name, arrays = entries[0]
    have = arrays[0].shape if arrays else ()
    want = tuple(layer.weights[0].shape)
    rgb = len(have) == 4 and have[2] == 3
    if rgb and len(want) == 4 and want[2] != 3 and (have[0], have[1], have[3]) == (want[0], want[1], want[3]):
        return [(name, [adapt_input_kernel(arrays[0], want[2])] + arrays[1:])] + list(entries[1:])
    return entries


def shape_mismatch(layer, arrays):
    """``(expected, got, tensor)`` when ``arrays`` do not fit ``layer`` (``tensor``: the first misfit's name), else None."""
    expected = [tuple(w.shape) for w in layer.weights]
    got = [tuple(a.shape) for a in arrays]
    if expected == got:
        return None
    k = next((i for i, (e, g) in enumerate(zip(expected, got)) if e != g), min(len(expected), len(got)))
    return expected, got, layer.weights[k].path.rsplit("/", 1)[-1] if k < len(expected) else f"extra tensor #{k}"


def check_shapes(source, pairs, owner="the file's"):
    """``[(layer, arrays), ...]`` from ``[(layer, source_layer_name, arrays), ...]``, every shape checked.

    Raises:
        WeightsFileError: naming ``source``, the first layer that does not fit and both shapes
            (``owner``: whose layer the arrays are, a file's or a model's).
    """
    for layer, src_name, arrays in pairs:
        mismatch = shape_mismatch(layer, arrays)
        if mismatch:
            expected, got, tensor = mismatch
            raise WeightsFileError(
                f"Cannot load weights from {source!r}: layer {layer.name!r} ({type(layer).__name__}) expects "
                f"shapes {expected}, but {owner} layer {src_name!r} has {got} (first misfit: {tensor!r}). "
                "It is for a different architecture, input channel count or number of classes."
            )
    return [(layer, arrays) for layer, _, arrays in pairs]


def match_layers(path, layers, entries):
    """``[(layer, arrays), ...]``: each of ``layers`` with the file entry at its position, shapes checked.

    Raises:
        WeightsFileError: naming the file, the first layer that does not fit and both shapes, or the
            first layer without a counterpart.
    """
    layers, entries = list(layers), list(entries)
    plan = check_shapes(path, [(layer, name, arrays) for layer, (name, arrays) in zip(layers, entries)])
    if len(entries) != len(layers):
        more = "model" if len(entries) < len(layers) else "file"
        first = layers[len(entries)].name if more == "model" else entries[len(layers)][0]
        raise WeightsFileError(
            f"Cannot load weights from {path!r}: the model has {len(layers)} weighted layers "
            f"to load but the file has {len(entries)}; the first unmatched layer (in the {more}) "
            f"is {first!r}. The file is for a different architecture (another "
            "middle_flow_blocks, residual or intermediate_activation)."
        )
    return plan


def save_legacy_h5(model, path):
    """Write ``model``'s weights in the legacy Keras 2 HDF5 layout of the official files (loaded by order)."""
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
