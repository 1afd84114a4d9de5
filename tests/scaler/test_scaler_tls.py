"""The KEDA scaler over TLS and mutual TLS (certificates generated in the test)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from forecaster.config import load_settings
from forecaster.errors import ConfigError
from forecaster.scaler import externalscaler_pb2 as pb2
from forecaster.scaler import externalscaler_pb2_grpc as pb2_grpc
from tests.scaler.test_scaler_grpc import ref, seed, start


def _cert(
    name: str, issuer: tuple[Any, x509.Name] | None, *, ca: bool = False, san: str | None = None
) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, issuer_name = issuer if issuer else (key, subject)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False
        )
    return key, builder.sign(signer_key, hashes.SHA256())


def _pem(key: Any, cert: x509.Certificate) -> tuple[bytes, bytes]:
    return (
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.PEM),
    )


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path | bytes]:
    ca_key, ca = _cert("test-ca", None, ca=True)
    server_key, server = _cert("localhost", (ca_key, ca.subject), san="localhost")
    client_key, client = _cert("keda", (ca_key, ca.subject))
    files: dict[str, Path | bytes] = {}
    for name, (key, cert) in {
        "server": (server_key, server),
        "client": (client_key, client),
    }.items():
        key_pem, cert_pem = _pem(key, cert)
        (tmp_path / f"{name}.key").write_bytes(key_pem)
        (tmp_path / f"{name}.crt").write_bytes(cert_pem)
        files[f"{name}_key"], files[f"{name}_crt"] = key_pem, cert_pem
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    files["ca"] = ca_pem
    files["dir"] = tmp_path
    return files


def _call(port: int, credentials: grpc.ChannelCredentials) -> Any:
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        stub = pb2_grpc.ExternalScalerStub(channel)
        return stub.GetMetricSpec(ref(series="rps", targetPerReplica="50"), timeout=5)


def test_tls_and_mutual_tls(make_settings: Any, pki: dict[str, Any]) -> None:
    d: Path = pki["dir"]
    settings = make_settings(
        scaler={
            "tls_cert": d / "server.crt",
            "tls_key": d / "server.key",
            "client_ca": d / "ca.crt",
        }
    )
    seed(settings)
    handle = start(settings)
    try:
        with_client = grpc.ssl_channel_credentials(
            root_certificates=pki["ca"],
            private_key=pki["client_key"],
            certificate_chain=pki["client_crt"],
        )
        spec = _call(handle.port, with_client)
        assert isinstance(spec, pb2.GetMetricSpecResponse)
        assert spec.metricSpecs[0].targetSizeFloat == 50.0
        # Without a client certificate the handshake is refused.
        no_client = grpc.ssl_channel_credentials(root_certificates=pki["ca"])
        with pytest.raises(grpc.RpcError) as info:
            _call(handle.port, no_client)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # Plain text is refused too.
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.ExternalScalerStub(channel)
            with pytest.raises(grpc.RpcError):
                stub.GetMetricSpec(ref(series="rps", targetPerReplica="50"), timeout=5)
    finally:
        handle.stop()


def test_tls_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set both tls_cert and tls_key"):
        load_settings(scaler={"tls_cert": tmp_path / "x.crt"})
    (tmp_path / "a.crt").write_text("x")
    (tmp_path / "a.key").write_text("x")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(scaler={"tls_cert": tmp_path / "a.crt", "tls_key": tmp_path / "nope.key"})
    with pytest.raises(ConfigError, match="client_ca"):
        load_settings(scaler={"client_ca": tmp_path / "a.crt"})
