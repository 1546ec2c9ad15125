"""Azurite with OAuth on (`--oauth basic`, HTTPS with a self-signed loopback certificate) and a
token credential that mints the JWTs it accepts.

Azurite 3.35 in basic mode (README "OAuth Configuration"; dist/src/*/authentication/
*TokenAuthenticator.js): HTTPS only; the bearer token must carry nbf, exp and iat with now inside
[nbf, exp]; `iss` must start with https://sts.windows.net/ (or another Entra STS prefix); `aud`
must be https://storage.azure.com (or the account's service URL). The signature is not checked.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.azurite import free_port, launch_azurite, stop_process

STORAGE_AUDIENCE = "https://storage.azure.com"


def self_signed_loopback_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "azurite-cert.pem", directory / "azurite-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class MintedTokenCredential:
    """A TokenCredential (azure-core protocol) minting storage tokens; counts what it issued."""

    issuer: str = f"https://sts.windows.net/{uuid.uuid4()}/"
    audience: str = STORAGE_AUDIENCE
    lifetime: int = 3600
    scopes_seen: list[tuple[str, ...]] = field(default_factory=list)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes_seen.append(scopes)
        now = int(time.time())
        expires = now + self.lifetime
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now - 60,
            "nbf": now - 60,
            "exp": expires,
            "oid": str(uuid.uuid4()),
        }
        token = jwt.encode(claims, os.urandom(32), algorithm="HS256")
        return AccessToken(token, expires)


@dataclass
class OAuthAzurite:
    proc: subprocess.Popen[bytes]
    table_port: int
    queue_port: int
    blob_port: int
    ca_file: Path

    def endpoint(self, service: str) -> str:
        port = {"table": self.table_port, "queue": self.queue_port, "blob": self.blob_port}
        return f"https://127.0.0.1:{port[service]}/devstoreaccount1"

    def identity_env(self, setting: str, client_id: str = "") -> dict[str, str]:
        """App settings of an identity-based connection to this Azurite."""
        env = {
            f"{setting}__tableServiceUri": self.endpoint("table"),
            f"{setting}__queueServiceUri": self.endpoint("queue"),
            f"{setting}__blobServiceUri": self.endpoint("blob"),
            f"{setting}__credential": "managedidentity",
        }
        if client_id:
            env[f"{setting}__clientId"] = client_id
        return env

    def stop(self) -> None:
        stop_process(self.proc)


def start_oauth_azurite(directory: Path) -> OAuthAzurite:
    cert, key = self_signed_loopback_cert(directory)
    tp, qp, bp = free_port(), free_port(), free_port()
    proc = launch_azurite(
        ["--inMemoryPersistence", "--oauth", "basic", "--cert", str(cert), "--key", str(key)],
        tp,
        qp,
        bp,
    )
    return OAuthAzurite(proc, tp, qp, bp, cert)
