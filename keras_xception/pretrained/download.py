"""Verified downloads of registered weight files into Keras's model cache.

Files go to ``$KERAS_HOME/models`` (default ``~/.keras/models``), the cache
``keras.applications`` uses, so files it already fetched are reused. A
download goes to a temporary file beside the target, is verified (hash, size)
and only then moved into place, under a file lock; a failed download leaves
nothing behind (no partial file, no lock file).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import warnings

from keras_xception.pretrained.registry import WeightRecord, get_record

__all__ = ["WeightsDownloadError", "cache_dir", "cached_path", "get_file", "verify_file", "file_digest", "MIRROR_ENV"]

MIRROR_ENV = "KERAS_XCEPTION_WEIGHTS_MIRROR"


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


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def get_file(
    record: WeightRecord | str, *, force_download: bool = False, progress: bool = True, timeout: float = 60.0
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
    lock = filelock.FileLock(target + ".lock")
    with lock:
        try:
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
        finally:
            # filelock leaves its (empty) lock file on POSIX; the cache should hold weight files
            # only. It is removed while still held, so a process waiting for it then locks an
            # unlinked file, which filelock (4.x) detects and retries on a new one. Where that is
            # not detected two downloads may overlap, which is still safe: each goes to its own
            # temporary file and is moved into place atomically once verified.
            _remove_quietly(lock.lock_file)
    raise WeightsDownloadError(
        f"Could not download the weights {record.name!r} (file {record.file_name}, "
        f"{record.hash_algorithm} {record.file_hash}).\n"
        + "\n".join(failures)
        + (f"\nThe cached file {target} fails verification and was not used." if stale else "")
        + f"\nTo install it by hand, download it on a machine with access and place it at "
        f"{target} (or point ${MIRROR_ENV} at a server or file:// directory holding "
        f"{record.file_name}). Check it with `keras-xception weights verify {record.name}`."
    )
