"""Verified downloads of registered weight files into Keras's model cache (``$KERAS_HOME/models``).

Why not ``keras.utils.get_file`` straight into the cache (Keras 3.15, shown by
``tests/test_pretrained_download.py::test_keras_get_file_alone_*``): a concurrent process sees a
partial file, a download with the wrong hash stays in the cache, and a failed re-download deletes
the file that was there. So it downloads to a temporary name and moves the file into place once
verified, under a file lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import warnings

from keras_xception.pretrained.registry import WeightRecord, get_record

__all__ = [
    "WeightsDownloadError", "cache_dir", "cached_path", "get_file", "verify_file", "complete_safetensors",
    "file_digest", "MIRROR_ENV",
]  # fmt: skip

MIRROR_ENV = "KERAS_XCEPTION_WEIGHTS_MIRROR"


class WeightsDownloadError(RuntimeError):
    """A weight file could not be obtained or did not verify."""


def cache_dir() -> str:
    """Keras's own model cache: ``$KERAS_HOME/models`` (default ``~/.keras/models``)."""
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


def complete_safetensors(path: str) -> bool:
    """Whether ``path`` is a whole safetensors file: its JSON header reads and its last tensor ends at the file's end."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        return 8 + n + max(ends, default=0) == os.path.getsize(path)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False


def verify_file(path: str, record: WeightRecord | str) -> bool:
    """Whether ``path`` has the record's hash (and size, when the record knows it); a record without a hash (a
    safetensors file with no published digest): whether the file is whole (:func:`complete_safetensors`)."""
    record = get_record(record) if isinstance(record, str) else record
    if not os.path.isfile(path) or record.size not in (None, os.path.getsize(path)):
        return False
    if record.file_hash is None:
        return complete_safetensors(path)
    return file_digest(path, record.hash_algorithm) == record.file_hash


def _urls(record: WeightRecord) -> list[str]:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return [f"{mirror.rstrip('/')}/{record.file_name}"] if mirror else list(record.urls)


@contextlib.contextmanager
def _fetch_settings(progress: bool, timeout: float):
    """Keras's progress output on or off, and a socket timeout (``get_file`` has none: a stalled server hangs)."""
    import keras

    interactive, old_timeout = keras.config.is_interactive_logging_enabled(), socket.getdefaulttimeout()
    if not progress:
        keras.config.disable_interactive_logging()
    socket.setdefaulttimeout(timeout)
    try:
        yield keras
    finally:
        socket.setdefaulttimeout(old_timeout)
        if interactive:
            keras.config.enable_interactive_logging()


def _download(url: str, target: str, record: WeightRecord) -> None:
    """``keras.utils.get_file`` into a temporary name beside ``target``; moved into place once verified."""
    import keras

    directory, tmp = os.path.dirname(target), f".{record.file_name}.{os.getpid()}.part"
    path = os.path.join(directory, tmp)
    try:
        path = keras.utils.get_file(
            tmp, url, file_hash=record.file_hash, hash_algorithm=record.hash_algorithm, cache_dir=directory,
            cache_subdir="", force_download=True,
        )  # fmt: skip
        if record.size not in (None, os.path.getsize(path)):
            raise WeightsDownloadError(f"size {os.path.getsize(path)} bytes, expected {record.size}")
        if record.file_hash is None and not complete_safetensors(path):
            raise WeightsDownloadError("not a whole safetensors file (truncated?)")
        os.replace(path, target)  # atomic: the cache never holds a partial file
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)


def get_file(
    record: WeightRecord | str, *, force_download: bool = False, progress: bool = True, timeout: float = 60.0
) -> str:
    """Local path of a record's verified file in :func:`cache_dir`, downloaded on first use.

    A cached file is used only if its hash matches, else downloaded again. With
    ``$KERAS_XCEPTION_WEIGHTS_MIRROR`` set, the file comes from ``<mirror>/<file name>``
    (``http://`` or ``file://``) instead of the record's URLs.

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
            f"Cannot create the weights cache ({e}); set KERAS_HOME to a writable directory."
        ) from None
    lock = filelock.FileLock(target + ".lock")
    with lock:
        try:
            if os.path.exists(target) and not force_download:
                if verify_file(target, record):
                    return target
                warnings.warn(
                    f"The cached weights file {target!r} does not match its {record.hash_algorithm or 'safetensors'} "
                    f"{record.file_hash or 'header'}; downloading it again.",
                    stacklevel=2,
                )
            failures = []
            with _fetch_settings(progress, timeout):
                for url in _urls(record):
                    try:
                        _download(url, target, record)
                        return target
                    except Exception as e:  # get_file raises bare Exception for HTTP and URL errors
                        failures.append(f"  {url}: {e}")
        finally:
            # filelock leaves its empty lock file on POSIX; the cache should hold weight files only.
            # Removed while held: a waiting process then locks an unlinked file, which filelock
            # detects and retries; were it not detected, overlapping downloads are still safe.
            with contextlib.suppress(OSError):
                os.remove(lock.lock_file)
    stale = "\nThe cached file fails verification and was not used." if os.path.exists(target) else ""
    raise WeightsDownloadError(
        f"Could not download the weights {record.name!r} (file {record.file_name}, "
        f"{record.hash_algorithm or 'no published hash'} {record.file_hash or ''}).\n"
        + "\n".join(failures)
        + stale
        + "\n"
        f"To install it by hand, download it on a machine with access and place it at {target} "
        f"(or point ${MIRROR_ENV} at a server or file:// directory holding {record.file_name}). "
        f"Check it with `keras-xception weights verify {record.name}`."
    )
