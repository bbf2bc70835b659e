"""Network definitions (nn.Module only) of architectures torchvision lacks.

Installed as the `inception_models` package; it imports torch and nothing of the application.

- `googlenet_paper`: GoogLeNet as in Szegedy et al. 2014 (5×5 branches, LRN, no batch norm).
- `bn_inception`: BN-Inception / Inception v2 (Ioffe & Szegedy 2015).
- `inception_v4`: Inception-v4 (Szegedy et al. 2016); timm's weight names.
- `inception_resnet`: Inception-ResNet-v1 and -v2 (Szegedy et al. 2016); v2 with timm's weight names.
- `shapes_inception`: a small Inception v1 for the demo task's 64×64 drawn shapes (six classes).
- `layers`: the conv → batch norm → ReLU unit the batch-normalised networks share.
"""
