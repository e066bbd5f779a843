"""Telling people a run failed, through pluggable notifiers: the log always, a webhook when
`CRM_ALERT_WEBHOOK_URL` is set (a chat bot's incoming webhook, an alerting gateway).

A notifier is anything with `send(failure)`; one that fails is logged and the others still
run, so a dead webhook never hides a failure from the log.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Protocol

logger = logging.getLogger("crm_warehouse.alerts")


@dataclass(frozen=True)
class RunFailure:
    job: str
    run_id: str
    message: str
    failed_steps: tuple[str, ...] = ()
    url: str | None = None  # the run in the Dagster UI, when known

    def text(self) -> str:
        steps = f" (failed: {', '.join(self.failed_steps)})" if self.failed_steps else ""
        return f"crm-warehouse run {self.run_id} of {self.job} failed{steps}: {self.message}"


class Notifier(Protocol):
    def send(self, failure: RunFailure) -> None: ...


class LogNotifier:
    def send(self, failure: RunFailure) -> None:
        logger.error(failure.text())


class WebhookNotifier:
    """POSTs the failure as JSON: `{"text": …, "job": …, "run_id": …, …}`."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout

    def send(self, failure: RunFailure) -> None:
        body = json.dumps({"text": failure.text(), **asdict(failure)}, ensure_ascii=False)
        request = urllib.request.Request(
            self.url,
            data=body.encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if response.status >= 300:
                raise urllib.error.HTTPError(
                    self.url, response.status, "webhook refused", response.headers, None
                )


def notifiers(webhook_url: str | None) -> list[Notifier]:
    chosen: list[Notifier] = [LogNotifier()]
    if webhook_url:
        chosen.append(WebhookNotifier(webhook_url))
    return chosen


def notify(failure: RunFailure, chosen: list[Notifier]) -> list[str]:
    """Send to every notifier; returns the errors of those that failed (already logged)."""
    errors = []
    for notifier in chosen:
        try:
            notifier.send(failure)
        except (OSError, urllib.error.URLError) as error:
            logger.warning("notifier %s failed: %s", type(notifier).__name__, error)
            errors.append(f"{type(notifier).__name__}: {error}")
    return errors
