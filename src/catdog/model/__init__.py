"""Everything needed to turn image bytes into a prediction: decode, preprocess, ONNX engine."""
