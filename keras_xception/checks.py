"""Argument checks shared by every layer: one message format, ``ValueError`` naming the argument.

Each check returns the value (converted where that is harmless) or raises
``ValueError("`name` must be ...; received name=value.")``. ``bool`` is never
accepted as a number. The command line reuses them through :func:`argtype`.
"""

from __future__ import annotations

import numbers
import os


def _fail(name, what, value):
    raise ValueError(f"`{name}` must be {what}; received {name}={value!r}.")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def boolean(value, name):
    """True or False (nothing else: not 0/1, not None)."""
    if not isinstance(value, bool):
        _fail(name, "True or False", value)
    return value


def positive_int(value, name, *, minimum=1, allow_none=False):
    """An integer >= ``minimum`` (or None with ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < minimum:
        _fail(name, "a positive integer" if minimum == 1 else f"an integer >= {minimum}", value)
    return int(value)


def non_negative_int(value, name):
    return positive_int(value, name, minimum=0)


def positive_float(value, name):
    """A number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        _fail(name, "a positive number", value)
    return float(value)


def fraction(value, name, *, low=0.0, high=1.0, low_open=True, high_open=False):
    """A number in the interval from ``low`` to ``high`` (open or closed at each end)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        _fail(name, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}", value)
    return float(value)


def one_of(value, name, choices):
    if isinstance(value, bool) or value not in choices:
        _fail(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def existing_dir(value, name, what="an existing folder"):
    if not isinstance(value, (str, os.PathLike)) or not os.path.isdir(value):
        _fail(name, what, value)
    return os.fspath(value)


def path(value, name):
    """A path (``str`` or ``os.PathLike``, returned as ``str``), or None."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        _fail(name, "a path", value)
    return None if value is None else os.fspath(value)


def keras_path(value, name):
    """:func:`path` that ends with ``.keras`` (or None)."""
    value = path(value, name)
    if value is not None and not value.endswith(".keras"):
        raise ValueError(f"`{name}` must be a .keras file; received {value!r}.")
    return value


def argtype(check, *args, **kwargs):
    """An ``argparse`` ``type=`` from a check: the text parsed as a number, the check's message on failure."""
    import argparse

    def parse(text):
        try:
            value = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            value = text
        try:
            return check(value, "value", *args, **kwargs)
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                str(e).split("; received")[0].replace("`value` must be", "expected")
            ) from None

    parse.__name__ = check.__name__
    return parse
