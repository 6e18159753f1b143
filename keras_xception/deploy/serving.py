"""A SavedModel's ``serving_default`` (:func:`serving_function`): encoded images in, top-k class names and
scores out, the model's transform in the graph. TensorFlow ops only (no Python call is saved), so a client
needs TensorFlow or TF Serving alone; ``serve`` keeps the preprocessed-tensor input (docs/deployment.md)."""

from __future__ import annotations

from keras_xception.data.transform import decode_and_transform

__all__ = ["serving_function", "output_names", "TOP_K", "UNREADABLE"]

TOP_K = 5
UNREADABLE = "error: not a decodable image (JPEG, PNG, GIF or BMP), or truncated"


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
        return i, decode_and_transform(contents, transform)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")], autograph=False)  # plain ops
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
