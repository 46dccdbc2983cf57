"""Per-run SSH keys: an ed25519 client key and a dropbear host key to pin."""
from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.errors import HarnessError


@dataclass
class RunKeys:
    client: paramiko.Ed25519Key
    client_public: str          # authorized_keys line
    host_key_file: bytes        # dropbear format, for the guest
    host_public: paramiko.PKey  # what the guest must present


def generate(workdir: Path) -> RunKeys:
    """Fresh keys in `workdir` (a 0700 run folder); nothing is reused across runs."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    key_path = workdir / "id_ed25519"
    key_path.write_bytes(pem)
    key_path.chmod(0o600)
    client = paramiko.Ed25519Key.from_private_key_file(str(key_path))
    public = f"{client.get_name()} {client.get_base64()} kvmconf-run"

    host_path = workdir / "dropbear_host_key"
    try:
        subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(host_path)],
                       capture_output=True, check=True, timeout=30)
        shown = subprocess.run(["dropbearkey", "-y", "-f", str(host_path)],
                               capture_output=True, text=True, check=True, timeout=30).stdout
    except FileNotFoundError:
        raise HarnessError("dropbearkey not found: install the Debian package dropbear-bin") from None
    except subprocess.CalledProcessError as e:
        raise HarnessError(f"dropbearkey failed: {e.stderr.strip()[-200:]}") from None
    line = next((l for l in shown.splitlines() if l.startswith("ssh-ed25519 ")), None)
    if line is None:
        raise HarnessError("dropbearkey -y printed no ssh-ed25519 public key")
    host_public = paramiko.Ed25519Key(data=base64.b64decode(line.split()[1]))
    return RunKeys(client, public, host_path.read_bytes(), host_public)
