"""The one result type of a run over many inputs: what was processed, what was skipped and why."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Skipped", "Results"]


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An input that could not be used: its path (or record name) and the reason, each said once."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason.rstrip('.')}"

    def __iter__(self):
        """Unpacks as ``path, reason`` (as the ``(path, reason)`` pairs it replaced did)."""
        return iter((self.path, self.reason))


@dataclasses.dataclass(frozen=True)
class Results:
    """A model run over inputs: one output row per readable input, in input order.

    Attributes:
        outputs: ``N x ...`` float32 array (None when nothing was readable).
        paths: The ``N`` inputs that were read (paths or record names).
        labels: ``N`` int64 labels when the inputs had them, else None.
        skipped: :class:`Skipped` for every input that was not read.
    """

    outputs: np.ndarray | None
    paths: list
    labels: np.ndarray | None = None
    skipped: tuple = ()

    @property
    def features(self):
        """``outputs`` under the name :func:`keras_xception.extract_features` users know."""
        return self.outputs
