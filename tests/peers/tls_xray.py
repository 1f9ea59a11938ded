"""A loopback HTTPS server that answers like X-Ray's PutTraceSegments, for TLS tests.

Usage: python tls_xray.py CERT KEY
Serves HTTPS on 127.0.0.1 (a free port, printed as the first line of stdout), with the
certificate chain CERT and key KEY. Every POST is answered 200 with an empty
UnprocessedTraceSegments list (the shape of a PutTraceSegments reply) and counted; the count is
printed to stdout, one line per request ("request N PATH"). Runs until killed.
"""

import http.server
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests = 0

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        Handler.requests += 1
        body = b'{"UnprocessedTraceSegments":[]}'
        # One write for headers and body: no delayed-ACK stall on keep-alive connections.
        head = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: application/x-amz-json-1.1\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.wfile.write(head + body)
        self.wfile.flush()
        print(f"request {Handler.requests} {self.path}", flush=True)

    def log_message(self, *args):
        pass


def main():
    cert, key = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
