"""The ``keras-xception`` command line (docs/*.md is its reference): :func:`main`, the parser
(:mod:`~keras_xception.cli.parser`) and the commands (:mod:`~keras_xception.cli.commands`).

Usage errors answer before TensorFlow is imported; TensorFlow's own log lines are not shown; results go
to standard output, progress and messages to standard error. Exit status: 0 done, 1 done in part, 2 usage error.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
import warnings

from keras_xception.cli.commands import PartialFailure, check, sample_image
from keras_xception.cli.parser import add_runtime_argument, build_parser
from keras_xception.pretrained.download import WeightsDownloadError

__all__ = [
    "main",
    "build_parser",
    "add_runtime_argument",
    "sample_image",
    "keep_freed_memory",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
]

EXIT_PARTIAL = 1
EXIT_USAGE = 2

# A line of TensorFlow's C++ logging (absl format: severity letter I/W/E/F, date, time, thread, file:line]),
# and absl's notice that lines before its initialisation go to standard error.
_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] ")
_BEFORE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def keep_freed_memory() -> None:
    """glibc keeps freed blocks (up to 256 MiB) for reuse: each image tensor and batch was otherwise mapped and
    zeroed anew, 0.5 ms CPU per image (benchmarks/pipeline.py). The commands call it; no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 28)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _start_tensorflow() -> None:
    """Import TensorFlow without its log lines below ``TF_CPP_MIN_LOG_LEVEL`` (default 3: fatal only).

    The variable silences what TensorFlow logs while it runs, but not the lines its libraries log while
    loading (TensorFlow 2.21: ``port.cc``, ``cudart_stub.cc`` at INFO, level 3 too): standard error is
    captured during the import and those lines are filtered by the same level.
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", "replace")
    minimum = int(level) if level.isdigit() else 0
    kept = [line for line in text.splitlines() if line.strip() and not _below(line, minimum)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def _below(line, minimum) -> bool:
    """Whether ``line`` is a TensorFlow log line below severity ``minimum`` (0 info ... 3 fatal)."""
    if line == _BEFORE_INIT:
        return minimum > 0
    match = _LOG_LINE.match(line)
    return match is not None and "IWEF".index(match.group(1)) < minimum


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0), or a usage error that argparse has printed (2)
        return e.code
    name = f"keras-xception {args.command}"
    # Progress: none with --quiet; Keras's Progbar animated on a terminal, else one closing line.
    args.verbose = 0 if getattr(args, "quiet", False) else 1 if sys.stderr.isatty() else 2

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{name}: warning: {message}", file=sys.stderr)

    stdout = sys.stdout
    with warnings.catch_warnings():
        warnings.showwarning = show
        try:
            check(args)  # before TensorFlow: usage errors answer at once
            if args.needs_tensorflow:
                keep_freed_memory()
                _start_tensorflow()
            with contextlib.redirect_stdout(sys.stderr):  # Keras progress bars print to stdout
                return args.func(args, stdout) or 0
        except (PartialFailure, WeightsDownloadError) as e:
            print(f"{name}: {'' if isinstance(e, PartialFailure) else 'error: '}{e}", file=sys.stderr)
            return EXIT_PARTIAL
        except ValueError as e:  # our errors say what is wrong and what to do
            print(f"{name}: error: {e}", file=sys.stderr)
            return EXIT_USAGE
