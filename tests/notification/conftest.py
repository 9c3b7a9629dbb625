"""The notification tests' fixtures: an isolated AWS environment, a throwaway CA, and real SMTP servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.smtp import PasswordAuthenticator, RunningServer, TLSMaterial, make_tls_material, smtp_server

from .helpers import PASSWORD, REGION, USERNAME


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials, no real endpoints, and no inherited CA bundle."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return make_tls_material(tmp_path_factory.mktemp("trusted-ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return make_tls_material(tmp_path_factory.mktemp("other-ca"), name="other")


@pytest.fixture
def trust_ca(tls: TLSMaterial, monkeypatch: pytest.MonkeyPatch) -> None:
    # ssl.create_default_context() reads SSL_CERT_FILE when the context is made.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_pem))


@pytest.fixture
def starttls_server(tls: TLSMaterial, trust_ca: None) -> Iterator[RunningServer]:
    with smtp_server("starttls", tls, PasswordAuthenticator(USERNAME, PASSWORD)) as server:
        yield server


@pytest.fixture
def implicit_tls_server(tls: TLSMaterial, trust_ca: None) -> Iterator[RunningServer]:
    with smtp_server("implicit_tls", tls, PasswordAuthenticator(USERNAME, PASSWORD)) as server:
        yield server


@pytest.fixture
def local_relay() -> Iterator[RunningServer]:
    with smtp_server("plain") as server:
        yield server
