"""The paper table: every cell comes from the block graph's layers and the shape trace."""

from __future__ import annotations

import csv
import io
import re
from types import SimpleNamespace

import pytest

from explorer.core.shapes.papertable import (
    GOOGLENET,
    INCEPTION_V3,
    latex_escape,
    paper_table,
)
from explorer.core.shapes.trace import trace_shapes
from explorer.core.text import fmt_hwc, fmt_paper_ops, fmt_paper_params
from explorer.core.model.zoo import get_spec

KERNEL_KEYS = {(1, 1): (None, "n1x1"), (3, 3): ("n3x3red", "n3x3"), (5, 5): ("n5x5red", "n5x5")}


@pytest.fixture(scope="module")
def googlenet(graph_of):
    g = graph_of("googlenet")
    return g, trace_shapes(g, (224, 224))


@pytest.fixture(scope="module")
def v3(graph_of):
    g = graph_of("inception_v3")
    return g, trace_shapes(g, (299, 299))


def inference_blocks(graph):
    return [n for n in graph.nodes() if n.kind == "inception" and not n.training_only]


def expected_googlenet_cells(node, paper_kernels):
    """The six branch columns of a GoogLeNet block, read from its LayerSpecs."""
    out = {}
    for b, want in zip(node.branches, paper_kernels):
        convs = [l for l in b.all_layers() if l.type == "conv"]
        if want is None:
            assert b.all_layers()[0].type.endswith("pool")
            out["pool_proj"] = convs[-1].out_channels
            continue
        red, key = KERNEL_KEYS[want]
        out[key] = convs[-1].out_channels
        if red:
            assert convs[0].kernel == (1, 1)
            out[red] = convs[0].out_channels
    return out


# -- GoogLeNet ------------------------------------------------------------------------------------


def test_googlenet_gets_the_googlenet_layout(googlenet):
    t = paper_table(*googlenet)
    assert t.layout == GOOGLENET
    assert [c.title for c in t.columns] == ["type", "patch size/stride", "output size", "depth", "#1×1",
                                            "#3×3 reduce", "#3×3", "#5×5 reduce", "#5×5", "pool proj",
                                            "params", "ops"]


def test_branch_columns_equal_the_real_layers_of_every_block(googlenet):
    graph, trace = googlenet
    t = paper_table(graph, trace)
    kernels = get_spec("googlenet").paper.branch_kernels["Inception"]
    blocks = inference_blocks(graph)
    assert len(blocks) == 9
    for node in blocks:
        expected = expected_googlenet_cells(node, kernels)
        assert len(expected) == 6
        row = t.row(node.name)
        assert {k: row[k].value for k in expected} == expected, node.name
        assert row["type"].text == f"inception ({node.name.removeprefix('inception')})"


def test_inception3a_cells_match_torchvision_modules(googlenet):
    graph, trace = googlenet
    m = graph.model.inception3a  # torchvision's own module (meta device): an independent source
    row = paper_table(graph, trace).row("inception3a")
    assert row["n1x1"].value == m.branch1.conv.out_channels
    assert row["n3x3red"].value == m.branch2[0].conv.out_channels
    assert row["n3x3"].value == m.branch2[1].conv.out_channels
    assert row["n5x5red"].value == m.branch3[0].conv.out_channels
    assert row["n5x5"].value == m.branch3[1].conv.out_channels
    assert row["pool_proj"].value == m.branch4[1].conv.out_channels
    assert row["n1x1"].text == str(m.branch1.conv.out_channels)


def test_torchvision_3x3_in_the_5x5_branch_is_flagged(googlenet):
    graph, trace = googlenet
    t = paper_table(graph, trace)
    for node in inference_blocks(graph):
        real = node.branches[2].all_layers()[-1].kernel
        assert real == (3, 3)  # what the flag is about: torchvision's quirk
        row = t.row(node.name)
        cell = row["n5x5"]
        assert cell.deviates and "3×3" in cell.note and "5×5" in cell.note
        assert cell.text == f"{cell.value} (3×3)"
        assert row["n5x5red"].deviates
        for key in ("n1x1", "n3x3red", "n3x3", "pool_proj", "output", "params"):
            assert not row[key].deviates, (node.name, key)
    flagged = {(r.label, c.key) for r, c, _ in t.deviations()}
    in_blocks = {(label, k) for label, k in flagged if k in ("n5x5red", "n5x5")}
    assert len(in_blocks) == 2 * 9
    # torchvision's other departures from Table 1, recorded in the zoo's paper reference: a 2×2/2
    # pool where the paper has 3×3/2, and 20 % dropout where it has 40 %. Besides, conv1 has the
    # paper's layer, whose printed params and ops do not add up (the blocks are not compared: their
    # layers are not the paper's).
    assert graph.model.maxpool4.kernel_size == 2 and graph.model.dropout.p == 0.2
    assert flagged - in_blocks == {("maxpool4", "patch"), ("dropout", "type"), ("conv1", "params"), ("conv1", "ops")}
    assert any("Not checked" in n and "inception3a" in n for n in t.notes)
    assert any("5×5" in n for n in t.notes)


def test_rows_follow_the_inference_path(googlenet):
    graph, trace = googlenet
    t = paper_table(graph, trace)
    shown = [name for r in t.rows for name in r.nodes]
    expected = [n.name for n in graph.nodes() if n.kind != "input" and not n.training_only]
    assert shown == expected
    assert not any(n.training_only for n in graph.nodes() if n.name in shown)
    # The paper's third row: conv2's 1×1 shown as the "#3×3 reduce" of conv3.
    row = t.row("conv3")
    assert row.nodes == ("conv2", "conv3")
    assert row["n3x3red"].value == graph.node("conv2").layers[0].out_channels
    assert row["n3x3"].value == graph.node("conv3").layers[0].out_channels
    assert row["patch"].text == "3×3/1"
    assert row["depth"].value == 2
    assert t.row("conv1")["patch"].text == "{}×{}/{}".format(*graph.node("conv1").layers[0].kernel,
                                                             graph.node("conv1").layers[0].stride[0])


def test_without_folding_every_node_has_its_row(googlenet):
    graph, trace = googlenet
    t = paper_table(graph, trace, fold_reductions=False)
    assert t.row("conv2").nodes == ("conv2",)
    assert t.row("conv2")["n1x1"].value == graph.node("conv2").layers[0].out_channels
    assert t.row("conv3")["n3x3"].value == graph.node("conv3").layers[0].out_channels
    assert len(t.rows) == len(paper_table(graph, trace).rows) + 1


def test_output_size_follows_the_trace(googlenet):
    graph, _ = googlenet
    t224 = paper_table(graph, trace_shapes(graph, (224, 224)))
    trace320 = trace_shapes(graph, (320, 256))
    t320 = paper_table(graph, trace320)
    for t, trace in ((t224, trace_shapes(graph, (224, 224))), (t320, trace320)):
        for r in t.rows:
            shape = trace.nodes[r.nodes[-1]].output_shape
            assert r["output"].value == shape
            if len(shape) == 3:
                assert r["output"].text == f"{shape[1]}×{shape[2]}×{shape[0]}"
    assert t224.cell("inception3a", "output").text != t320.cell("inception3a", "output").text
    assert t224.cell("inception3a", "n3x3").value == t320.cell("inception3a", "n3x3").value
    # The global average pool covers its whole input: "7×7/1" at 224, wider at 320×256.
    for t, trace in ((t224, trace_shapes(graph, (224, 224))), (t320, trace320)):
        _, h, w = trace.nodes["inception5b"].output_shape
        assert t.cell("avgpool", "patch").text == f"{h}×{w}/1"


def test_ops_and_params_add_up_to_the_trace(googlenet):
    graph, trace = googlenet
    t = paper_table(graph, trace)
    assert t.total_ops == trace.total_macs
    assert t.total_params == trace.total_params_inference
    for r in t.rows:
        assert r["ops"].value == sum(trace.nodes[n].macs for n in r.nodes)
        if r["ops"].value:
            shown = float(r["ops"].text.rstrip("MK")) * (1e6 if r["ops"].text.endswith("M") else 1e3)
            assert shown == pytest.approx(r["ops"].value, rel=0.05)
    batch2 = trace_shapes(graph, (224, 224), batch=2)
    assert paper_table(graph, batch2).total_ops == batch2.total_macs // 2  # per image, as the paper


def test_depth_counts_weighted_layers_on_the_longest_path(googlenet):
    graph, trace = googlenet
    t = paper_table(graph, trace)
    for node in inference_blocks(graph):
        assert t.row(node.name)["depth"].value == max(
            sum(1 for l in b.all_layers() if l.type == "conv") for b in node.branches)
    assert {r["depth"].value for r in t.rows if r.kind in ("pool", "dropout")} == {0}
    assert t.row("fc")["depth"].value == 1
    assert sum(r["depth"].value for r in t.rows) == 22  # the paper: "22 layers deep" counting layers with parameters


def test_dropout_rate_is_read_from_the_module(googlenet):
    graph, trace = googlenet
    cell = paper_table(graph, trace).cell("dropout", "type")
    assert cell.value == graph.model.dropout.p
    assert cell.text == f"dropout ({graph.model.dropout.p * 100:.0f} %)"


def test_optional_paper_facts_flag_pool_and_dropout(googlenet):
    graph, trace = googlenet
    real = get_spec("googlenet").paper
    maxpool1 = paper_table(graph, trace).cell("maxpool1", "patch").text  # agreeing with the model: no flag
    paper = SimpleNamespace(citation=real.citation, branch_kernels=real.branch_kernels,
                            layer_patches={"maxpool4": "9×9/9", "maxpool1": maxpool1}, dropout=0.123)
    t = paper_table(graph, trace, paper=paper)
    assert t.cell("maxpool4", "patch").deviates and "9×9/9" in t.cell("maxpool4", "patch").note
    assert not t.cell("maxpool1", "patch").deviates
    assert t.cell("dropout", "type").deviates


def test_without_the_papers_kernels_two_3x3_branches_do_not_fit(googlenet):
    graph, trace = googlenet
    bare = SimpleNamespace(citation=None, branch_kernels={})
    assert paper_table(graph, trace, paper=bare).layout == INCEPTION_V3
    with pytest.raises(ValueError, match="does not fit"):
        paper_table(graph, trace, GOOGLENET, paper=bare)


def test_a_real_5x5_branch_is_not_flagged():
    import torch
    from torch import nn

    from explorer.core.graph.blockgraph import block_graph_from_module

    def conv(i, o, k):
        return nn.Sequential(nn.Conv2d(i, o, k, padding=k // 2), nn.ReLU())

    class Inception(nn.Module):  # GoogLeNet's module as the paper draws it: a real 5×5
        def __init__(self):
            super().__init__()
            self.b1 = conv(16, 8, 1)
            self.b2 = nn.Sequential(conv(16, 8, 1), conv(8, 12, 3))
            self.b3 = nn.Sequential(conv(16, 4, 1), conv(4, 6, 5))
            self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv(16, 5, 1))

        def forward(self, x):
            return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv(3, 16, 3)
            self.inception3a = Inception()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(31, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.inception3a(self.stem(x))), 1))

    paper = get_spec("googlenet").paper
    with torch.device("meta"):
        model = Net()
    graph = block_graph_from_module(model, "tiny", native_size=(32, 32), paper=paper)
    t = paper_table(graph, trace_shapes(graph, (32, 32)), paper=paper)
    row = t.row("inception3a")
    assert t.layout == GOOGLENET
    assert (row["n1x1"].value, row["n3x3red"].value, row["n3x3"].value, row["n5x5red"].value,
            row["n5x5"].value, row["pool_proj"].value) == (8, 8, 12, 4, 6, 5)
    assert row["n5x5"].text == "6" and not t.deviations()


def test_the_paper_faithful_googlenet_differs_only_where_the_papers_sums_do(graph_of):
    graph = graph_of("googlenet_paper")
    t = paper_table(graph, trace_shapes(graph, (224, 224)))
    assert t.layout == GOOGLENET
    for node in inference_blocks(graph):
        assert node.branches[2].all_layers()[-1].kernel == (5, 5)
        assert t.row(node.name)["n5x5"].text == str(node.branches[2].out_channels)
    assert t.deviations() and {c.key for _, c, _ in t.deviations()} == {"params", "ops"}


def test_a_residual_network_gets_the_branch_columns():
    import torch
    from torch import nn

    from explorer.core.graph.blockgraph import block_graph_from_module

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1))

        def forward(self, x):
            return x + self.conv(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=2)
            self.block = Residual()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))

    with torch.device("meta"):
        model = Net()
    graph = block_graph_from_module(model, "tiny-residual", native_size=(32, 32))
    trace = trace_shapes(graph, (32, 32))
    t = paper_table(graph, trace)
    assert t.layout == INCEPTION_V3
    row = t.row("block")
    assert row["type"].text == "residual (block)" and row["patch"].text.startswith("sum of 2 branches")
    assert row["depth"].value == 2
    assert t.total_ops == trace.total_macs


# -- Inception v3 ---------------------------------------------------------------------------------


def test_inception_v3_gets_its_own_layout(v3):
    graph, trace = v3
    t = paper_table(graph, trace)
    assert t.layout == INCEPTION_V3
    titles = [c.title for c in t.columns]
    assert titles[:4] == ["type", "patch size/stride or remarks", "input size", "output size"]
    width = max(len(n.branches) for n in inference_blocks(graph))
    assert sum(1 for c in t.columns if c.key.startswith("branch")) == width
    with pytest.raises(ValueError, match="does not fit"):
        paper_table(graph, trace, GOOGLENET)


def test_inception_v3_branch_cells_add_up_to_the_block_output(v3):
    graph, trace = v3
    t = paper_table(graph, trace)
    for node in inference_blocks(graph):
        row = t.row(node.name)
        cells = [row[f"branch{k}"] for k in range(1, len(node.branches) + 1)]
        assert [c.value for c in cells] == [b.out_channels for b in node.branches]
        assert sum(c.value for c in cells) == trace.nodes[node.name].output_shape[0]
        for c, b in zip(cells, node.branches):
            for layer in b.all_layers():
                if layer.type == "conv":
                    assert str(layer.out_channels) in c.text


def test_inception_v3_input_size_is_the_previous_output(v3):
    graph, trace = v3
    t = paper_table(graph, trace)
    assert t.rows[0]["input"].value == trace.nodes["input"].output_shape
    for prev, row in zip(t.rows, t.rows[1:]):
        assert row["input"].value == prev["output"].value
    assert t.total_ops == trace.total_macs
    grid = [r for r in t.rows if r.kind == "inception" and "grid" in r["patch"].text]
    assert {r.label for r in grid} == {n.name for n in inference_blocks(graph)
                                      if trace.nodes[n.name].output_shape[1:] != t.row(n.name)["input"].value[1:]}
    assert grid


def test_inception_v3_depth_counts_a_split_once(v3):
    graph, trace = v3
    t = paper_table(graph, trace)
    node = graph.node("Mixed_7c")
    split = next(b for b in node.branches if b.parallel and len(b.layers) > 1)
    assert t.row("Mixed_7c")["depth"].value == sum(1 for l in split.layers if l.type == "conv") + 1
    assert t.row("Mixed_7c")["depth"].value < len(split.all_layers())


def test_googlenet_fits_the_v3_layout_too(googlenet):
    graph, trace = googlenet
    t = paper_table(graph, trace, INCEPTION_V3)
    assert len(t.rows) == sum(1 for n in graph.nodes() if n.kind != "input" and not n.training_only)
    assert t.row("inception3a")["branch3"].deviates


# -- exports --------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["googlenet", "inception_v3"])
def table(request, googlenet, v3):
    return paper_table(*(googlenet if request.param == "googlenet" else v3))


def test_csv_parses_back_to_the_cells(table):
    rows = list(csv.reader(io.StringIO(table.to_csv())))
    assert rows[0] == [c.title for c in table.columns] + ["notes"]
    assert [r[:-1] for r in rows[1:]] == table.text_rows()
    for r, row in zip(rows[1:], table.rows):  # the notes column: each deviating cell's note, once
        assert r[-1] == "; ".join(dict.fromkeys(row[c.key].note for c in table.columns if row[c.key].note))
    assert any(r[-1] for r in rows[1:]) == bool(table.deviations())
    raw = list(csv.DictReader(io.StringIO(table.to_csv(raw=True))))
    assert len(raw) == len(table.rows)
    assert sum(int(r["ops"]) for r in raw if r["ops"]) == table.total_ops


def test_markdown_has_one_line_per_row(table):
    md = table.to_markdown()
    lines = [l for l in md.splitlines() if l.startswith("|")]
    assert len(lines) == len(table.rows) + 2
    for line in lines:
        assert len(re.findall(r"(?<!\\)\|", line)) == len(table.columns) + 1
    assert all(f"- {n}" in md for n in table.notes)


def test_latex_is_an_escaped_tabular(table):
    tex = table.to_latex()
    assert "\\begin{tabular}{" in tex and tex.rstrip().endswith("\\end{tabular}")
    body = [l for l in tex.splitlines() if l.endswith("\\\\")]
    assert len(body) == len(table.rows) + 1  # heading + rows
    for line in body:
        assert line.count(" & ") == len(table.columns) - 1
        assert not re.search(r"(?<!\\)[#_%$&]", line.replace(" & ", "").replace("$\\times$", "")
                             .replace("$\\rightarrow$", "").replace("$\\parallel$", ""))
    assert tex.isascii()
    if table.layout == INCEPTION_V3:
        assert "Mixed\\_5b" in tex
    else:
        assert "\\#5$\\times$5 reduce" in tex


def test_export_dispatches_and_rejects_unknown_formats(table):
    assert table.export("csv") == table.to_csv()
    assert table.export("markdown") == table.to_markdown()
    assert table.export("latex") == table.to_latex()
    with pytest.raises(ValueError, match="unknown format"):
        table.export("docx")


def test_latex_escape():
    assert latex_escape("a_b & 50% #1×1 {x}") == r"a\_b \& 50\% \#1$\times$1 \{x\}"


def test_number_formats_follow_the_paper():
    assert fmt_paper_params(2_700) == "2.7K"
    assert fmt_paper_params(159_000) == "159K"
    assert fmt_paper_params(1_072_000) == "1072K"
    assert fmt_paper_params(0) == ""
    assert fmt_paper_ops(34_000_000) == "34M"
    assert fmt_paper_ops(1_024_000) == "1M"
    assert fmt_paper_ops(1_500_000) == "1.5M"
    assert fmt_hwc((64, 112, 112)) == "112×112×64"
    assert fmt_hwc((1000,)) == "1×1×1000"


def test_unknown_layout_is_refused(googlenet):
    with pytest.raises(ValueError, match="unknown layout"):
        paper_table(*googlenet, layout="resnet")


# -- the paper's printed Table 1 (Szegedy et al. 2015, "Going deeper with convolutions") ------------

#: Table 1 as printed: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj (None: blank); params; ops.
TABLE_1 = {
    "conv1": ((None, None, None, None, None, None), "2.7K", "34M"),
    "conv3": ((None, 64, 192, None, None, None), "112K", "360M"),
    "inception3a": ((64, 96, 128, 16, 32, 32), "159K", "128M"),
    "inception3b": ((128, 128, 192, 32, 96, 64), "380K", "304M"),
    "inception4a": ((192, 96, 208, 16, 48, 64), "364K", "73M"),
    "inception4b": ((160, 112, 224, 24, 64, 64), "437K", "88M"),
    "inception4c": ((128, 128, 256, 24, 64, 64), "463K", "100M"),
    "inception4d": ((112, 144, 288, 32, 64, 64), "580K", "119M"),
    "inception4e": ((256, 160, 320, 32, 128, 128), "840K", "170M"),
    "inception5a": ((256, 160, 320, 32, 128, 128), "1072K", "54M"),
    "inception5b": ((384, 192, 384, 48, 128, 128), "1388K", "71M"),
    "fc": ((None, None, None, None, None, None), "1000K", "1M"),
}
BRANCH_KEYS = ("n1x1", "n3x3red", "n3x3", "n5x5red", "n5x5", "pool_proj")


def printed(text, k):
    """'2.7K' -> (2700·k/1000, one unit of the last digit), written out independently of the engine."""
    number, suffix = text[:-1], text[-1]
    scale = {"K": k, "M": k * k}[suffix]
    decimals = len(number.partition(".")[2])
    return float(number) * scale, scale * 10.0 ** -decimals


@pytest.fixture(scope="module")
def paper_faithful(graph_of):
    graph = graph_of("googlenet_paper")
    return graph, paper_table(graph, trace_shapes(graph, (224, 224)))


@pytest.fixture(scope="module")
def recomputed():
    """Per Table 1 row: weights (no biases) and multiply-adds per image of the real module's convolutions
    and linear layers at 224×224, from its parameters and a meta-device forward."""
    import torch
    from torch import nn

    model = get_spec("googlenet_paper").build(device="meta")
    macs = {}

    def hook(module, inputs, output):
        positions = output.shape[2] * output.shape[3] if output.dim() == 4 else 1
        macs[module] = module.weight.numel() * positions

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.empty(1, 3, 224, 224, device="meta"))
    for h in handles:
        h.remove()
    out = {}
    for row, parts in {"conv1": ["conv1"], "conv3": ["conv2", "conv3"], "fc": ["fc"],
                       **{b: [b] for b in TABLE_1 if b.startswith("inception")}}.items():
        layers = [m for p in parts for m in model.get_submodule(p).modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        out[row] = (sum(m.weight.numel() for m in layers), sum(macs[m] for m in layers))
    return out


def test_the_branch_columns_are_the_papers_exactly(paper_faithful):
    _, t = paper_faithful
    for node, (cols, _, _) in TABLE_1.items():
        row = t.row(node)
        assert tuple(row[k].value for k in BRANCH_KEYS) == cols, node
        assert tuple(row[k].text for k in BRANCH_KEYS) == tuple("" if c is None else str(c) for c in cols)
    assert {n: v[1:] for n, v in get_spec("googlenet_paper").paper.printed_numbers.items()} == {
        n: (p, o) for n, (_, p, o) in TABLE_1.items()}
    # The printed output sizes the comparison keys on are the table's own at 224×224.
    assert {n: v[0] for n, v in get_spec("googlenet_paper").paper.printed_numbers.items()} == {
        n: t.row(n)["output"].text for n in TABLE_1}


def test_the_papers_consistent_rows_count_weights_in_k_of_1024(recomputed):
    """Why K = 1024: conv2 + conv3 and the linear layer add up exactly with it (and not with 1000)."""
    for row in ("conv3", "fc"):
        weights = recomputed[row][0]
        assert printed(TABLE_1[row][1], 1024)[0] == weights
        assert abs(printed(TABLE_1[row][1], 1000)[0] - weights) > printed(TABLE_1[row][1], 1000)[1]


def test_rows_are_marked_exactly_where_the_printed_numbers_do_not_add_up(paper_faithful, recomputed):
    _, t = paper_faithful
    expected = set()
    for node, (_, params_text, ops_text) in TABLE_1.items():
        weights, macs = recomputed[node]
        value, unit = printed(params_text, 1024)
        if abs(value - weights) > unit:
            expected.add((node, "params"))
        value, unit = printed(ops_text, 1000)
        if abs(value - macs) > unit:
            expected.add((node, "ops"))
    marked = {(r.nodes[-1], c.key) for r, c, _ in t.deviations()}
    assert marked == expected
    # What that comes to (recomputed weights in K = 1024 / multiply-adds in M):
    assert expected == {("conv1", "params"), ("conv1", "ops"),  # 9.2K, 118M for 2.7K, 34M
                        ("inception4a", "params"), ("inception4c", "params"), ("inception4d", "params"),
                        ("inception4e", "params"), ("inception5a", "params"), ("inception5b", "params"),
                        ("inception5a", "ops")}  # 51.1M for 54M
    for node, (_, params_text, ops_text) in TABLE_1.items():
        weights, macs = recomputed[node]
        cell = t.row(node)["params"]
        if (node, "params") in marked:
            assert cell.note.startswith(f"{t.row(node).label}: the paper prints {params_text} params")
            assert f"{weights:,} weights" in cell.note
        ops = t.row(node)["ops"]
        assert ops.value == macs  # the ops column is the model's multiply-adds …
        if (node, "ops") not in marked:  # … and equals the printed one to within rounding elsewhere
            assert not ops.deviates
            assert abs(printed(ops.text, 1000)[0] - printed(ops_text, 1000)[0]) <= 1e6
        else:
            assert f"the paper prints {ops_text} ops" in ops.note and f"{macs:,}" in ops.note
    # The note writes K = 1000 as every cell does, and says what the paper's own K = 1024 makes of its figure.
    assert t.cell("conv1", "params").note == (
        "conv1: the paper prints 2.7K params (its K is 1024: 2,765 weights); the layer has 7·7·3·64 = 9,408"
        " weights, 9.4K")


def test_the_marks_reach_every_export(paper_faithful):
    _, t = paper_faithful
    notes = [c.note for _, _, c in t.deviations()]
    assert len(notes) == 9
    md, tex = t.to_markdown(), t.to_latex()
    for note in notes:
        assert f"- {note}" in md
        assert f"% {latex_escape(note)}" in tex
    csv_notes = "".join(r[-1] for r in csv.reader(io.StringIO(t.to_csv())))
    assert all(n in csv_notes for n in notes)
    assert tex.isascii() and "7$\\cdot$7" in tex


def test_printed_ops_are_compared_only_at_the_papers_size(graph_of):
    graph = graph_of("googlenet_paper")
    t = paper_table(graph, trace_shapes(graph, (320, 320)))
    assert {c.key for _, c, _ in t.deviations()} == {"params"}
    assert any("not checked at this input size" in n for n in t.notes)
    assert {r.nodes[-1] for r, _, _ in t.deviations()} == {
        "conv1", "inception4a", "inception4c", "inception4d", "inception4e", "inception5a", "inception5b"}


def test_one_unit_convention_in_cells_notes_and_exports(paper_faithful, recomputed):
    """K = 1000 in every cell and every figure the notes add, stated once; the paper's own K = 1024
    appears only as the reading of its printed numbers."""
    _, t = paper_faithful
    stated = [n for n in t.notes if "K = 10³, M = 10⁶, G = 10⁹" in n]
    assert len(stated) == 1
    assert f"- {stated[0]}" in t.to_markdown() and f"% {latex_escape(stated[0])}" in t.to_latex()
    for r in t.rows:
        for key in ("params", "ops"):
            cell = r[key]
            if cell.value:
                value, unit = printed(cell.text, 1000) if cell.text[-1] in "KM" else (float(cell.text), 1)
                assert abs(value - cell.value) <= unit / 2, (r.label, key, cell.text, cell.value)
    for node in TABLE_1:
        note = t.row(node)["params"].note
        if note is None:
            continue
        weights = recomputed[node][0]
        ours = note.rsplit(", ", 1)[-1]  # the figure the note adds for the layers
        value, unit = printed(ours, 1000)
        assert abs(value - weights) <= unit / 2, note
        paper_weights = round(printed(TABLE_1[node][1], 1024)[0])
        assert f"its K is 1024: {paper_weights:,} weights" in note
