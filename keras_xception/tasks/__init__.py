"""Tasks built on the model, weights and data: transfer learning, feature extraction, ImageNet
evaluation and Grad-CAM."""
