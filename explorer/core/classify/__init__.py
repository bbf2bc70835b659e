"""Classification: decoding images, the classifier and its devices, results."""
