#!/usr/bin/python3
"""smtpd.py — a scripted SMTP server for cutoff's end-to-end tests (Debian's python3-aiosmtpd).

Listens on 127.0.0.1 only. What it answers depends on the recipient's local part:
  temp*   RCPT -> 450 4.2.1 (a temporary failure: the delivery is deferred)
  bad*    RCPT -> 550 5.1.1 user unknown (a hard failure: the address is suppressed)
  full*   end of DATA -> 552 5.2.2 mailbox full (a soft permanent failure)
  drop*   the connection is closed after the data, before the reply (in flight)
  stall*  no reply for --stall seconds (past the sender's timeout)
  anything else is accepted: 250, and one JSON line per message goes to --out.
--throttle-every N answers every Nth MAIL FROM with 421 4.7.0 and closes the connection.
--delay-ms M waits M ms before answering each end of DATA (a slow relay).
PIPELINING (RFC 2920) is announced unless --no-pipelining (aiosmtpd reads pipelined commands
in order either way; without the keyword a client must send one command at a time).
--tls-cert CERT --tls-key KEY offers STARTTLS (RFC 3207) and refuses MAIL before it.
--auth USER:PASSWORD (with --tls-cert) requires AUTH PLAIN or LOGIN with those (RFC 4954).
Each JSON line says "pipelined": whether the DATA command had already arrived when its RCPT
was answered (a client that waits for each reply never shows it), and "tls".
Runs until SIGTERM; writes --ready FILE once it listens. Never listens beyond loopback.
"""
import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.mails = 0
        self.out = open(args.out, "a", buffering=1) if args.out else None

    def kind(self, address):
        local = address.split("@", 1)[0].lower()
        for k in ("temp", "bad", "full", "drop", "stall"):
            if local.startswith(k):
                return k
        return "ok"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.args.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mails += 1
            n = self.mails
        if self.args.throttle_every and n % self.args.throttle_every == 0:
            session.throttled = True
            return "421 4.7.0 Too many messages from you, slow down"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        k = self.kind(address)
        if k == "temp":
            return "450 4.2.1 <%s>: mailbox temporarily unavailable, try later" % address
        if k == "bad":
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        envelope.pipelined = len(getattr(server._reader, "_buffer", b"")) > 0
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        kinds = {self.kind(r) for r in envelope.rcpt_tos}
        if "drop" in kinds:
            server.transport.close()
            return "421 4.3.0 connection dropped"  # never reaches the client
        if "stall" in kinds:
            await asyncio.sleep(self.args.stall)
            return "451 4.3.0 too late"
        if "full" in kinds:
            return "552 5.2.2 <%s>: Mailbox full" % envelope.rcpt_tos[0]
        if self.args.delay_ms:
            await asyncio.sleep(self.args.delay_ms / 1000.0)
        if self.out:
            data = envelope.content
            mid = ""
            for line in data.split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    mid = line.split(b":", 1)[1].strip().decode("ascii", "replace")
                if not line:
                    break
            with self.lock:
                self.out.write(json.dumps({"from": envelope.mail_from, "rcpt": envelope.rcpt_tos,
                                           "message_id": mid, "size": len(data),
                                           "pipelined": getattr(envelope, "pipelined", False),
                                           "tls": session.ssl is not None,
                                           "content": data.decode("utf-8", "replace")
                                           if self.args.content else None}) + "\n")
        return "250 2.0.0 Ok: queued"


class ThrottlingSMTP(SMTP):
    """Closes the connection after a 421, as a throttling server does."""

    async def smtp_MAIL(self, arg):
        await super().smtp_MAIL(arg)
        if getattr(self.session, "throttled", False):
            self.session.throttled = False
            self.transport.close()


class ScriptedController(Controller):
    def __init__(self, handler, tls=None, auth=None, **kw):
        super().__init__(handler, **kw)
        self.tls = tls
        self.auth = auth

    def authenticate(self, server, session, envelope, mechanism, data):
        ok = isinstance(data, LoginPassword) and \
            (data.login.decode(), data.password.decode()) == self.auth
        return AuthResult(success=ok)

    def factory(self):
        return ThrottlingSMTP(self.handler, hostname="smtpd.test", timeout=30,
                              tls_context=self.tls, require_starttls=self.tls is not None,
                              auth_required=self.auth is not None,
                              authenticator=self.authenticate if self.auth else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out")
    ap.add_argument("--ready")
    ap.add_argument("--throttle-every", type=int, default=0)
    ap.add_argument("--stall", type=float, default=30.0)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--no-pipelining", dest="pipelining", action="store_false")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--auth")
    ap.add_argument("--content", action="store_true", help="each message's text in its line")
    args = ap.parse_args()
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    c = ScriptedController(Handler(args), tls=tls, auth=auth, hostname="127.0.0.1",
                           port=args.port)
    c.start()
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(str(os.getpid()))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    c.stop()


if __name__ == "__main__":
    main()
