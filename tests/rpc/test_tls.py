"""TLS on the RPC (issue 15 §6) against a real node process: HTTPS from `[rpc] tls_*`, checked
by real TLS clients (`EmrClient` with a CA file, Python's ssl module), and client certificates
required once `tls_client_ca_file` is set. The CA and certificates are made here, for this test
only, with `cryptography`."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emrchain.client import transactions
from emrchain.client.replies import NodeUnreachableError
from emrchain.client.rpc import EmrClient, TlsOptions
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import Role
from tests.rpc.bounded import run

TLS_DIR = "config/tls"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        address = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        builder = builder.add_extension(x509.SubjectAlternativeName([address]), critical=False)
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, name: str, certificate: x509.Certificate, key: object) -> None:
    (directory / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path = directory / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)


@dataclass(frozen=True, slots=True)
class Pki:
    """A throwaway CA, the node's certificate (for 127.0.0.1) and a client certificate."""

    directory: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("emrchain test CA", ca_key, None)
        _write(directory, "ca", ca, ca_key)
        for name, usage in (
            ("node", ExtendedKeyUsageOID.SERVER_AUTH),
            ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
        ):
            key = ec.generate_private_key(ec.SECP256R1())
            _write(directory, name, _certificate(name, key, (ca.subject, ca_key), usage=usage), key)
        return cls(directory)

    def path(self, name: str) -> Path:
        return self.directory / name

    def client_options(self, *, with_certificate: bool) -> TlsOptions:
        if not with_certificate:
            return TlsOptions(ca_file=self.path("ca.crt"))
        return TlsOptions(self.path("ca.crt"), self.path("client.crt"), self.path("client.key"))


@pytest.fixture(scope="module")
def https_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Devnet, Pki]]:
    devnet = Devnet(tmp_path_factory.mktemp("tls") / "net", 1)
    pki = Pki.create(devnet.homes[0] / TLS_DIR)
    devnet.configure(
        0,
        {
            "rpc": {
                "tls_certificate_file": f"{TLS_DIR}/node.crt",
                "tls_key_file": f"{TLS_DIR}/node.key",
            }
        },
    )
    devnet.ssl_context = ssl.create_default_context(cafile=pki.path("ca.crt"))
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=60)
        yield devnet, pki
    finally:
        devnet.stop_all()


async def register_and_list(url: str, home: Path, tls: TlsOptions) -> list[object]:
    """Over HTTPS: the admin registers a patient, who then lists their grants (signed)."""
    hospital = Hospital.from_home(url, home)
    patient, patient_id = MemberIdentity.generate(), secrets.token_bytes(32)
    async with EmrClient(url, hospital.admin, tls=tls) as admin:
        tx = transactions.register_identity(
            hospital.admin,
            await admin.chain_id(),
            await admin.next_nonce(),
            organization_id=hospital.organization_id,
            member=patient,
            role=Role.PATIENT,
            patient_id=patient_id,
        )
        await admin.submit_and_wait(tx)
    async with EmrClient(url, patient, tls=tls) as client:
        return (await client.grants(patient_id=patient_id))["grants"]


def test_the_rpc_serves_https_to_a_client_that_trusts_its_ca(
    https_node: tuple[Devnet, Pki],
) -> None:
    devnet, pki = https_node
    url = devnet.rpc_urls[0]
    assert url.startswith("https://127.0.0.1:")
    tls = pki.client_options(with_certificate=False)
    assert run(register_and_list(url, devnet.homes[0], tls)) == []
    # A real TLS handshake, seen from Python's ssl module: TLS 1.2 or later, our certificate.
    port = int(url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=pki.path("ca.crt"))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_socket,
    ):
        assert tls_socket.version() in ("TLSv1.2", "TLSv1.3")
        subject = dict(item[0] for item in tls_socket.getpeercert()["subject"])
        assert subject["commonName"] == "node"


def test_a_client_that_does_not_trust_the_certificate_or_speaks_plain_http_fails(
    https_node: tuple[Devnet, Pki],
) -> None:
    devnet, _ = https_node
    url = devnet.rpc_urls[0]
    admin = Hospital.from_home(url, devnet.homes[0]).admin

    async def status(base_url: str) -> None:
        async with EmrClient(base_url, admin) as client:  # the system's CAs only
            await client.status()

    with pytest.raises(NodeUnreachableError, match="certificate verify failed"):
        run(status(url))
    with pytest.raises(NodeUnreachableError):
        run(status(url.replace("https://", "http://")))
    assert devnet.try_status(0) is not None  # and the node serves on


def test_client_certificates_are_required_once_a_client_ca_is_set(
    https_node: tuple[Devnet, Pki],
) -> None:
    devnet, pki = https_node
    devnet.stop(0)
    devnet.configure(0, {"rpc": {"tls_client_ca_file": f"{TLS_DIR}/ca.crt"}})
    with_certificate = pki.client_options(with_certificate=True)
    devnet.ssl_context = with_certificate.context()
    devnet.start(0)
    devnet.wait_for(lambda: devnet.try_status(0) is not None, 60, "the node to restart")
    url = devnet.rpc_urls[0]
    assert run(register_and_list(url, devnet.homes[0], with_certificate)) == []
    without_certificate = pki.client_options(with_certificate=False)
    with pytest.raises(NodeUnreachableError):
        run(register_and_list(url, devnet.homes[0], without_certificate))
