"""``xlt-predict serve``: a real server (a subprocess on a free port) asked over HTTP.

Happy paths, per-item errors (the batch rules), the body and item limits, bad JSON,
unknown routes and methods: every 4xx is one JSON ``{"error": ...}``, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "predictor"
MAX_ITEMS = 5
#: the shipped predictor is unsigned: a signing key in the developer's shell would refuse it
ENV = {k: v for k, v in os.environ.items() if k != "XLT_MODEL_KEY"}
MAX_BODY_KB = 8


def _start(*extra: str) -> tuple[subprocess.Popen, str, str]:
    """A server on a free port: (process, its URL, what it printed before listening)."""
    proc = subprocess.Popen([sys.executable, "-m", "predictor.cli", "serve", "--predictor",
                             str(SHIPPED), "--port", "0", *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    deadline = time.monotonic() + 180
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on (http://\S+) \(API docs", line)
        if m:
            return proc, m.group(1), "".join(lines)
    proc.kill()
    raise AssertionError("the server did not start:\n" + "".join(lines))


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture(scope="module")
def server() -> Any:
    proc, url, _ = _start("--max-items", str(MAX_ITEMS), "--max-body-kb", str(MAX_BODY_KB))
    yield url
    err = _stop(proc)
    assert "Traceback" not in err, err


def call(url: str, method: str = "GET", body: Any = None, raw: bytes | None = None
         ) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        assert "Traceback" not in text
        return exc.code, json.loads(text)


REQ = {"id": "a", "model": "me5-small", "train_config": {"en": 2490, "de": 2490}, "target": "sw"}
FIELDS = {"id", "prediction", "lower", "upper", "basis", "out_of_support", "reason",
          "pretraining", "profile"}


def _batch_answers(lines: list[dict]) -> list[dict]:
    """What `xlt-predict batch` answers for the same requests."""
    from predictor.serving import answer_batch, load_predictor
    p = load_predictor(SHIPPED)
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    return [json.loads(x) for x in answer_batch(p, data).lines]


def test_health_model_languages_docs(server: str) -> None:
    status, health = call(f"{server}/health")
    assert status == 200 and health["status"] == "ok"
    assert health["model_sha256"] == json.loads((SHIPPED / "model_card.json").read_text())[
        "model_sha256"]
    status, model = call(f"{server}/model")
    assert status == 200
    assert {s["model"] for s in model["systems"]} == {"me5-small", "xlmr", "tulrv6"}
    assert {p["protocol"] for p in model["protocols"]} >= {"unseen_target", "unseen_config"}
    assert model["intervals"]["level"] == 0.9
    assert set(model["intervals"]["coverage"]) == {"unseen-target", "measured-target"}
    assert len(model["training_data"]["fingerprint_sha256"]) == 64
    assert model["signature"] == "checksum only"
    status, langs = call(f"{server}/languages")
    sw = next(x for x in langs["languages"] if x["code"] == "sw")
    assert sw["iso639_3"] == "swh" and sw["name"] == "Swahili"
    assert set(sw["pretraining"]) == {"me5-small", "xlmr", "tulrv6"}
    assert "me5-small/probe" in sw["measured_by"]
    status, found = call(f"{server}/languages?q=welsh")
    assert status == 200 and found["languages"][0]["code"] == "cy"
    with urllib.request.urlopen(f"{server}/docs", timeout=30) as resp:
        assert resp.status == 200 and b"swagger" in resp.read().lower()
    status, spec = call(f"{server}/openapi.json")
    assert {"/predict", "/recommend", "/languages", "/model", "/health"} <= set(spec["paths"])


def test_predict_one_and_many_as_batch(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XLT_MODEL_KEY", raising=False)
    items = [REQ, {**REQ, "id": 2, "target": "quy"},
             {"id": "bad-model", "model": "bert", "train_config": {"en": 10}, "target": "sw"},
             7, {"id": "no-target", "model": "xlmr", "train_config": {"en": 10}}]
    expected = _batch_answers(items)
    status, one = call(f"{server}/predict", "POST", REQ)
    assert status == 200 and FIELDS <= set(one) and one == expected[0]
    assert 0 <= one["lower"] <= one["prediction"] <= one["upper"] <= 100
    status, many = call(f"{server}/predict", "POST", items)
    assert status == 200 and len(many) == len(items)
    assert many[:2] == expected[:2]
    assert [m["id"] for m in many] == ["a", 2, "bad-model", None, "no-target"]
    assert "unknown model 'bert'" in many[2]["error"] and not many[2]["error"].startswith("line")
    assert "JSON object" in many[3]["error"] and "missing field" in many[4]["error"]
    status, bad = call(f"{server}/predict", "POST", items[2])
    assert status == 422 and set(bad) == {"error"} and "unknown model 'bert'" in bad["error"]
    status, empty = call(f"{server}/predict", "POST", [])
    assert status == 200 and empty == []


def test_concurrent_clients_get_their_own_answers(server: str) -> None:
    targets = ["sw", "quy", "ur", "de", "hi", "cy", "yo", "aym"]
    single = {t: call(f"{server}/predict", "POST", {**REQ, "id": t, "target": t})[1]
              for t in targets}

    def ask(i: int) -> tuple[str, Any]:
        t = targets[i % len(targets)]
        return t, call(f"{server}/predict", "POST", {**REQ, "id": t, "target": t})[1]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(64)))
    assert all(ans == single[t] for t, ans in answers)


def test_limits_and_malformed_requests(server: str) -> None:
    status, err = call(f"{server}/predict", "POST", [REQ] * (MAX_ITEMS + 1))
    assert status == 422 and f"limit is {MAX_ITEMS}" in err["error"]
    big = json.dumps([{**REQ, "pad": "x" * 1000}] * 9).encode()
    assert len(big) > MAX_BODY_KB * 1024
    status, err = call(f"{server}/predict", "POST", raw=big)
    assert status == 413 and "over the limit" in err["error"]
    for raw, words in ((b"{not json", "malformed JSON"), (b'{"a": NaN}', "NaN is not valid"),
                       (b"", "empty request body"), (b"\xff\xfe", "not UTF-8"),
                       (b"[" * 8000, "malformed JSON")):
        status, err = call(f"{server}/predict", "POST", raw=raw)
        assert status == 400 and words in err["error"], (raw[:10], err)
    status, err = call(f"{server}/nowhere")
    assert status == 404 and "/predict" in err["error"]
    status, err = call(f"{server}/predict")
    assert status == 405 and set(err) == {"error"}
    status, err = call(f"{server}/languages?q=" + "x" * 200)
    assert status == 422 and "q:" in err["error"]


def test_recommend(server: str) -> None:
    ask = {"model": "me5-small", "targets": ["sw", "ur"], "pool": "en,de,fr,es,ru", "k": 2,
           "top": 3}
    status, rec = call(f"{server}/recommend", "POST", ask)
    assert status == 200 and rec["k"] == 2 and rec["targets"] == ["sw", "ur"]
    assert len(rec["ranking"]) == 3 and rec["interval_level"] == 0.9
    first = rec["ranking"][0]
    assert len(first["sources"]) == 2 and set(first["per_target"]) == {"sw", "ur"}
    assert {"prediction", "lower", "upper", "basis", "out_of_support", "reason"} <= \
        set(first["per_target"]["sw"])
    for bad, words in (({**ask, "k": "2"}, "k:"), ({**ask, "k": 9}, "k must be"),
                       ({**ask, "model": "bert"}, "unknown model"),
                       ({**ask, "colour": "red"}, "colour"), ({**ask, "top": 0}, "top"),
                       ({**ask, "objective": "best"}, "objective"),
                       ({**ask, "targets": ["qqqq"]}, "qqqq"), ([1, 2], "expected a JSON object")):
        status, err = call(f"{server}/recommend", "POST", bad)
        assert status == 422 and set(err) == {"error"} and words in err["error"], (bad, err)


def test_serve_usage_errors_exit_2_before_loading() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "predictor.cli", "serve", "--predictor",
                               str(SHIPPED), "--port", str(port)], cwd=REPO,
                              capture_output=True, text=True, timeout=120, env=ENV, check=False)
    assert proc.returncode == 2 and "is in use" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and time.monotonic() - t0 < 60
    for args, words in ((["--max-items", "0"], "--max-items"), (["--port", "70000"], "--port"),
                        (["--host", "no.such.host.invalid"], "--host")):
        proc = subprocess.run([sys.executable, "-m", "predictor.cli", "serve", "--predictor",
                               str(SHIPPED), *args], cwd=REPO, capture_output=True, text=True,
                              timeout=120, env=ENV, check=False)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr


def test_binding_beyond_loopback_warns() -> None:
    proc, url, printed = _start("--host", "0.0.0.0")
    try:
        port = url.rsplit(":", 1)[1]
        assert call(f"http://127.0.0.1:{port}/health")[0] == 200
    finally:
        _stop(proc)
    assert "warning" in printed and "reachable from other machines" in printed


def test_loopback_default_is_quiet_and_ctrl_c_stops_cleanly() -> None:
    import signal
    proc, url, printed = _start()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert call(f"{url}/health")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err
    assert "warning" not in printed + err
