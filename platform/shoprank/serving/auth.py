"""Bearer-token check through gRPC metadata, and TLS for Serve's gRPC proxy.

Token: callers send ``authorization: Bearer <token>``; the ingress compares it in constant
time with the configured token (``token`` app arg, or the environment variable named by
``token_env``, default ``SHOPRANK_TOKEN``) and answers ``UNAUTHENTICATED`` otherwise. With
no token configured every caller is accepted.

TLS: Ray Serve's gRPC proxy only opens a plaintext port. :func:`add_tls_port` is a
``grpc_servicer_functions`` entry that Serve calls with the proxy's own ``grpc.aio`` server,
so it can add a TLS port to it: when ``SHOPRANK_TLS_CERT`` and ``SHOPRANK_TLS_KEY`` name PEM
files in the proxy's environment it binds ``SHOPRANK_TLS_PORT`` with those credentials.
``shoprank serve --tls-cert/--tls-key`` sets these before Ray starts (so every Ray worker,
the proxy included, inherits them) and moves the plaintext port to localhost-only use
(``--port`` is the TLS port; the plaintext one is ``--plaintext-port``, firewall it).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterable

log = logging.getLogger("shoprank.serving.auth")

TOKEN_ENV = "SHOPRANK_TOKEN"
TLS_CERT_ENV = "SHOPRANK_TLS_CERT"
TLS_KEY_ENV = "SHOPRANK_TLS_KEY"
TLS_PORT_ENV = "SHOPRANK_TLS_PORT"


def resolve_token(token: str | None = None, token_env: str | None = TOKEN_ENV) -> str | None:
    """The configured token: explicit value, else the named environment variable, else None."""
    if token:
        return token
    if token_env:
        return os.environ.get(token_env) or None
    return None


def bearer_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token in an ``authorization: Bearer <token>`` metadata entry, if any."""
    for key, value in metadata:
        if key.lower() == "authorization":
            v = value.decode() if isinstance(value, bytes) else value
            scheme, _, tok = v.strip().partition(" ")
            if scheme.lower() == "bearer" and tok.strip():
                return tok.strip()
    return None


def check_token(expected: str | None, metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """None when the call is allowed, else the message for UNAUTHENTICATED."""
    if not expected:
        return None
    got = bearer_from_metadata(metadata)
    if got is None:
        return "missing bearer token: send metadata 'authorization: Bearer <token>'"
    if not hmac.compare_digest(got.encode(), expected.encode()):
        return "invalid bearer token"
    return None


def server_credentials(cert_file: str, key_file: str):  # noqa: ANN201 - grpc.ServerCredentials
    import grpc

    with open(key_file, "rb") as k, open(cert_file, "rb") as c:
        return grpc.ssl_server_credentials([(k.read(), c.read())])


def channel_credentials(ca_file: str | None = None):  # noqa: ANN201 - grpc.ChannelCredentials
    """Client TLS credentials; ``ca_file`` is the PEM that signed the server's certificate."""
    import grpc

    root = open(ca_file, "rb").read() if ca_file else None  # noqa: SIM115
    return grpc.ssl_channel_credentials(root_certificates=root)


def add_tls_port(servicer: object, server: object) -> None:
    """``grpc_servicer_functions`` hook: add a TLS port to Serve's gRPC proxy server when configured."""
    cert, key = os.environ.get(TLS_CERT_ENV), os.environ.get(TLS_KEY_ENV)
    if not (cert and key):
        return
    port = int(os.environ.get(TLS_PORT_ENV, "9443"))
    bound = server.add_secure_port(f"[::]:{port}", server_credentials(cert, key))  # type: ignore[attr-defined]
    log.info("TLS gRPC port %s (cert %s)", bound, cert)


def self_signed_cert(out_dir: str, host: str = "localhost") -> tuple[str, str]:
    """Write a self-signed certificate and key for ``host`` (tests and local demos); returns paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    os.makedirs(out_dir, exist_ok=True)
    cert_path, key_path = os.path.join(out_dir, "cert.pem"), os.path.join(out_dir, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_path, key_path
