"""Bearer-token check through gRPC metadata, and TLS for Serve's gRPC proxy.

Token: callers send ``authorization: Bearer <token>``; the ingress compares it in constant
time with the configured token (``token`` app arg, or the environment variable named by
``token_env``, default ``SHOPRANK_TOKEN``) and answers ``UNAUTHENTICATED`` otherwise. With
no token configured every caller is accepted. Commands take it from ``--token-file`` (an
owner-only file, :func:`read_token_file`) or ``$SHOPRANK_TOKEN``; ``--token`` is for local use
only (any user on the machine sees it in ``ps``).

TLS: Ray Serve's gRPC proxy only opens a plaintext port. :func:`add_tls_port` is a
``grpc_servicer_functions`` entry that Serve calls with the proxy's own ``grpc.aio`` server,
so it can add a TLS port to it: when ``SHOPRANK_TLS_CERT`` and ``SHOPRANK_TLS_KEY`` name PEM
files in the proxy's environment it binds ``SHOPRANK_TLS_PORT`` with those credentials.
``shoprank serve --tls-cert/--tls-key`` sets these before Ray starts (so every Ray worker,
the proxy included, inherits them); ``--port`` is then the TLS port and the plaintext one
``--plaintext-port``.

The plaintext port with TLS on: Serve 2.60 binds it on every interface (``[::]:PORT``, hard-coded
in ``ray.serve._private.grpc_util.start_grpc_server``, before any hook runs; no option or env var
chooses the host). So the same hook guards it instead: a call that arrived without TLS from a
non-loopback peer is aborted with ``PERMISSION_DENIED`` in the proxy, before it reaches a replica,
unless ``SHOPRANK_PLAINTEXT_HOST`` (``--plaintext-host``) is ``0.0.0.0``/``::`` (anyone). The port
still accepts TCP connections from other hosts: firewall it where that matters (docs/privacy.md).
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
PLAINTEXT_HOST_ENV = "SHOPRANK_PLAINTEXT_HOST"  # with TLS: who may use the plaintext port
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_HOSTS = ("0.0.0.0", "::", "*")


def resolve_token(token: str | None = None, token_env: str | None = TOKEN_ENV) -> str | None:
    """The configured token: explicit value, else the named environment variable, else None."""
    if token:
        return token
    if token_env:
        return os.environ.get(token_env, "").strip() or None  # stripped like a token file
    return None


def read_token_file(path: str) -> str:
    """The token in an owner-only file (mode 0600/0400; surrounding whitespace stripped)."""
    from shoprank.hashing import owner_only_secret

    return owner_only_secret(path, "token file")


def token_from(token: str | None = None, token_file: str | None = None, env: str | None = TOKEN_ENV) -> str | None:
    """A command's token: ``--token``, else ``--token-file``, else ``$SHOPRANK_TOKEN``, else None."""
    if token:
        return token
    if token_file:
        return read_token_file(token_file)
    return (os.environ.get(env) or None) if env else None


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


def plaintext_open_to_all(host: str | None = None) -> bool:
    """Whether ``host`` (default ``$SHOPRANK_PLAINTEXT_HOST``) opens the plaintext port to every peer
    (``0.0.0.0``, ``::``, ``*``); unset or a loopback name: loopback peers only; else a ConfigError."""
    host = (host if host is not None else os.environ.get(PLAINTEXT_HOST_ENV, "")).strip() or "127.0.0.1"
    if host in ANY_HOSTS:
        return True
    if host in LOOPBACK_HOSTS:
        return False
    from shoprank.errors import ConfigError

    raise ConfigError(
        f"plaintext host {host!r}: use 127.0.0.1 (loopback callers only) or 0.0.0.0 (anyone); Serve binds the "
        "plaintext port on every interface, so shoprank can only filter callers, not pick one interface"
    )


def is_loopback_peer(peer: str) -> bool:
    """Whether a gRPC peer string (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``, ``unix:...``) is this host."""
    import ipaddress
    from urllib.parse import unquote

    kind, _, rest = unquote(peer).partition(":")
    if kind == "unix":
        return True
    if kind not in ("ipv4", "ipv6"):
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def plaintext_refusal(context: object) -> str | None:
    """None when a call may proceed, else why not: it came without TLS from a non-loopback peer."""
    auth = context.auth_context() or {}  # type: ignore[attr-defined]
    if b"ssl" in auth.get("transport_security_type", []):
        return None
    peer = context.peer() or ""  # type: ignore[attr-defined]
    if is_loopback_peer(peer):
        return None
    tls_port = os.environ.get(TLS_PORT_ENV, "the TLS port")
    return f"plaintext gRPC is for loopback callers only; use TLS on port {tls_port}"


def _guard_plaintext(server: object) -> bool:
    """Abort, in the proxy, calls that :func:`plaintext_refusal` refuses. Wraps the ``proxy_request``
    of the Serve gRPC proxy behind ``server.service_handler_factory`` (every service Serve routes,
    whatever order the servicer functions ran in). False when ``server`` is not Serve's."""
    factory = getattr(server, "service_handler_factory", None)
    proxy = getattr(factory, "__self__", None)
    inner = getattr(proxy, "proxy_request", None)
    if inner is None:
        return False
    import grpc

    async def proxy_request(proxy_request: object):  # noqa: ANN202 - Serve's ResponseGenerator
        context = getattr(proxy_request, "context", None)
        why = plaintext_refusal(context) if context is not None else None
        if why:
            log.warning("refused plaintext call from %s: %s", context.peer(), why)  # type: ignore[union-attr]
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)  # type: ignore[union-attr]
        async for message in inner(proxy_request=proxy_request):
            yield message

    proxy.proxy_request = proxy_request  # type: ignore[union-attr]
    return True


def add_tls_port(servicer: object, server: object) -> None:
    """``grpc_servicer_functions`` hook: add a TLS port to Serve's gRPC proxy server when configured,
    and keep the plaintext port to loopback callers (unless ``$SHOPRANK_PLAINTEXT_HOST`` opens it)."""
    cert, key = os.environ.get(TLS_CERT_ENV), os.environ.get(TLS_KEY_ENV)
    if not (cert and key):
        return
    port = int(os.environ.get(TLS_PORT_ENV, "9443"))
    bound = server.add_secure_port(f"[::]:{port}", server_credentials(cert, key))  # type: ignore[attr-defined]
    log.info("TLS gRPC port %s (cert %s)", bound, cert)
    if plaintext_open_to_all():
        log.warning("plaintext gRPC port open to every caller (%s=%s)", PLAINTEXT_HOST_ENV,
                    os.environ.get(PLAINTEXT_HOST_ENV))  # fmt: skip
    elif not _guard_plaintext(server):
        log.error("cannot restrict the plaintext gRPC port to loopback callers (not Serve's proxy): firewall it")


def self_signed_cert(out_dir: str, host: str = "localhost") -> tuple[str, str]:
    """Write a self-signed certificate (0644) and its key (0600) for ``host`` (tests and local demos);
    returns their paths."""
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
    from shoprank.files import atomic_write_bytes

    os.makedirs(out_dir, exist_ok=True)
    cert_path, key_path = os.path.join(out_dir, "cert.pem"), os.path.join(out_dir, "key.pem")
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    atomic_write_bytes(key_path, pem, mode=0o600)  # the private key: owner only
    return cert_path, key_path
