"""Verify cached registry files (hash) or that weight files load into Xception.

Usage: python weights/tools/verify_weights.py [NAME ...] [--file PATH ...]
(the same as `keras-xception weights verify`).
"""

import sys

from keras_xception.cli import main

if __name__ == "__main__":
    sys.exit(main(["weights", "verify", *sys.argv[1:]]))
