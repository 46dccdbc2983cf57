"""Certification: a run checked against a platform's expectations, as a signed bundle.

expectations.py  PLATFORM.toml (schema in docs/certification.md), checked on load
verdict.py       whether a run meets the expectations, with every reason it does not
bundle.py        the tarball: members, sha256 manifest, ed25519 signature; its check
keys.py          the signing key pair
"""
