"""Paths under the workspace root: validation, confinement, symbolic links."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.workspace.files import atomic_write, make_durable, remove_temp_files
from orchestrator.workspace.layout import PathEscape, confine, service_layout


@pytest.mark.parametrize("service", ["../etc", "a/b", "..", ".task", "UPPER", "", "x" * 40, ".archive"])
def test_bad_service_names_are_refused(tmp_path: Path, service: str) -> None:
    with pytest.raises(ValueError):
        service_layout(tmp_path, service)


def test_task_paths(tmp_path: Path) -> None:
    layout = service_layout(tmp_path, "shop")
    assert layout.version_dir(7, 2) == tmp_path / "shop" / ".task" / "7" / "v2"
    assert layout.document(7, 2, "a.md").name == "a.md"
    for bad in ("../a.md", "a/b.md", ".hidden.md", "a.txt"):
        with pytest.raises(ValueError):
            layout.document(7, 2, bad)
    for bad_id in (0, -1, True, "7"):
        with pytest.raises(PathEscape):
            layout.task_dir(bad_id)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        layout.working_dir("../../etc")
    assert layout.working_dir("") == layout.path
    assert layout.working_dir("services/api") == layout.path / "services" / "api"


def test_confine_refuses_escapes_and_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "inside").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link-out").symlink_to(tmp_path / "outside")
    (root / "link-in").symlink_to(root / "inside")
    assert confine(root, root / "inside" / "f") == (root / "inside" / "f").resolve()
    for path in (tmp_path / "outside", root / ".." / "outside", root / "link-out" / "f", root / "link-in" / "f"):
        with pytest.raises(PathEscape):
            confine(root, path)


def test_atomic_write_replaces_a_planted_link_instead_of_following_it(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("keep")
    link = tmp_path / "doc.md"
    link.symlink_to(target)
    assert atomic_write(link, "new")
    assert target.read_text() == "keep" and not link.is_symlink() and link.read_text() == "new"
    assert not atomic_write(link, "new")  # unchanged content is not rewritten


def test_writes_flushed_together(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    paths = [tmp_path / "a.md", tmp_path / "d" / "b.md"]
    for path in paths:
        assert atomic_write(path, path.name, durable=False)
    make_durable(paths, [tmp_path])
    assert [p.read_text() for p in paths] == ["a.md", "b.md"]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".orch-tmp-")]
    with pytest.raises(FileNotFoundError):  # a file that is not there cannot be made to last
        make_durable([tmp_path / "gone.md"])


def test_temp_files_are_swept(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".orch-tmp-x.md.1234").write_text("half")
    (tmp_path / "a" / "keep.md").write_text("ok")
    removed = remove_temp_files(tmp_path)
    assert [p.name for p in removed] == [".orch-tmp-x.md.1234"]
    assert (tmp_path / "a" / "keep.md").exists()
