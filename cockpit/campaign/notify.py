"""Push notifications through Apprise: one configuration, any service it knows.

Apprise (https://github.com/caronc/apprise) turns one URL per destination into a message:
`ntfy://topic`, `slack://...`, `discord://...`, `mailto://...`, `tgram://...`, or a plain
JSON webhook `json://host:port/path`. The URLs are configured once, in the queue's config
file (`queue.json`: {"notify": {"urls": [...], "on": [...]}}) or in $GPT_COCKPIT_NOTIFY
(URLs separated by spaces or commas), and `gpt-cockpit queue notify --test` sends a test
message to each.

Sending happens on a worker thread with Apprise's own connect and read timeouts, so a slow
or dead endpoint never holds up the scheduler's tick; a message that cannot be sent is
reported through `on_error` (the scheduler writes it to the queue's log) and never stops
the queue.
"""

from __future__ import annotations

import json
import logging
import os
import queue as queue_module
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cockpit.campaign.hooks import NOTICE_KINDS, Notice, Notifier, NullNotifier
from cockpit.campaign.locations import queue_config_path

NOTIFY_ENV = "GPT_COCKPIT_NOTIFY"  # Apprise URLs, separated by spaces or commas
# What is pushed unless the config's "on" says otherwise: an entry's end, failure, halt or
# prune, and the queue's own end (empty, budget, deadline). Starts and retries stay in the log.
DEFAULT_KINDS = ("done", "failed", "halted", "pruned", "queue-empty", "budget", "deadline")
INSTALL_HINT = "pip install apprise (or pip install 'gpt-cockpit[notify]')"
# Apprise's per-request timeouts, seconds (its URL options cto/rto override them per URL).
CONNECT_TIMEOUT_S = 4.0
READ_TIMEOUT_S = 4.0

# Apprise's notification types: a failure shows red, a warning amber, in services that colour.
_TYPES = {
    "done": "success",
    "queue-empty": "success",
    "failed": "failure",
    "halted": "failure",
    "pruned": "warning",
    "stopped": "warning",
    "retried": "warning",
    "budget": "warning",
    "deadline": "warning",
}


class NotifyConfigError(ValueError):
    """The notification configuration cannot be used; the message is one line."""


@dataclass(frozen=True)
class NotifyConfig:
    """Where notices go and which kinds are pushed."""

    urls: tuple[str, ...] = ()
    kinds: tuple[str, ...] = DEFAULT_KINDS

    @property
    def enabled(self) -> bool:
        """True when at least one destination is configured."""
        return bool(self.urls)


def _split_urls(text: str) -> list[str]:
    return [u for u in text.replace(",", " ").split() if u]


def load_config(
    path: Path | None = None, environ: dict[str, str] | os._Environ[str] | None = None
) -> NotifyConfig:
    """The notification settings: $GPT_COCKPIT_NOTIFY's URLs, else queue.json's "notify".

    NotifyConfigError (one line) for a config file that is not JSON, a "notify" section of
    the wrong shape, or an unknown notice kind in "on".
    """
    environ = os.environ if environ is None else environ
    path = queue_config_path() if path is None else path
    section: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NotifyConfigError(f"{path}: not readable JSON ({exc})") from None
        raw = data.get("notify", {}) if isinstance(data, dict) else None
        if isinstance(raw, list):  # "notify": ["ntfy://topic"] is the short form
            raw = {"urls": raw}
        if not isinstance(raw, dict):
            raise NotifyConfigError(f'{path}: "notify" must be an object {{"urls": [...]}}')
        section = raw
    urls = section.get("urls", [])
    if isinstance(urls, str):
        urls = _split_urls(urls)
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise NotifyConfigError(f'{path}: "notify.urls" must be a list of Apprise URLs')
    env_urls = _split_urls(environ.get(NOTIFY_ENV, ""))
    kinds = section.get("on", list(DEFAULT_KINDS))
    if kinds == "all":
        kinds = list(NOTICE_KINDS)
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise NotifyConfigError(f'{path}: "notify.on" must be a list of notice kinds or "all"')
    unknown = [k for k in kinds if k not in NOTICE_KINDS]
    if unknown:
        raise NotifyConfigError(
            f"notify.on: unknown notice kind {unknown[0]!r} (one of: {', '.join(NOTICE_KINDS)})"
        )
    return NotifyConfig(urls=tuple(env_urls or urls), kinds=tuple(kinds))


def _apprise_for(urls: Iterable[str]) -> Any:
    """An Apprise object holding `urls`; NotifyConfigError for a URL Apprise does not know."""
    try:
        import apprise
    except ImportError:
        raise NotifyConfigError(f"notifications need Apprise: {INSTALL_HINT}") from None
    # Apprise logs a URL it cannot parse, secrets and all, through Python's last-resort
    # handler; the one line we say instead names the URL without them.
    quiet = logging.getLogger("apprise")
    if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
        quiet.addHandler(logging.NullHandler())  # once: this runs for every message sent
    quiet.propagate = False
    sender = apprise.Apprise()
    for url in urls:
        with_timeouts = (
            url
            + ("&" if "?" in url else "?")
            + (f"cto={CONNECT_TIMEOUT_S:g}&rto={READ_TIMEOUT_S:g}")
        )
        if not sender.add(with_timeouts):
            raise NotifyConfigError(
                f"notify: {redacted(url)!r} is not a URL Apprise knows "
                "(see https://github.com/caronc/apprise/wiki for each service's form)"
            )
    return sender


def redacted(url: str) -> str:
    """The URL without its secrets, to name it in a line: "json://127.0.0.1:8080/…", "slack://…".

    Most services carry tokens right after the scheme, so only a host that looks like an
    address (a dot, a port, localhost) is kept; credentials and paths never are.
    """
    scheme, sep, rest = url.partition("://")
    if not (sep and rest):
        return url
    host = rest.split("/", 1)[0].split("?", 1)[0]
    if "@" not in host and ("." in host or ":" in host or host == "localhost"):
        return f"{scheme}://{host}/…"
    return f"{scheme}://…"


def check_urls(urls: Iterable[str]) -> str | None:
    """Why these URLs cannot be used (one line), or None."""
    try:
        _apprise_for(urls)
    except NotifyConfigError as exc:
        return str(exc)
    return None


def send_now(urls: Iterable[str], title: str, body: str, kind: str = "info") -> list[str]:
    """Send one message to every URL now; the redacted URLs it could not reach."""
    urls = list(urls)
    failed = []
    for url in urls:  # one Apprise object per URL, so a failure names its destination
        sender = _apprise_for([url])
        try:
            ok = sender.notify(title=title, body=body, notify_type=_TYPES.get(kind, "info"))
        except Exception:  # noqa: BLE001 - a plugin's own bug must not escape either
            ok = False
        if not ok:
            failed.append(redacted(url))
    return failed


class AppriseNotifier:
    """Pushes notices through Apprise from a worker thread (the scheduler never waits)."""

    def __init__(
        self,
        config: NotifyConfig,
        *,
        on_error: Callable[[str], None] | None = None,
        title_prefix: str = "gpt-cockpit",
    ) -> None:
        _apprise_for(config.urls)  # a bad URL is found now, at `queue run`, not at 3 a.m.
        self.config = config
        self.on_error = on_error or (lambda line: None)
        self.title_prefix = title_prefix
        self._pending: queue_module.Queue[Notice | None] = queue_module.Queue()
        self._worker = threading.Thread(target=self._run, name="notify", daemon=True)
        self._worker.start()

    def notify(self, notice: Notice) -> None:
        """Queue `notice` for sending when its kind is one the config pushes."""
        if notice.kind in self.config.kinds:
            self._pending.put(notice)

    def _title(self, notice: Notice) -> str:
        what = f"#{notice.entry.id} {notice.kind}" if notice.entry is not None else notice.kind
        return f"{self.title_prefix}: {what}"

    def _run(self) -> None:
        while True:
            notice = self._pending.get()
            try:
                if notice is None:
                    return
                failed = send_now(
                    self.config.urls, self._title(notice), notice.message, notice.kind
                )
                if failed:
                    self.on_error(f"notification not sent to {', '.join(failed)}: {notice.message}")
            except Exception as exc:  # noqa: BLE001 - never let the worker die silently
                self.on_error(f"notification failed: {type(exc).__name__}: {exc}")
            finally:
                self._pending.task_done()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued notice was tried (tests, shutdown); False on timeout."""
        done = threading.Event()

        def wait() -> None:
            self._pending.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (within `timeout`), then end the worker."""
        self.flush(timeout)
        self._pending.put(None)
        self._worker.join(timeout=1.0)


def notifier_from_config(
    on_error: Callable[[str], None] | None = None, config: NotifyConfig | None = None
) -> Notifier:
    """The configured notifier, or the no-op one when no URL is configured.

    NotifyConfigError (one line) when the configuration or a URL is unusable, or Apprise is
    missing while URLs are configured: `queue run` says it before the scheduler starts.
    """
    config = load_config() if config is None else config
    if not config.enabled:
        return NullNotifier()
    return AppriseNotifier(config, on_error=on_error)
