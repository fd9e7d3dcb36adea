"""List answers parsed one item at a time (the watcher's memory bound), against the emulator too."""

from __future__ import annotations

import json

import pytest

from orchestrator.kube.client import KubeClient
from orchestrator.kube.listing import parse_list
from orchestrator.kube.tracker import slim
from orchestrator.settings import Settings
from tests.support.kube_emulator import KubeEmulator

LIST = {
    "kind": "JobList", "apiVersion": "batch/v1", "metadata": {"resourceVersion": "123", "continue": ""},
    "items": [{"metadata": {"name": f"job-{i}", "labels": {"a": "b"}, "uid": str(i)},
               "spec": {"template": {"spec": {"containers": [{"name": "agent", "args": ["x" * (i % 50)]}]}}},
               "status": {"active": 1, "ratio": i * 1.5, "note": "caf\u00e9 \u2603"}} for i in range(300)],
}


@pytest.mark.parametrize("size", [1, 7, 1000, 10**7])
def test_a_list_in_any_chunking_parses_to_the_same_items(size: int) -> None:
    raw = json.dumps(LIST, ensure_ascii=False).encode()
    items, metadata = parse_list([raw[i:i + size] for i in range(0, len(raw), size)], slim)
    assert items == [slim(item) for item in LIST["items"]]
    assert metadata == LIST["metadata"]


def test_items_before_metadata_and_an_empty_list() -> None:
    raw = json.dumps({"items": [], "metadata": {"resourceVersion": "9"}}, indent=2).encode()
    assert parse_list([raw], slim) == ([], {"resourceVersion": "9"})


def test_a_truncated_answer_is_an_error() -> None:
    raw = json.dumps(LIST).encode()
    with pytest.raises(ValueError):
        parse_list([raw[: len(raw) // 2]], slim)


def test_slim_keeps_metadata_and_status_only() -> None:
    kept = slim(LIST["items"][3])
    assert set(kept) == {"metadata", "status"} and kept["metadata"]["name"] == "job-3"


def test_the_emulator_listing_through_the_client(settings: Settings) -> None:
    emulator = KubeEmulator()
    emulator.start()
    try:
        for i in range(40):
            emulator.put("jobs", {"apiVersion": "batch/v1", "kind": "Job",
                                  "metadata": {"name": f"j{i}", "namespace": "default", "labels": {"x": "y"}},
                                  "spec": {"template": {}}, "status": {}})
        client = KubeClient.from_settings(settings, emulator.api_client())
        full = client.list_jobs("x=y")
        slimmed = client.list_jobs("x=y", slim)
        assert slimmed.items == [slim(job) for job in full.items] and len(full.items) == 40
        assert slimmed.resource_version == full.resource_version
    finally:
        emulator.stop()
