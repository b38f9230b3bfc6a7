"""Telling people about tier changes beyond their terminals: e-mail (SMTP) and a JSON webhook.

Both are optional and best effort: a failure is logged and counted, never allowed to delay or fail a
tick. The webhook body is plain JSON, usable by chat bots; the URL is a secret (it often carries a token).
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from collector.config import SmtpSettings
from ledger.config import Secret
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
class Notifier:
    currency: str
    smtp: SmtpSettings | None = None
    webhook_url: Secret | None = None
    admin_emails: tuple[str, ...] = ()
    user_email_template: str | None = None
    timeout_s: float = 10.0

    def payload(self, notice: Notice) -> dict[str, str]:
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

    def recipients(self, notice: Notice) -> list[str]:
        own = [self.user_email_template.format(user=notice.user)] if self.user_email_template else []
        return own + list(self.admin_emails)

    def send_email(self, notice: Notice) -> None:
        if self.smtp is None or not self.recipients(notice):
            return
        body = self.payload(notice)
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = ", ".join(self.recipients(notice))
        message["Subject"] = f"gpuledger: {notice.user} is now {notice.tier}"
        message.set_content(body["text"] + "\n")
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout_s) as client:
            if self.smtp.starttls:
                client.starttls()
            if self.smtp.username and self.smtp.password is not None:
                client.login(self.smtp.username, self.smtp.password.value)
            client.send_message(message)

    def send_webhook(self, notice: Notice) -> None:
        if self.webhook_url is None:
            return
        request = urllib.request.Request(
            self.webhook_url.value,
            data=json.dumps(self.payload(notice)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()

    async def send_all(self, notices: Sequence[Notice]) -> int:
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
