"""Raw gRPC calls for the integration tests, made with grpcio (a real gRPC client).

Usage: grpc_calls.py HOST:PORT METHOD_PATH HEX_MESSAGE [METHOD_PATH HEX_MESSAGE ...]

Calls each unary method on an insecure channel with the message's bytes as they are (no
serializer: garbage goes out as garbage), one after the other, each with a 10 s deadline.

Prints exactly one JSON line to stdout:
  {"calls": [{"path": P, "code": "OK"|"INVALID_ARGUMENT"|..., "details": TEXT or null,
              "reply_hex": HEX or null}]}
Everything else goes to stderr.
"""

import json
import sys

import grpc


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 3 or len(args) % 2 != 1:
        print("usage: grpc_calls.py HOST:PORT METHOD_PATH HEX_MESSAGE ...", file=sys.stderr)
        return 2
    address, pairs = args[0], args[1:]
    calls = []
    with grpc.insecure_channel(address) as channel:
        for path, message in zip(pairs[0::2], pairs[1::2]):
            method = channel.unary_unary(path)
            try:
                reply = method(bytes.fromhex(message), timeout=10)
                calls.append({"path": path, "code": "OK", "details": None, "reply_hex": reply.hex()})
            except grpc.RpcError as error:
                calls.append(
                    {
                        "path": path,
                        "code": error.code().name,
                        "details": error.details(),
                        "reply_hex": None,
                    }
                )
    print(json.dumps({"calls": calls}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
