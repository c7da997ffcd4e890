"""A real SMTP server (aiosmtpd) for axi-obs-alert's mail tests.

usage: smtp_sink.py OUTDIR [USER:PASSWORD]

Listens on 127.0.0.1 on a free port and prints `LISTENING <port>` on stdout. Each message
accepted is parsed with Python's own `email` package and written, atomically, to
OUTDIR/<n>.json: the envelope, the AUTH login, the decoded headers and every MIME part
(content type, charset, transfer encoding, decoded text), the AUTH login and mechanism. With USER:PASSWORD, AUTH is
required (PLAIN and LOGIN, allowed without TLS) and other credentials are refused with 535.
Runs until stdin is closed.
"""

import asyncio
import json
import logging
import os
import sys
import warnings
from email import message_from_bytes, policy
from email.header import decode_header, make_header

from aiosmtpd.smtp import SMTP, AuthResult


def decoded(value):
    return str(make_header(decode_header(value))) if value is not None else None


class Sink:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = message_from_bytes(raw, policy=policy.compat32)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            charset = part.get_content_charset() or "us-ascii"
            parts.append(
                {
                    "content_type": part.get_content_type(),
                    "charset": charset,
                    "encoding": part.get("Content-Transfer-Encoding"),
                    "text": part.get_payload(decode=True).decode(charset),
                }
            )
        login = session.auth_data.login.decode() if session.auth_data else None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth_login": login,
            "auth_mechanism": getattr(session, "axi_mechanism", None),
            "content_type": msg.get_content_type(),
            "headers": {k: decoded(v) for k, v in msg.items()},
            "raw_subject": msg.get("Subject"),
            "parts": parts,
        }
        self.count += 1
        path = os.path.join(self.outdir, f"{self.count}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
        return "250 Message accepted for delivery"


def authenticator(expected):
    user, password = expected.split(":", 1)

    def check(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        session.axi_mechanism = mechanism
        # handled=False: aiosmtpd answers 535 itself on failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return check


async def main():
    # AUTH without TLS is what the tests want (on loopback): no warnings about it.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    outdir = sys.argv[1]
    creds = sys.argv[2] if len(sys.argv) > 2 else None
    sink = Sink(outdir)
    loop = asyncio.get_running_loop()

    def factory():
        if creds:
            return SMTP(
                sink,
                hostname="sink.test",
                auth_required=True,
                auth_require_tls=False,
                authenticator=authenticator(creds),
            )
        return SMTP(sink, hostname="sink.test")

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    # Stop when the test closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
