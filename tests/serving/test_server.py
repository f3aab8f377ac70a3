"""``divrec serve``: endpoint behaviour and bad requests in-process (FastAPI's TestClient, a scripted recommender
and the real one), hot reload, metrics, the token, and one real server subprocess (body cap before reading, crash
durability of acknowledged feedback)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from runhelpers import CONSOLE_SCRIPT, Run, compose_config

from divrec.errors import UserError
from divrec.serving.recommender import Recommender
from divrec.serving.server import (
    Limits,
    ServerSettings,
    checkpoint_version,
    create_app,
    model_overrides,
    serve,
    settings_from_config,
)
from divrec.serving.store import FeedbackStore

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Rec:
    items: list[str]
    scores: list[float]
    unknown_items: list[str]
    fallback: str | None
    user: str | None = None


class Scripted:
    """The Recommender interface over a 5-item catalog. Its "weights" are a checkpoint file's text, and every list
    starts with them, so a response shows which file scored it; ``load_state`` swaps them in two steps."""

    n_items, max_len = 5, 4
    item_ids = np.array(["", "a", "b", "c", "d", "e"], dtype=object)

    def __init__(self, weights: str = "w0") -> None:
        self.first = self.second = weights
        self.calls: list[int] = []

    def recommend(self, histories, k=10, exclude_seen=True, rerank=None, timestamps=None, user_features=None):
        if rerank is not None and rerank != "mmr":
            raise UserError(f"rerank={rerank!r}: no such re-ranker")
        self.calls.append(len(histories))
        out = []
        for h in histories:
            known = [i for i in h if i in self.item_ids[1:]]
            rest = [i for i in self.item_ids[1:] if not (exclude_seen and i in known)]
            out.append(Rec([self.first, self.second, *rest][:k], [3.0, 2.0, *[1.0] * len(rest)][:k],
                           [i for i in h if i not in known], None if known else "popularity"))
        return out

    def recommend_users(self, users, k=10, exclude_seen=True, rerank=None):
        return [Rec(["a"][:k], [float("-inf")], [], None, u) for u in users]

    def knows_user(self, user: str) -> bool:
        return user == "u1"

    def load_state(self, path) -> None:
        text = Path(path).read_text()
        if not text.startswith("w"):
            raise UserError(f"{path}: not a checkpoint of the served model")
        self.first = text
        time.sleep(0.2)  # a half-swapped model, if anyone scored now
        self.second = text


@pytest.fixture
def ckpts(tmp_path: Path) -> dict[str, Path]:
    files = {"w0": "w0", "w1": "w1", "bad": "corrupt"}
    for name, text in files.items():
        (tmp_path / f"{name}.ckpt").write_text(text)
    return {name: tmp_path / f"{name}.ckpt" for name in files}


def settings(tmp_path: Path, **kw) -> ServerSettings:
    base = {"ckpt_path": str(tmp_path / "w0.ckpt"), "token": TOKEN, "feedback_url": f"sqlite:///{tmp_path}/fb.sqlite"}
    return ServerSettings(**(base | kw))


@pytest.fixture
def client(tmp_path: Path, ckpts: dict[str, Path]) -> Iterator[TestClient]:
    with TestClient(create_app(Scripted(), settings(tmp_path, limits=Limits(max_history=5, max_k=50)))) as c:
        yield c


def test_recommend_a_history_and_a_known_user(client: TestClient, ckpts: dict[str, Path]) -> None:
    body = client.post("/recommend", json={"history": ["a", 7, "zz"], "k": 4}).json()
    assert body["items"] == [
        {"item": "w0", "score": 3.0, "rank": 1}, {"item": "w0", "score": 2.0, "rank": 2},
        {"item": "b", "score": 1.0, "rank": 3}, {"item": "c", "score": 1.0, "rank": 4},
    ]
    assert body["unknown_items"] == ["7", "zz"]  # integers are read as raw ids
    assert body["fallback"] is None and body["model"] == checkpoint_version(ckpts["w0"])
    assert len(client.post("/recommend", json={"history": []}).json()["items"]) == 7  # default k=10, all there is
    assert client.post("/recommend", json={"history": [], "k": 1}).json()["fallback"] == "popularity"
    user = client.post("/recommend", json={"user": "u1", "k": 1}).json()
    assert user["items"] == [{"item": "a", "score": None, "rank": 1}]  # -inf is no JSON number: null


BAD_REQUESTS = [
    (b'{"history": ["a"', 422, "not valid JSON"),
    (b"[1, 2]", 422, "body: Input should be an object"),
    (b'{"history": "abc"}', 422, "history: Input should be a valid array"),
    (b'{"history": [true]}', 422, "an id must be a string or an integer"),
    (b'{"history": ["a"], "k": "ten"}', 422, "k: Input should be a valid integer"),
    (b'{"history": ["a"], "k": 0}', 422, "k=0: must be between 1 and limits.max_k=50"),
    (b'{"history": ["a"], "k": -3}', 422, "k=-3: must be between 1"),
    (b'{"history": ["a"], "k": 100000000000000000000}', 422, "k=100000000000000000000: must be between 1"),
    (b'{"history": ["a"], "k": 51}', 422, "limits.max_k=50"),
    (b'{"history": ["a", "b", "c", "d", "e", "f"]}', 422, "history has 6 items, over limits.max_history=5"),
    (b'{"k": 3}', 422, "send exactly one of history and user"),
    (b'{"history": ["a"], "user": "u1"}', 422, "send exactly one of history and user"),
    (b'{"histroy": ["a"]}', 422, "histroy: Extra inputs are not permitted"),
    (b'{"history": ["a"], "rerank": "nope"}', 422, "rerank='nope': no such re-ranker"),
    (b'{"user": "nobody"}', 404, "user 'nobody' is unknown to the model"),
    (b"x" * ((1 << 20) + 1), 413, "larger than limits.max_body_bytes=1048576"),
]


@pytest.mark.parametrize(("raw", "status", "message"), BAD_REQUESTS)
def test_a_bad_request_gets_one_line_and_the_server_keeps_serving(
    client: TestClient, raw: bytes, status: int, message: str
) -> None:
    reply = client.post("/recommend", content=raw)
    assert reply.status_code == status
    assert message in reply.json()["error"] and "\n" not in reply.json()["error"]
    assert client.post("/recommend", json={"history": ["a"]}).status_code == 200


def test_a_chunked_body_is_cut_off_at_the_cap(client: TestClient) -> None:
    chunks = (b"x" * 600_000 for _ in range(3))  # no Content-Length: counted while it is read
    reply = client.post("/recommend", content=chunks)
    assert reply.status_code == 413 and "limits.max_body_bytes=1048576" in reply.json()["error"]


def test_unknown_paths_and_methods_are_json_errors(client: TestClient) -> None:
    assert client.get("/nope").status_code == 404 and "the endpoints are" in client.get("/nope").json()["error"]
    assert client.get("/recommend").status_code == 405


def test_feedback_needs_the_token_and_is_stored_before_the_reply(client: TestClient, tmp_path: Path) -> None:
    event = {"user": "u1", "item": "a", "event": "click", "timestamp": 1_700_000_000}
    assert client.post("/feedback", json=event).status_code == 401
    assert client.post("/feedback", json=event, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/feedback", json=event, headers=AUTH).json() == {"stored": 1}
    many = {"events": [{"user": 5, "item": "b"}, {"user": "u2", "item": "c", "event": "buy"}]}
    assert client.post("/feedback", json=many, headers=AUTH).json() == {"stored": 2}
    frame = FeedbackStore(f"sqlite:///{tmp_path}/fb.sqlite").read()  # what a restarted server would find
    assert list(frame["user_id"]) == ["u1", "5", "u2"] and list(frame["event"]) == ["click", "click", "buy"]
    assert frame["timestamp"].iloc[0] == 1_700_000_000


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"events": [{"user": "u", "item": "a"}, {"user": "u"}]}, 422, "events.1.item: Field required"),
        ({"user": "u", "item": "a", "timestamp": "yesterday"}, 422, "timestamp: Input should be a valid number"),
        ({"user": "u", "item": "a", "event": ""}, 422, "event: String should have at least 1 character"),
        ({"events": [{"user": "u", "item": "a"}] * 3}, 413, "3 events, over limits.max_feedback_events=2"),
    ],
)
def test_a_bad_feedback_batch_stores_nothing(tmp_path: Path, ckpts: dict, body: dict, status: int,
                                             message: str) -> None:
    app = create_app(Scripted(), settings(tmp_path, limits=Limits(max_feedback_events=2)))
    with TestClient(app) as client:
        reply = client.post("/feedback", json=body, headers=AUTH)
        assert (reply.status_code, message in reply.json()["error"]) == (status, True), reply.json()
    assert FeedbackStore(f"sqlite:///{tmp_path}/fb.sqlite").count() == 0


def test_reload_swaps_atomically_and_a_bad_file_keeps_the_old_model(client: TestClient, ckpts: dict) -> None:
    assert client.post("/reload").status_code == 401
    old = checkpoint_version(ckpts["w0"])
    refused = client.post("/reload", json={"ckpt_path": str(ckpts["bad"])}, headers=AUTH)
    assert refused.status_code == 422 and f"reload refused, still serving {old}" in refused.json()["error"]
    missing = client.post("/reload", json={"ckpt_path": str(ckpts["bad"]) + ".gone"}, headers=AUTH)
    assert missing.status_code == 404 and "no such file" in missing.json()["error"]
    assert client.post("/recommend", json={"history": []}).json()["model"] == old

    replies: list[dict] = []
    done = threading.Event()

    def hammer() -> None:  # requests before, during and after the reload
        while not done.is_set() or len(replies) < 60:
            replies.append(client.post("/recommend", json={"history": ["a"], "k": 2}).json())

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    while len(replies) < 10:
        time.sleep(0.005)
    swapped = client.post("/reload", json={"ckpt_path": str(ckpts["w1"])}, headers=AUTH).json()
    done.set()
    for t in threads:
        t.join()
    assert swapped == {"model": checkpoint_version(ckpts["w1"]), "previous": old, "ckpt_path": str(ckpts["w1"])}
    versions = {checkpoint_version(ckpts[w]): w for w in ("w0", "w1")}
    for reply in replies:  # every request answered, wholly by the model its "model" names
        assert [i["item"] for i in reply["items"]] == [versions[reply["model"]]] * 2
    assert {reply["model"] for reply in replies} == set(versions)
    assert client.get("/health").json()["model"] == swapped["model"]


def test_metrics_count_requests_per_endpoint_in_an_app_registry(tmp_path: Path, ckpts: dict) -> None:
    first, second = (create_app(Scripted(), settings(tmp_path)) for _ in range(2))
    with TestClient(first) as client, TestClient(second) as other:
        for _ in range(3):
            client.post("/recommend", json={"history": ["a"]})
        client.post("/recommend", json={"k": 1})
        client.get("/health")
        text = client.get("/metrics").text
        assert 'divrec_requests_total{endpoint="/recommend",status="200"} 3.0' in text
        assert 'divrec_requests_total{endpoint="/recommend",status="422"} 1.0' in text
        assert 'divrec_request_latency_seconds_count{endpoint="/recommend"} 4.0' in text
        assert 'divrec_request_latency_seconds_bucket{endpoint="/health",le="0.005"}' in text
        assert "divrec_batch_size_count 3.0" in text
        assert 'endpoint="/recommend"' not in other.get("/metrics").text  # its own registry


@pytest.mark.parametrize("log_user_ids", [False, True])
def test_logs_name_users_by_hash_unless_asked(tmp_path: Path, ckpts: dict, caplog: pytest.LogCaptureFixture,
                                              log_user_ids: bool) -> None:
    caplog.set_level(logging.DEBUG, logger="divrec.serve")
    with TestClient(create_app(Scripted(), settings(tmp_path, log_user_ids=log_user_ids))) as client:
        client.post("/recommend", json={"user": "alice-42"})
        client.post("/feedback", json={"user": "alice-42", "item": "a"}, headers=AUTH)
    assert ("alice-42" in caplog.text) == log_user_ids
    assert ("user#" in caplog.text) != log_user_ids


def test_settings_come_from_serve_yaml_and_bad_caps_are_refused(tmp_path: Path) -> None:
    cfg = compose_config("serve", ["ckpt_path=m.ckpt", "feedback.url=sqlite://", "limits.max_k=7", "k=5"])
    got = settings_from_config(cfg)
    assert (got.ckpt_path, got.limits.max_k, got.default_k, got.feedback_url) == ("m.ckpt", 7, 5, "sqlite://")
    assert got.limits.max_body_bytes == 1 << 20 and got.batch_max_size == 64
    assert model_overrides(["port=1", "paths.data_dir=/d", "feedback.url=x", "rerank=mmr", "limits.max_k=3"]) == [
        "paths.data_dir=/d", "rerank=mmr"]
    with pytest.raises(UserError, match=r"limits.max_history=0: must be a positive integer"):
        ServerSettings(limits=Limits(max_history=0))
    with pytest.raises(UserError, match=r"k=11: the default list length must be in 1..limits.max_k"):
        ServerSettings(default_k=11, limits=Limits(max_k=10))


def test_serve_refuses_a_busy_port_before_loading_the_model(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = compose_config("serve", [f"ckpt_path={tmp_path / 'never-read.ckpt'}", f"port={port}",
                                       "feedback.url=sqlite://"])
        with pytest.raises(UserError, match=rf"port={port}: cannot listen there \(Address already in use\)"):
            serve(cfg)


# --- the real Recommender ------------------------------------------------------------------------------------------
def test_the_real_model_serves_and_refuses_an_incompatible_reload(tmp_path: Path, tiny_run: Run) -> None:
    ckpt = tiny_run.run_dir / "checkpoints" / "best.ckpt"
    recommender = Recommender.from_checkpoint(ckpt, overrides=[f"paths.data_dir={tiny_run.data_dir}"])
    checkpoint = torch.load(ckpt, weights_only=True)
    key = next(k for k, v in checkpoint["state_dict"].items() if v.ndim == 2)
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key][:, :3]  # another model size
    torch.save(checkpoint, tmp_path / "other.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"\x00not a checkpoint")
    user = str(recommender.data.user_raw_ids[1])
    with TestClient(create_app(recommender, settings(tmp_path, ckpt_path=str(ckpt), token=None))) as client:
        before = client.post("/recommend", json={"user": user, "k": 5}).json()
        assert len(before["items"]) == 5 and before["model"] == checkpoint_version(ckpt)
        for bad in ("other.ckpt", "junk.ckpt"):
            reply = client.post("/reload", json={"ckpt_path": str(tmp_path / bad)})
            assert reply.status_code == 422 and "reload refused" in reply.json()["error"], reply.json()
            assert client.post("/recommend", json={"user": user, "k": 5}).json() == before
        assert client.post("/reload").json()["model"] == before["model"]  # the configured path again
        history = client.post("/recommend", json={"history": [before["items"][0]["item"]], "k": 3}).json()
        assert len(history["items"]) == 3 and history["unknown_items"] == []


# --- a real `divrec serve` process ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path, tiny_run: Run) -> Iterator[tuple[str, str, subprocess.Popen]]:
    port, url = free_port(), f"sqlite:///{tmp_path / 'feedback.sqlite'}"
    args = [str(CONSOLE_SCRIPT), "serve", f"ckpt_path={tiny_run.run_dir / 'checkpoints' / 'best.ckpt'}",
            f"port={port}", f"feedback.url={url}", f"paths.data_dir={tiny_run.data_dir}",
            f"hydra.run.dir={tmp_path / 'run'}"]
    env = {k: v for k, v in os.environ.items() if k != "DIVREC_SERVE_TOKEN"} | {"OMP_NUM_THREADS": "1"}
    log_file = (tmp_path / "server.log").open("w")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, healthy = time.monotonic() + 90, False
        while not healthy and time.monotonic() < deadline and proc.poll() is None:
            try:
                healthy = httpx.get(f"{base}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                time.sleep(0.2)
        assert healthy, (tmp_path / "server.log").read_text()
        yield base, url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        log_file.close()


def test_a_real_server_refuses_a_huge_body_unread_and_keeps_acknowledged_feedback_after_kill_9(
    server: tuple[str, str, subprocess.Popen],
) -> None:
    base, url, proc = server
    assert httpx.post(f"{base}/recommend", json={"history": [], "k": 3}).json()["fallback"] == "popularity"
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # announces 100 MB, sends 64 KiB
        sock.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000000\r\n\r\n" + b"[" * 65536)
        reply = b""
        while chunk := sock.recv(65536):  # the server answers and closes without reading the rest
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"max_body_bytes=1048576" in reply
    acknowledged = 0
    with httpx.Client(base_url=base) as client:
        for i in range(5):
            reply = client.post("/feedback", json={"user": f"u{i}", "item": "1", "timestamp": i})
            acknowledged += reply.json()["stored"]
        batch = {"events": [{"user": "b", "item": str(i)} for i in range(7)]}
        acknowledged += client.post("/feedback", json=batch).json()["stored"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    store = FeedbackStore(url)  # what the restarted server opens: the WAL is replayed
    assert acknowledged == 12 and store.count() == acknowledged
    assert json.loads(store.read()["timestamp"].iloc[:5].to_json(orient="values")) == [0, 1, 2, 3, 4]


def test_the_loop_feedback_over_http_then_an_online_update_that_the_server_swaps_to(
    server: tuple[str, str, subprocess.Popen], tiny_run: Run, tmp_path: Path
) -> None:
    """serve → POST /feedback (committed) → `divrec feedback source=<its store> reload_url=.../reload` → the
    server answers from the new checkpoint."""
    from runhelpers import TINY_DATA, run_paths

    from divrec.feedback import run_feedback

    base, url, _ = server
    rec = Recommender.from_checkpoint(tiny_run.run_dir / "checkpoints" / "best.ckpt",
                                      overrides=[f"paths.data_dir={tiny_run.data_dir}"])
    user, items = str(rec.data.user_raw_ids[0]), [str(i) for i in rec.item_ids[1:6]]
    events = [{"user": user, "item": item, "event": "click", "timestamp": 1e9 + i} for i, item in enumerate(items)]
    assert httpx.post(f"{base}/feedback", json={"events": events}).json() == {"stored": 5}
    before = httpx.post(f"{base}/recommend", json={"user": user, "k": 3}).json()["model"]
    cfg = compose_config("feedback", [
        *TINY_DATA, "trainer=cpu", "data.batch_size=32", "feedback.online.epochs=1", "feedback.progress_bars=false",
        f"source={url}", f"ckpt_path={tiny_run.run_dir / 'checkpoints' / 'best.ckpt'}", f"reload_url={base}/reload",
        *run_paths(tmp_path / "update", tiny_run.data_dir),
    ])
    assert run_feedback(cfg)["feedback/new_events"] == 5
    after = httpx.post(f"{base}/recommend", json={"user": user, "k": 3}).json()["model"]
    assert after != before and after.startswith("feedback-5.ckpt@")
