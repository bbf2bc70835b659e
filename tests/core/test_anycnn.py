"""Any CNN: torchvision / timm names, Python files, TorchScript and torch.export files, and models
whose forward defeats tracing."""

import textwrap

import pytest
import torch
import torch.nn as nn
import torchvision

from explorer.core.model.anycnn import OpenModelError, open_model
from explorer.core.graph.blockgraph import block_graph_from_module, build_block_graph
from explorer.core.shapes.trace import InputTooSmallError, min_input_size, trace_shapes
from netutil import UNTRACEABLE_SOURCE, untraceable_model


def _real_child_shapes(model, size):
    shapes = {}
    for q, m in model.named_modules():
        if q:
            m.register_forward_hook(lambda mod, i, o, q=q: shapes.__setitem__(q, tuple(o.shape[1:]))
                                    if isinstance(o, torch.Tensor) else None)
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, *size))
    return shapes


def test_resnet18_residual_blocks_and_shapes():
    spec = open_model("torchvision:resnet18")
    graph = build_block_graph(spec)
    assert graph.dataflow_reason is None
    blocks = graph.blocks()
    assert [b.name for b in blocks] == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert all(b.kind == "residual" and b.merge == "add" for b in blocks)
    first, down = graph.node("layer1.0"), graph.node("layer2.0")
    assert "identity (shortcut)" in [b.label for b in first.branches]
    # The downsampling shortcut is a strided 1×1 convolution, read from the real layer.
    shortcut = [b for b in down.branches if len(b.all_layers()) == 1][0]
    assert shortcut.all_layers()[0].kernel == (1, 1) and shortcut.all_layers()[0].stride == (2, 2)
    trace = trace_shapes(graph, (200, 256))
    real = _real_child_shapes(torchvision.models.resnet18(), (200, 256))
    for node in graph.nodes()[1:]:
        assert trace.nodes[node.name].output_shape == real[node.name], node.name
    # torchvision documents 1.814 GFLOPS (multiply-adds) at 224, and a minimum input of 1×1.
    assert round(trace_shapes(graph, 224).total_macs / 1e9, 3) == spec.weights_enum().meta["_ops"]
    assert min_input_size(graph) == spec.weights_enum().meta["min_size"]


def test_timm_model_by_name():
    pytest.importorskip("timm")
    graph = build_block_graph(open_model("timm:resnet18"))
    assert len(graph.blocks()) == 8 and graph.node("fc").kind == "linear"


def test_python_file_with_build(tmp_path):
    path = tmp_path / "mynet.py"
    path.write_text(textwrap.dedent("""
        import torch, torch.nn as nn
        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Conv2d(3, 4, 1)
                self.b = nn.Conv2d(3, 6, 5, padding=2)
            def forward(self, x):
                return torch.cat([self.a(x), self.b(x)], 1)
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.block = Two()
                self.head = nn.Conv2d(10, 2, 3)
            def forward(self, x):
                return self.head(self.block(x))
        def build():
            return Net()
    """))
    graph = build_block_graph(open_model(path, native_size=(32, 32)))
    block = graph.node("block")
    assert block.kind == "inception" and [b.label for b in block.branches] == ["#1×1", "#5×5"]
    assert trace_shapes(graph, (20, 30)).nodes["head"].output_shape == (2, 18, 28)
    (tmp_path / "nobuild.py").write_text("x = 1\n")
    with pytest.raises(OpenModelError, match="build"):
        open_model(tmp_path / "nobuild.py")


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_exported_and_torchscript_files(tmp_path):
    model = torchvision.models.resnet18().eval()
    ep = torch.export.export(model, (torch.randn(1, 3, 128, 128),))
    torch.export.save(ep, tmp_path / "r18.pt2")
    spec = open_model(tmp_path / "r18.pt2")
    assert spec.native_size == (128, 128)
    graph = build_block_graph(spec)
    assert trace_shapes(graph, 128).nodes[graph.nodes()[-1].name].output_shape == (1000,)
    torch.jit.save(torch.jit.script(model), tmp_path / "r18.ts")
    graph = build_block_graph(open_model(tmp_path / "r18.ts", native_size=(96, 96)))
    last = graph.nodes()[-1].name
    assert trace_shapes(graph, 96).nodes[last].output_shape == (1000,)
    # Its modules cannot be hooked: one node, which says why it has no branch detail.
    assert [n.name for n in graph.nodes()] == ["input", "model"] and "TorchScript" in graph.node("model").notes[0]
    with pytest.raises(OpenModelError):
        open_model(tmp_path / "missing.pt")


def test_a_model_that_defeats_tracing_still_gets_its_module_tree_with_shapes():
    graph = block_graph_from_module(untraceable_model(), "untraceable", native_size=(64, 64))
    assert graph.dataflow_reason and "cannot be traced" in graph.dataflow_reason
    assert [n.name for n in graph.nodes()] == ["input", "stem", "body", "pool", "fc"]
    trace = trace_shapes(graph, (40, 52))
    real = _real_child_shapes(untraceable_model(), (40, 52))
    for name in ("stem", "body", "pool", "fc"):
        assert trace.nodes[name].output_shape == real[name]
    assert trace.nodes["body"].macs == 16 * 8 * 9 * 17 * 23
    assert min_input_size(graph) == (7, 7)  # stem: (7 - 3) // 2 + 1 = 3 = the body's kernel
    with pytest.raises(InputTooSmallError, match="body"):
        trace_shapes(graph, (4, 4))


def test_unknown_names_are_refused():
    with pytest.raises(OpenModelError, match="no classification model"):
        open_model("torchvision:resnet9000")
    with pytest.raises(OpenModelError):
        open_model("nonsense")


def test_open_block_graph_runs_a_value_dependent_forward_for_real(tmp_path):
    """On the meta device an `if` on a tensor's value cannot run: the module tree is built on the CPU."""
    from explorer.core.model.anycnn import open_block_graph

    path = tmp_path / "untraceable.py"
    path.write_text(UNTRACEABLE_SOURCE)
    spec, graph = open_block_graph(path, native_size=(64, 64))
    assert spec.name == "untraceable.py" and graph.name == spec.name
    assert "cannot be traced" in graph.dataflow_reason
    assert [n.name for n in graph.nodes()] == ["input", "stem", "body", "pool", "fc"]
    real = _real_child_shapes(untraceable_model(), (40, 52))
    trace = trace_shapes(graph, (40, 52))
    assert all(trace.nodes[n].output_shape == real[n] for n in ("stem", "body", "pool", "fc"))


def test_build_errors_name_the_file(tmp_path):
    from explorer.core.model.anycnn import open_block_graph

    (tmp_path / "raises.py").write_text("def build():\n    raise KeyError('conv9')\n")
    with pytest.raises(OpenModelError, match=r"raises\.py: build\(\) raised KeyError: 'conv9'"):
        open_block_graph(tmp_path / "raises.py")
    (tmp_path / "notamodule.py").write_text("def build():\n    return 42\n")
    with pytest.raises(OpenModelError, match="returned int, not an nn.Module"):
        open_block_graph(tmp_path / "notamodule.py")
    # A file named like a zoo model is not taken for it.
    (tmp_path / "googlenet.py").write_text("import torch.nn as nn\ndef build():\n    return nn.Conv2d(3, 4, 3)\n")
    assert open_model(tmp_path / "googlenet.py").name == "googlenet.py"


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_loading_an_opened_model(tmp_path):
    """Preprocessing and names follow ImageNet's conventions where no weights enum says otherwise;
    a TorchScript file keeps its own weights."""
    from explorer.core.model.loading import load_model

    tv = load_model(open_model("torchvision:resnet18"), weights="none")
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    assert tv.categories == weights.meta["categories"] and tv.transforms().crop_size == weights.transforms().crop_size
    assert tv.weights.is_random

    path = tmp_path / "mynet.py"
    path.write_text("import torchvision\ndef build():\n    return torchvision.models.resnet18()\n")
    spec = open_model(path, native_size=(160, 160))
    imagenet = load_model(spec, weights="none", outputs=1000)
    assert imagenet.categories == weights.meta["categories"]
    t = imagenet.transforms()
    assert t.crop_size == [160] and t.resize_size == [round(160 / 0.875)]
    assert list(t.mean) == list(weights.transforms().mean) and list(t.std) == list(weights.transforms().std)
    assert load_model(spec, weights="none", outputs=10).categories == [f"class {i}" for i in range(10)]

    model = torchvision.models.resnet18().eval()
    torch.jit.save(torch.jit.script(model), tmp_path / "r18.ts")
    loaded = load_model(open_model(tmp_path / "r18.ts"), weights="none")
    assert loaded.weights.kind == "file" and not loaded.weights.is_random
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), model(x))


# -- torch.export files: the same block graph and numbers as the model opened directly -----------

EXPORT_SIZE = 96


def _export(model, path):
    ep = torch.export.export(model.eval(), (torch.randn(1, 3, EXPORT_SIZE, EXPORT_SIZE),))
    torch.export.save(ep, path)
    return path


@pytest.fixture(scope="module")
def resnet18_export(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    return model, _export(model, tmp_path_factory.mktemp("export") / "r18.pt2")


def _googlenet():
    return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()


def _assert_same_graph(exported, direct, sizes):
    """Same nodes (names, kinds, types, branches, layers), edges, and per-node shapes, params and MACs."""
    assert exported.dataflow_reason is None
    names = [n.name for n in direct.nodes()]
    assert [n.name for n in exported.nodes()] == names
    assert set(exported.graph.edges) == set(direct.graph.edges)
    for a, b in zip(exported.nodes(), direct.nodes()):
        for attr in ("kind", "stage", "module_type", "params", "merge", "out_channels", "branches", "layers",
                     "receptive_field", "effective_stride"):
            assert getattr(a, attr) == getattr(b, attr), (a.name, attr)
    assert exported.total_params == direct.total_params
    for size in sizes:
        te, td = trace_shapes(exported, size), trace_shapes(direct, size)
        for name in names:
            e, d = te.nodes[name], td.nodes[name]
            assert (e.output_shape, e.params, e.macs) == (d.output_shape, d.params, d.macs), (name, size)
        assert te.total_macs == td.total_macs > 0
    assert min_input_size(exported) == min_input_size(direct)


def test_exported_resnet18_has_the_residual_blocks_and_numbers_of_the_model(resnet18_export):
    from explorer.core.model.anycnn import open_block_graph

    _, path = resnet18_export
    _, exported = open_block_graph(path)
    _, direct = open_block_graph("torchvision:resnet18", native_size=(EXPORT_SIZE, EXPORT_SIZE))
    blocks = exported.blocks()
    assert [b.name for b in blocks] == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert all(b.kind == "residual" and b.merge == "add" and b.module_type == "BasicBlock" for b in blocks)
    assert exported.node("conv1").kind == "conv" and exported.node("fc").kind == "linear"
    # Shapes are computed, not read from the export: other sizes than the exported one work too.
    _assert_same_graph(exported, direct, [EXPORT_SIZE, (150, 112)])


def test_exported_googlenet_has_four_branch_inception_blocks(tmp_path):
    from explorer.core.model.anycnn import open_block_graph

    _, exported = open_block_graph(_export(_googlenet(), tmp_path / "googlenet.pt2"))
    with torch.device("meta"):
        model = _googlenet()
    direct = block_graph_from_module(model, "googlenet", native_size=(EXPORT_SIZE, EXPORT_SIZE))
    blocks = exported.blocks()
    assert [b.name for b in blocks] == ["inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
                                        "inception4d", "inception4e", "inception5a", "inception5b"]
    assert all(b.kind == "inception" and b.merge == "cat" and len(b.branches) == 4 for b in blocks)
    _assert_same_graph(exported, direct, [EXPORT_SIZE, 224])
    # Too small an input names the real layer, as for the model itself.
    with pytest.raises(InputTooSmallError, match="layer maxpool3 fails") as e:
        trace_shapes(exported, 8)
    with pytest.raises(InputTooSmallError) as d:
        trace_shapes(direct, 8)
    assert (e.value.layer, e.value.node, e.value.reason) == (d.value.layer, d.value.node, d.value.reason)


def test_activations_of_an_exported_file_equal_hooks_on_the_model(resnet18_export):
    """Probes go into the exported graph itself; its in-place add_ must not overwrite a captured branch."""
    from explorer.core.model.anycnn import open_block_graph
    from explorer.core.graph.capture import CaptureModel

    model, path = resnet18_export
    spec, graph = open_block_graph(path)
    seen = {}
    for q, m in model.named_modules():
        if q.count(".") == 1 or q.endswith("bn2") or q in ("conv1", "fc", "layer2.0.downsample"):
            m.register_forward_hook(lambda mod, i, o, q=q: seen.__setitem__(q, o.clone()))
    cm = CaptureModel(spec.build(), graph)
    for size in (EXPORT_SIZE, 128):  # the exported module runs at other sizes too
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            logits = model(x)
        cap = cm.capture(x)
        assert torch.equal(cap.logits, logits)
        for node in ["conv1", "fc"] + [b.name for b in graph.blocks()]:
            assert torch.equal(cap.outputs[node], seen[node]), node
        for block in graph.blocks():
            assert torch.equal(cap.branch(block.name, 0), seen[f"{block.name}.bn2"]), block.name
        assert torch.equal(cap.branch("layer2.0", 1), seen["layer2.0.downsample"])


def test_activations_of_a_directly_opened_resnet_are_not_overwritten_by_in_place_relus():
    """resnet18's bn1 and each block's bn2 feed ReLU(inplace=True) / `out += identity`: the capture must
    hold the values the layer produced, as a hook that copies them sees them."""
    import torchvision

    from explorer.core.graph.blockgraph import block_graph_from_module
    from explorer.core.graph.capture import CaptureModel

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    graph = block_graph_from_module(model, "resnet18", native_size=(96, 96))
    cm = CaptureModel(model, graph)
    seen = {}
    for q, m in model.named_modules():
        if q in ("bn1", "conv1") or q.endswith(".bn2"):
            m.register_forward_hook(lambda mod, i, o, q=q: seen.__setitem__(q, o.clone()))
    x = torch.randn(2, 3, 96, 96)
    cap = cm.capture(x)
    assert "bn1" in cap.outputs
    assert torch.equal(cap.outputs["bn1"], seen["bn1"])
    assert (cap.outputs["bn1"] < 0).any()  # before the ReLU: what an overwritten capture would lose
    for block in graph.blocks():
        assert torch.equal(cap.branch(block.name, 0), seen[f"{block.name}.bn2"]), block.name


def test_densenet_blocks_name_the_earlier_layers_they_read():
    """A dense block concatenates its input and every layer's output, and each layer reads all the
    earlier ones: one block with a branch per layer, each saying which branches it reads (the
    description grows linearly with the block, not quadratically)."""
    import torchvision

    from explorer.core.graph.blockgraph import block_graph_from_module
    from explorer.core.shapes.trace import trace_shapes

    model = torchvision.models.DenseNet(growth_rate=8, block_config=(3, 5), num_init_features=16,
                                        bn_size=2, num_classes=10).eval()
    graph = block_graph_from_module(model, "densenet", native_size=(64, 64))
    blocks = {b.name: b for b in graph.blocks()}
    assert set(blocks) == {"features.denseblock1", "features.denseblock2"}
    for name, layers in (("features.denseblock1", 3), ("features.denseblock2", 5)):
        block = blocks[name]
        assert block.merge == "cat" and len(block.branches) == layers + 1
        assert block.branches[0].label == "identity (shortcut)"
        assert block.branches[1].reads == ()  # the first layer reads the block's input alone
        for k, br in enumerate(block.branches[2:], start=3):
            assert br.reads == tuple(range(1, k))
            assert br.label.startswith(f"(branches 1–{k - 1} concatenated) → ")
            assert [l.type for l in br.all_layers()].count("conv") == 2  # its own 1×1 and 3×3 only
            assert br.out_channels == 8
    real = {}
    for q in blocks:
        model.get_submodule(q).register_forward_hook(lambda m, i, o, q=q: real.__setitem__(q, tuple(o.shape[1:])))
    model(torch.randn(1, 3, 64, 64))
    trace = trace_shapes(graph, (64, 64))
    for q in blocks:
        assert trace.nodes[q].output_shape == real[q]
        assert sum(b.out_channels for b in blocks[q].branches) == real[q][0]


def test_torchvision_googlenet_opened_by_name_keeps_the_papers_branch_names(graph_of):
    """The zoo's paper reference reaches the same torchvision builder opened by name: the same labels."""
    from explorer.core.model.anycnn import open_block_graph

    _, opened = open_block_graph("torchvision:googlenet")
    zoo = graph_of("googlenet")
    assert [[b.label for b in n.branches] for n in opened.blocks()] == [
        [b.label for b in n.branches] for n in zoo.blocks()]
    assert opened.node("inception3a").branches[2].label == "#5×5 reduce → #5×5 (3×3 kernel)"
