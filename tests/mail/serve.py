"""The SMTP server idgard's mail notifications are tested against: aiosmtpd on loopback, with
STARTTLS (required before anything else) or implicit TLS, and authentication (PLAIN, LOGIN)
required when --user is given. Each accepted message is written to --out as NNNNN.eml, with
the envelope and the authenticated user in X-Test-* headers above it. Prints "ready PORT" once
it listens; stops on SIGTERM or when its standard input closes."""

import argparse
import logging
import os
import signal
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, out):
        self.out = out
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            path = os.path.join(self.out, f"{self.count:05}.eml")
        user = session.auth_data.login.decode() if session.authenticated else "-"
        head = (
            f"X-Test-Mail-From: {envelope.mail_from}\r\n"
            f"X-Test-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
            f"X-Test-User: {user}\r\n"
            f"X-Test-Tls: {'yes' if session.ssl else 'no'}\r\n"
        ).encode()
        with open(path + ".tmp", "wb") as f:
            f.write(head + envelope.original_content)
        os.rename(path + ".tmp", path)
        return "250 OK"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return check


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit", action="store_true", help="TLS from the first byte")
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()
    # With implicit TLS, AUTH is over TLS although aiosmtpd does not know it, and warns.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)

    context = None
    if a.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
    server_kwargs = {}
    if a.user:
        server_kwargs.update(
            authenticator=authenticator(a.user, a.password),
            auth_required=True,
            auth_require_tls=not a.implicit,
        )
    if context and not a.implicit:
        server_kwargs.update(tls_context=context, require_starttls=True)
    controller = Controller(
        Store(a.out),
        hostname="127.0.0.1",
        port=a.port,
        ssl_context=context if a.implicit else None,
        server_hostname="localhost",
        server_kwargs=server_kwargs,
    )
    controller.start()
    print(f"ready {controller.port}", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
