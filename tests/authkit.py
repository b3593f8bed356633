"""Key pairs, JWTs, static tokens and a small certificate authority, generated in the test (cryptography).

* ``Keys.generate(dir, kind)`` writes ``private.pem``/``public.pem`` (``ed25519``, ``rsa``, ``ec``) and mints
  tokens with ``token(prefix=…, admin=…, ttl=…, **claims)``; ``Keys.other(dir)`` is an unrelated pair (a
  token it signs has a bad signature for the server).
* ``CertificateAuthority.create(dir)`` makes a self-signed CA; ``issue(name, server=…)`` a certificate
  for ``127.0.0.1``/``localhost`` (server) or a client certificate, as PEM files.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ALG = {"ed25519": "EdDSA", "rsa": "RS256", "ec": "ES256"}


def _pem_private(key: Any) -> bytes:
    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_public(key: Any) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class Keys:
    private: Any
    alg: str
    private_path: Path
    public_path: Path

    @classmethod
    def generate(cls, directory: Path, kind: str = "ed25519", name: str = "auth") -> Keys:
        directory.mkdir(parents=True, exist_ok=True)
        if kind == "ed25519":
            key: Any = ed25519.Ed25519PrivateKey.generate()
        elif kind == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif kind == "ec":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(kind)
        private_path = directory / f"{name}-private.pem"
        public_path = directory / f"{name}-public.pem"
        private_path.write_bytes(_pem_private(key))
        public_path.write_bytes(_pem_public(key))
        return cls(key, _ALG[kind], private_path, public_path)

    def token(
        self, prefix: str | None = None, *, admin: bool = False, ttl: float = 3600, **claims: Any
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {"iat": now, "exp": now + int(ttl)}
        if prefix is not None:
            body["prefix"] = prefix
        if admin:
            body["role"] = "admin"
        body.update(claims)
        return jwt.encode({k: v for k, v in body.items() if v is not None}, self.private, algorithm=self.alg)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass
class CertificateAuthority:
    key: Any
    cert: x509.Certificate
    path: Path
    directory: Path

    @classmethod
    def create(cls, directory: Path, name: str = "troth test CA") -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        path = directory / f"{name.replace(' ', '-')}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert, path, directory)

    def issue(self, name: str, *, server: bool = True) -> tuple[Path, Path]:
        """A certificate signed by this CA: ``(cert.pem, key.pem)``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if server:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path = self.directory / f"{name}-cert.pem"
        key_path = self.directory / f"{name}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_private(key))
        return cert_path, key_path
