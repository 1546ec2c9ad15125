"""`python -m emulator` as a subprocess: the ready line and the /_emulator control endpoints."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emulator.data import contact_id
from tests.emulator.conftest import ODATA_HEADERS, members_body

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def standalone() -> Iterator[dict[str, str]]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "emulator", "--port", "0", "--contacts", "500"),
            *("--inactive-fraction", "0.1", "--time-scale", "0.001", "--seed", "4"),
            *("--requests-per-window", "1000", "--cost-per-member-ms", "3"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_standalone_ready_line_and_control_endpoints(standalone: dict[str, str]) -> None:
    info = standalone
    assert set(info) == {
        "base_url",
        "authority_host",
        "tenant_id",
        "client_id",
        "client_secret",
        "ca_file",
    }
    assert info["base_url"].startswith("https://127.0.0.1:")
    verify = ssl.create_default_context(cafile=info["ca_file"])
    with httpx.Client(base_url=info["base_url"], verify=verify) as c:
        r = c.post(
            f"/{info['tenant_id']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
                "scope": info["base_url"] + "/.default",
            },
        )
        token = r.json()["access_token"]
        api = {**ODATA_HEADERS, "Authorization": f"Bearer {token}"}
        r = c.post(
            "/api/data/v9.2/lists", json={"listname": "S", "createdfromcode": 2}, headers=api
        )
        list_id = r.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
        ids = [contact_id(i, 4) for i in range(3)]
        assert (
            c.post(
                "/api/data/v9.2/AddListMembersList", json=members_body(list_id, ids), headers=api
            ).status_code
            == 204
        )
        assert c.get(f"/_emulator/lists/{list_id}/members").json()["value"] == sorted(ids)
        stats = c.get("/_emulator/stats").json()
        assert stats["members_added"] == 3
        # list create (20 ms) + AddListMembersList (20 ms + 3 members x 3 ms from the flag)
        assert abs(stats["total_cost_seconds"] - 0.049) < 1e-9
        assert stats["requests"]["add-list-members"] == {"204": 1}
        assert "min_wall_time" in stats
        assert c.post("/_emulator/expire-tokens").json()["expired"] == 1
        assert c.get("/api/data/v9.2/WhoAmI", headers=api).status_code == 401
        assert c.post("/_emulator/faults", json={"unavailable": 1.0, "seed": 1}).status_code == 200
        assert c.post("/_emulator/faults", json={"bogus": 1}).status_code == 400
        r = c.post(
            f"/{info['tenant_id']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
                "scope": info["base_url"] + "/.default",
            },
        )
        api["Authorization"] = f"Bearer {r.json()['access_token']}"
        assert c.get("/api/data/v9.2/WhoAmI", headers=api).status_code == 503
        assert c.post("/_emulator/reset-stats", json={"throttling": True}).json() == {"ok": True}
        assert c.get("/_emulator/stats").json()["requests_total"] == 0
        assert c.get("/_emulator/nothing").status_code == 404
