"""An attacker's (or a careless lab's) edit of a certification bundle, for the tests."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path


def rewrite(source: Path, target: Path, change, key=None) -> Path:
    """Copy bundle `source` to `target`, letting `change(members)` edit {name: bytes};
    with `key` (an Ed25519PrivateKey) the manifest is rebuilt and signed again, so
    only the checks past the signature can catch the edit."""
    with tarfile.open(source) as tar:
        top = tar.getmembers()[0].name.split("/", 1)[0]
        members = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar}
    change(members)
    if key is not None:
        body = {n: d for n, d in members.items() if not n.startswith("MANIFEST")}
        members["MANIFEST.sha256"] = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n"
                                             for n, d in sorted(body.items())).encode()
        members["MANIFEST.sha256.sig"] = key.sign(members["MANIFEST.sha256"])
    with tarfile.open(target, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target
