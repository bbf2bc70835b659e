"""The model zoo: which architectures the explorer knows and how to build each one.

A `ModelSpec` knows its builder, native input size, its torchvision weights enum (which carries the
preprocessing and the category names, offline) and, where it has one, the paper it reproduces.
torch and torchvision are imported only when a model is built.
"""

from __future__ import annotations

import importlib
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorer.core.demo.task import IMAGE_SIZE, SHAPE_CLASSES, SHIPPED_WEIGHTS
from explorer.core.demo.task import MEAN as SHAPES_MEAN
from explorer.core.demo.task import STD as SHAPES_STD

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for a model that has no torchvision weights enum: the convention of the
    weight files it loads (timm's data config for v4 / Inception-ResNet-v2), ImageNet-1k classes."""

    crop: int
    resize: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"  # a torchvision InterpolationMode value
    #: Whose convention this is, for the details panel.
    source: str = "torchvision's ImageNet evaluation transform"

    def transform(self):
        """torchvision's own ImageClassification preset with these numbers."""
        import torchvision.models  # noqa: F401 - the package first (brings _presets; thread-safe import)
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms._presets import ImageClassification

        return ImageClassification(crop_size=self.crop, resize_size=self.resize, mean=self.mean, std=self.std,
                                   interpolation=InterpolationMode(self.interpolation))


#: torchvision's ImageNet evaluation transform at 224 (resize 256), as GoogLeNet's weights use.
IMAGENET_224 = Preprocessing(crop=224, resize=256)


def imagenet_preprocessing(size: int) -> Preprocessing:
    """torchvision's ImageNet evaluation convention for a `size`×`size` input (crop 87.5 %)."""
    return Preprocessing(crop=size, resize=round(size / 0.875))


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, as torchvision's weights carry them (offline)."""
    # Through the package: importing the submodule directly while another thread imports the
    # package can deadlock on the two module locks.
    import torchvision.models

    return list(torchvision.models._meta._IMAGENET_CATEGORIES)


@dataclass(frozen=True)
class PaperReference:
    """What the architecture's paper says, for flagging where a model departs from it."""

    citation: str
    #: Characteristic kernel of each branch of an Inception block, in concatenation order
    #: (None for the pool branch), keyed by block module type name. It is the paper's identity of the
    #: branch: where the model's real kernel differs, the branch is labelled with the paper's column and
    #: the real kernel ("#5×5 reduce → #5×5 (3×3 kernel)") and carries a note.
    branch_kernels: dict[str, tuple[tuple[int, int] | None, ...]] = field(default_factory=dict)
    #: Patch size/stride of single layers as the paper gives them ("3×3/2"), keyed by node name.
    layer_patches: dict[str, str] = field(default_factory=dict)
    #: Dropout rate before the classifier, as the paper gives it.
    dropout: float | None = None
    #: The table's output size, params and ops as printed ("112×112×64", "2.7K", "34M"), keyed by the
    #: node of the row (a folded row's last node): compared with the model's layers where the row's
    #: output has the printed depth (ops: the printed size), which marks where the paper's sums are off.
    printed_numbers: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    #: The printed params count conv and linear weights (no biases) in K of this many; ops are
    #: multiply-adds in M = 10⁶.
    params_k: int = 1000


@dataclass(frozen=True)
class HubWeights:
    """Published weights on the Hugging Face Hub: a repository and the files that may hold its state dict,
    tried in order (timm's convention: the safetensors file first, then the torch pickle)."""

    repo_id: str
    filenames: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    #: A branch, tag or commit; None: the repository's main branch.
    revision: str | None = None

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"


@dataclass(frozen=True)
class ShippedWeights:
    """Weights that ship inside the package (the demo model's): the file, and its sha256, checked before the
    file is read, so that a damaged or replaced file is told apart from the one this version ships."""

    path: Path
    sha256: str
    #: How they were made, for the user ("trained on drawn shapes").
    description: str = ""


#: Where weights are missing, what the user reads (with the file dialog to use instead).
OPEN_WEIGHTS_HINT = "load a state dict with File → Open weights file… (command line: --weights FILE)"


_SEEDED_BUILD = threading.Lock()


def random_seed(name: str) -> int:
    """The seed of a model's random weights: fixed per model name, so that every session and process
    builds the same random network and predicts the same for the same image."""
    return zlib.crc32(name.encode("utf-8"))


@dataclass(frozen=True)
class ModelSpec:
    """One architecture of the zoo."""

    name: str
    title: str
    family: str
    #: Module path and function that build the network with the structure its weights expect.
    builder: tuple[str, str]
    builder_kwargs: dict[str, Any]
    #: (module, enum class, member) of the torchvision weights, or None.
    weights: tuple[str, str, str] | None
    native_size: tuple[int, int]
    paper: PaperReference | None = None
    notes: tuple[str, ...] = ()
    #: Builds the network instead of `builder` (models opened from a file).
    factory: Any = None
    #: The preprocessing where `weights` is None (ImageNet-1k classes implied unless `class_names` says otherwise);
    #: None: none known.
    preprocessing: Preprocessing | None = None
    #: Published weights on the Hugging Face Hub where torchvision has none (`weights` is None).
    hub_weights: HubWeights | None = None
    #: Weights inside the package, used where `weights` and `hub_weights` are None (no download needed).
    shipped_weights: ShippedWeights | None = None
    #: Why there are no published weights, where neither `weights`, `hub_weights` nor `shipped_weights` is given.
    no_weights: str | None = None
    #: The names of the classes, for a model that is not an ImageNet-1k classifier (the demo model's shapes).
    class_names: tuple[str, ...] | None = None

    def build(self, device: str | None = None):
        """Build the network (seeded random weights, eval mode); device='meta' allocates nothing.

        The random state is the same in every process (`random_seed`), and the caller's global RNG
        is left as it was."""
        import torch

        fn = self.factory or getattr(importlib.import_module(self.builder[0]), self.builder[1])
        if device == "meta":  # no values, nothing drawn from the random stream
            with torch.device(device):
                return fn(**self.builder_kwargs).eval()
        # The initialisers draw from torch's one global stream: two builds on two threads at once would
        # interleave their draws, so seeded builds take turns.
        with _SEEDED_BUILD, torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_seed(self.name))
            if device is None:
                model = fn(**self.builder_kwargs)
            else:
                with torch.device(device):
                    model = fn(**self.builder_kwargs)
        return model.eval()

    def weights_enum(self):
        """The torchvision weights enum member (offline: it is plain metadata), or None."""
        if self.weights is None:
            return None
        module, cls, member = self.weights
        return getattr(getattr(importlib.import_module(module), cls), member)

    def categories(self) -> list[str]:
        if self.class_names is not None:
            return list(self.class_names)
        w = self.weights_enum()
        if w is not None:
            return list(w.meta["categories"])
        if self.preprocessing is not None:  # an ImageNet-1k model
            return imagenet_categories()
        return [f"class {i}" for i in range(1000)]

    def transforms(self):
        """The preprocessing the weights were trained with (torchvision's own transform)."""
        w = self.weights_enum()
        if w is not None:
            return w.transforms()
        if self.preprocessing is not None:
            return self.preprocessing.transform()
        raise ValueError(f"{self.name} has no weights, hence no preprocessing of its own")

    @property
    def weights_url(self) -> str | None:
        w = self.weights_enum()
        return None if w is None else w.url


_GOOGLENET_PAPER = PaperReference(
    citation="Szegedy et al., Going Deeper with Convolutions (2014), Table 1",
    branch_kernels={"Inception": ((1, 1), (3, 3), (5, 5), None)},
    layer_patches={"maxpool4": "3×3/2"},
    dropout=0.4,
    # Table 1's params and ops columns. Its rows that add up (conv2+conv3: 112K = 114,688 weights / 1024,
    # linear: 1000K = 1,024,000 / 1024) count weights only with K = 1024; ops are in M = 10⁶.
    printed_numbers={
        "conv1": ("112×112×64", "2.7K", "34M"), "conv3": ("56×56×192", "112K", "360M"),
        "inception3a": ("28×28×256", "159K", "128M"), "inception3b": ("28×28×480", "380K", "304M"),
        "inception4a": ("14×14×512", "364K", "73M"), "inception4b": ("14×14×512", "437K", "88M"),
        "inception4c": ("14×14×512", "463K", "100M"), "inception4d": ("14×14×528", "580K", "119M"),
        "inception4e": ("14×14×832", "840K", "170M"), "inception5a": ("7×7×832", "1072K", "54M"),
        "inception5b": ("7×7×1024", "1388K", "71M"), "fc": ("1×1×1000", "1000K", "1M"),
    },
    params_k=1024,
)

_INCEPTION_V3_PAPER = PaperReference(
    citation="Szegedy et al., Rethinking the Inception Architecture for Computer Vision (2015), Table 1",
)

_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"model {spec.name!r} is registered already")
    _REGISTRY[spec.name] = spec
    return spec

# torchvision builds pretrained GoogLeNet / Inception v3 with transform_input=True and the
# auxiliary heads present (their weights are in the checkpoint); we build that same structure so
# that random and loaded weights share one graph. init_weights=False skips the slow truncated-normal
# initialisation and the FutureWarning about it.


register(
    ModelSpec(
        name="googlenet",
        title="GoogLeNet (Inception v1, torchvision)",
        family="Inception v1",
        builder=("torchvision.models", "googlenet"),
        builder_kwargs=dict(weights=None, aux_logits=True, transform_input=True, init_weights=False),
        weights=("torchvision.models", "GoogLeNet_Weights", "IMAGENET1K_V1"),
        native_size=(224, 224),
        paper=_GOOGLENET_PAPER,
        notes=("torchvision's GoogLeNet uses batch norm and a 3×3 kernel in the branch the paper gives 5×5",),
    )
)


register(
    ModelSpec(
        name="inception_v3",
        title="Inception v3 (torchvision)",
        family="Inception v3",
        builder=("torchvision.models", "inception_v3"),
        builder_kwargs=dict(weights=None, aux_logits=True, transform_input=True, init_weights=False),
        weights=("torchvision.models", "Inception_V3_Weights", "IMAGENET1K_V1"),
        native_size=(299, 299),
        paper=_INCEPTION_V3_PAPER,
    )
)

# -- the Inception family of the papers (networks torchvision lacks, defined in models/) ----------


register(
    ModelSpec(
        name="googlenet_paper",
        title="GoogLeNet (Inception v1, as in the paper)",
        family="Inception v1",
        builder=("inception_models.googlenet_paper", "googlenet_paper"),
        builder_kwargs=dict(aux_logits=True),
        weights=None,
        native_size=(224, 224),
        preprocessing=IMAGENET_224,
        paper=_GOOGLENET_PAPER,
        no_weights=("neither torchvision nor timm publishes weights for GoogLeNet as in the paper (torchvision's"
                    " googlenet is a batch-norm variant whose weights do not fit; the Caffe model zoo's BVLC"
                    " GoogLeNet would have to be converted to these parameter names)"),
        notes=("5×5 branches, local response normalisation and no batch norm, as in the paper's Table 1 and"
               " Figure 3; no pretrained weights",),
    )
)

#: timm's data configs of its inception_v4 / inception_resnet_v2 weights (resize = floor(299 / crop_pct)).
_TIMM_INCEPTION_V4 = Preprocessing(crop=299, resize=341, mean=INCEPTION_MEAN, std=INCEPTION_STD,
                                   interpolation="bicubic", source="timm's inception_v4 data config")
_TIMM_INCEPTION_RESNET_V2 = Preprocessing(crop=299, resize=333, mean=INCEPTION_MEAN, std=INCEPTION_STD,
                                          interpolation="bicubic", source="timm's inception_resnet_v2 data config")
#: The Hugging Face Hub repositories of timm's pretrained configs for these models (`hf_hub_id` of
#: `inception_v4.tf_in1k` and `inception_resnet_v2.tf_in1k` in timm 1.0's models/inception_v4.py and
#: models/inception_resnet_v2.py; the TensorFlow-Slim release ported to PyTorch), copied here as data
#: so that timm is not needed at run time.
_TIMM_HUB_INCEPTION_V4 = HubWeights("timm/inception_v4.tf_in1k")
_TIMM_HUB_INCEPTION_RESNET_V2 = HubWeights("timm/inception_resnet_v2.tf_in1k")
#: No published weights: the Inception papers' convention (299 px, inputs scaled to [-1, 1]).
_INCEPTION_299 = Preprocessing(crop=299, resize=341, mean=INCEPTION_MEAN, std=INCEPTION_STD,
                               interpolation="bicubic", source="the Inception convention (no published weights)")

_INCEPTION_V4_CITATION = ("Szegedy et al., Inception-v4, Inception-ResNet and the Impact of Residual Connections"
                          " on Learning (2016)")


register(
    ModelSpec(
        name="bn_inception",
        title="BN-Inception (Inception v2, Ioffe & Szegedy 2015)",
        family="Inception v2",
        builder=("inception_models.bn_inception", "bn_inception"),
        builder_kwargs={},
        weights=None,
        native_size=(224, 224),
        preprocessing=IMAGENET_224,
        paper=PaperReference(
            citation="Ioffe & Szegedy, Batch Normalization (2015), Figure 5",
            branch_kernels={
                "InceptionModule": ((1, 1), (3, 3), (3, 3), None),
                "ReductionModule": ((3, 3), (3, 3), None),
            },
        ),
        no_weights=("neither torchvision nor timm publishes BN-Inception weights (ports of the Caffe model"
                    " use other parameter names and would have to be converted)"),
        notes=("each 5×5 of GoogLeNet replaced by two stacked 3×3; no pretrained weights",),
    )
)


register(
    ModelSpec(
        name="inception_v4",
        title="Inception-v4 (Szegedy et al. 2016)",
        family="Inception v4",
        builder=("inception_models.inception_v4", "inception_v4"),
        builder_kwargs={},
        weights=None,
        native_size=(299, 299),
        preprocessing=_TIMM_INCEPTION_V4,
        hub_weights=_TIMM_HUB_INCEPTION_V4,
        paper=PaperReference(citation=_INCEPTION_V4_CITATION + ", Figures 3–9"),
        notes=("parameter names follow timm's inception_v4: its weight files load",),
    )
)


register(
    ModelSpec(
        name="inception_resnet_v1",
        title="Inception-ResNet-v1 (Szegedy et al. 2016)",
        family="Inception-ResNet",
        builder=("inception_models.inception_resnet", "inception_resnet_v1"),
        builder_kwargs={},
        weights=None,
        native_size=(299, 299),
        preprocessing=_INCEPTION_299,
        no_weights=("no weights were ever published for Inception-ResNet-v1 (the paper's authors released"
                    " v4 and Inception-ResNet-v2 only; neither torchvision nor timm has v1)"),
        paper=PaperReference(citation=_INCEPTION_V4_CITATION + ", Figures 7 and 10–15"),
        notes=("no pretrained weights",),
    )
)


register(
    ModelSpec(
        name="inception_resnet_v2",
        title="Inception-ResNet-v2 (Szegedy et al. 2016)",
        family="Inception-ResNet",
        builder=("inception_models.inception_resnet", "inception_resnet_v2"),
        builder_kwargs={},
        weights=None,
        native_size=(299, 299),
        preprocessing=_TIMM_INCEPTION_RESNET_V2,
        hub_weights=_TIMM_HUB_INCEPTION_RESNET_V2,
        paper=PaperReference(citation=_INCEPTION_V4_CITATION + ", Figures 3, 7 and 15–19"),
        notes=("parameter names follow timm's inception_resnet_v2: its weight files load",
               "as released (and in timm): a Mixed_5b stem, 320/1088/2080 channels and 10/20/10 residual"
               " blocks where the paper's figures have 384/1154/2048 and 5/10/5"),
    )
)

# -- the demo model: trained on drawn shapes (explorer/core/demo), its weights shipped: it works offline -----


register(
    ModelSpec(
        name="shapes_inception",
        title="Shapes Inception (demo: an Inception v1 for drawn shapes)",
        family="Inception v1",
        builder=("inception_models.shapes_inception", "shapes_inception"),
        builder_kwargs={},
        weights=None,
        native_size=(IMAGE_SIZE, IMAGE_SIZE),
        preprocessing=Preprocessing(crop=IMAGE_SIZE, resize=IMAGE_SIZE, mean=SHAPES_MEAN, std=SHAPES_STD,
                                    source="the demo training's normalisation (pixels scaled to [-1, 1])"),
        class_names=SHAPE_CLASSES,
        shipped_weights=ShippedWeights(
            SHIPPED_WEIGHTS, sha256="b842ad3878acd413ba17d09f9b4126410ee42146ea6d95d999eb73f9ce812481",
            description="trained on drawn shapes; `inception-explorer train-demo` makes them again"),
        notes=("GoogLeNet's design at the scale of 64×64 drawn shapes (six classes): a stem, five Inception"
               " modules of four branches, batch norm",),
    )
)


def model_names() -> list[str]:
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None


def all_specs() -> list[ModelSpec]:
    return list(_REGISTRY.values())


