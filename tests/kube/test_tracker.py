"""The Kubernetes tracker's cache on its own: a fake client answering lists and events as given."""

from __future__ import annotations

import pytest

from orchestrator.kube.jobs import ANNOTATION_RUN_ID
from orchestrator.kube.listing import Listing
from orchestrator.kube.tracker import KubeTracker
from orchestrator.settings import Settings


class FakeLists:
    """list_jobs / list_pods answering whatever the test put in `jobs` and `pods`, through the transform."""

    def __init__(self) -> None:
        self.jobs: list[dict] = []
        self.pods: list[dict] = []
        self.rv = "1"

    def list_jobs(self, selector, transform=None):
        return Listing([(transform or dict)(o) for o in self.jobs], self.rv)

    def list_pods(self, selector, transform=None):
        return Listing([(transform or dict)(o) for o in self.pods], self.rv)


def _obj(name: str, run_id: str, rv: int, phase: str = "Running") -> dict:
    return {"metadata": {"name": name, "resourceVersion": str(rv), "creationTimestamp": "2026-01-01T00:00:00Z",
                         "annotations": {ANNOTATION_RUN_ID: run_id}, "labels": {}},
            "spec": {"big": "x" * 100}, "status": {"phase": phase}}


@pytest.fixture
def tracker(kube_settings: Settings):
    lists = FakeLists()
    changed: list[str] = []
    tracker = KubeTracker(type("R", (), {"client": lists})(), kube_settings, changed.append)
    return tracker, lists, changed


def test_a_relist_keeps_the_cached_object_of_an_unchanged_resource_version(tracker) -> None:
    tracker, lists, _changed = tracker
    lists.jobs = [_obj("a", "run-a", 5), _obj("b", "run-b", 6)]
    tracker.relist()
    first = dict(tracker.objects["jobs"])
    assert "spec" not in first["a"]  # slimmed
    lists.jobs = [_obj("a", "run-a", 5), _obj("b", "run-b", 9, phase="Failed")]
    tracker.relist()
    assert tracker.objects["jobs"]["a"] is first["a"]  # not slimmed again, not held twice
    assert tracker.objects["jobs"]["b"] is not first["b"]
    assert tracker.objects["jobs"]["b"]["metadata"]["resourceVersion"] == "9"


def test_the_run_index_follows_events_and_lists(tracker) -> None:
    tracker, lists, _changed = tracker
    lists.jobs = [_obj("job-1", "run-1", 5)]
    lists.pods = [_obj("job-1-p1", "run-1", 6, phase="Pending")]
    tracker.relist()
    assert tracker.observation("run-1").phase == "Pending"
    with tracker.lock:  # what the stream does for ADDED / DELETED
        tracker._put("pods", "job-1-p2", _obj("job-1-p2", "run-1", 7))
        tracker._put("pods", "job-1-p1", None)
    job, pods = tracker._of_run("run-1")
    assert job["metadata"]["name"] == "job-1" and [p["metadata"]["name"] for p in pods] == ["job-1-p2"]
    assert tracker.observation("run-1").phase == "Running" and tracker.still_running("run-1")
    lists.jobs, lists.pods = [], []
    tracker.relist()
    assert tracker.observation("run-1") is None and not tracker.still_running("run-1")
    assert tracker._job_of_run == {} and tracker._pods_of_run == {}


def test_a_relist_after_410_re_evaluates_the_runs_that_changed_and_only_those(tracker) -> None:
    tracker, lists, changed = tracker
    lists.pods = [_obj(f"p{i}", f"run-{i}", 10 + i) for i in range(5)]
    tracker._relist_kind("pods")  # nothing cached yet: every run is new
    assert changed == [f"run-{i}" for i in range(5)]
    changed.clear()
    # Meanwhile (events lost): p1 changed, p2 went, p5 came; p0, p3, p4 are as cached.
    lists.pods = [_obj("p0", "run-0", 10), _obj("p1", "run-1", 30, phase="Failed"), _obj("p3", "run-3", 13),
                  _obj("p4", "run-4", 14), _obj("p5", "run-5", 31)]
    tracker._relist_kind("pods")
    assert changed == ["run-1", "run-2", "run-5"]
