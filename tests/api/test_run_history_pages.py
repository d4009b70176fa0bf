"""``GET /runs``: cursor pages, filters by workflow, status and start time, clear errors for bad values."""

from __future__ import annotations

import time

import pytest
from gateway_test_helpers import HEADERS


@pytest.fixture
def history(client):
    """Seven runs: five of 'double' (one per 10 ms), two of 'failing'."""
    ids: dict[str, list[str]] = {"double": [], "failing": []}
    marks = []
    for i in range(5):
        marks.append(time.time())
        reply = client.post("/workflows/double/execute", json={"parameters": {"make": {"x": i}}}, headers=HEADERS)
        assert reply.status_code == 200
        ids["double"].append(reply.json()["run_id"])
        time.sleep(0.01)
    for _ in range(2):
        reply = client.post("/workflows/failing/execute", json={}, headers=HEADERS)
        assert reply.status_code == 422
        ids["failing"].append(reply.json()["run_id"])
    return ids, marks


def _all_pages(client, **params):
    pages, url, query = [], "/runs", dict(params)
    while url:
        reply = client.get(url, params=query, headers=HEADERS)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        pages.append([r["run_id"] for r in body["runs"]])
        url, query = body["links"]["next"], None
        assert (body["next_cursor"] is None) == (url is None)
        assert len(pages) < 20
    return pages


def test_pages_cover_every_run_once_newest_first(client, history):
    ids, _ = history
    pages = _all_pages(client, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [r for p in pages for r in p]
    assert flat == list(reversed(ids["double"] + ids["failing"]))  # newest first, none twice, none missing


def test_filters_by_workflow_and_status_carry_over_to_the_next_page(client, history):
    ids, _ = history
    pages = _all_pages(client, workflow="double", limit=2)
    assert [r for p in pages for r in p] == list(reversed(ids["double"]))
    first = client.get("/runs", params={"workflow": "double", "limit": 2}, headers=HEADERS).json()
    assert "workflow=double" in first["links"]["next"] and "limit=2" in first["links"]["next"]
    failed = client.get("/runs", params={"status": "failed"}, headers=HEADERS).json()
    assert [r["run_id"] for r in failed["runs"]] == list(reversed(ids["failing"]))
    assert {r["status"] for r in failed["runs"]} == {"failed"} and failed["next_cursor"] is None


def test_since_and_until_filter_by_start_time_in_seconds_or_iso_8601(client, history):
    from datetime import datetime, timezone

    ids, marks = history
    middle = client.get("/runs", params={"since": marks[1], "until": marks[3]}, headers=HEADERS).json()
    assert [r["run_id"] for r in middle["runs"]] == [ids["double"][2], ids["double"][1]]
    iso = datetime.fromtimestamp(marks[3], timezone.utc).isoformat()
    later = client.get("/runs", params={"since": iso, "workflow": "double"}, headers=HEADERS).json()
    assert [r["run_id"] for r in later["runs"]] == [ids["double"][4], ids["double"][3]]


@pytest.mark.parametrize(("params", "parameter"), [({"status": "exploded"}, "status"),
                                                   ({"since": "last tuesday"}, "since"),
                                                   ({"cursor": "not-a-cursor"}, "cursor")])
def test_bad_filters_are_422_naming_the_parameter(client, params, parameter):
    reply = client.get("/runs", params=params, headers=HEADERS)
    assert reply.status_code == 422 and reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["parameter"] == parameter and reply.json()["code"] == "invalid_request"


def test_the_page_parameters_are_in_the_openapi_document(client):
    operation = client.get("/openapi.json").json()["paths"]["/runs"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"workflow", "status", "since", "until", "cursor", "limit"} <= names
    assert "next_cursor" in operation["description"]
