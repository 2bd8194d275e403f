"""Shares of the daemon's CPU samples by what it was doing, from call graphs.

    perf_shares.py [download|upload|metadata] < perf-script-output

Reads `perf script -F tid,ip,sym` of a `perf record --call-graph dwarf` run on stdin (see
bench/profile.sh) and prints, for each activity of that workload, the share of samples whose stack
contains it, then the leaf functions and the callers of the user-space copies. A sample
belongs to an activity when any frame of its stack matches; the activities overlap where
one runs inside another (the copy into the socket buffer is part of the socket write).
"""

from __future__ import annotations

import collections
import re
import sys

# (label, frame pattern, pattern the leaf frame must match as well, or None)
HAND_OFFS = (
    "thread hand-offs: futex wake-ups and context switches",
    r"futex|finish_task_switch",
    None,
)
MEMCPY = ("user-space memcpy", None, r"^__mem(move|cpy)")
DOWNLOAD = [
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
    MEMCPY,
    HAND_OFFS,
    ("epoll", r"epoll", None),
]
UPLOAD = [
    ("SHA-256 of the image (sha2, on the writing thread)", r"sha2::", None),
    ("socket read: recvmsg from loopback TCP", r"^tcp_recvmsg$|sock_recvmsg|sock_read_iter", None),
    ("  of which the copy out of socket buffers", r"^tcp_recvmsg", r"^_copy_to_iter"),
    ("  of which ACKs sent with interrupts off", r"^tcp_recvmsg", r"^_raw_spin_unlock_irqrestore"),
    ("AES-128-GCM open (ring)", r"aes_gcm_dec_update|ring::aead::aes_gcm::open|gcm_ghash", None),
    ("O_DIRECT writes to the disk", r"ksys_pwrite|ksys_write|iomap_dio|blkdev", None),
    ("page faults", r"exc_page_fault|asm_exc_page_fault", None),
    MEMCPY,
    HAND_OFFS,
]
METADATA = [
    ("the API (routing, identity, handler, metrics layer)", r"aar::api::", None),
    ("  of which the trust look-up", r"aar::api::identity", None),
    (
        "    of which the stat of trust.json",
        r"aar::api::identity;statx|newfstatat|vfs_statx",
        None,
    ),
    ("  of which JSON serialisation", r"serde_json", None),
    ("  of which the ETag hash (SHA-256)", r"sha2::", None),
    ("HTTP/1.1 parse and encode (hyper)", r"Http1Transaction>::(parse|encode)", None),
    ("AES-128-GCM (ring)", r"aes_gcm_(enc|dec)_update|gcm_ghash", None),
    ("socket write into loopback TCP", r"^tcp_sendmsg$", None),
    ("socket read", r"^tcp_recvmsg$|sock_recvmsg|sock_read_iter", None),
    ("epoll", r"epoll", None),
    ("malloc and free", None, r"malloc|_int_free|cfree|realloc"),
    MEMCPY,
    HAND_OFFS,
]
S3_UPLOAD = [
    ("SHA-256, all of it", r"sha2::", None),
    (
        "  of which SigV4's hash of each part's payload (AWS SDK)",
        r"aws_sigv4;sha2::",
        None,
    ),
    (
        "socket read: the image from the client (recvmsg)",
        r"^tcp_recvmsg$|sock_recvmsg|sock_read_iter",
        None,
    ),
    ("socket write: the parts to the S3 server (sendmsg)", r"^tcp_sendmsg$", None),
    ("AES-128-GCM open (ring)", r"aes_gcm_dec_update|gcm_ghash", None),
    (
        "the AWS SDK and its HTTP client (SigV4 hash included)",
        r"aws_smithy|aws_sdk_s3|aws_runtime",
        None,
    ),
    ("page faults", r"exc_page_fault|asm_exc_page_fault", None),
    MEMCPY,
    HAND_OFFS,
]
ACTIVITIES = {
    "download": DOWNLOAD,
    "upload": UPLOAD,
    "metadata": METADATA,
    "s3-upload": S3_UPLOAD,
}


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
    what = sys.argv[1] if len(sys.argv) > 1 else "download"
    if what not in ACTIVITIES:
        print(f"perf_shares: the workload is one of {', '.join(ACTIVITIES)}", file=sys.stderr)
        return 2
    samples = read_samples(sys.stdin)
    n = len(samples)
    if not n:
        print("perf_shares: no samples on stdin", file=sys.stderr)
        return 1
    print(f"{n} samples with call graphs\n")
    for label, frames, leaf in ACTIVITIES[what]:
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
