"""The input transform (docs/evaluation.md): :class:`Transform`, made by :func:`resolve_transform` and
applied by :func:`decode_and_transform` for :func:`load_image`, every pipeline and every command alike; and
why an image cannot be decoded (:func:`reason`, :func:`explain`).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re

import numpy as np

from keras_xception.checks import fraction, one_of, positive_int
from keras_xception.data.results import Skipped
from keras_xception.model.spec import MIN_INPUT_SIZE
from keras_xception.pretrained.registry import get_record, is_registered

__all__ = [
    "Transform",
    "resolve_transform",
    "decode_and_transform",
    "load_image",
    "reason",
    "explain",
    "IMAGE_EXTENSIONS",
]

#: File extensions (lower case) of the formats decode_and_transform decodes.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
RESIZE_MODES = ("central", "shorter-side")
INTERPOLATIONS = ("bilinear", "bicubic")
#: ``"tf"``: scale 0..255 to -1..1 (preprocess_input); ``None``: the model takes 0..255.
PREPROCESSINGS = ("tf", None)
#: The weight set whose transform applies when the weights are not a registered name.
DEFAULT_WEIGHTS = "imagenet"


@dataclasses.dataclass(frozen=True)
class Transform:
    """How an image file becomes a model input (immutable; checked when made).

    Attributes:
        target_size: ``(height, width)`` of the model input (an int: square).
        crop_fraction: Fraction of the image kept by the centre crop, in (0, 1].
        resize_mode: ``"central"``: keep the central ``crop_fraction`` of each side (the
            ``tf.image.central_crop`` window; the Keras ImageNet weights), then resize;
            ``"shorter-side"`` (timm: shorter side to ``size / crop_fraction``, centre crop
            ``size``), computed as the equivalent crop of the original, then one resize.
        interpolation: ``"bilinear"`` or ``"bicubic"``.
        preprocessing: ``"tf"`` (:func:`preprocess_input`) or ``None`` (raw 0..255).
        exif_orientation: Turn JPEGs upright by their EXIF orientation tag before cropping
            (user photos); False: the stored pixels, as the ImageNet protocol reads them.
    """

    target_size: tuple[int, int]
    crop_fraction: float
    resize_mode: str
    interpolation: str
    preprocessing: str | None = "tf"
    exif_orientation: bool = False

    def __post_init__(self):
        size = self.target_size
        size = (size, size) if isinstance(size, numbers.Integral) and not isinstance(size, bool) else size
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise ValueError(
                "`target_size` must be (height, width) with positive integers, or one such integer "
                f"(Xception itself needs >= {MIN_INPUT_SIZE}); received target_size={self.target_size!r}."
            )
        object.__setattr__(self, "target_size", tuple(positive_int(v, "target_size") for v in size))
        object.__setattr__(self, "crop_fraction", fraction(self.crop_fraction, "crop_fraction"))
        one_of(self.resize_mode, "resize_mode", RESIZE_MODES)
        one_of(self.interpolation, "interpolation", INTERPOLATIONS)
        one_of(self.preprocessing, "preprocessing", PREPROCESSINGS)
        if not isinstance(self.exif_orientation, (bool, np.bool_)):
            raise ValueError(f"`exif_orientation` must be True or False; received {self.exif_orientation!r}.")
        object.__setattr__(self, "exif_orientation", bool(self.exif_orientation))

    @classmethod
    def _check_names(cls, names):
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = set(names) - set(allowed)
        if unknown:
            raise ValueError(f"Unknown transform settings {sorted(unknown)}; allowed: {allowed}.")

    def replace(self, **overrides) -> Transform:
        """A copy with ``overrides`` (None values keep the current setting); checked."""
        self._check_names(overrides)
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def preprocess(self, images):
        """Scale a batch of 0..255 images as the model expects (a new array/tensor)."""
        from keras_xception.model.preprocessing import preprocess_input  # imports Keras, hence TensorFlow

        return preprocess_input(images) if self.preprocessing == "tf" else images

    def to_dict(self) -> dict:
        """JSON-ready: ``target_size`` as a list."""
        return dict(dataclasses.asdict(self), target_size=list(self.target_size))

    @classmethod
    def from_dict(cls, d) -> Transform:
        """The transform of a :meth:`to_dict` record (checked; a missing ``exif_orientation`` is False)."""
        if not isinstance(d, dict):
            raise ValueError(f"A transform record must be a dict (Transform.to_dict()); received {d!r}.")
        cls._check_names(d)
        size = d.get("target_size")
        return cls(**dict(d, target_size=tuple(size) if isinstance(size, list) else size))


_KEEP = object()


def resolve_transform(weights=DEFAULT_WEIGHTS, *, model=None, preprocessing=_KEEP, **overrides) -> Transform:
    """The transform for ``weights`` (and ``model``), with overrides; ``ValueError`` names an invalid setting.

    In order: the record of ``weights`` when it is a registered name (else the
    :data:`DEFAULT_WEIGHTS` record); then ``model``'s fixed input size and whether it scales its
    own input (then ``preprocessing=None``); then the overrides: ``target_size`` (an int or
    ``(height, width)``), ``crop_fraction``, ``resize_mode``, ``interpolation``,
    ``exif_orientation`` (None keeps the value) and ``preprocessing`` (``"tf"`` or ``None``).
    """
    record = get_record(weights if isinstance(weights, str) and is_registered(weights) else DEFAULT_WEIGHTS)
    t = Transform(
        target_size=tuple(record.input_size),
        crop_fraction=record.crop_fraction,
        resize_mode=record.resize_mode,
        interpolation=record.interpolation,
        preprocessing=record.preprocessing,
    )
    if model is not None:
        import keras

        from keras_xception.model.introspect import find_layer

        shape = model.input_shape
        spatial = shape[2:4] if keras.config.image_data_format() == "channels_first" else shape[1:3]
        t = t.replace(target_size=None if None in spatial else tuple(spatial))
        layer = find_layer(model, "preprocess_input")
        if layer is not None and type(layer).__name__ == "Rescaling":  # the model scales its own input
            t = dataclasses.replace(t, preprocessing=None)
    t = t.replace(**overrides)
    return t if preprocessing is _KEEP else dataclasses.replace(t, preprocessing=preprocessing)


def crop_window(height, width, target_size, crop_fraction, resize_mode):
    """The crop ``[offset_y, offset_x, crop_height, crop_width]`` (int32, last axis) of images of
    ``height`` x ``width``: scalars, or vectors for many images at once."""
    import tensorflow as tf

    h, w, f = tf.cast(height, tf.float64), tf.cast(width, tf.float64), float(crop_fraction)
    if resize_mode == "central":
        # tf.image.central_crop's window: symmetric margins of floor((1 - f) * side / 2).
        oy, ox = tf.floor((h - h * f) / 2.0), tf.floor((w - w * f) / 2.0)
        ch, cw = h - 2.0 * oy, w - 2.0 * ox
    else:
        th, tw = (float(v) for v in target_size)
        scale = f * tf.minimum(h / th, w / tw)
        ch = tf.clip_by_value(tf.round(scale * th), 1.0, h)
        cw = tf.clip_by_value(tf.round(scale * tw), 1.0, w)
        oy, ox = tf.floor((h - ch) / 2.0), tf.floor((w - cw) / 2.0)
    return tf.cast(tf.stack([oy, ox, ch, cw], axis=-1), tf.int32)


def _exif_orientation(image) -> int:
    value = image.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def file_windows(paths, transform: Transform):
    """``(windows, orientations)``: each JPEG's crop window in stored pixels (int32 ``(n, 4)``; ``-1`` where Pillow
    cannot open it as a JPEG) and EXIF orientation, read up front from its header (benchmarks/pipeline.py)."""
    from PIL import Image, UnidentifiedImageError

    sizes, orientations = np.full((len(paths), 2), -1, np.int64), np.ones(len(paths), np.int32)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                if image.format == "JPEG":
                    sizes[i] = image.height, image.width
                    orientations[i] = _exif_orientation(image) if transform.exif_orientation else 1
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            continue
    t = transform
    windows = stored_window(*sizes.T, orientations, t.target_size, t.crop_fraction, t.resize_mode).numpy()
    return np.where(sizes[:, :1] < 0, -1, windows).astype(np.int32), orientations


_SEARCH = 1 << 16  # an EXIF APP1 segment starts within the first 64 KiB (it is one segment, < 64 KiB)
_ENTRIES = 64  # IFD0 entries looked at (Orientation comes early: tags are sorted)


def jpeg_orientation(contents):
    """The EXIF ``Orientation`` (1..8) of JPEG bytes (a scalar string tensor) in TensorFlow ops; 1 when absent
    or malformed. Ops only, so that a SavedModel can hold it; pipelines over files read it up front instead
    (:func:`file_windows`, Pillow)."""
    import tensorflow as tf

    padded = tf.strings.substr(
        tf.strings.join([tf.strings.substr(contents, 0, _SEARCH), b"\0" * (_SEARCH + 16)]), 0, _SEARCH + 16
    )
    data = tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int32)
    byte = lambda i: tf.gather(data, tf.clip_by_value(i, 0, _SEARCH + 15))  # noqa: E731
    parts = tf.strings.split(tf.strings.substr(contents, 0, _SEARCH), b"Exif\0\0", maxsplit=1)
    tiff = tf.strings.length(parts[0]) + 6  # the TIFF header follows "Exif\0\0"
    little, big = (tf.logical_and(byte(tiff) == c, byte(tiff + 1) == c) for c in (73, 77))  # "II", "MM"

    def u16(i):
        return tf.where(little, byte(i) + 256 * byte(i + 1), 256 * byte(i) + byte(i + 1))

    ifd = tiff + tf.where(little, u16(tiff + 4) + 65536 * u16(tiff + 6), 65536 * u16(tiff + 4) + u16(tiff + 6))
    entries = ifd + 2 + 12 * tf.range(_ENTRIES)
    hits = tf.logical_and(u16(entries) == 0x0112, tf.range(_ENTRIES) < u16(ifd))
    value = tf.reduce_max(tf.where(hits, u16(entries + 8), 0))
    checks = [tf.io.is_jpeg(contents), tf.size(parts) > 1, little | big, tf.reduce_any(hits), value >= 1, value <= 8]
    return tf.where(tf.reduce_all(tf.stack(checks)), value, 1)


def stored_window(height, width, orientation, size, fraction, mode):
    """The crop window in stored pixels whose upright view is the crop of the upright image, for images
    stored ``height`` x ``width`` with EXIF ``orientation`` (scalars, or vectors for many images at once).

    Pillow's ``exif_transpose`` table: 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom,
    5 transpose, 6 transpose + mirror left-right, 7 transverse, 8 transpose + mirror top-bottom.
    """
    import tensorflow as tf

    o, height, width = (tf.cast(v, tf.int32) for v in (orientation, height, width))
    transpose, flip_ud, flip_lr = _flips(o)
    h, w = tf.where(transpose, width, height), tf.where(transpose, height, width)  # upright size
    oy, ox, ch, cw = tf.unstack(crop_window(h, w, size, fraction, mode), axis=-1)
    oy, ox = tf.where(flip_ud, h - oy - ch, oy), tf.where(flip_lr, w - ox - cw, ox)
    return tf.where(transpose[..., None], tf.stack([ox, oy, cw, ch], -1), tf.stack([oy, ox, ch, cw], -1))


def _flips(o):  # (transpose, flip_ud, flip_lr) of EXIF orientations (outside 1..8: as 1)
    import tensorflow as tf

    o = tf.where((o >= 1) & (o <= 8), o, 1)
    has = lambda *values: tf.reduce_any(tf.equal(o[..., None], values), axis=-1)  # noqa: E731
    return o >= 5, has(3, 4, 7, 8), has(2, 3, 6, 7)


def _turn(image, orientation):
    """A decoded stored window turned upright (orientation 1: as it is, with no op run)."""
    import tensorflow as tf

    def turn():
        transpose, flip_ud, flip_lr = _flips(orientation)
        upright = tf.cond(transpose, lambda: tf.transpose(image, [1, 0, 2]), lambda: image)
        return tf.reverse(upright, tf.boolean_mask([0, 1], tf.stack([flip_ud, flip_lr])))

    return tf.cond(tf.equal(orientation, 1), lambda: image, turn)


#: A JPEG's end-of-image marker, and how far into a file an EXIF thumbnail's own marker can lie
#: (the APP1 segment that holds it ends before 64 KiB).
_EOI = b"\xff\xd9"
_HEADER_BYTES = 65600
TRUNCATED_JPEG = "truncated JPEG (the file ends before its end-of-image marker)"


def _complete_jpeg(contents):
    """Whether JPEG bytes hold their end-of-image marker (a scalar bool tensor; data after it is allowed).

    TensorFlow's decoder logs "Premature end of JPEG data" (C++, to stderr) for a file cut short
    before failing: such a file is refused here first, in our words.
    """
    import tensorflow as tf

    def marker_after_header():
        parts = tf.strings.split(contents, sep=_EOI)
        end = tf.strings.length(contents) - tf.strings.length(parts[-1])
        return tf.logical_and(
            tf.size(parts) > 1, tf.logical_or(end > _HEADER_BYTES, tf.strings.length(contents) <= _HEADER_BYTES)
        )

    return tf.cond(tf.equal(tf.strings.substr(contents, -2, 2), _EOI), lambda: tf.constant(True), marker_after_header)


def decode_and_transform(contents, transform: Transform, orientation=None, window=None):
    """Encoded image bytes (scalar string tensor) -> float32 ``target_size + (3,)`` in [0, 255].

    Eager or in ``tf.data``/``tf.function``; ``tf.errors.InvalidArgumentError`` for bytes that are not
    a decodable image. ``orientation`` and ``window``: read up front (:func:`file_windows`; a ``-1`` window
    is measured here), used for JPEGs; None: read from ``contents`` (:func:`jpeg_orientation`).
    """
    import tensorflow as tf

    if not isinstance(transform, Transform):
        raise ValueError(f"`transform` must be a keras_xception Transform; received {type(transform).__name__}.")
    size, fraction, mode = transform.target_size, transform.crop_fraction, transform.resize_mode

    def jpeg():
        with tf.control_dependencies([tf.debugging.assert_equal(_complete_jpeg(contents), True, TRUNCATED_JPEG)]):
            if not transform.exif_orientation:
                o = tf.constant(1)
            else:  # without a known orientation only: a Python call in the graph slows all of tf.data's map
                o = jpeg_orientation(contents) if orientation is None else tf.cast(orientation, tf.int32)

            def measured():
                shape = tf.io.extract_jpeg_shape(contents)
                return stored_window(shape[0], shape[1], o, size, fraction, mode)

            w = measured() if window is None else tf.cond(window[0] >= 0, lambda: tf.cast(window, tf.int32), measured)
            return _turn(tf.io.decode_and_crop_jpeg(contents, w, channels=3), o)  # decode only the crop

    def other():
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        oy, ox, ch, cw = tf.unstack(crop_window(tf.shape(image)[0], tf.shape(image)[1], size, fraction, mode))
        return image[oy : oy + ch, ox : ox + cw, :]

    image = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    # float input: the same values as resizing the uint8 pixels, 15% faster (benchmarks/pipeline.py)
    image = tf.image.resize(tf.cast(image, tf.float32), size, method=transform.interpolation)
    image = tf.clip_by_value(image, 0.0, 255.0)  # bicubic overshoots
    image.set_shape(tuple(size) + (3,))
    return image


def reason(payload, transform, payload_is_path=True) -> str:
    """Why one example cannot be read or decoded (the reader's or decoder's message, the path not repeated)."""
    import tensorflow as tf

    try:
        decode_and_transform(tf.io.read_file(payload) if payload_is_path else payload, transform)
    except (tf.errors.OpError, ValueError) as e:
        text = getattr(e, "message", None) or str(e)
        text = text.splitlines()[0] if text else type(e).__name__
        text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
        text = re.sub(r"\s*\[Op:\w+\].*$", "", text).strip()
        if payload_is_path:  # TensorFlow's file errors start with the path: "PATH; No such file or directory"
            path = payload.numpy().decode("utf-8", "replace") if hasattr(payload, "numpy") else os.fspath(payload)
            text = text.removeprefix(f"{path}; ").removeprefix(f"{path}: ")
        return text
    return "decoded on retry (transient read error?)"


def explain(records, indices, transform: Transform) -> list:
    """``[(index, Skipped(name, reason))]`` for the examples of ``records`` (:class:`~.files.Records`) at ``indices``
    (re-read and decoded eagerly)."""
    import tensorflow as tf

    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return []
    w = tf.constant(wanted, tf.int64)
    found = records.dataset.enumerate().filter(lambda i, ex: tf.reduce_any(tf.equal(i, w)))
    out = []
    for i, (name, _, payload) in found:
        name = name.numpy().decode("utf-8", "replace") or f"record #{int(i)}"
        out.append((int(i), Skipped(name, reason(payload, transform, records.payload_is_path))))
    return out


def load_image(path, transform: Transform | None = None, **overrides):
    """Read one image file exactly as a pipeline with the same transform does.

    Args:
        path: Path of a JPEG, PNG, GIF or BMP file.
        transform: A :class:`Transform` (default: :func:`resolve_transform` with
            ``exif_orientation=True``: 299x299, crop 0.875, a photo read upright).
        **overrides: Transform settings replacing ``transform``'s (``target_size``, ...).

    Returns:
        float32 ``(height, width, 3)``, RGB in [0, 255] (scale the batch with ``transform.preprocess``).

    Raises:
        FileNotFoundError, PermissionError: the file is missing or unreadable.
        ValueError: bad arguments, or a file that is not a decodable image.
    """
    import tensorflow as tf

    transform = (transform or resolve_transform(exif_orientation=True)).replace(**overrides)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image file at {path!r}.")
    with open(path, "rb") as f:  # PermissionError/OSError here, not a TensorFlow error
        contents = f.read()
    try:
        image = decode_and_transform(tf.constant(contents), transform)
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(
            f"Cannot decode {path!r} as an image (JPEG, PNG, GIF or BMP): {e.message.splitlines()[0]}"
        ) from None
    return np.asarray(image)
