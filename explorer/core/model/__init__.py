"""Models: the zoo, references to any CNN (torchvision:, timm:, .py, TorchScript, torch.export),
model archives, weights, loading, the sample photos, and the block graphs of opened models."""
