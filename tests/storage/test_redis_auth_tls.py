"""The Redis cache against a real redis-server that requires a password, over a unix socket and
over TLS (`rediss://`, Debian's redis-server is built with TLS), configured the way a node is:
through `[records]` and the password's environment variable."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emrchain.config.node import parse_node_config_text
from emrchain.records.service import open_redis_cache
from emrchain.storage.interfaces import Cache
from emrchain.storage.redis_cache import RedisCache
from tests.services.fixtures import RedisServer, require_service, run

PASSWORD = secrets.token_hex(16)
PASSWORD_VARIABLE = "EMRCHAIN_TEST_REDIS_PASSWORD"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_certificate_authority(
    directory: Path, name: str
) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path, key


def write_server_certificate(
    directory: Path, authority: Path, authority_key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.load_pem_x509_certificate(authority.read_bytes()).subject
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(authority_key, hashes.SHA256())
    )
    certificate_path, key_path = directory / "server.pem", directory / "server.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return certificate_path, key_path


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[RedisServer]:
    require_service("redis")
    server = RedisServer(tmp_path, arguments=("--requirepass", PASSWORD))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, int, Path, Path]]:
    """A password-protected redis-server with a TLS port (server certificate only); yields
    the server, the port, its CA and an unrelated CA."""
    require_service("redis")
    authority, authority_key = write_certificate_authority(tmp_path, "test-ca")
    stranger, _ = write_certificate_authority(tmp_path, "other-ca")
    certificate, key = write_server_certificate(tmp_path, authority, authority_key)
    port = free_port()
    server = RedisServer(
        tmp_path,
        arguments=(
            "--requirepass", PASSWORD, "--tls-port", str(port), "--tls-cert-file",
            str(certificate), "--tls-key-file", str(key), "--tls-ca-cert-file", str(authority),
            "--tls-auth-clients", "no",
        ),
    )  # fmt: skip
    server.start()
    try:
        yield server, port, authority, stranger
    finally:
        server.stop()


def round_trip(cache: Cache) -> tuple[bytes | None, bool]:
    """Set then get one value; (what came back, whether the cache marked Redis down)."""

    async def scenario() -> tuple[bytes | None, bool]:
        try:
            value = secrets.token_bytes(64)
            await cache.set("cid", value)
            got = await cache.get("cid")
            assert got in (None, value)
            return got, bool(getattr(cache, "is_down", False))
        finally:
            await cache.close()

    return run(scenario())


def works(make_cache: Callable[[], Cache], deadline_s: float = 20.0) -> bool:
    """Whether a fresh cache from `make_cache` round-trips a value within `deadline_s`: a
    best-effort cache may miss once on a loaded machine (a TLS handshake over its 200 ms
    budget), so a working configuration is polled for."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if round_trip(make_cache())[0] is not None:
            return True
        time.sleep(0.05)
    return False


def test_auth_the_right_password_works_and_no_or_a_wrong_one_is_a_miss(
    password_redis: RedisServer,
) -> None:
    socket_path = password_redis.unix_socket
    assert works(lambda: RedisCache(unix_socket=socket_path, password=PASSWORD))
    assert works(lambda: RedisCache(unix_socket=socket_path, username="default", password=PASSWORD))
    # The broken variants: each is a miss and marks Redis down (never an exception).
    assert round_trip(RedisCache(unix_socket=socket_path)) == (None, True)
    assert round_trip(RedisCache(unix_socket=socket_path, password="wrong-" + PASSWORD)) == (
        None,
        True,
    )


def test_tls_with_auth_works_and_an_unknown_ca_or_plain_tcp_is_refused(
    tls_redis: tuple[RedisServer, int, Path, Path],
) -> None:
    _, port, authority, stranger = tls_redis
    url = f"rediss://127.0.0.1:{port}/0"
    assert works(
        lambda: RedisCache(url, password=PASSWORD, tls_ca_file=str(authority), timeout_ms=2_000)
    )
    wrong_ca = RedisCache(url, password=PASSWORD, tls_ca_file=str(stranger), timeout_ms=2_000)
    assert round_trip(wrong_ca) == (None, True)
    plain = RedisCache(f"redis://127.0.0.1:{port}/0", password=PASSWORD, timeout_ms=500)
    assert round_trip(plain) == (None, True)
    no_password = RedisCache(url, tls_ca_file=str(authority), timeout_ms=2_000)
    assert round_trip(no_password) == (None, True)


def records_section(tmp_path: Path, **settings: str):  # type: ignore[no-untyped-def]
    lines = "\n".join(f'{key} = "{value}"' for key, value in settings.items())
    config = parse_node_config_text(
        f'[records]\ncache_backend = "redis"\n{lines}\n', home=tmp_path, source="node.toml"
    )
    return config.records


def test_the_node_config_carries_tls_and_the_password_variable(
    tls_redis: tuple[RedisServer, int, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, port, authority, _ = tls_redis
    section = records_section(
        tmp_path,
        redis_url=f"rediss://127.0.0.1:{port}/0",
        redis_tls_ca_file=str(authority),
        redis_password_environment_variable=PASSWORD_VARIABLE,
    )
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    assert round_trip(open_redis_cache(section)) == (None, True)
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    assert works(lambda: open_redis_cache(section))


def test_the_node_config_carries_auth_over_a_unix_socket(
    password_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = records_section(
        tmp_path,
        redis_url=f"unix://{password_redis.unix_socket}",
        redis_password_environment_variable=PASSWORD_VARIABLE,
    )
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    assert works(lambda: open_redis_cache(section))


def test_the_cache_refuses_a_foreign_scheme_and_a_ca_without_tls() -> None:
    with pytest.raises(ValueError, match="redis://, rediss:// or unix://"):
        RedisCache("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="tls_ca_file needs a rediss:// url"):
        RedisCache("redis://127.0.0.1:6379/0", tls_ca_file="/etc/ca.pem")
