"""Telling people about tier changes (and the GPU queue's news, ``QueueNotice``): on their terminals on each
node, by e-mail (SMTP) and a JSON webhook.

The terminal line is a ``notify`` verb that converge runs and logs like any other; what it says, and
whether there is anything to say, is decided here. E-mail and webhook are optional and best effort: a
failure is logged and counted, never allowed to delay or fail a tick. The webhook body is plain JSON,
usable by chat bots; the URL is a secret (it often carries a token).
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from collector.config import SmtpSettings
from collector.enforcing.decisionlog import DecisionLog
from collector.enforcing.decisions import Desired, Standing, Transition, terminal_message
from collector.enforcing.planner import Action
from collector.types import Db
from ledger.environ import Secret
from ledger.money import format_amount

log = logging.getLogger("gpuledger.notify")


@dataclass(frozen=True)
class Notice:
    """A billing user's tier changed."""

    user: str
    previous: str
    tier: str
    available: int


@dataclass(frozen=True)
class QueueNotice:
    """News of the GPU queue for a billing user (collector.queueing.notices): ``event`` is ``offer``, ``grant``,
    ``expiry_warning``, ``release``, ``idle_warning`` or ``ungranted_use``; ``text`` is the line they read."""

    user: str
    event: str
    text: str


def tier_notices(transitions: Mapping[str, Transition], standings: Mapping[str, Standing]) -> list[Notice]:
    """A notice for every billing user whose tier changed this tick (a first tier is no change)."""
    return [
        Notice(user, transition.previous.tier if transition.previous else "", transition.current.tier,
               standings[user].available)
        for user, transition in transitions.items() if transition.changed
    ]


class TerminalNotices:
    """The lines for users' terminals; remembers which pending kills it has announced."""

    def __init__(self, db: Db, decisions: DecisionLog, currency: str) -> None:
        self._db = db
        self._decisions = decisions
        self._currency = currency
        # (node, uid, kill time) whose pending kill the user has been told of.
        self._kill_warned: set[tuple[str, int, datetime]] = set()

    async def action(
        self, node: str, desired: Desired, now: datetime, *, kill_grace_s: int, tier_changed: bool,
        killed: Sequence[int],
    ) -> Action | None:
        """The ``notify`` verb for the user's terminals on this node when there is news: a new tier, a pending
        kill (once per kill time, even if the node missed the tick the user entered ``blocked``), a kill done.
        None when there is none; the decision log keeps the text as the verb's reason."""
        warned = (node, desired.uid, desired.kill_at) if desired.kill_at is not None else None
        warn_kill = desired.kill_pending(now) and warned not in self._kill_warned
        if warn_kill and not tier_changed and desired.kill_at is not None:
            # After a restart this memory is empty: the decision log says whether the warning went out.
            since = desired.kill_at - timedelta(seconds=kill_grace_s)
            warn_kill = not await self._db(self._decisions.notified_since, node, desired.uid, since)
        message = terminal_message(desired, self._currency, now, tier_changed=tier_changed,
                                   warn_kill=warn_kill, killed=killed)
        if warned is not None and desired.kill_pending(now):
            self._kill_warned.add(warned)
        if message is None:
            return None
        return Action(node, desired.uid, ("notify", str(desired.uid)), f"notice: {message}", stdin=message.encode())


@dataclass(frozen=True)
class Notifier:
    currency: str
    smtp: SmtpSettings | None = None
    webhook_url: Secret | None = None
    admin_emails: tuple[str, ...] = ()
    user_email_template: str | None = None
    timeout_s: float = 10.0

    def payload(self, notice: Notice | QueueNotice) -> dict[str, str]:
        if isinstance(notice, QueueNotice):
            return {"event": f"gpu_queue_{notice.event}", "user": notice.user, "text": f"gpuledger: {notice.text}"}
        return {
            "event": "tier_changed",
            "user": notice.user,
            "from": notice.previous,
            "to": notice.tier,
            "balance": format_amount(notice.available),
            "currency": self.currency,
            "text": f"gpuledger: {notice.user} is now {notice.tier} (balance {format_amount(notice.available)}"
            f" {self.currency})",
        }

    def recipients(self, notice: Notice | QueueNotice) -> list[str]:
        own = [self.user_email_template.format(user=notice.user)] if self.user_email_template else []
        return own + list(self.admin_emails)

    def send_email(self, notice: Notice | QueueNotice) -> None:
        if self.smtp is None or not self.recipients(notice):
            return
        body = self.payload(notice)
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = ", ".join(self.recipients(notice))
        message["Subject"] = (f"gpuledger: {notice.user} is now {notice.tier}" if isinstance(notice, Notice)
                              else f"gpuledger: GPU queue {notice.event.replace('_', ' ')} for {notice.user}")
        message.set_content(body["text"] + "\n")
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout_s) as client:
            if self.smtp.starttls:
                client.starttls()
            if self.smtp.username and self.smtp.password is not None:
                client.login(self.smtp.username, self.smtp.password.reveal())
            client.send_message(message)

    def send_webhook(self, notice: Notice | QueueNotice) -> None:
        if self.webhook_url is None:
            return
        request = urllib.request.Request(
            self.webhook_url.reveal(),
            data=json.dumps(self.payload(notice)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()

    async def send_all(self, notices: Sequence[Notice | QueueNotice]) -> int:
        """Send every notice by every configured channel; returns how many sends failed."""
        failures = 0
        for notice in notices:
            for channel in (self.send_email, self.send_webhook):
                try:
                    await asyncio.to_thread(channel, notice)
                except (OSError, smtplib.SMTPException) as exc:
                    failures += 1
                    log.warning("%s for %s failed: %s", channel.__name__, notice.user, exc)
        return failures
