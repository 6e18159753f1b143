"""The inference runtimes in one table (what each needs installed, its precisions, images per call and file),
the checks made against it, and OpenVINO's CPU capability query. No TensorFlow import (the CLI parser reads it)."""

from __future__ import annotations

import functools
import importlib
import os
from typing import NamedTuple

from keras_xception.checks import one_of


class Runtime(NamedTuple):
    modules: tuple  # what it needs to export and run a model
    extra: str | None  # the setup.cfg extra installing them
    precisions: tuple  # the precisions it runs
    batch_size: dict  # precision -> images per call by default
    format: str | None  # the file it reads and writes: keras_xception.export's `format`
    suffix: str | None  # what such a file's path ends with


# Images per call: OpenVINO int8 at batch 8 93.9 img/s in calls of 4, 75.0 in one (python benchmarks/inference.py).
TABLE = {
    # nncf: precision="int8" with OpenVINO (post-training quantization).
    "openvino": Runtime(
        ("openvino",), "openvino", ("fp32", "bf16", "int8"), dict(fp32=1, bf16=4, int8=4), "openvino", ".xml"
    ),
    "onnxruntime": Runtime(
        ("onnxruntime", "tf2onnx", "onnx"), "onnx", ("fp32", "int8"), dict(fp32=1, int8=1), "onnx", ".onnx"
    ),
    "tensorflow": Runtime(("tensorflow",), None, ("fp32",), dict(fp32=32), "savedmodel", None),
    # TensorFlow converts (full-integer int8 with a representative dataset), ai-edge-litert runs.
    "litert": Runtime(("ai_edge_litert",), "litert", ("fp32", "int8"), dict(fp32=8, int8=8), "litert", ".tflite"),
    "keras": Runtime((), None, ("fp32",), dict(fp32=32), None, None),  # the Keras model itself
}

#: The order "auto" prefers (OpenVINO builds in 4 s with 1.5 GB, tf2onnx 8-20 s, 5.7 GB: benchmarks/inference.py).
RUNTIMES = ("openvino", "onnxruntime", "tensorflow", "litert")

#: Inference precisions: bf16 is a compile setting of OpenVINO, int8 post-training quantization.
PRECISIONS = ("fp32", "bf16", "int8")

#: runtime -> the precisions it runs.
SUPPORTED = {name: runtime.precisions for name, runtime in TABLE.items()}

#: export format -> the runtime that writes and reads it.
FORMATS = {runtime.format: name for name, runtime in TABLE.items() if runtime.format}

#: ``export`` formats: the runtimes' files, and a KerasHub preset directory (deploy/hub.py).
EXPORT_FORMATS = (*sorted(FORMATS), "keras-hub")

#: Calibration images NNCF recommends for int8 (its ``subset_size`` default); the most used by default.
RECOMMENDED_CALIBRATION = 300

#: ``runtime`` choices of predict, extract and evaluate ("keras": no export step, float32 only).
CLI_RUNTIMES = ("auto", "keras") + RUNTIMES


class ParityError(RuntimeError):
    """An exported artifact's outputs differ from the Keras model's."""


class RuntimeNotInstalledError(ImportError, ValueError):
    """A requested runtime's package is missing; the message names the extra to install.
    Also a ValueError (the user's choice), so the command line prints it as a usage error."""


def is_installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require(runtime: str, what: str | None = None) -> None:
    """Import what ``runtime`` needs, or raise :class:`RuntimeNotInstalledError` naming the extra
    (``what``: the feature named in the message, default ``runtime='...'``)."""
    missing = [m for m in TABLE[runtime].modules if not is_installed(m)]
    if missing:
        raise RuntimeNotInstalledError(
            f"{what or f'runtime={runtime!r}'} needs {', '.join(missing)}, which is not installed. "
            f'Install it with: pip install "keras-xception[{TABLE[runtime].extra}]"'
        )


def available_runtimes() -> list[str]:
    """The runtimes whose packages are installed, in the order of :data:`RUNTIMES`."""
    return [name for name in RUNTIMES if all(is_installed(m) for m in TABLE[name].modules)]


def check_precision(precision, runtime: str | None = None) -> str:
    """``precision`` checked against :data:`PRECISIONS` and what ``runtime`` runs."""
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}; received precision={precision!r}.")
    if runtime is not None and precision not in SUPPORTED[runtime]:
        able = [r for r in RUNTIMES if precision in SUPPORTED[r]]
        raise ValueError(
            f"runtime={runtime!r} does not run precision={precision!r} (it runs {list(SUPPORTED[runtime])}); "
            f"use runtime='auto' or one of {able}."
        )
    return precision


def runtime_for(runtime: str = "auto", precision: str = "fp32") -> str:
    """``runtime`` checked for ``precision`` and installed. ``"auto"``: the first installed runtime of
    :data:`RUNTIMES` (fastest first) that runs ``precision``; ``"keras"``: the Keras model itself, fp32 only.

    Raises:
        ValueError: an unknown runtime name, or a precision the runtime does not run.
        RuntimeNotInstalledError: a runtime that is not installed (an ImportError; names the extra to install).
    """
    if runtime == "keras" and precision != "fp32":
        raise ValueError(
            f"runtime='keras' runs in float32 only; received precision={precision!r}. "
            "Use runtime='auto' (or 'openvino', 'onnxruntime') for bf16 or int8."
        )
    if runtime == "auto":
        able = [r for r in available_runtimes() if precision in SUPPORTED[r]]
        if not able:
            raise RuntimeNotInstalledError(
                f"precision={precision!r} needs OpenVINO (or ONNX Runtime for int8). Install it with: "
                'pip install "keras-xception[openvino]"'
            )
        return able[0]
    if runtime not in TABLE:
        raise ValueError(f"`runtime` must be 'auto' or one of {sorted(TABLE)}; received runtime={runtime!r}.")
    require(runtime)
    check_precision(precision, runtime)
    return runtime


def check_export_path(path, format: str) -> str:
    """``path`` as a string, or ``ValueError`` for an unknown ``format`` or a path that does not fit it."""
    one_of(format, "format", EXPORT_FORMATS)
    path = os.fspath(path)
    suffix = TABLE[FORMATS[format]].suffix if format in FORMATS else None
    if suffix and not path.endswith(suffix):
        raise ValueError(f"With format={format!r} the path must end with {suffix!r}; received path={path!r}.")
    return path


@functools.cache
def cpu_capabilities() -> tuple | None:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (e.g. ``("FP32", "BF16", "INT8")``), or None
    without OpenVINO."""
    if not is_installed("openvino"):
        return None
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def hardware_warning(precision: str) -> str | None:
    """A sentence saying that ``precision`` will not be fast on this CPU, or None.

    OpenVINO lists ``BF16`` only where the CPU computes bfloat16 natively; int8 is not judged (its CPU
    plugin lists ``INT8`` unconditionally, whether or not the CPU has int8 dot products).
    """
    capabilities = cpu_capabilities()
    if precision != "bf16" or capabilities is None or "BF16" in capabilities:
        return None
    return (
        "precision='bf16' is unlikely to be faster than fp32 on this CPU: OpenVINO does not list BF16 among its "
        f"optimization capabilities ({', '.join(capabilities)})."
    )
