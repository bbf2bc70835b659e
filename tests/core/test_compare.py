"""The model comparison: rows aligned by name or by stage, numbers equal to each model's own trace."""

import csv
import io

import pytest

from explorer.core.shapes.compare import branch_kernels, compare_models, natural_partner
from explorer.core.shapes.trace import InputTooSmallError, trace_shapes


def _rows_with(comparison, side, name):
    return [r for r in comparison.rows if getattr(r, side) is not None and getattr(r, side).name == name]


def test_googlenet_against_the_paper_pairs_blocks_by_name_and_finds_the_5x5(graph_of):
    ga, gb = graph_of("googlenet"), graph_of("googlenet_paper")
    c = compare_models(ga, gb, 224)
    blocks = [n.name for n in ga.blocks()]
    for name in blocks:
        (row,) = _rows_with(c, "a", name)
        assert row.b is not None and row.b.name == name
        # The third branch: torchvision's 3×3 where the paper has 5×5, read from the layers.
        assert row.a.branch_kernels[2] == "3×3" and row.b.branch_kernels[2] == "5×5"
        assert row.a.kernels == "1×1 | 3×3 | 3×3 | pool 3×3"
        assert row.b.kernels == "1×1 | 3×3 | 5×5 | pool 3×3"
        assert row.differs("kernels") and "branch 3: 3×3 vs 5×5" in row.difference("kernels").text
        assert not row.differs("shape") and not row.differs("channels") and not row.differs("branches")
    # Nodes only the paper has (local response normalisation) stand against an empty cell.
    (lrn,) = _rows_with(c, "b", "lrn1")
    assert lrn.a is None and lrn.differs("node")


@pytest.mark.parametrize("pair,size", [(("googlenet", "googlenet_paper"), 224), (("googlenet", "inception_v3"), 299),
                                       (("inception_v3", "inception_resnet_v2"), (320, 256))])
def test_numbers_equal_each_models_own_trace_and_totals_the_sums(graph_of, pair, size):
    ga, gb = graph_of(pair[0]), graph_of(pair[1])
    c = compare_models(ga, gb, size)
    for side, graph in (("a", ga), ("b", gb)):
        trace = trace_shapes(graph, size)
        cells = [getattr(r, side) for r in c.rows if getattr(r, side) is not None]
        assert sorted(x.name for x in cells) == sorted(n.name for n in graph.nodes())  # every node once
        for cell in cells:
            ns = trace.nodes[cell.name]
            assert (cell.output_shape, cell.params, cell.macs) == (ns.output_shape, ns.params, ns.macs)
        summary = getattr(c, side)
        assert summary.total_params == sum(x.params for x in cells if not x.training_only)
        assert summary.total_macs == sum(x.macs for x in cells if not x.training_only)
        assert (summary.total_params, summary.total_macs) == (trace.total_params_inference, trace.total_macs)
    assert c.params_ratio() == pytest.approx(c.b.total_params / c.a.total_params)


@pytest.mark.parametrize("size", [224, 299])
def test_googlenet_against_inception_v3_aligns_by_stage(graph_of, size):
    ga, gb = graph_of("googlenet"), graph_of("inception_v3")
    c = compare_models(ga, gb, size)
    ta, tb = trace_shapes(ga, size), trace_shapes(gb, size)

    def block_rows(a_prefix):
        return [r for r in c.rows if r.a is not None and r.a.name.startswith(a_prefix) and r.a.is_block]

    # GoogLeNet's 28/14/7 (at 224) stages meet Inception v3's 35/17/8 ones (at 299), whatever the size.
    for prefix, first_b in (("inception3", "Mixed_5b"), ("inception4", "Mixed_6a"), ("inception5", "Mixed_7a")):
        rows = block_rows(prefix)
        assert rows[0].b.name == first_b  # blocks pair in order within the stage
        side_a = ta.nodes[rows[0].a.name].output_shape[1:]
        side_b = tb.nodes[first_b].output_shape[1:]
        for r in rows:
            assert r.a.output_shape == ta.nodes[r.a.name].output_shape and r.a.output_shape[1:] == side_a
            if r.b is not None:
                assert r.b.output_shape == tb.nodes[r.b.name].output_shape and r.b.output_shape[1:] == side_b
                assert r.differs("params") and r.differs("kernels")
        stage = c.stages[rows[0].stage]
        assert side_a in stage.sizes_a and side_b in stage.sizes_b
    if size == 224:
        assert [ta.nodes[f"inception{k}a"].output_shape[1:] for k in (3, 4, 5)] == [(28, 28), (14, 14), (7, 7)]
    # Inception v3 has three blocks in the first stage where GoogLeNet has two: the third stands alone.
    (mixed_5d,) = _rows_with(c, "b", "Mixed_5d")
    assert mixed_5d.a is None and mixed_5d.differs("node")
    (mixed_6b,) = _rows_with(c, "b", "Mixed_6b")
    assert mixed_6b.b.kernels == "1×1 | 1×7→7×1 | 7×1→1×7→7×1→1×7 | avg pool 3×3"


def test_too_small_for_one_side_reports_that_sides_layer(graph_of):
    ga, gb = graph_of("googlenet"), graph_of("googlenet_paper")
    size = 20  # enough for torchvision's GoogLeNet, too small for the paper's (checked just below)
    trace_shapes(ga, size)
    with pytest.raises(InputTooSmallError) as expected:
        trace_shapes(gb, size)
    c = compare_models(ga, gb, size)
    assert c.a.error is None and c.a.total_macs == trace_shapes(ga, size).total_macs
    assert c.b.error == str(expected.value) and c.b.failing_layer == expected.value.layer
    assert expected.value.layer in c.b.error and c.b.total_macs is None
    assert all(r.b.output_shape is None and r.b.macs is None for r in c.rows if r.b is not None)
    assert any(r.differs("kernels") for r in c.rows)  # the structure is still compared
    assert c.macs_ratio() is None


def test_csv_has_a_row_per_table_row_and_the_totals(graph_of):
    c = compare_models(graph_of("googlenet"), graph_of("googlenet_paper"), 224)
    rows = list(csv.reader(io.StringIO(c.to_csv())))
    assert rows[0][1] == "googlenet:node" and rows[0][-1] == "differences"
    assert len(rows) == 1 + len(c.rows) + 1
    row = next(r for r in rows if r[1] == "inception3a")
    assert row[6] == "1×1 | 3×3 | 3×3 | pool 3×3" and int(row[4]) == trace_shapes(graph_of("googlenet"), 224
                                                                                   ).nodes["inception3a"].params
    assert "kernels: branch 3: 3×3 vs 5×5" in row[-1]
    assert rows[-1][1] == "total" and int(rows[-1][4]) == c.a.total_params


def test_branch_kernels_read_from_the_layers(graph_of):
    v3 = graph_of("inception_v3")
    assert [branch_kernels(b) for b in v3.node("Mixed_7b").branches] == [
        "1×1", "(1×3 ‖ 3×1)", "3×3→(1×3 ‖ 3×1)", "avg pool 3×3"]
    assert [branch_kernels(b) for b in v3.node("Mixed_6a").branches] == ["3×3/2", "3×3→3×3/2", "pool 3×3/2"]


def test_natural_partners():
    assert natural_partner("googlenet") == "googlenet_paper"
    assert natural_partner("inception_v3") == "googlenet"
    assert natural_partner("unknown", ["a", "unknown"]) == "a"
