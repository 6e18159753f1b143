"""A SavedModel's ``serving_default`` (:func:`serving_function`): encoded images in, top-k class names and
scores out, the model's transform in the graph. TensorFlow ops only (no Python call is saved), so a client
needs TensorFlow or TF Serving alone; ``serve`` keeps the preprocessed-tensor input (docs/deployment.md)."""

from __future__ import annotations

from keras_xception.data.transform import decode_and_transform

__all__ = ["serving_function", "exif_orientation", "output_names", "TOP_K", "UNREADABLE"]

TOP_K = 5
UNREADABLE = "error: not a decodable image (JPEG, PNG, GIF or BMP), or truncated"
_SEARCH = 1 << 16  # an EXIF APP1 segment starts within the first 64 KiB (it is one segment, < 64 KiB)
_ENTRIES = 64  # IFD0 entries looked at (Orientation comes early: tags are sorted)


def exif_orientation(contents):
    """The EXIF ``Orientation`` (1..8) of JPEG bytes (a scalar string tensor) in TensorFlow ops; 1 when absent
    or malformed. ``data.transform.jpeg_orientation`` (Pillow, faster in ``tf.data``) cannot be saved in a graph."""
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


def output_names(classes, class_names=None):
    """The class names of ``classes`` outputs: ``class_names``, ImageNet's for 1000, else ``"0"``, ``"1"``, ..."""
    from keras_xception.model.imagenet import NUM_CLASSES, class_index

    if class_names is not None:
        return [str(c) for c in class_names]
    return [name for _, name in class_index()] if classes == NUM_CLASSES else [str(i) for i in range(classes)]


def serving_function(model, transform, class_names=None, top_k=TOP_K):
    """A ``tf.function`` of a 1-D string tensor of encoded images -> ``{"classes", "scores", "status"}``
    (top-k names and scores, ``"ok"`` or :data:`UNREADABLE` per image: an unreadable image gets empty names
    and zero scores, the others their result) for a classifier; a model with other outputs gives ``"outputs"``."""
    import tensorflow as tf

    shape = tuple(transform.target_size) + (3,)
    classifier = len(model.output_shape) == 2 and (class_names is not None or model.layers[-1].name == "predictions")
    names = tf.constant(output_names(model.output_shape[-1], class_names)) if classifier else None

    def decode(i, contents):
        orientation = exif_orientation(contents) if transform.exif_orientation else None
        return i, decode_and_transform(contents, transform, orientation)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(images):
        n = tf.shape(images)[0]
        read = tf.data.Dataset.from_tensor_slices((tf.range(n), images)).map(decode).ignore_errors()
        padding = tf.data.Dataset.from_tensors((-1, tf.zeros(shape)))  # never empty, even if no image decodes
        index, batch = read.concatenate(padding).batch(tf.cast(n, tf.int64) + 1).get_single_element()
        index, batch = index[:-1], batch[:-1]
        row = tf.scatter_nd(index[:, None], tf.range(tf.size(index)) + 1, [n]) - 1  # -1: not decoded
        outputs = model(transform.preprocess(batch), training=False)
        take = lambda values, empty: tf.where(  # noqa: E731
            tf.reshape(row >= 0, [-1] + [1] * (len(values.shape) - 1)), tf.gather(values, tf.maximum(row, 0)), empty
        )
        status = tf.where(row >= 0, "ok", UNREADABLE)
        if not classifier:
            return {"outputs": take(outputs, 0.0), "status": status}
        scores, top = tf.math.top_k(outputs, min(top_k, int(model.output_shape[-1])))
        return {"classes": take(tf.gather(names, top), ""), "scores": take(scores, 0.0), "status": status}

    return serve_images
