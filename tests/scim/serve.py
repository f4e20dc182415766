"""Serve an in-memory SCIM 2.0 service for the integration tests.

The service is scim2-server's application with the schemas and resource types
of RFC 7643 (User with the Enterprise User extension, Group), served by
waitress on a loopback address. A small WSGI middleware in front of it can
answer every Nth request with 429 (fault injection) and log each request.

    python serve.py --port 0 --token secret --throttle 10 --verbose

Once listening, it prints ``ready http://HOST:PORT`` on stdout; with
``--port 0`` the port is chosen by the system and read from that line. The
endpoints answer under ``/`` and ``/v2`` alike (``/Users`` or ``/v2/Users``).
SIGTERM and SIGINT stop it cleanly.
"""

import argparse
import json
import signal
import sys
import threading

from scim2_models import Error
from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.responses import SCIM_MEDIA_TYPE
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME
from scim2_server.testserver.application import BearerTokenApplication
from scim2_server.utils import load_default_resource_types
from scim2_server.utils import load_default_schemas
from scim2_server.utils import load_default_service_provider_config
from waitress.server import create_server


def build_application(token):
    """Build scim2-server's WSGI application over a fresh in-memory storage.

    With a token, the bearer scheme is announced in /ServiceProviderConfig and
    every other endpoint answers 401 (a SCIM error, with WWW-Authenticate) to
    a request without ``Authorization: Bearer <token>``. RFC 7644 §4 keeps
    /ServiceProviderConfig readable without credentials.
    """
    config = load_default_service_provider_config()
    if token:
        config.authentication_schemes = [BEARER_TOKEN_SCHEME]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=config,
    )
    return BearerTokenApplication(
        InMemoryStorage(), provider, bearer_tokens=[token] if token else []
    )


class FaultMiddleware:
    """Fault injection and request logging in front of the SCIM application.

    :param throttle: Answer every Nth request (counting all requests) with
        ``429 Too Many Requests`` and ``Retry-After: 1``, without passing it
        to the application. 0 disables it.
    :param verbose: Log ``METHOD PATH STATUS`` to stderr for each request.
    """

    def __init__(self, application, throttle=0, verbose=False):
        self.application = application
        self.throttle = throttle
        self.verbose = verbose
        self.count = 0
        self.lock = threading.Lock()

    def next_is_throttled(self):
        """Count a request and tell whether it is one to refuse."""
        with self.lock:
            self.count += 1
            return bool(self.throttle) and self.count % self.throttle == 0

    def __call__(self, environ, start_response):
        statuses = []

        def recording_start_response(status, headers, exc_info=None):
            statuses.append(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        if self.next_is_throttled():
            body = Error(status=429, detail="Too many requests, retry later").model_dump()
            payload = json.dumps(body).encode()
            recording_start_response(
                "429 Too Many Requests",
                [
                    ("Content-Type", SCIM_MEDIA_TYPE),
                    ("Content-Length", str(len(payload))),
                    ("Retry-After", "1"),
                ],
            )
            result = [payload]
        else:
            result = self.application(environ, recording_start_response)

        if self.verbose:
            path = environ.get("PATH_INFO", "")
            if environ.get("QUERY_STRING"):
                path += "?" + environ["QUERY_STRING"]
            status = statuses[0] if statuses else "-"
            print(f"{environ['REQUEST_METHOD']} {path} {status}", file=sys.stderr, flush=True)
        return result


def stop(signum, frame):
    """Leave the server loop; waitress closes its sockets on SystemExit."""
    raise SystemExit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="listen port, 0 for any free port (default)")
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN'")
    parser.add_argument("--throttle", type=int, default=0, metavar="N", help="answer every Nth request with 429")
    parser.add_argument("--threads", type=int, default=4, help="worker threads (default 4)")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args()
    if args.throttle < 0:
        parser.error("--throttle must be 0 or more")

    app = FaultMiddleware(build_application(args.token), args.throttle, args.verbose)
    # create_server binds and listens before returning, so "ready" is true when printed.
    try:
        server = create_server(app, host=args.host, port=args.port, threads=args.threads, ident="scim-test")
    except OSError as exc:
        parser.exit(1, f"cannot listen on {args.host}:{args.port}: {exc}\n")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"ready http://{host}:{server.effective_port}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
