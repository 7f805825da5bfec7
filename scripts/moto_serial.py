"""moto_server, serving one request at a time.

moto's stock server handles requests on threads and does not lock its
DynamoDB tables, so two concurrent conditional writes to one item can both
pass their condition: something real DynamoDB never allows (a conditional
write is atomic per item). Serving requests one by one restores that
guarantee, which the once-only tests depend on; the tests still issue their
requests concurrently.

One kind of request would hold everything up: an SQS long poll
(ReceiveMessage with WaitTimeSeconds, as `terima serve --backend aws` sends
it) waits in moto until a message arrives, and nothing can arrive while it
holds the server. So a long poll is served as short polls, each alone in
moto like every other request, with the wait between them spent outside:
other requests go ahead, and the poll answers as soon as a message is there
or its wait is over, as SQS does.

Usage: python scripts/moto_serial.py PORT
"""

import io
import json
import os
import signal
import sys
import threading
import time

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

# How often a long poll looks at its queue again.
POLL_INTERVAL_SECS = 0.05


class Serial:
    """WSGI middleware: one request at a time inside moto."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("wsgi.input_terminated"):  # chunked: read to the end
            body = environ["wsgi.input"].read()
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
        wait, short_poll = long_poll(environ, body)
        if not wait:
            status, headers, payload = self.call(environ, body)
            start_response(status, headers)
            return [payload]
        deadline = time.monotonic() + wait
        while True:
            status, headers, payload = self.call(environ, short_poll)
            if not status.startswith("200") or has_messages(payload) or time.monotonic() >= deadline:
                start_response(status, headers)
                return [payload]
            time.sleep(POLL_INTERVAL_SECS)

    def call(self, environ, body):
        """One request through moto, alone; the whole response is read inside."""
        environ = dict(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        response = {}

        def start_response(status, headers, exc_info=None):
            response["status"], response["headers"] = status, headers
            return lambda data: None

        with self.lock:
            chunks = self.app(environ, start_response)
            try:
                payload = b"".join(chunks)
            finally:
                if hasattr(chunks, "close"):
                    chunks.close()
        return response["status"], response["headers"], payload


def long_poll(environ, body):
    """(seconds, the same request with no wait) for an SQS long poll in the
    JSON protocol that the AWS SDKs use; (0, None) for anything else."""
    if environ.get("HTTP_X_AMZ_TARGET") != "AmazonSQS.ReceiveMessage":
        return 0, None
    try:
        request = json.loads(body)
        wait = int(request.get("WaitTimeSeconds") or 0)
    except (ValueError, TypeError, AttributeError):
        return 0, None
    if wait <= 0:
        return 0, None
    request["WaitTimeSeconds"] = 0
    return wait, json.dumps(request).encode()


def has_messages(payload):
    try:
        return bool(json.loads(payload).get("Messages"))
    except (ValueError, AttributeError):
        return True  # not what a poll answers: pass it on as it is


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(
        "127.0.0.1",
        port,
        Serial(DomainDispatcherApplication(create_backend_app)),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
