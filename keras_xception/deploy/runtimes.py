"""Inference runtimes and the optional packages (setup.cfg extras) they need: one map, one check."""

from __future__ import annotations

import importlib
import os

__all__ = [
    "RUNTIMES",
    "PRECISIONS",
    "SUPPORTED",
    "RECOMMENDED_CALIBRATION",
    "CLI_RUNTIMES",
    "FORMATS",
    "check_export_path",
    "REQUIREMENTS",
    "RuntimeNotInstalledError",
    "is_installed",
    "require",
    "available_runtimes",
    "resolve_runtime",
]

#: Runtime names in the order "auto" prefers them (fastest first; see resolve_runtime).
RUNTIMES = ("openvino", "onnxruntime", "tensorflow")

#: runtime -> (modules it needs, to export the model and to run it; the setup.cfg extra installing them).
#: The one map of optional extras: export formats name the runtime that checks them.
REQUIREMENTS = {
    "tensorflow": (("tensorflow",), None),
    "onnxruntime": (("onnxruntime", "tf2onnx", "onnx"), "onnx"),
    # nncf: precision="int8" with OpenVINO (post-training quantization).
    "openvino": (("openvino",), "openvino"),
}


#: Inference precisions (see keras_xception.deploy.precision).
PRECISIONS = ("fp32", "bf16", "int8")

#: runtime -> the precisions it can run.
SUPPORTED = {"openvino": ("fp32", "bf16", "int8"), "onnxruntime": ("fp32", "int8"), "tensorflow": ("fp32",)}

#: Calibration images NNCF recommends for int8 (its ``subset_size`` default);
#: also the most that are used by default.
RECOMMENDED_CALIBRATION = 300


class RuntimeNotInstalledError(ImportError, ValueError):
    """A requested runtime's package is missing; the message names the extra to install.

    Both an ImportError and a ValueError (the user's choice of runtime), so the
    command line prints it as a usage error.
    """


def is_installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require(runtime: str, what: str | None = None) -> None:
    """Import what ``runtime`` needs, or raise :class:`RuntimeNotInstalledError` naming the extra.

    ``what`` names the feature in the message (default ``runtime='...'``).
    """
    modules, extra = REQUIREMENTS[runtime]
    missing = [m for m in modules if not is_installed(m)]
    if missing:
        raise RuntimeNotInstalledError(
            f"{what or f'runtime={runtime!r}'} needs {', '.join(missing)}, which is not installed. "
            f'Install it with: pip install "keras-xception[{extra}]"'
        )


def available_runtimes() -> list[str]:
    """The runtimes whose packages are installed, fastest first."""
    out = []
    for name in RUNTIMES:
        try:
            require(name)
        except RuntimeNotInstalledError:
            continue
        out.append(name)
    return out


def resolve_runtime(runtime: str = "auto") -> str:
    """Check ``runtime`` and turn ``"auto"`` into a concrete runtime name.

    ``"auto"`` picks the first installed runtime of :data:`RUNTIMES`
    (OpenVINO, then ONNX Runtime, then TensorFlow), a fixed rule from
    ``benchmarks/inference.py`` (see the README): on a 2-core AVX-512 CPU both
    exported runtimes beat TensorFlow at batch 1, 8 and 32; OpenVINO was the
    fastest at batch 1 and 32 and tied with ONNX Runtime at batch 8, and it
    also builds faster (4 s against 8-20 s for the tf2onnx conversion) with a
    quarter of the peak memory (1.5 GB against 5.7 GB). A fixed order rather
    than a timing on the spot, which would have to build every runtime.

    Raises:
        ValueError: for an unknown runtime name.
        RuntimeNotInstalledError: (an ImportError) for a known runtime that is
            not installed; the message names the extra to install.
    """
    if runtime == "auto":
        return available_runtimes()[0]
    if runtime not in REQUIREMENTS:
        raise ValueError(f"`runtime` must be 'auto' or one of {sorted(REQUIREMENTS)}; received runtime={runtime!r}.")
    require(runtime)
    return runtime


#: ``runtime`` choices of predict, extract and evaluate: "keras" is the Keras model itself
#: (no export step: the quickest start for a handful of images).
CLI_RUNTIMES = ("auto", "keras") + RUNTIMES

#: format -> (Keras export format, what the path must end with, the runtime that loads it back)
FORMATS = {
    "savedmodel": ("tf_saved_model", None, "tensorflow"),
    "onnx": ("onnx", ".onnx", "onnxruntime"),
    "openvino": ("openvino", ".xml", "openvino"),
}


def check_export_path(path, format: str) -> str:
    """``path`` as a string, or ``ValueError`` for an unknown ``format`` or a path that does not fit it."""
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {sorted(FORMATS)}; received format={format!r}.")
    path = os.fspath(path)
    suffix = FORMATS[format][1]
    if suffix and not path.endswith(suffix):
        raise ValueError(f"With format={format!r} the path must end with {suffix!r}; received path={path!r}.")
    return path
