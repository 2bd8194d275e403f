#!/usr/bin/env python3
"""Requests the registry as AMS would, with the stand-in's client certificate.

    probe.py URL FINGERPRINT [--until STATUS] [--timeout SECONDS]

The server is pinned by FINGERPRINT (SHA-256 of its certificate's DER encoding), as AMS
pins `registry.fingerprint`; no CA or host name is checked. One kept-alive connection is
reused (a new one only when the server closes it), so a revocation must reach requests on
an open connection. Prints one JSON line: the first status, the last status, and the wall
clock time (epoch seconds) at which STATUS was first answered, or null.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import ssl
import sys
import time
from urllib.parse import urlsplit

CERT, KEY = "/var/lib/ams-standin/client.crt", "/var/lib/ams-standin/client.key"


def connect(host: str, port: int, pinned: str) -> http.client.HTTPSConnection:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Pinned by fingerprint below instead of a CA chain and a host name, as AMS does.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(CERT, KEY)
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    connection.connect()
    der = connection.sock.getpeercert(binary_form=True)
    served = hashlib.sha256(der).hexdigest()
    if served != pinned:
        raise SystemExit(f"the server presents {served}, not the pinned {pinned}")
    return connection


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("fingerprint")
    parser.add_argument("--until", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=0.0)
    args = parser.parse_args()
    url = urlsplit(args.url)
    connection = connect(url.hostname, url.port or 443, args.fingerprint)
    first = last = None
    seen_at = None
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            connection.request("GET", url.path or "/1.0/applications")
            response = connection.getresponse()
            response.read()
            last = response.status
        except (http.client.HTTPException, OSError):
            # The server closed the kept-alive connection: the next request opens another.
            connection.close()
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
            connection = connect(url.hostname, url.port or 443, args.fingerprint)
            continue
        first = last if first is None else first
        if last == args.until:
            seen_at = time.time()
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    json.dump({"first": first, "last": last, "seen_at": seen_at}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
