"""Notifications through Apprise, checked against a local HTTP server that records them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from cockpit.campaign.hooks import Notice, NullNotifier
from cockpit.campaign.notify import (
    DEFAULT_KINDS,
    NOTIFY_ENV,
    AppriseNotifier,
    NotifyConfig,
    NotifyConfigError,
    check_urls,
    load_config,
    notifier_from_config,
    send_now,
)

pytest.importorskip("apprise")


class Recorder(HTTPServer):
    """A loopback HTTP server that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                size = int(self.headers.get("Content-Length", 0))
                recorder.received.append((self.path, json.loads(self.rfile.read(size))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    # shutdown() waits for the loop's next look at its flag: half a second at the default
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was bound, then released)."""
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"json://127.0.0.1:{port}/gone"


def test_a_notice_reaches_the_webhook_with_its_title_and_line(recorder):
    errors: list[str] = []
    notifier = AppriseNotifier(NotifyConfig(urls=(recorder.url,)), on_error=errors.append)
    notifier.notify(Notice(kind="failed", message="#3 small failed: crashed at step 120"))
    notifier.notify(Notice(kind="started", message="#4 started"))  # not pushed by default
    assert notifier.flush(20)
    notifier.close()
    assert errors == []
    assert len(recorder.received) == 1
    path, body = recorder.received[0]
    assert path == "/hook"
    assert body["title"] == "gpt-cockpit: failed"
    assert body["message"] == "#3 small failed: crashed at step 120"
    assert body["type"] == "failure"


def test_an_unreachable_destination_is_reported_and_the_others_still_get_it(recorder):
    errors: list[str] = []
    config = NotifyConfig(urls=(closed_port_url(), recorder.url))
    notifier = AppriseNotifier(config, on_error=errors.append)
    notifier.notify(Notice(kind="queue-empty", message="the queue is empty: 5 done"))
    assert notifier.flush(30)
    notifier.close()
    assert [b["message"] for _, b in recorder.received] == ["the queue is empty: 5 done"]
    assert len(errors) == 1 and "notification not sent to json://127.0.0.1:" in errors[0]


def test_send_now_names_only_what_failed(recorder):
    dead = closed_port_url()
    assert send_now([recorder.url], "t", "b") == []
    assert send_now([dead], "t", "b") == [dead.rsplit("/", 1)[0] + "/…"]


def test_config_from_file_and_environment(tmp_path):
    path = tmp_path / "queue.json"
    assert load_config(path, environ={}) == NotifyConfig()
    path.write_text(json.dumps({"notify": {"urls": ["ntfy://night"], "on": ["done"]}}))
    assert load_config(path, environ={}) == NotifyConfig(urls=("ntfy://night",), kinds=("done",))
    path.write_text(json.dumps({"notify": ["ntfy://night"]}))
    assert load_config(path, environ={}).kinds == DEFAULT_KINDS
    env = {NOTIFY_ENV: "json://127.0.0.1:9/a, ntfy://b"}
    assert load_config(path, environ=env).urls == ("json://127.0.0.1:9/a", "ntfy://b")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not readable JSON"),
        (json.dumps({"notify": 3}), '"notify" must be an object'),
        (json.dumps({"notify": {"urls": [1]}}), "list of Apprise URLs"),
        (
            json.dumps({"notify": {"urls": [], "on": ["finished"]}}),
            "unknown notice kind 'finished'",
        ),
    ],
)
def test_a_bad_config_is_one_line(tmp_path, content, words):
    path = tmp_path / "queue.json"
    path.write_text(content)
    with pytest.raises(NotifyConfigError, match=words) as info:
        load_config(path, environ={})
    assert "\n" not in str(info.value)


def test_unknown_urls_are_refused_before_the_scheduler_starts():
    assert check_urls(["ntfy://topic", "json://127.0.0.1:8/x"]) is None
    problem = check_urls(["nonsense://secret-token"])
    assert problem and "is not a URL Apprise knows" in problem and "secret-token" not in problem
    with pytest.raises(NotifyConfigError):
        notifier_from_config(config=NotifyConfig(urls=("nonsense://x",)))


def test_no_urls_means_the_null_notifier():
    assert isinstance(notifier_from_config(config=NotifyConfig()), NullNotifier)


def test_queue_notify_test_sends_through_the_configured_url(recorder, capsys, monkeypatch):
    from cockpit.__main__ import main

    monkeypatch.setenv(NOTIFY_ENV, recorder.url)
    assert main(["queue", "notify", "--test"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"json://127.0.0.1:{recorder.server_address[1]}/…"
    assert [b["title"] for _, b in recorder.received] == ["gpt-cockpit: test"]
    monkeypatch.setenv(NOTIFY_ENV, closed_port_url())
    assert main(["queue", "notify", "--test"]) == 1
    assert "not sent to json://127.0.0.1:" in capsys.readouterr().err


def test_queue_run_refuses_a_url_apprise_does_not_know(capsys, monkeypatch):
    from cockpit.__main__ import main

    assert main(["queue", "add", "tiny_char", "--device", "cpu"]) == 0
    capsys.readouterr()
    monkeypatch.setenv(NOTIFY_ENV, "nonsense://secret")
    assert main(["queue", "run", "--foreground"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a URL Apprise knows" in err[0] and "secret" not in err[0]
