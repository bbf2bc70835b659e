"""Network definitions (nn.Module only) of architectures torchvision lacks.

Installed as the `inception_models` package; it imports torch and nothing of the application.
"""
