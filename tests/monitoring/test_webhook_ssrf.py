"""Webhook deliveries go only where they were checked, and hold no database lock while
they talk to the receiver (real local HTTP servers, real PostgreSQL row locks)."""

from __future__ import annotations

import socket

import pytest
from django.db import OperationalError, connection, transaction

from monitoring import services
from monitoring.choices import DeliveryStatus
from monitoring.models import WebhookDelivery
from monitoring.services import event_publish, webhook_create
from tests.conftest import postgres_only
from tests.monitoring.hooks import Receiver, serve
from tests.monitoring.test_webhooks import eager, publish  # noqa: F401 - fixture

pytestmark = [pytest.mark.unit]


@pytest.fixture
def servers():
    started = []

    def start(receiver: Receiver, address: str = "127.0.0.1", port: int = 0):
        server = serve(receiver, address, port)
        started.append(server)
        return server.server_address[1]

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_a_name_that_resolves_to_a_blocked_address_gets_no_request(
    transactional_db,
    demo,
    eager,  # noqa: F811 - fixture
    servers,
    settings,
):
    receiver = Receiver()
    port = servers(receiver)
    # Registered under development settings; production refuses loopback at delivery.
    webhook, _ = webhook_create(
        actor=demo.alice, tenant=demo.acme, url=f"http://localhost:{port}/hooks"
    )
    settings.ISOTOPE_WEBHOOK_ALLOW_PRIVATE = False
    publish(demo)
    assert receiver.requests == []
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert delivery.status == DeliveryStatus.FAILED, "refused at once, not retried"
    assert "localhost resolves to a non-public address" in delivery.last_error
    assert delivery.attempts == 1 and delivery.last_status_code is None


def test_the_connection_goes_to_the_address_that_was_checked_not_a_second_dns_answer(
    transactional_db,
    demo,
    eager,  # noqa: F811 - fixture
    servers,
    monkeypatch,
):
    """DNS rebinding: the name answers 127.0.0.2 when checked and 127.0.0.1 afterwards.
    A stands in for the address that passed the check, B for the one it must not reach."""
    checked, rebound = Receiver(), Receiver()
    port = servers(checked, "127.0.0.2")
    servers(rebound, "127.0.0.1", port)
    webhook, _ = webhook_create(
        actor=demo.alice, tenant=demo.acme, url=f"http://hook.test:{port}/hooks/isotope"
    )
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding_dns(host, *args, **kwargs):
        if host != "hook.test":
            return real(host, *args, **kwargs)
        answers.append("127.0.0.2" if not answers else "127.0.0.1")
        return real(answers[-1], *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    publish(demo)
    assert answers == ["127.0.0.2"], "resolved once per attempt"
    assert rebound.requests == []
    assert len(checked.requests) == 1
    assert checked.requests[0].headers["Host"] == f"hook.test:{port}"
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.SUCCEEDED, 200)


def test_no_row_lock_is_held_while_the_receiver_is_called(
    transactional_db,
    demo,
    eager,  # noqa: F811 - fixture
    servers,
):
    postgres_only()
    seen: list[str] = []

    def probe(_request) -> None:
        # The receiver's thread has its own database connection: try to lock the row.
        try:
            with transaction.atomic():
                rows = WebhookDelivery.objects.select_for_update(nowait=True).filter(
                    status=DeliveryStatus.PENDING
                )
                seen.append(f"free:{len(rows)}")
        except OperationalError:
            seen.append("locked")
        # A second worker given the same delivery now neither waits nor sends it again.
        try:
            pk = WebhookDelivery.objects.get().pk
            again = services.webhook_delivery_attempt(delivery_id=pk)
            seen.append(f"second:{again.status}:{again.attempts}")
        finally:
            connection.close()

    receiver = Receiver(on_request=probe)
    servers(receiver)
    webhook, _ = webhook_create(actor=demo.alice, tenant=demo.acme, url=receiver.url)
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
    assert seen == ["free:1", "second:pending:1"]
    assert len(receiver.requests) == 1
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 1)


def test_https_sends_the_host_name_as_sni_and_verifies_the_certificate(
    transactional_db,
    demo,
    eager,  # noqa: F811 - fixture
    monkeypatch,
    tmp_path,
    settings,
):
    """Pinning the address keeps TLS honest: the server is asked for the URL's host name
    (SNI) and a certificate nobody vouches for is refused."""
    import datetime
    import ssl
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hook.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hook.test")]), False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    names: list[str | None] = []
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    tls.sni_callback = lambda sock, server_name, context: names.append(server_name)
    listener = socket.create_server(("127.0.0.2", 0))

    def accept_one() -> None:
        conn, _ = listener.accept()
        try:
            tls.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()  # the client gave up on our certificate

    threading.Thread(target=accept_one, daemon=True).start()
    port = listener.getsockname()[1]
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **k: real("127.0.0.2" if host == "hook.test" else host, *a, **k),
    )
    settings.ISOTOPE_WEBHOOK_MAX_ATTEMPTS = 1
    webhook, _ = webhook_create(
        actor=demo.alice, tenant=demo.acme, url=f"https://hook.test:{port}/hooks"
    )
    publish(demo)
    listener.close()
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert names == ["hook.test"]
    assert delivery.status == DeliveryStatus.FAILED
    assert "SSLCertVerificationError" in delivery.last_error, delivery.last_error
