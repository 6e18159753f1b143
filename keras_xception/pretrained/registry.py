"""The registry of pretrained weight sets, one :class:`WeightRecord` each (where to get the file, what it
holds, how it was evaluated); the built-in ones are in ``keras_xception/resources/weights.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources

from keras_xception.checks import boolean

__all__ = ["WeightRecord", "register", "unregister", "get_record", "list_records", "is_registered", "imagenet_of"]

_REGISTRY: dict[str, WeightRecord] = {}


@dataclasses.dataclass(frozen=True)
class WeightRecord:
    """One pretrained weight set: where to get it and how it was evaluated."""

    name: str
    file_name: str
    urls: tuple[str, ...]
    file_hash: str | None  # None: no published digest (see docs/weights.md for what is verified instead)
    include_top: bool
    classes: int = 1000
    size: int | None = None
    notop: str | None = None
    input_size: tuple[int, int] = (299, 299)
    preprocessing: str = "tf"
    crop_fraction: float = 0.875
    resize_mode: str = "central"
    interpolation: str = "bilinear"
    top1: float | None = None
    top5: float | None = None
    description: str = ""
    reported_by: str | None = None
    arch: str = "xception"  # the keras_xception.model.spec.ARCHITECTURES name the weights are for

    def __post_init__(self):
        h = None if self.file_hash is None else str(self.file_hash).lower()
        if h is not None and (len(h) not in (32, 64) or any(c not in "0123456789abcdef" for c in h)):
            raise ValueError(
                "`file_hash` must be None, a sha256 (64 hex digits) or md5 (32 hex digits) "
                f"digest; received file_hash={self.file_hash!r}."
            )
        object.__setattr__(self, "file_hash", h)
        object.__setattr__(self, "urls", tuple(self.urls))
        object.__setattr__(self, "input_size", tuple(self.input_size))

    @property
    def hash_algorithm(self) -> str | None:
        """``"sha256"`` or ``"md5"``, from the length of :attr:`file_hash` (None without one)."""
        return None if self.file_hash is None else "sha256" if len(self.file_hash) == 64 else "md5"

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), urls=list(self.urls), input_size=list(self.input_size))


def _load_builtin_records() -> None:
    text = resources.files("keras_xception").joinpath("resources/weights.json").read_text()
    for d in json.loads(text)["records"]:
        _REGISTRY[d["name"]] = WeightRecord(**d)


def register(
    name: str,
    *,
    url: str | list[str],
    file_hash: str,
    include_top: bool,
    file_name: str | None = None,
    overwrite: bool = False,
    **fields,
) -> WeightRecord:
    """Register a weight set so that ``Xception(weights=name)`` can use it.

    Args:
        name: The name to pass as ``weights=``.
        url: Download URL (or a list of URLs, tried in order).
        file_hash: sha256 or md5 hex digest of the file.
        include_top: Whether the file holds the classifier layer.
        file_name: Cache file name; defaults to the URL's last component.
        overwrite: Replace an existing record of the same name.
        **fields: Any other :class:`WeightRecord` field (``classes``,
            ``input_size``, ``top1``, ...). ``notop`` names a registered set
            without the top, downloaded instead when the top is not used.

    Raises:
        ValueError: naming the argument that is wrong, or a name already
            registered (without ``overwrite=True``).
    """
    if not isinstance(name, str) or not name or os.sep in name:
        raise ValueError(f"`name` must be a non-empty string without '/'; received {name!r}.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"A weight set named {name!r} is already registered; pass overwrite=True to replace it.")
    urls = [url] if isinstance(url, str) else list(url)
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"`url` must be a URL string or a list of them; received {url!r}.")
    boolean(include_top, "include_top")
    notop = fields.get("notop")
    if notop is not None and (not is_registered(notop) or _REGISTRY[notop].include_top):
        raise ValueError(
            "`notop` must name a registered weight set without the top (include_top=False); "
            f"received notop={notop!r}. Register that set first."
        )
    if _notop_users(name) and include_top:
        raise ValueError(
            f"{name!r} is the no-top file (`notop`) of {_notop_users(name)}, so it must have "
            "include_top=False; received include_top=True."
        )
    unknown = set(fields) - {f.name for f in dataclasses.fields(WeightRecord)}
    if unknown:
        raise ValueError(f"Unknown weight-record fields {sorted(unknown)}; see WeightRecord.")
    file_name = file_name or urls[0].rstrip("/").rsplit("/", 1)[-1]
    _REGISTRY[name] = WeightRecord(name, file_name, urls, file_hash, include_top, **fields)
    return _REGISTRY[name]


def unregister(name: str) -> WeightRecord:
    """Remove the weight set registered as ``name`` (built-in ones too, until the process ends); return it.

    Raises:
        ValueError: if no set is registered as ``name``, or another set names it as its ``notop`` file.
    """
    if not is_registered(name):
        raise ValueError(f"`name` must be a registered weight set {sorted(_REGISTRY)}; received name={name!r}.")
    users = _notop_users(name)
    if users:
        raise ValueError(
            f"Cannot unregister {name!r}: it is the no-top file (`notop`) of {users}; unregister those first."
        )
    return _REGISTRY.pop(name)


def _notop_users(name: str) -> list[str]:
    """The registered sets whose ``notop`` file is ``name``."""
    return sorted(r.name for r in _REGISTRY.values() if r.notop == name)


def is_registered(name) -> bool:
    return isinstance(name, str) and name in _REGISTRY


def get_record(name: str) -> WeightRecord:
    """The record registered under ``name`` (``ValueError`` listing the known names if none)."""
    if not is_registered(name):
        raise ValueError(
            f"Unknown weight set {name!r}. Registered: {sorted(_REGISTRY)}. "
            "Pass one of these, a path to a weights file, or None."
        )
    return _REGISTRY[name]


def imagenet_of(arch) -> str:
    """What ``weights="imagenet"`` means for architecture ``arch``: the first registered set for it with the top."""
    return next((r.name for r in _REGISTRY.values() if r.arch == arch and r.include_top), "imagenet")


def list_records() -> list[WeightRecord]:
    return list(_REGISTRY.values())


_load_builtin_records()
