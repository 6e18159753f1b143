"""Pretrained weight sets: the registry, verified download, and loading.

Every weight set is one :class:`WeightRecord` (URL, hash, input size, the
evaluation transform, reported accuracy). The built-in records live in
``keras_xception/resources/weights.json`` (``weights/registry.json`` in the
repository); :func:`register` adds more at run time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from importlib import resources

__all__ = [
    "WeightRecord",
    "WeightsDownloadError",
    "register",
    "get_record",
    "list_records",
    "is_registered",
    "cache_dir",
    "cached_path",
    "get_file",
    "verify_file",
    "file_digest",
    "MIRROR_ENV",
    "transform_for",
]

MIRROR_ENV = "KERAS_XCEPTION_WEIGHTS_MIRROR"

_REGISTRY: dict[str, "WeightRecord"] = {}


@dataclasses.dataclass(frozen=True)
class WeightRecord:
    """One pretrained weight set: where to get it and how it was evaluated."""

    name: str
    file_name: str
    urls: tuple[str, ...]
    file_hash: str
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

    @property
    def hash_algorithm(self) -> str:
        """``"sha256"`` or ``"md5"``, from the length of :attr:`file_hash`."""
        return "sha256" if len(self.file_hash) == 64 else "md5"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["urls"] = list(self.urls)
        d["input_size"] = list(self.input_size)
        return d


def _validate_hash(file_hash: str) -> str:
    h = str(file_hash).lower()
    if len(h) not in (32, 64) or any(c not in "0123456789abcdef" for c in h):
        raise ValueError(
            "`file_hash` must be a sha256 (64 hex digits) or md5 (32 hex digits) "
            f"digest; received file_hash={file_hash!r}."
        )
    return h


def _record_from_dict(d: dict) -> WeightRecord:
    fields = {f.name for f in dataclasses.fields(WeightRecord)}
    unknown = set(d) - fields
    if unknown:
        raise ValueError(f"Unknown weight-record fields {sorted(unknown)} in {d.get('name')!r}.")
    d = dict(d)
    d["urls"] = tuple(d.get("urls", ()))
    d["input_size"] = tuple(d.get("input_size", (299, 299)))
    d["file_hash"] = _validate_hash(d["file_hash"])
    return WeightRecord(**d)


def _load_builtin_records() -> None:
    text = resources.files("keras_xception").joinpath("resources/weights.json").read_text()
    for d in json.loads(text)["records"]:
        rec = _record_from_dict(d)
        _REGISTRY[rec.name] = rec


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
            ``input_size``, ``crop_fraction``, ``top1``, ...).
    """
    if not isinstance(name, str) or not name or os.sep in name:
        raise ValueError(f"`name` must be a non-empty string without '/'; received {name!r}.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"A weight set named {name!r} is already registered; pass overwrite=True "
            "to replace it."
        )
    urls = [url] if isinstance(url, str) else list(url)
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"`url` must be a URL string or a list of them; received {url!r}.")
    if not isinstance(include_top, bool):
        raise ValueError(f"`include_top` must be True or False; received {include_top!r}.")
    rec = _record_from_dict(
        dict(
            name=name,
            file_name=file_name or urls[0].rstrip("/").rsplit("/", 1)[-1],
            urls=urls,
            file_hash=file_hash,
            include_top=include_top,
            **fields,
        )
    )
    _REGISTRY[name] = rec
    return rec


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


def list_records() -> list[WeightRecord]:
    return list(_REGISTRY.values())


def transform_for(weights="imagenet", **overrides) -> dict:
    """The evaluation transform of a weight set, as ``load_image`` keyword arguments.

    From the record of ``weights`` when it is a registered name, else (a file
    path, None) from the ``"imagenet"`` record. ``overrides`` (``target_size``,
    ``crop_fraction``, ``resize_mode``, ``interpolation``) replace record
    values; None means "keep". The result is validated.
    """
    from keras_xception.image import validate_transform

    r = get_record(weights if is_registered(weights) else "imagenet")
    t = dict(
        target_size=tuple(r.input_size),
        crop_fraction=r.crop_fraction,
        resize_mode=r.resize_mode,
        interpolation=r.interpolation,
    )
    unknown = set(overrides) - set(t)
    if unknown:
        raise ValueError(f"Unknown transform settings {sorted(unknown)}; allowed: {sorted(t)}.")
    t.update({k: v for k, v in overrides.items() if v is not None})
    t["target_size"] = validate_transform(**t)
    return t


_load_builtin_records()



# ----------------------------------------------------------------------------
# Download and cache


class WeightsDownloadError(RuntimeError):
    """A weight file could not be obtained or did not verify."""


def cache_dir() -> str:
    """Keras's own model cache: ``$KERAS_HOME/models`` (default ``~/.keras/models``).

    Files that ``keras.applications`` already downloaded there are reused.
    """
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, "models")


def cached_path(record: WeightRecord | str) -> str:
    """Where a record's file lives in the cache (it may not exist yet)."""
    record = get_record(record) if isinstance(record, str) else record
    return os.path.join(cache_dir(), record.file_name)


def file_digest(path: str, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: str, record: WeightRecord | str) -> bool:
    """Whether ``path`` has the record's hash (and size, when the record knows it)."""
    record = get_record(record) if isinstance(record, str) else record
    if not os.path.isfile(path):
        return False
    if record.size is not None and os.path.getsize(path) != record.size:
        return False
    return file_digest(path, record.hash_algorithm) == record.file_hash


def _urls(record: WeightRecord) -> list[str]:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return [f"{mirror.rstrip('/')}/{record.file_name}"]
    return list(record.urls)


def _download(url: str, target: str, record: WeightRecord, progress: bool, timeout: float) -> None:
    """Download ``url`` to a temporary file beside ``target``; move it into place once verified."""
    import keras

    directory = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{record.file_name}.", suffix=".part")
    try:
        hasher = hashlib.new(record.hash_algorithm)
        received = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = keras.utils.Progbar(total, unit_name="B") if progress else None
            if progress:
                print(f"Downloading {url}")
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(received)
        if total is not None and received != total:
            raise WeightsDownloadError(f"transfer truncated: got {received} of {total} bytes")
        digest = hasher.hexdigest()
        if digest != record.file_hash:
            raise WeightsDownloadError(
                f"{record.hash_algorithm} of the download is {digest}, expected {record.file_hash}"
            )
        if record.size is not None and received != record.size:
            raise WeightsDownloadError(f"size {received} bytes, expected {record.size}")
        os.replace(tmp, target)  # atomic: the cache never holds a partial file
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def get_file(
    record: WeightRecord | str,
    *,
    force_download: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> str:
    """Local path of a record's verified file, downloading it on first use.

    The file is looked for in :func:`cache_dir` (shared with
    ``keras.applications``). A cached file is used only if its hash matches; a
    file that fails verification is downloaded again. Downloads go to a
    temporary file that is moved into place only after verification, under a
    file lock, so concurrent processes never see or leave a partial file.
    With ``$KERAS_XCEPTION_WEIGHTS_MIRROR`` set, the file is fetched from
    ``<mirror>/<file name>`` instead of the record's URLs.

    Raises:
        WeightsDownloadError: naming the URLs tried, the file name, the
            expected hash, and where to put the file by hand.
    """
    import filelock

    record = get_record(record) if isinstance(record, str) else record
    target = cached_path(record)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    except OSError as e:
        raise WeightsDownloadError(
            f"Cannot create the weights cache {os.path.dirname(target)!r} ({e}); set KERAS_HOME "
            "to a writable directory."
        ) from None
    with filelock.FileLock(target + ".lock"):
        if os.path.exists(target) and not force_download:
            if verify_file(target, record):
                return target
            warnings.warn(
                f"The cached weights file {target!r} does not match its {record.hash_algorithm} "
                f"{record.file_hash}; downloading it again.",
                stacklevel=2,
            )
        failures = []
        for url in _urls(record):
            try:
                _download(url, target, record, progress, timeout)
                return target
            except (OSError, ValueError, http.client.HTTPException, WeightsDownloadError) as e:
                failures.append(f"  {url}: {getattr(e, 'reason', None) or e}")
        stale = os.path.exists(target)
    raise WeightsDownloadError(
        f"Could not download the weights {record.name!r} (file {record.file_name}, "
        f"{record.hash_algorithm} {record.file_hash}).\n"
        + "\n".join(failures)
        + (f"\nThe cached file {target} fails verification and was not used." if stale else "")
        + f"\nTo install it by hand, download it on a machine with access and place it at "
        f"{target} (or point ${MIRROR_ENV} at a server or file:// directory holding "
        f"{record.file_name}). Check it with `keras-xception weights verify {record.name}`."
    )
