"""Deployment: BatchNormalization folding, export to SavedModel/ONNX/OpenVINO with a parity
check, and :class:`~keras_xception.deploy.predictor.Predictor` for fast CPU inference."""
