#!/usr/bin/env python3
"""The stand-in AMS unit's hooks: a client certificate, sent on every registry relation.

At every hook: make the certificate once (openssl, P-256, self-signed), then set
`certificate` and `mode` in this unit's data of each relation on both endpoints,
JSON-encoded as the reactive AMS charm's charms.reactive does (`json.dumps` of every
value). The status shows the certificate's fingerprint, which the test revokes by.
Standard library and hook tools only, so that the charm needs no packed dependencies.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
from pathlib import Path

HOME = Path("/var/lib/ams-standin")
CERT, KEY = HOME / "client.crt", HOME / "client.key"
ENDPOINTS = {"registry-client": "client", "registry-publisher": "publisher"}


def tool(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def ensure_certificate(unit: str) -> str:
    """The unit's client certificate (PEM), made at the first hook."""
    if not CERT.exists():
        HOME.mkdir(parents=True, exist_ok=True, mode=0o700)
        tool(
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
            "-subj", f"/CN={unit.replace('/', '-')}", "-keyout", str(KEY), "-out", str(CERT),
        )  # fmt: skip
        KEY.chmod(0o600)
    return CERT.read_text()


def fingerprint(pem: str) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def main() -> None:
    unit = os.environ["JUJU_UNIT_NAME"]
    pem = ensure_certificate(unit)
    for endpoint, mode in ENDPOINTS.items():
        for relation_id in json.loads(tool("relation-ids", endpoint, "--format", "json")):
            tool(
                "relation-set", "-r", relation_id,
                f"certificate={json.dumps(pem)}", f"mode={json.dumps(mode)}",
            )  # fmt: skip
    tool("status-set", "active", f"client certificate {fingerprint(pem)}")


if __name__ == "__main__":
    main()
