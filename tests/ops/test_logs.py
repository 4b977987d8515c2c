"""Issue 19: `[log] format = "json"` writes one JSON object per line with the event's height,
round, peer and request fields; refused requests (401/403/429) are logged with their reason and
key prefix, at most one line per `[rpc] error_log_interval_ms`, while the metrics count all."""

from __future__ import annotations

import json
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from emrchain.cli.log_format import JsonFormatter
from emrchain.devnet.harness import Devnet
from tests.ops.support import get

FLOOD_REQUESTS = 300
SIGNING_KEY = "ab12" * 16  # a well-formed key header without the rest of a signed request


def test_json_lines_hold_one_event_each_with_its_fields() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "emrchain.test", logging.WARNING, __file__, 1, "two\nlines %s", ("x",), exc_info
    )
    record.height, record.round, record.peer = 7, 1, "ff" * 32
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines x"
    assert (entry["height"], entry["round"], entry["peer"]) == (7, 1, "ff" * 32)
    assert entry["level"] == "warning" and entry["logger"] == "emrchain.test"
    assert "ValueError: bad" in entry["exception"]
    assert entry["time"].endswith("Z")
    assert "request" not in entry  # fields the event does not have are left out


def refused_lines(log: Path) -> list[dict]:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [entry for entry in entries if "request" in entry]


@pytest.mark.slow
def test_a_flood_of_refused_requests_is_counted_but_logged_once(tmp_path: Path) -> None:
    with Devnet(tmp_path / "net", 1) as devnet:
        devnet.configure(0, {"log": {"format": "json"}, "rpc": {"error_log_interval_ms": 600_000}})
        devnet.start_all()
        devnet.wait_for_height(2, [0], timeout_s=60)
        url = devnet.rpc_urls[0] + "/records/" + "00" * 32
        for _ in range(FLOOD_REQUESTS):
            request = urllib.request.Request(url, headers={"X-Emrchain-Key": SIGNING_KEY})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 401
        exposition = get(devnet.instrumentation_url(0) + "/metrics")[1]
        counted = [
            line
            for line in exposition.splitlines()
            if line.startswith('emrchain_rpc_refused_requests_total{reason="unsigned_request"')
        ]
        assert counted and float(counted[0].split()[-1]) == FLOOD_REQUESTS
        log = devnet.log_path(0)
        devnet.wait_for(lambda: refused_lines(log), 10, "the refused-request line")
        devnet.stop(0)
        # Every line is one JSON object; consensus lines carry height and round.
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        assert any("height" in entry and "round" in entry for entry in entries)
        lines = refused_lines(log)
        assert len(lines) == 1, lines
        request = lines[0]["request"]
        assert request["status"] == 401 and request["reason"] == "unsigned_request"
        assert request["key_prefix"] == SIGNING_KEY[:16]
        assert request["path"] == "/records/" + "00" * 32
        assert log.stat().st_size < 64 * 1024
