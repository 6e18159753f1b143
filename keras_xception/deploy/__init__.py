"""Deployment: :class:`~keras_xception.deploy.predictor.Predictor` (a model on a CPU runtime, fp32/bf16/int8),
export to SavedModel/ONNX/OpenVINO with a parity check, and int8/bf16 measured against fp32 (``quantize``)."""
