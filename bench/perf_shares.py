"""Shares of a download's CPU samples by what the daemon was doing, from call graphs.

Reads `perf script -F tid,ip,sym` of a `perf record --call-graph dwarf` run on stdin (see
bench/profile-download.sh) and prints, for each activity, the share of samples whose stack
contains it, then the leaf functions and the callers of the user-space copies. A sample
belongs to an activity when any frame of its stack matches; the activities overlap where
one runs inside another (the copy into the socket buffer is part of the socket write).
"""

from __future__ import annotations

import collections
import re
import sys

# (label, frame pattern, pattern the leaf frame must match as well, or None)
ACTIVITIES = [
    ("file read: read(2) from the page cache (blocking pool)", r"ksys_read|ksys_pread", None),
    ("  of which the copy out of the page cache", r"ksys_read|ksys_pread", r"^_copy_to_iter"),
    ("socket write: writev(2) into loopback TCP", r"^tcp_sendmsg$", None),
    ("  of which the copy into socket buffers", r"^tcp_sendmsg$", r"^_copy_from_iter"),
    (
        "  of which loopback delivery to the client (softirq)",
        r"^tcp_sendmsg$;handle_softirqs|do_softirq|net_rx_action",
        None,
    ),
    (
        "  of which transmit with interrupts off (tcp_write_xmit)",
        r"^tcp_write_xmit",
        r"^_raw_spin_unlock_irqrestore",
    ),
    ("AES-128-GCM seal (ring)", r"aes_gcm_enc_update|ring::aead::aes_gcm::seal|gcm_ghash", None),
    ("user-space memcpy", None, r"^__mem(move|cpy)"),
    ("thread hand-offs: futex wake-ups and context switches", r"futex|finish_task_switch", None),
    ("epoll", r"epoll", None),
]


def read_samples(lines) -> list[list[str]]:
    samples, cur = [], None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            if cur:
                samples.append(cur)
            cur = []
            continue
        parts = line.strip().split(None, 1)
        if cur is not None:
            cur.append(parts[1] if len(parts) > 1 else parts[0])
    if cur:
        samples.append(cur)
    return samples


def matches(stack: list[str], pattern: str) -> bool:
    # Frames run from the leaf to the thread's start. "a;b": a frame matching a, and below
    # it one matching b (called from it, directly or not).
    first, _, inner = pattern.partition(";")
    for i, frame in enumerate(stack):
        if re.search(first, frame):
            return not inner or any(re.search(inner, f) for f in stack[:i])
    return False


def main() -> int:
    samples = read_samples(sys.stdin)
    n = len(samples)
    if not n:
        print("perf_shares: no samples on stdin", file=sys.stderr)
        return 1
    print(f"{n} samples with call graphs\n")
    for label, frames, leaf in ACTIVITIES:
        count = sum(
            1
            for s in samples
            if (frames is None or matches(s, frames)) and (leaf is None or re.search(leaf, s[0]))
        )
        print(f"{100 * count / n:5.1f}%  {label}")
    print("\nleaf functions:")
    for name, count in collections.Counter(s[0][:70] for s in samples).most_common(12):
        print(f"{100 * count / n:5.1f}%  {name}")
    print("\nuser-space memcpy, by the first rustls, hyper, tokio or aar frame above it:")
    callers: collections.Counter[str] = collections.Counter()
    for s in samples:
        if re.search(r"^__mem(move|cpy)", s[0]):
            named = next((f for f in s[1:] if re.search(r"rustls|hyper|aar::|tokio", f)), "?")
            callers[re.sub(r"<.*", "", named)[:100]] += 1
    for name, count in callers.most_common(6):
        print(f"{100 * count / n:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
