"""Open any CNN: a torchvision or timm model by name, a Python file with `build()`, or a
TorchScript / torch.export file. Each becomes a `ModelSpec`, usable wherever zoo models are.

A Python file is code the user chose to run, like any script they open; weight files are never
executed (see `weights`). Opening gives random weights unless the source carries its own.
"""

from __future__ import annotations

import importlib.util
import os
import types
from pathlib import Path

from explorer.core.model.zoo import ModelSpec
from explorer.core.text import first_line

#: The family of every opened model (the zoo's are named after their paper).
ANY_CNN = "any CNN"
#: In `ModelSpec.notes` of a model whose file carries its weights (TorchScript, torch.export).
OWN_WEIGHTS = "the file carries its own weights"
#: Suffixes `open_model` accepts, for a file dialog's filter.
MODEL_FILE_SUFFIXES = (".py", ".ts", ".pt", ".pt2", ".jit")


class OpenModelError(ValueError):
    """The reference names no model that can be opened; the message says why."""


def is_file_reference(ref: str | os.PathLike) -> bool:
    """A path rather than a torchvision:/timm: name."""
    return not str(ref).startswith(("torchvision:", "timm:"))


#: The prefixes of a model named by its library.
NAME_PREFIXES = ("torchvision:", "timm:")


def looks_like_path(ref: str) -> bool:
    """A reference written as a file (a folder separator or a model file's suffix), not a bare name."""
    return os.sep in ref or "/" in ref or ref.endswith(MODEL_FILE_SUFFIXES + (".pth",)) or ref.startswith("~")


def timm_model_names() -> list[str]:
    """'timm:NAME' for each architecture timm builds (empty when timm is not installed)."""
    try:
        import timm
    except ImportError:
        return []
    return [f"timm:{n}" for n in timm.list_models()]


def resolve_reference(ref: str | os.PathLike) -> str:
    """The reference File → Open model… takes for what a user typed: a zoo name or a file as they are,
    a bare name as 'torchvision:NAME' if torchvision builds it, else 'timm:NAME'.

    An unknown name raises OpenModelError suggesting close names (zoo, torchvision, timm) and the
    prefixes."""
    import difflib

    from explorer.core.model.zoo import model_names

    text = str(ref).strip()
    if text in model_names() or text.startswith(NAME_PREFIXES) or looks_like_path(text) or Path(text).exists():
        return text
    tv = torchvision_model_names()
    if f"torchvision:{text}" in tv:
        return f"torchvision:{text}"
    tm = timm_model_names()
    if f"timm:{text}" in tm:
        return f"timm:{text}"
    # Close names, compared without their prefix; shown as they would be typed.
    candidates = {n: n for n in model_names()}
    for full in tv + tm:
        candidates.setdefault(full.split(":", 1)[1], full)
    close = difflib.get_close_matches(text, list(candidates), n=4, cutoff=0.6)
    hint = f"did you mean {', '.join(candidates[c] for c in close)}? " if close else ""
    raise OpenModelError(f"unknown model {text!r}: {hint}(a zoo name, torchvision:NAME, timm:NAME, or a .py /"
                         " TorchScript / torch.export file; `inception-explorer models --all` lists the names)")


def torchvision_model_names() -> list[str]:
    """'torchvision:NAME' for each classification model torchvision builds (for completion)."""
    import torchvision.models as tvm

    return [f"torchvision:{n}" for n in tvm.list_models(module=tvm)]


def open_block_graph(ref: str | os.PathLike, *, native_size: tuple[int, int] | None = None):
    """Open `ref` and build its block graph: (spec, graph). Raises OpenModelError, LayerFailed.

    The graph is built on the meta device; a forward that needs real values (an `if` on a tensor,
    which also defeats tracing) is run on the CPU instead."""
    from explorer.core.graph.moduletree import NeedsRealTensors
    from explorer.core.shapes.trace import min_input_size

    spec = open_model(ref, native_size=native_size)
    try:
        graph = _block_graph(spec, spec.build(device="meta"))
    except NeedsRealTensors:
        graph = _block_graph(spec, spec.build())
    min_input_size(graph)  # cached on the graph: computed here, off the UI thread
    return spec, graph


def _block_graph(spec: ModelSpec, model):
    """The block graph of a built model; a traced forward whose shapes our rules cannot follow (a vision
    transformer's attention) gets the module tree instead, as an untraceable forward does."""
    from explorer.core.graph.blockgraph import block_graph_from_module
    from explorer.core.graph.moduletree import module_tree_graph
    from explorer.core.graph.program import LayerFailed, StepFailed

    try:
        return block_graph_from_module(model, spec.name, native_size=spec.native_size, paper=spec.paper)
    except StepFailed as e:  # a layer that cannot take the native size: the model's own limit
        raise LayerFailed(f"the model does not run at its native size {spec.native_size}: {e.reason}") from None
    except (LayerFailed, OpenModelError):
        raise
    except Exception as e:
        return module_tree_graph(model.eval(), spec.name, spec.native_size,
                                 f"the traced forward cannot be followed ({type(e).__name__}: {first_line(e)})")


def open_model(ref: str | os.PathLike, *, native_size: tuple[int, int] | None = None) -> ModelSpec:
    """'torchvision:resnet18', 'timm:inception_v4', or a path to .py / .pt / .pt2 / .ts."""
    text = str(ref)
    if text.startswith("torchvision:"):
        return _torchvision(text.split(":", 1)[1], native_size)
    if text.startswith("timm:"):
        return _timm(text.split(":", 1)[1], native_size)
    path = Path(text)
    if not path.is_file():
        raise OpenModelError(f"{text}: neither torchvision:NAME, timm:NAME nor an existing file")
    if path.suffix == ".py":
        return _python_file(path, native_size)
    if path.suffix not in (".pt2", ".pt", ".ts", ".pth", ".jit"):
        raise OpenModelError(f"{path.name}: open a .py file with build(), a TorchScript .pt/.ts or a torch.export .pt2")
    # An archive is opened by what it holds, not by its suffix (a .pt may be either kind).
    from explorer.core.model.archives import ArchiveError, read_archive

    try:
        kind = read_archive(path).kind
    except ArchiveError as e:
        raise OpenModelError(str(e)) from None
    except OSError as e:
        raise OpenModelError(f"{path.name}: cannot be read: {e.strerror or e}") from None
    if kind in ("export", "legacy_export") or (kind == "unknown" and path.suffix == ".pt2"):
        return _exported(path, native_size)
    return _torchscript(path, native_size)


def _torchvision(name: str, native_size) -> ModelSpec:
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise OpenModelError(f"torchvision has no classification model {name!r}")
    weights = tvm.get_model_weights(name).DEFAULT
    crop = int(weights.transforms().crop_size[0])
    return ModelSpec(
        name=f"torchvision:{name}", title=f"{name} (torchvision)", family=ANY_CNN,
        builder=("torchvision.models", "get_model"), builder_kwargs={"name": name, "weights": None},
        weights=(type(weights).__module__, type(weights).__name__, weights.name),
        native_size=native_size or (crop, crop), paper=_zoo_paper("torchvision.models", name),
    )


def _zoo_paper(module: str, name: str):
    """The paper reference of the zoo's model built by the same function (torchvision's googlenet
    opened by name keeps the paper's branch identities), else None."""
    from explorer.core.model.zoo import all_specs

    return next((s.paper for s in all_specs() if s.builder == (module, name)), None)


def _timm(name: str, native_size) -> ModelSpec:
    try:
        import timm
    except ImportError:
        raise OpenModelError("timm is not installed (pip install timm)") from None
    # An exact name: timm.list_models(name) would take * and ? as wildcards.
    if name not in timm.list_models():
        names = "`inception-explorer models --all` lists the names"
        if not name:
            raise OpenModelError(f"no model name after 'timm:' ({names})")
        if any(c in name for c in "*?[]"):
            raise OpenModelError(f"timm has no model {name!r}: give one exact name, not a pattern ({names})")
        raise OpenModelError(f"timm has no model {name!r} ({names})")
    cfg = timm.get_pretrained_cfg(name)
    size = tuple(cfg.input_size[-2:]) if cfg is not None else (224, 224)
    return ModelSpec(
        name=f"timm:{name}", title=f"{name} (timm)", family=ANY_CNN, builder=("timm", "create_model"),
        builder_kwargs={"model_name": name, "pretrained": False}, weights=None, native_size=native_size or size,
        **_timm_published(name, cfg),
    )


def _timm_published(name: str, cfg) -> dict:
    """The Hugging Face Hub repository of timm's default pretrained weights for `name` and the data
    config they were trained with (ImageNet-1k classifiers only: their class names are known)."""
    from explorer.core.model.zoo import HubWeights, Preprocessing

    if cfg is None or not getattr(cfg, "hf_hub_id", None) or cfg.num_classes != 1000:
        return {}
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HubWeights.__dataclass_fields__["filenames"].default
    crop = int(cfg.input_size[-1])
    interpolation = cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
    return {
        "hub_weights": HubWeights(cfg.hf_hub_id, files),
        "preprocessing": Preprocessing(crop=crop, resize=int(crop / (cfg.crop_pct or 0.875)),
                                       mean=tuple(cfg.mean), std=tuple(cfg.std), interpolation=interpolation,
                                       source=f"timm's {name} data config"),
    }


def _escaped(e: BaseException) -> str:
    """How the user's code left, in one line: 'called sys.exit(0)', 'raised KeyError: 'conv9''."""
    if isinstance(e, SystemExit):
        return f"called sys.exit({'' if e.code is None else repr(e.code)})"
    text = str(e).strip()
    return f"raised {type(e).__name__}" + (f": {text.splitlines()[0]}" if text else "")


def _python_file(path: Path, native_size) -> ModelSpec:
    spec = importlib.util.spec_from_file_location(f"explorer_user_model_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SystemExit too: sys.exit(0) in the file is a failure to open, not success
        raise OpenModelError(f"{path.name} fails to run: it {_escaped(e)}") from None
    build = getattr(module, "build", None)
    if not callable(build):
        raise OpenModelError(f"{path.name} defines no build() returning an nn.Module")

    def factory(**_):
        import torch.nn as nn

        try:
            model = build()
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # the user's code: say whose error it is
            raise OpenModelError(f"{path.name}: build() {_escaped(e)}") from None
        if not isinstance(model, nn.Module):
            raise OpenModelError(f"{path.name}: build() returned {type(model).__name__}, not an nn.Module")
        return model

    # Named with its suffix: a file called googlenet.py must not pass for the zoo's googlenet.
    return ModelSpec(name=path.name, title=f"{path.name} (build())", family=ANY_CNN, builder=("", ""),
                     builder_kwargs={}, weights=None, native_size=native_size or (224, 224), factory=factory)


def _first_sentence(error: BaseException) -> str:
    """torch's message without its advice paragraphs: the first sentence of the first line."""
    return first_line(error).split(". ", 1)[0].removesuffix(".")


def _exported(path: Path, native_size) -> ModelSpec:
    import torch

    from explorer.core.model.archives import ArchiveError, load_exported
    from explorer.core.graph.fxtrace import TRACE_LOCK

    try:
        with TRACE_LOCK:  # its first call imports torch._dynamo, which must not race a trace
            program = load_exported(path)
    except ArchiveError as e:
        raise OpenModelError(str(e)) from None
    except Exception as e:
        raise OpenModelError(f"{path.name}: a damaged torch.export file: {_first_sentence(e)}") from None
    example = next(iter(program.example_inputs[0]), None) if program.example_inputs else None
    if not isinstance(example, torch.Tensor):
        example = None
    size = tuple(example.shape[-2:]) if example is not None and example.dim() == 4 else (224, 224)

    def factory(**_):
        # Exported graphs are specialised to the example input's shape unless exported with
        # dynamic shapes; without the guard, other sizes run as far as the graph allows and fail
        # with the real layer's message.
        try:
            module = program.module(check_guards=False)
        except TypeError:  # older torch
            module = program.module()
        # Newer torch also checks the input's shape in a pre-hook (unless told not to validate).
        module.validate_inputs = False
        # An exported module refuses train()/eval() (its graph fixed the mode when it was
        # exported); the explorer only ever asks for the mode it already has.
        module.train = types.MethodType(lambda self, mode=True: self, module)
        module.eval = types.MethodType(lambda self: self, module)
        return module

    return ModelSpec(name=path.name, title=f"{path.name} (torch.export)", family=ANY_CNN, builder=("", ""),
                     builder_kwargs={}, weights=None, native_size=native_size or size, factory=factory,
                     notes=(OWN_WEIGHTS,))


def _torchscript(path: Path, native_size) -> ModelSpec:
    import warnings

    import torch

    from explorer.core.model.archives import ArchiveError, check_archive

    try:
        check_archive(path, "torchscript")
    except ArchiveError as e:
        raise OpenModelError(str(e)) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": not the user's concern
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise OpenModelError(f"{path.name}: a damaged TorchScript file: {_first_sentence(e)}") from None

    def factory(**_):
        return module

    return ModelSpec(name=path.name, title=f"{path.name} (TorchScript)", family=ANY_CNN, builder=("", ""),
                     builder_kwargs={}, weights=None, native_size=native_size or (224, 224), factory=factory,
                     notes=(OWN_WEIGHTS,))
