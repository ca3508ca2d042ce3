"""The first frame is laid out as the settled one: the RAM and Spend panels' placeholders take the height their
first figures will (``tui/widgets/ram_panel.py``, ``spend_panel.py``), so the engine's first info does not lay
the screen out again (the Decisions panel above them shrank by 9 rows: a repaint of the whole column)."""

from __future__ import annotations

from swarm_tui.engine.info import usable
from swarm_tui.tui.scenes import base_info
from swarm_tui.tui.widgets.ram_panel import RamPanel
from swarm_tui.tui.widgets.spend_panel import SpendPanel


def lines(text: str) -> int:
    return text.count("\n") + 1


def test_the_guards_placeholders_have_the_height_of_their_first_figures() -> None:
    info = base_info(local_models=[], spend_today=0.0, reserved=0.0)  # a fresh start: nothing spent, no model
    ram, spend = usable(info.get("ram")), usable(info.get("spend"))
    assert ram is not None and spend is not None
    first_ram = RamPanel.build(ram, [float(ram["available_mb"])], 42).plain  # the first reading: a 1-point history
    assert lines(RamPanel.build(None, [], 42).plain) == lines(first_ram)
    assert lines(SpendPanel.build(None, 42).plain) == lines(SpendPanel.build(spend, 42).plain)
