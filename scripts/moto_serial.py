"""moto_server, serving one request at a time.

moto's stock server handles requests on threads and does not lock its
DynamoDB tables, so two concurrent conditional writes to one item can both
pass their condition: something real DynamoDB never allows (a conditional
write is atomic per item). Serving requests one by one restores that
guarantee, which the once-only tests depend on; the tests still issue their
requests concurrently.

Usage: python scripts/moto_serial.py PORT
"""

import os
import signal
import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(
        "127.0.0.1",
        port,
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
