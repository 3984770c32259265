#!/usr/bin/env python3
"""A webhook receiver for local use: answers every POST with one status (200 by default) and
prints each request as one JSON line (path, the Standard Webhooks headers, the body).

Usage: python3 scripts/dev_receiver.py PORT [--status CODE]
  e.g. python3 scripts/dev_receiver.py 8081      (the README's quick start)

Also imported by scripts/soak.py and scripts/readme_walkthrough.py: `Receiver` (in-process, keeps
what it got) and `verify` (the README's HMAC check of a delivery's signature).
"""

import base64
import hashlib
import hmac
import http.server
import json
import sys
import threading
import time

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent")


def verify(signing_secret, headers, body):
    """True when one of the `webhook-signature` values is the HMAC of this delivery under
    `signing_secret` (64 hex characters), as the README's receivers check it."""
    try:
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(
            hmac.new(bytes.fromhex(signing_secret), signed, hashlib.sha256).digest()
        ).decode()
    except (KeyError, ValueError):
        return False
    return any(
        hmac.compare_digest(expected, sig.split(",", 1)[1])
        for sig in headers.get("webhook-signature", "").split(" ")
        if sig.startswith("v1,")
    )


class Receiver:
    """An HTTP server on 127.0.0.1:`port` answering every POST with `status`."""

    def __init__(self, port=0, status=200, echo=False):
        self.status = status
        self.requests = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = {
                    "at": time.time(),
                    "path": self.path,
                    "headers": {
                        name: self.headers.get(name)
                        for name in HEADERS
                        if self.headers.get(name) is not None
                    },
                    "body": body,
                }
                with receiver.lock:
                    receiver.requests.append(request)
                if echo:
                    shown = dict(request, body=body.decode(errors="replace"))
                    del shown["at"]
                    print(json.dumps(shown), flush=True)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def got(self):
        with self.lock:
            return list(self.requests)


def main(argv):
    args = argv[1:]
    status = 200
    if len(args) == 3 and args[1] == "--status":
        status = int(args[2])
        args = args[:1]
    if len(args) != 1 or not args[0].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    receiver = Receiver(int(args[0]), status, echo=True)
    print(
        f"dev_receiver: listening on http://127.0.0.1:{receiver.port}, answering {status}",
        file=sys.stderr,
        flush=True,
    )
    try:
        receiver.server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
