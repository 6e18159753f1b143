"""The data layer: the input transform, image files and folders, the one ``tf.data`` pipeline,
and the ImageNet validation sources. TensorFlow is imported only when a pipeline is built."""

from keras_xception.data.dataset import decode_records, image_dataset, map_batches
from keras_xception.data.files import Records, class_folder_split, list_images
from keras_xception.data.imagenet import folder_records, imagenet_wnids, tfds_records, tfrecord_records
from keras_xception.data.transform import Transform, decode_and_transform, explain, load_image, resolve_transform

__all__ = [
    "Transform",
    "resolve_transform",
    "decode_and_transform",
    "load_image",
    "Records",
    "decode_records",
    "explain",
    "image_dataset",
    "map_batches",
    "list_images",
    "class_folder_split",
    "folder_records",
    "tfds_records",
    "tfrecord_records",
    "imagenet_wnids",
]
