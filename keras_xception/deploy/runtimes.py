"""Inference runtimes: the optional packages (setup.cfg extras) they need, the precisions they run,
the file formats they read, and what the runtime says this CPU runs fast. One map, one check each."""

from __future__ import annotations

import functools
import importlib
import os

from keras_xception.checks import one_of

__all__ = [
    "RUNTIMES",
    "PRECISIONS",
    "SUPPORTED",
    "FORMATS",
    "RuntimeNotInstalledError",
    "resolve_runtime",
    "runtime_for",
    "check_precision",
    "check_export_path",
    "format_of",
    "hardware_warning",
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

#: Inference precisions: fp32 everywhere; bf16 is OpenVINO's INFERENCE_PRECISION_HINT (a compile
#: setting, not a file format); int8 is post-training quantization (see keras_xception.deploy.int8).
PRECISIONS = ("fp32", "bf16", "int8")

#: runtime -> the precisions it can run.
SUPPORTED = {"openvino": ("fp32", "bf16", "int8"), "onnxruntime": ("fp32", "int8"), "tensorflow": ("fp32",)}

#: Calibration images NNCF recommends for int8 (its ``subset_size`` default);
#: also the most that are used by default.
RECOMMENDED_CALIBRATION = 300

#: ``runtime`` choices of predict, extract and evaluate: "keras" is the Keras model itself
#: (no export step: the quickest start for a handful of images).
CLI_RUNTIMES = ("auto", "keras") + RUNTIMES

#: format -> (Keras export format, what the path must end with, the runtime that loads it back)
FORMATS = {
    "savedmodel": ("tf_saved_model", None, "tensorflow"),
    "onnx": ("onnx", ".onnx", "onnxruntime"),
    "openvino": ("openvino", ".xml", "openvino"),
}


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


def check_precision(precision, runtime: str | None = None) -> str:
    """``precision`` checked against :data:`PRECISIONS` and what ``runtime`` supports."""
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}; received precision={precision!r}.")
    if runtime is not None and precision not in SUPPORTED.get(runtime, ("fp32",)):
        able = [r for r, ps in SUPPORTED.items() if precision in ps]
        raise ValueError(
            f"runtime={runtime!r} does not run precision={precision!r} (it runs {list(SUPPORTED.get(runtime, ()))}); "
            f"use runtime='auto' or one of {able}."
        )
    return precision


def runtime_for(runtime: str, precision: str) -> str:
    """``runtime`` resolved for ``precision`` ("auto": the first installed runtime that runs it;
    "keras": the Keras model itself, float32 only)."""
    if runtime == "keras" and precision != "fp32":
        raise ValueError(
            f"runtime='keras' runs in float32 only; received precision={precision!r}. "
            "Use runtime='auto' (or 'openvino', 'onnxruntime') for bf16 or int8."
        )
    if runtime == "keras":
        return runtime
    if runtime != "auto":
        runtime = resolve_runtime(runtime)
        check_precision(precision, runtime)
        return runtime
    able = [r for r in available_runtimes() if precision in SUPPORTED[r]]
    if not able:
        raise RuntimeNotInstalledError(
            f"precision={precision!r} needs OpenVINO (or ONNX Runtime for int8). Install it with: "
            'pip install "keras-xception[openvino]"'
        )
    return able[0]


def check_export_path(path, format: str) -> str:
    """``path`` as a string, or ``ValueError`` for an unknown ``format`` or a path that does not fit it."""
    one_of(format, "format", sorted(FORMATS))
    path = os.fspath(path)
    suffix = FORMATS[format][1]
    if suffix and not path.endswith(suffix):
        raise ValueError(f"With format={format!r} the path must end with {suffix!r}; received path={path!r}.")
    return path


def format_of(path) -> str:
    """The format of the exported model at ``path`` (``"savedmodel"``, ``"onnx"`` or ``"openvino"``).

    Raises:
        ValueError: ``path`` does not exist or is not one of those.
    """
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "savedmodel"
    if os.path.isfile(path):
        for name, (_, suffix, _) in FORMATS.items():
            if suffix and path.endswith(suffix):
                return name
    if not os.path.exists(path):
        raise ValueError(f"No exported model at {path!r}: the path does not exist.")
    raise ValueError(
        f"{path!r} is not an exported model: expected a SavedModel directory (with saved_model.pb), "
        "an .onnx file or an OpenVINO .xml file (keras_xception.export writes all three)."
    )


@functools.cache
def cpu_capabilities() -> tuple | None:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (e.g. ``("FP32", "BF16", "INT8", ...)``),
    or None when OpenVINO is not installed (nothing is known then)."""
    if not is_installed("openvino"):
        return None
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def hardware_warning(precision: str) -> str | None:
    """A sentence saying that ``precision`` will not be fast on this CPU, or None.

    Asked of OpenVINO (:func:`cpu_capabilities`), which lists ``BF16`` only where
    the CPU computes in bfloat16 natively. int8 is not judged: OpenVINO's CPU plugin lists
    ``INT8`` unconditionally, so the query cannot tell a CPU with int8 dot products from one without.
    """
    capabilities = cpu_capabilities()
    if precision != "bf16" or capabilities is None or "BF16" in capabilities:
        return None
    return (
        "precision='bf16' is unlikely to be faster than fp32 on this CPU: OpenVINO does not list BF16 among its "
        f"optimization capabilities ({', '.join(capabilities)})."
    )
