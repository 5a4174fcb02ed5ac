"""Offline store-and-forward driven by SIPp (the scenarios of bench/sipp/): a SIPp sender
stores 300 MESSAGEs for 100 users, then the users REGISTER a SIPp UAS as their contact
and every stored MESSAGE must reach it once, in order, unchanged, leaving the store empty.
Runs bench/sipp/offline.py (which starts its own server, 2 workers, on loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from simplefast.testing import REPO


def test_sipp_offline_store_and_deliver(tmp_path: Path) -> None:
    out = tmp_path / "offline.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sipp" / "offline.py"), "--messages", "300", "--per-user", "3",
         "--rate", "300", "--register-rate", "300", "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd=str(REPO),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    store, deliver, content, check = r["store"], r["deliver"], r["content"], r["check"]
    assert (store["accepted_202"], store["calls_failed"]) == (300, 0), store
    assert deliver["received_distinct_call_ids"] == 300 and deliver["users_without_message"] == 0, deliver
    assert (content["lost"], content["duplicated"], content["users_out_of_order"]) == (0, 0, 0), content
    changed = ("body_changed", "from_changed", "to_changed", "content_type_changed", "without_date")
    assert all(content[k] == 0 for k in changed), content
    assert check["messages_after_second_register"] == 0 and check["store_rows"]["offline"] == 0, check
