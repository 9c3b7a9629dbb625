"""Real SMTP servers for the notification tests.

aiosmtpd listens on 127.0.0.1 on a free port (aiosmtpd refuses port 0), with a
certificate from a throwaway trustme CA. Point SSL_CERT_FILE at ``TLSMaterial.ca_pem``
so that ``ssl.create_default_context()`` in the code under test trusts it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class TLSMaterial:
    ca_pem: Path
    server_context: ssl.SSLContext


def make_tls_material(directory: Path, name: str = "ca") -> TLSMaterial:
    """A fresh CA, and a server context whose leaf is valid for 127.0.0.1 and localhost."""
    ca = trustme.CA()
    leaf = ca.issue_cert(HOST, "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server_context)
    ca_pem = directory / f"{name}.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    return TLSMaterial(ca_pem=ca_pem, server_context=server_context)


@dataclass
class Received:
    """One message as the server saw it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    authenticated_as: str | None
    over_tls: bool

    def parsed(self) -> EmailMessage:
        message = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(message, EmailMessage)
        return message


class RecordingHandler:
    """Accepts every message and keeps it; refuses the RCPT addresses in ``refuse``."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.messages: list[Received] = []
        self.refuse = refuse

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        auth = getattr(session, "auth_data", None)
        content = envelope.original_content or envelope.content or b""
        self.messages.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                content=content if isinstance(content, bytes) else content.encode(),
                authenticated_as=auth.login.decode() if isinstance(auth, LoginPassword) else None,
                # STARTTLS sets session.ssl; implicit TLS shows on the transport.
                over_tls=session.ssl is not None
                or (server.transport is not None and server.transport.get_extra_info("ssl_object") is not None),
            )
        )
        return "250 Message accepted for delivery"


@dataclass
class PasswordAuthenticator:
    """Accepts exactly one username/password pair; remembers who tried."""

    username: str
    password: str
    attempts: list[str] = field(default_factory=list)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.attempts.append(auth_data.login.decode())
        if auth_data.login == self.username.encode() and auth_data.password == self.password.encode():
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


@dataclass
class RunningServer:
    port: int
    handler: RecordingHandler
    authenticator: PasswordAuthenticator | None


ServerKind = Literal["starttls", "implicit_tls", "plain"]


@contextlib.contextmanager
def smtp_server(
    kind: ServerKind,
    tls: TLSMaterial | None = None,
    authenticator: PasswordAuthenticator | None = None,
    refuse: frozenset[str] = frozenset(),
) -> Iterator[RunningServer]:
    """Run aiosmtpd on 127.0.0.1.

    starttls: a 587-style listener that requires STARTTLS, then AUTH.
    implicit_tls: a 465-style listener, TLS from the first byte, AUTH offered.
    plain: no TLS at all (a local relay); AUTH only if an authenticator is given.
    """
    handler = RecordingHandler(refuse)
    port = free_port()
    kwargs: dict[str, Any] = {}
    if kind == "starttls":
        assert tls is not None
        kwargs = {
            "tls_context": tls.server_context,
            "require_starttls": True,
            "authenticator": authenticator,
            "auth_required": authenticator is not None,
        }
    elif kind == "implicit_tls":
        assert tls is not None
        # aiosmtpd only counts STARTTLS as TLS: without this flag AUTH is refused.
        kwargs = {"ssl_context": tls.server_context, "authenticator": authenticator, "auth_require_tls": False}
    elif authenticator is not None:
        kwargs = {"authenticator": authenticator, "auth_require_tls": False}
    controller = Controller(handler, hostname=HOST, port=port, **kwargs)
    controller.start()
    try:
        yield RunningServer(port=port, handler=handler, authenticator=authenticator)
    finally:
        controller.stop()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A listener that completes the TCP handshake and then never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


class JsonLinesHandler(logging.Handler):
    """Writes each record as one JSON line, with its ``extra`` fields, to a StringIO.

    The same shape Lambda's JSON log format produces from stdlib logging.
    """

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.stream = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        document = {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        document.update({k: v for k, v in record.__dict__.items() if k not in self._STANDARD})
        self.stream.write(json.dumps(document, default=str) + "\n")

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line]


@contextlib.contextmanager
def capture_json_logs(quiet: tuple[str, ...] = ()) -> Iterator[JsonLinesHandler]:
    """Capture every log record at DEBUG on the root logger.

    ``quiet`` loggers are held at WARNING for the duration, as the Lambda
    handler does for botocore, boto3 and urllib3.
    """
    handler = JsonLinesHandler()
    root = logging.getLogger()
    saved_root = root.level
    saved = {name: logging.getLogger(name).level for name in quiet}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
