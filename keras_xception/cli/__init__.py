"""The ``keras-xception`` command line.

Commands (``keras-xception COMMAND --help`` for each): ``predict`` (ImageNet
classes of images), ``extract`` (feature vectors to ``.npz``), ``evaluate``
(ImageNet top-1/top-5), ``weights list|download|verify|convert``, ``summary``
(parameters and MACs of a variant), ``export`` (SavedModel/ONNX/OpenVINO),
``train`` (a classifier on your class folders; ``--model`` then makes predict,
extract, evaluate and export use it: :mod:`keras_xception.cli.train`).

Manners, the same for every command:

* ``--help`` and usage errors answer at once: this module and the parser
  import neither TensorFlow nor Keras; commands import what they need.
* TensorFlow's start-up lines (the oneDNN notice, CUDA stubs, "All log
  messages before absl::InitializeLog()") are dropped; anything else it
  prints while starting is passed on.
* Results go to standard output; progress, warnings and errors to standard
  error, as ``keras-xception COMMAND: warning: ...`` / ``...: error: ...``
  (no source lines). Progress bars animate on a terminal only; elsewhere
  each prints one closing line, without colour codes.
* Exit status: 0 done; 1 done in part (some inputs could not be read, a
  download or a check failed), with a summary line; 2 usage error (bad
  arguments or input, nothing done).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings

from keras_xception.cli.commands import PartialFailure, sample_image
from keras_xception.cli.parser import add_runtime_argument, build_parser

__all__ = ["main", "build_parser", "add_runtime_argument", "sample_image", "EXIT_PARTIAL", "EXIT_USAGE"]

EXIT_PARTIAL = 1
EXIT_USAGE = 2

# TensorFlow's start-up lines: absl's pre-initialisation notice and the I/W/E lines of the
# modules that announce oneDNN, CUDA stubs and CPU features.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+\s+\d+ (port|cudart_stub|cuda_platform|cuda_executor|cuda_dnn|cuda_fft|cuda_blas"
    r"|cpu_feature_guard|cpu_utils)\.cc:\d+\].*"
    r"|To enable the following instructions: .*, in other operations, rebuild TensorFlow .*)$"
)


def _start_tensorflow() -> None:
    """Import TensorFlow and set up its devices with standard error captured; replay what is not noise."""
    # TensorFlow's C++ INFO and WARNING lines are off (its kernels log every image that the
    # pipeline skips on purpose); errors stay. TF_CPP_MIN_LOG_LEVEL=0 shows everything.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
    kept = [line for line in text.splitlines() if line.strip() and not _NOISE.match(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0), or a usage error that argparse has printed (2)
        return e.code
    name = f"keras-xception {args.command}"
    args.verbose = 1 if sys.stderr.isatty() else 2  # Progbar: animated, or one closing line

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{name}: warning: {message}", file=sys.stderr)

    if args.needs_tensorflow:
        _start_tensorflow()
    from keras_xception.pretrained.download import WeightsDownloadError

    stdout = sys.stdout
    with warnings.catch_warnings():
        warnings.showwarning = show
        try:
            with contextlib.redirect_stdout(sys.stderr):  # Keras progress bars print to stdout
                return args.func(args, stdout) or 0
        except PartialFailure as e:
            print(f"{name}: {e}", file=sys.stderr)
            return EXIT_PARTIAL
        except WeightsDownloadError as e:
            print(f"{name}: error: {e}", file=sys.stderr)
            return EXIT_PARTIAL
        except ValueError as e:  # our errors say what is wrong and what to do
            print(f"{name}: error: {e}", file=sys.stderr)
            return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
