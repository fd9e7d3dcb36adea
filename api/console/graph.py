"""Layout of a task's dependency graph: dependencies left, the task, dependents right.

Pure: it returns boxes and edges; the template draws them as SVG (so every
label goes through Jinja's escaping) and the stylesheet colours them by status.
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_W, NODE_H, GAP_Y, COL_GAP, PAD = 150, 40, 14, 90, 10


@dataclass(frozen=True)
class Node:
    x: int
    y: int
    label: str
    status: str
    href: str
    current: bool = False

    @property
    def css(self) -> str:
        """Class naming the status colour ('unknown' for a task that is not stored)."""
        return "st-" + (self.status.lower() or "unknown")


@dataclass(frozen=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Graph:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]


def layout(
    service: str,
    task_id: int,
    status: str,
    dependencies: list[tuple[int, str]],
    dependents: list[tuple[int, str]],
    href: str = "/tasks/{service}/{id}",
) -> Graph:
    """Three columns; every edge points from a dependency to the task that waits for it."""
    rows = max(len(dependencies), len(dependents), 1)
    height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y
    columns = [dependencies, [(task_id, status)], dependents]
    xs = [PAD, PAD + NODE_W + COL_GAP, PAD + 2 * (NODE_W + COL_GAP)]
    width = xs[2] + NODE_W + PAD if dependents else xs[1] + NODE_W + PAD
    if not dependencies:  # nothing on the left: shift everything left by one column
        xs = [PAD, PAD, PAD + NODE_W + COL_GAP]
        width -= NODE_W + COL_GAP
    nodes: list[list[Node]] = []
    for col, items in enumerate(columns):
        block = len(items) * NODE_H + max(len(items) - 1, 0) * GAP_Y
        top = (height - block) // 2
        nodes.append(
            [
                Node(
                    xs[col],
                    top + i * (NODE_H + GAP_Y),
                    f"{service}/{tid}",
                    st,
                    href.format(service=service, id=tid),
                    current=(col == 1),
                )
                for i, (tid, st) in enumerate(items)
            ]
        )
    centre = nodes[1][0]
    mid = NODE_H // 2
    edges = [Edge(n.x + NODE_W, n.y + mid, centre.x, centre.y + mid) for n in nodes[0]]
    edges += [Edge(centre.x + NODE_W, centre.y + mid, n.x, n.y + mid) for n in nodes[2]]
    return Graph(max(width, NODE_W + 2 * PAD), height, [n for col in nodes for n in col], edges)
