"""The model layer: the architecture as data, graph building, introspection, preprocessing,
the ImageNet class index and cost analysis. Keras only (any backend); no weights, no data."""
