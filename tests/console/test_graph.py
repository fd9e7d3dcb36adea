"""Layout of the dependency graph (pure)."""

from __future__ import annotations

from api.console.graph import NODE_H, NODE_W, layout


def test_dependencies_left_the_task_in_the_middle_dependents_right() -> None:
    graph = layout("billing", 7, "Running", [(3, "Succeeded"), (4, "")], [(9, "Blocked")])
    by_label = {n.label: n for n in graph.nodes}
    assert by_label["billing/3"].x == by_label["billing/4"].x < by_label["billing/7"].x < by_label["billing/9"].x
    assert by_label["billing/7"].current and not by_label["billing/9"].current
    assert by_label["billing/4"].css == "st-unknown" and by_label["billing/9"].css == "st-blocked"
    assert by_label["billing/9"].href == "/tasks/billing/9"
    # Every edge runs from a box's right side to another's left side.
    assert len(graph.edges) == 3
    for edge in graph.edges:
        assert edge.x1 < edge.x2
    for node in graph.nodes:
        assert 0 <= node.x and node.x + NODE_W <= graph.width and node.y + NODE_H <= graph.height


def test_a_task_alone_is_one_box() -> None:
    graph = layout("billing", 7, "Pending", [], [])
    assert [n.label for n in graph.nodes] == ["billing/7"] and graph.edges == []
    assert graph.nodes[0].x + NODE_W <= graph.width
