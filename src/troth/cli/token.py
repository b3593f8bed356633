"""``troth token``: mint a JWT for a server started with ``--auth-public-key``, or a static token for one
started with ``--auth-tokens`` (docs/security.md).

``troth token create --key PRIVATE.pem --prefix acme- [--ttl 30d] [--sub NAME] [--admin]`` prints a JWT
signed with the private key (RS256 for RSA, ES256/ES384 for EC P-256/P-384, EdDSA for Ed25519 keys — the
algorithm follows from the key, as on the server). ``exp`` is always set (``--ttl``, one hour by default).

``troth token static --prefix acme- [--admin] [--name NAME]`` prints a new random token (256 bits, URL-safe)
on stdout and, on stderr, the line to append to the token file: only the token's SHA-256 digest, so the
file holds no secret.

Rejected: minting on the server (an endpoint that hands out credentials is one more thing to protect);
HMAC-signed JWTs (the server would need the signing secret, so anyone who reads its configuration could
mint tokens).
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path
from typing import Any

import click

from troth.cli.params import parse_duration

# jwt and cryptography are imported inside the commands: every other ``troth`` command starts faster.


def _algorithm(key: Any, path: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise click.ClickException(
                f"{path}: an RSA key of {key.key_size} bits is too weak (2048 or more)"
            )
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384"}
        alg = by_curve.get(key.curve.name)
        if alg is None:
            raise click.ClickException(f"{path}: curve {key.curve.name} is not supported (P-256 or P-384)")
        return alg
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise click.ClickException(f"{path}: a {type(key).__name__} cannot sign tokens (RSA, EC, Ed25519)")


def _ttl(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _need_prefix(prefix: str | None, admin: bool) -> None:
    if prefix is None and not admin:
        raise click.UsageError("give --prefix (--prefix '' for every id) or --admin")


@click.group()
def token() -> None:
    """Mint tokens for a server with authentication on."""


@token.command("create")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="PEM private key (its public half is the server's --auth-public-key).",
)
@click.option("--prefix", default=None, help="Ids (and groups, pids) the token may touch.")
@click.option("--admin", is_flag=True, help="role=admin: everything allowed.")
@click.option("--ttl", default="1h", show_default=True, callback=_ttl, help="Lifetime (30m, 12h, 30d, …).")
@click.option("--sub", default=None, help="Who the token speaks for (the sub claim).")
@click.option("--iss", default=None, help="The iss claim (when the server checks --auth-issuer).")
@click.option("--aud", default=None, help="The aud claim (when the server checks --auth-audience).")
def create(
    key_path: str,
    prefix: str | None,
    admin: bool,
    ttl: int,
    sub: str | None,
    iss: str | None,
    aud: str | None,
) -> None:
    """Print a JWT signed with a private key.

    \b
    Example:
      troth token create --key private.pem --prefix acme- --ttl 30d
    """
    import jwt
    from cryptography.hazmat.primitives import serialization

    _need_prefix(prefix, admin)
    try:
        pem = Path(key_path).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {key_path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise click.ClickException(f"{key_path} is not an unencrypted PEM private key ({exc})") from None
    alg = _algorithm(key, key_path)
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "exp": now + max(1, ttl // 1000)}
    if prefix is not None:
        claims["prefix"] = prefix
    if admin:
        claims["role"] = "admin"
    for name, value in (("sub", sub), ("iss", iss), ("aud", aud)):
        if value is not None:
            claims[name] = value
    click.echo(jwt.encode(claims, key, algorithm=alg))  # type: ignore[arg-type]


@token.command("static")
@click.option("--prefix", default=None, help="Ids (and groups, pids) the token may touch.")
@click.option("--admin", is_flag=True, help="role=admin: everything allowed.")
@click.option("--name", default=None, help="A name for the token's holder (logs, connection limits).")
def static(prefix: str | None, admin: bool, name: str | None) -> None:
    """Print a new random token, and on stderr the line for the --auth-tokens file.

    \b
    Example:
      troth token static --prefix acme- --name ci >> tokens.txt
    """
    from troth.server.auth import static_token_line

    _need_prefix(prefix, admin)
    if name is not None and (not name or any(c.isspace() for c in name)):
        raise click.UsageError("--name must be one word")
    if prefix is not None and any(c.isspace() or c == "#" for c in prefix):
        raise click.UsageError("a static token's prefix cannot contain spaces or '#'")
    value = secrets.token_urlsafe(32)
    click.echo(value)
    print(
        f"add to the --auth-tokens file: {static_token_line(value, prefix, admin=admin, name=name)}",
        file=sys.stderr,
    )


COMMANDS = [token]
