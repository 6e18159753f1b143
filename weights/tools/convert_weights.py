"""Convert an Xception weight file (.h5 / .weights.h5 / .keras) to .weights.h5 or legacy .h5.

Usage: python weights/tools/convert_weights.py SRC DST [--format weights.h5|legacy-h5]
(the same as `keras-xception weights convert`).
"""

import sys

from keras_xception.cli import main

if __name__ == "__main__":
    sys.exit(main(["weights", "convert", *sys.argv[1:]]))
