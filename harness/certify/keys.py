"""The signing key pair: ed25519, PEM (PKCS#8 private, SubjectPublicKeyInfo public),
so `openssl pkeyutl -verify -rawin` checks a bundle's signature without kvmconf."""
from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harness.errors import UsageError

PRIVATE_NAME, PUBLIC_NAME = "kvmconf-cert.key", "kvmconf-cert.pub"


def fingerprint(public: Ed25519PublicKey) -> str:
    """SHA256:<base64> of the raw 32-byte key, as ssh-keygen -l shows keys."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def new_pair(folder: Path) -> tuple[Path, Path, str]:
    """Write a new key pair into `folder` (never over an existing one)."""
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(f"--new-key {folder}: {path.name} is already there (kvmconf never overwrites a key)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path, fingerprint(key.public_key())


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"--key {path}: {e.strerror or e}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"--key {path}: permissions {stat.S_IMODE(mode):04o} let others read the "
                         f"private key (chmod 600 it)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise UsageError(f"--key {path}: not an unencrypted PEM private key ({str(e).splitlines()[0]})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"--key {path}: a {type(key).__name__.removeprefix('_')} key, expected ed25519 "
                         f"(kvmconf certify --new-key DIR makes one)")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """A PEM public key, or an OpenSSH "ssh-ed25519 AAAA..." line."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"--pubkey {path}: {e.strerror or e}") from None
    try:
        key = (serialization.load_ssh_public_key(data.strip()) if data.startswith(b"ssh-")
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise UsageError(f"--pubkey {path}: not a PEM or OpenSSH public key ({str(e).splitlines()[0]})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"--pubkey {path}: a {type(key).__name__.removeprefix('_')} key, expected ed25519")
    return key
