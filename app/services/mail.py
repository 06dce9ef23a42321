"""Sending the app's e-mails (password reset) through the SMTP server of the settings.

``send_mail`` blocks (smtplib); callers run it in a worker thread and after the
HTTP answer, so neither the event loop nor the answer's timing depends on the mail
server (a reset request for an unknown address must take as long as for a known one).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage

from app.core.config import Settings

logger = logging.getLogger(__name__)
SMTP_TIMEOUT_SECONDS = 20


def mail_enabled(settings: Settings) -> bool:
    return settings.smtp_host is not None


def send_mail(settings: Settings, to: str, subject: str, body: str) -> None:
    """Send one plain-text message; raises OSError/smtplib.SMTPException on failure."""
    assert settings.smtp_host is not None
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    context = ssl.create_default_context()
    if settings.smtp_security == "tls":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS, context=context
        )
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS)
    with client:
        if settings.smtp_security == "starttls":
            client.starttls(context=context)
        if settings.smtp_username and settings.smtp_password:
            client.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        client.send_message(message)


def send_mail_logged(settings: Settings, to: str, subject: str, body: str) -> None:
    """``send_mail`` for background work: a failure is logged, not raised."""
    try:
        send_mail(settings, to, subject, body)
    except (OSError, smtplib.SMTPException):
        logger.exception("could not send the mail %r", subject)
