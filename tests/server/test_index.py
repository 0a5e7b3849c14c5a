"""The index of unknowns: an index_unknowns job stores unknown faces as persons; list, rename, merge them."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .conftest import BLUE, RED, Runner, face, upload

GREEN = (20, 200, 20)


def test_index_unknowns_then_rename_and_merge(client: TestClient, runner: Runner) -> None:
    assert client.get("/api/v1/index/").json() == {"total": 0, "data": []}
    sources = [upload(client, face(rgb))["uri"] for rgb in (RED, BLUE, GREEN)]
    job = client.post(
        "/api/v1/jobs/", json={"sources": sources, "modules": {"face_recognition": {"index_unknowns": True}}}
    ).json()
    runner.run_all()
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["state"] == "completed", done
    items = client.get(f"/api/v1/jobs/{job['id']}/detailed-results/").json()["data"]
    assert all(item["meta"]["indexed_identity"] for item in items)
    indexed = client.get("/api/v1/index/").json()
    assert indexed["total"] == 3 and all(p["is_unknown"] for p in indexed["data"])
    by_source = {i["source"]: i["meta"]["class_id"] for i in items}
    first, second, third = (by_source[uri] for uri in sources)  # the red, blue and green faces' persons
    assert {p["person_id"] for p in indexed["data"]} == {first, second, third}
    renamed = client.patch(f"/api/v1/index/{first}", json={"name": "Ruby"}).json()
    assert renamed["name"] == "Ruby"
    merged = client.post("/api/v1/index/merge", json={"into": first, "sources": [second]}).json()
    assert merged["person_id"] == first and merged["template_count"] == 2
    after = client.get("/api/v1/index/").json()
    assert after["total"] == 2 and {p["person_id"] for p in after["data"]} == {first, third}
    # A later job recognises the indexed (and renamed) person instead of indexing them again.
    again = client.post(
        "/api/v1/jobs/",
        json={"sources": [upload(client, face(RED))["uri"]], "modules": {"face_recognition": {"index_unknowns": True}}},
    ).json()
    runner.run_all()
    (item,) = client.get(f"/api/v1/jobs/{again['id']}/detailed-results/").json()["data"]
    assert (item["meta"]["person"], item["meta"]["class_id"]) == ("Ruby", first)
    assert client.get("/api/v1/index/").json()["total"] == 2
    missing = client.patch("/api/v1/index/nobody", json={"name": "x"})
    assert missing.status_code == 404
