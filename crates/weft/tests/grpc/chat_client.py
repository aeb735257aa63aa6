"""A gRPC client for weft's end-to-end tests: holds one bidirectional stream open.

Usage: chat_client.py TARGET AUTHORITY SECONDS INTERVAL

Calls /weft.test.Echo/Chat on TARGET (host:port, plain HTTP/2) with `:authority` AUTHORITY,
sends `ping N` every INTERVAL seconds for SECONDS seconds, then half-closes, and reads the
echoes as they come. Prints one JSON line: sent, received, out_of_order, elapsed, max_gap
(longest wait between two echoes, or from the start to the first), max_rtt, status, error.
Needs only `grpcio` (raw-bytes messages, no generated code).
"""

import json
import sys
import threading
import time

import grpc


def main():
    target, authority = sys.argv[1], sys.argv[2]
    seconds, interval = float(sys.argv[3]), float(sys.argv[4])
    channel = grpc.insecure_channel(target, options=[("grpc.default_authority", authority)])
    chat = channel.stream_stream("/weft.test.Echo/Chat")
    sent_at = {}
    lock = threading.Lock()
    start = time.monotonic()

    def requests():
        n = 0
        while time.monotonic() - start < seconds:
            with lock:
                sent_at[n] = time.monotonic()
            yield f"ping {n}".encode()
            n += 1
            time.sleep(interval)

    received = out_of_order = 0
    max_gap = max_rtt = 0.0
    last = start
    status, error = "OK", None
    call = chat(requests(), timeout=seconds + 60)
    try:
        for reply in call:
            now = time.monotonic()
            n = int(reply.decode().split()[1])
            if n != received:
                out_of_order += 1
            with lock:
                max_rtt = max(max_rtt, now - sent_at.get(n, now))
            max_gap = max(max_gap, now - last)
            last = now
            received += 1
    except grpc.RpcError as e:
        status, error = str(e.code()), e.details()
    print(
        json.dumps(
            {
                "sent": len(sent_at),
                "received": received,
                "out_of_order": out_of_order,
                "elapsed": time.monotonic() - start,
                "max_gap": max_gap,
                "max_rtt": max_rtt,
                "status": status,
                "error": error,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
