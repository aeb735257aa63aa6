"""A gRPC echo server for weft's end-to-end tests.

Serves the bidirectional streaming method /weft.test.Echo/Chat on 127.0.0.1 (an ephemeral
port, printed as `listening PORT` on stdout), answering every message with the same bytes.
It uses a generic handler with raw-bytes (de)serialization, so no protoc or generated code is
needed: only the `grpcio` package (`pip install grpcio`). It exits when stdin closes.
"""

import sys
from concurrent import futures

import grpc


def chat(request_iterator, context):
    for message in request_iterator:
        yield message


def main():
    handler = grpc.method_handlers_generic_handler(
        "weft.test.Echo",
        {"Chat": grpc.stream_stream_rpc_method_handler(chat)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
