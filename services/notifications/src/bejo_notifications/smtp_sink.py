"""A local SMTP server that keeps every message it receives as an `.eml` file in a folder.

For `make run` and the tests: it stands in for a real mail relay, so the service's real SMTP client
(aiosmtplib) does a real SMTP conversation and the mail can be read back afterwards.

    python -m bejo_notifications.smtp_sink --host 127.0.0.1 --port 1025 --maildir .state/mail

In-process (tests): `sink = SmtpSink(maildir); await sink.start()` binds a free port (`sink.port`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import os
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    """aiosmtpd handler: writes each message atomically (temp file, then rename) as `<n>.eml`."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.maildir.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content.encode() if isinstance(content, str) else content
        header = f"X-Sink-Mail-From: {envelope.mail_from}\r\nX-Sink-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
        name = f"{uuid.uuid4().hex}.eml"
        temporary = self.maildir / f".{name}.tmp"
        temporary.write_bytes(header.encode() + raw)
        os.replace(temporary, self.maildir / name)
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self, maildir: Path | str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.maildir = Path(maildir)
        self.host = host
        self.port = port
        self._handler = MaildirHandler(self.maildir)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self._handler, hostname="bejo-smtp-sink", data_size_limit=10 * 1024 * 1024),
            host=self.host,
            port=self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def messages(self) -> list[EmailMessage]:
        """Every message received so far, oldest first."""
        return read_maildir(self.maildir)


def read_maildir(maildir: Path) -> list[EmailMessage]:
    files = sorted((p for p in maildir.glob("*.eml")), key=lambda p: p.stat().st_mtime_ns)
    messages = []
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SMTP sink: stores every received message as an .eml file.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--maildir", default=".state/mail", help="folder for the received messages")
    args = parser.parse_args()
    sink = SmtpSink(args.maildir, args.host, args.port)
    print(f"smtp sink on {args.host}:{args.port}, storing mail in {Path(args.maildir).resolve()}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(sink.serve_forever())


if __name__ == "__main__":
    main()
