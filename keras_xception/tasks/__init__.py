"""Tasks built on the model, weights and data: training a classifier in one call, transfer learning,
feature extraction, ImageNet evaluation and Grad-CAM."""
