"""The factorisation panel: the numbers in its table equal `factorisations()`, real layers fill the spin boxes."""

from __future__ import annotations

import functools

import pytest

from explorer.core.shapes.factorisation import SIDE_BY_SIDE, STACKED, UNFACTORISED, factorisations
from explorer.qt.shapes.factorisation_panel import FAMILY_COLOURS, FAMILY_ROLE, FactorisationPanel


@functools.cache
def _graph(name):
    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.model.zoo import get_spec

    return build_block_graph(get_spec(name))


@pytest.fixture
def panel(qtbot):
    p = FactorisationPanel()
    qtbot.addWidget(p)
    p.set_graphs([_graph("googlenet_paper"), _graph("inception_v3")], (299, 299))
    return p


def shown(p: FactorisationPanel, row: int, col: int) -> str:
    return p.table.item(row, col).text()


def counts_shown(p: FactorisationPanel) -> list[tuple[str, ...]]:
    """Each row's exact parameter and multiply-add counts, as its cells' tooltips say them."""
    return [tuple(p.table.item(row, col).toolTip() for col in (3, 4, 5, 6)) for row in range(p.table.rowCount())]


def counts(fs) -> list[tuple[str, ...]]:
    return [(f"{f.params_original:,}", f"{f.params_replacement:,}", f"{f.macs_original:,}", f"{f.macs_replacement:,}")
            for f in fs]


def test_spin_boxes_drive_the_numbers(panel, qtbot):
    with qtbot.waitSignal(panel.numbers_changed):
        panel.cin_box.setValue(panel.cin_box.value() + 1)
    panel.cin_box.setValue(96)
    panel.cout_box.setValue(160)
    panel.n_box.setValue(5)
    panel.h_box.setValue(17)
    panel.w_box.setValue(19)
    expected = factorisations(96, 160, (17, 19), 5)
    assert counts_shown(panel) == counts(expected)
    assert panel.table.rowCount() == 3
    for row, f in enumerate(expected):
        assert shown(panel, row, 2) == f"{f.saving * 100:.1f} %"
        assert panel.table.item(row, 3).toolTip() == f"{f.params_original:,}"
        assert panel.table.item(row, 4).toolTip() == f"{f.params_replacement:,}"
        assert panel.table.item(row, 5).toolTip() == f"{f.macs_original:,}"
        assert panel.table.item(row, 6).toolTip() == f"{f.macs_replacement:,}"
    assert shown(panel, 2, 0) == "5×5" and shown(panel, 2, 1) == "1×5 + 5×1"
    panel.cin_box.setValue(160)
    assert shown(panel, 0, 2) == "28.0 %"  # the paper's 5×5 → two 3×3 at equal width
    assert shown(panel, 1, 2) == "33.3 %"  # 3×3 → 3×1 + 1×3


def test_picking_a_real_layer_fills_the_channels(panel, qtbot):
    import torch

    from explorer.core.model.zoo import get_spec

    convs = panel.convs()
    index = next(i for i, c in enumerate(convs) if c.block == "Mixed_6b" and c.kernel == (1, 7))
    panel.layer_combo.activated.emit(index + 1)  # as a user's choice in the combo
    model = get_spec("inception_v3").build(device="meta")
    layer = model.get_submodule(convs[index].layer)
    sizes = {}
    layer.register_forward_hook(lambda m, i, o: sizes.update({"in": tuple(i[0].shape[2:])}))
    model(torch.empty(1, 3, 299, 299, device="meta"))
    assert panel.values() == (layer.in_channels, layer.out_channels, 7, sizes["in"])
    assert counts_shown(panel) == counts(factorisations(layer.in_channels, layer.out_channels, sizes["in"], 7))
    assert panel.layer_combo.currentIndex() == index + 1
    panel.cin_box.setValue(layer.in_channels + 1)  # hand-edited: no longer that layer
    assert panel.layer_combo.currentIndex() == 0


def test_usage_tables_show_which_model_factorises_where(panel):
    paper, v3 = panel.usage_tables["googlenet_paper"], panel.usage_tables["inception_v3"]

    def cell(table, block):
        row = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == block)
        return table.item(row, 1), table.item(row, 2)

    kernels, applied = cell(paper, "inception3a")
    assert kernels.text() == "5×5, 3×3, 1×1 ×4" and applied.data(FAMILY_ROLE) == (UNFACTORISED,)
    assert applied.background().color() == FAMILY_COLOURS[UNFACTORISED]
    _, applied = cell(v3, "Mixed_5b")
    assert set(applied.data(FAMILY_ROLE)) == {UNFACTORISED, STACKED}
    assert applied.background().color() == FAMILY_COLOURS[STACKED]
    _, applied = cell(v3, "Mixed_7b")
    assert applied.data(FAMILY_ROLE) == (SIDE_BY_SIDE,) and "1×3 ‖ 3×1" in applied.text()


def test_it_opens_on_a_real_layer_of_the_first_model_not_on_the_input_image(qtbot):
    """At first the numbers are a real convolution of the first model (at its feature map), not one on a 299×299
    image ('82.4 G' for one convolution); once the person has chosen, a new size keeps their numbers."""
    import torch

    from explorer.core.model.zoo import get_spec

    p = FactorisationPanel()
    qtbot.addWidget(p)
    p.set_graphs([_graph("googlenet_paper"), _graph("inception_v3")], (299, 299))
    first = p.convs()[0]
    assert p.layer_combo.currentIndex() == 1 and p.layer_combo.currentText().startswith("googlenet_paper")
    model = get_spec("googlenet_paper").build(device="meta")
    seen = {}
    model.get_submodule(first.layer).register_forward_hook(lambda m, i, o: seen.update(size=tuple(i[0].shape[2:])))
    model(torch.empty(1, 3, 299, 299, device="meta"))
    assert p.values()[3] == seen["size"] and max(seen["size"]) < 299
    p.cin_box.setValue(33)  # the person's own numbers
    p.set_graphs([_graph("googlenet_paper"), _graph("inception_v3")], (224, 224))  # the compare window's new size
    assert p.layer_combo.currentIndex() == 0 and p.values()[0] == 33 and p.values()[3] == (224, 224)
