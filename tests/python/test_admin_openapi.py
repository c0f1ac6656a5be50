"""The admin API's OpenAPI document (`/admin/v2/openapi.json`, generated from the routing) is
fuzzed with schemathesis against a real broker: a bounded pass (few examples per operation, a
time limit) that must find no 5xx response."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests

pytest.importorskip("schemathesis")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("admin REST"), pytest.mark.timeout(300)]


def test_openapi_document_is_served(broker):
    doc = requests.get(f"http://{broker.http}/admin/v2/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/admin/v2/kafka/groups/{group}/offsets" in doc["paths"]
    assert "post" in doc["paths"]["/admin/v2/namespaces/{tenant}/{namespace}/publishRate"]


def test_schemathesis_finds_no_server_error(broker, tmp_path):
    st = shutil.which("st") or shutil.which("schemathesis")
    assert st, "schemathesis CLI not on PATH (pip install -r tests/python/requirements.txt)"
    cmd = [
        st, "run", f"http://{broker.http}/admin/v2/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", "10",
        "--request-timeout", "5",
        "--seed", "8",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "passed" in done.stdout, report
    assert broker.alive(), report
