#!/usr/bin/python3
"""strict_parse.py — checks one RFC 5322 / MIME message strictly and prints a JSON summary.

Usage: strict_parse.py [--require-crlf] [FILE]      (reads standard input without FILE)

Runs with Debian's /usr/bin/python3 (standard library only). The message is parsed
with email.parser.BytesParser(policy=email.policy.strict), which raises on any
defect the parser finds; on top of that it checks what the parser lets through:
  - line endings are consistent (all CRLF or all LF; --require-crlf demands CRLF,
    as over SMTP), no bare CR, no NUL;
  - no line longer than 998 octets, line ending excluded (RFC 5322 2.1.1);
  - headers are 7-bit ASCII, each parses without a defect (RFC 2047 words,
    addresses, dates), Date and From appear exactly once and other singleton
    headers (RFC 5322 3.6) at most once, MIME-Version is 1.0;
  - every leaf part's Content-Transfer-Encoding is known and its body valid
    for it (7bit is ASCII, base64 decodes strictly, quoted-printable has only
    legal escapes), and every text/* part decodes in its charset.

On success prints a JSON object and exits 0:
  {"linesep": "crlf"|"lf", "headers": [[name, decoded value], ...],
   "addresses": {header: [{"display_name": ..., "addr_spec": ...}]},
   "parts": [{"content_type", "params", "transfer_encoding", "disposition",
              "filename", "text" (text/*, decoded, CRLF shown as LF) or "size"}]}
On a defect prints "strict_parse: <what>" on standard error and exits 1; exits 2
for a usage error.
"""

import binascii
import email.errors
import email.parser
import email.policy
import json
import re
import sys

MAX_LINE = 998
SINGLETONS = ("date", "from", "sender", "reply-to", "to", "cc", "bcc", "message-id",
              "in-reply-to", "references", "subject", "mime-version", "content-type",
              "content-transfer-encoding")
REQUIRED_ONCE = ("date", "from")
ADDRESS_HEADERS = ("from", "sender", "reply-to", "to", "cc", "bcc")
ENCODINGS = ("7bit", "8bit", "binary", "quoted-printable", "base64")
QP_LINE = re.compile(rb"^(?:[\x21-\x3c\x3e-\x7e\t ]|=[0-9A-F]{2})*=?$")


class Defect(Exception):
    """One reason the message is not well-formed."""


def check_lines(raw, require_crlf):
    """Returns "crlf" or "lf" after checking line endings and lengths."""
    if b"\0" in raw:
        raise Defect("the message contains a NUL octet")
    lines = raw.split(b"\n")
    if lines[-1] != b"":
        raise Defect("the message does not end with a line ending")
    lines.pop()
    crlf = sum(1 for line in lines if line.endswith(b"\r"))
    if crlf not in (0, len(lines)):
        raise Defect("mixed line endings: %d of %d lines end in CRLF" % (crlf, len(lines)))
    linesep = "crlf" if lines and crlf == len(lines) else "lf"
    if require_crlf and linesep != "crlf":
        raise Defect("line endings are LF, CRLF required")
    for number, line in enumerate(lines, 1):
        body = line[:-1] if linesep == "crlf" else line
        if b"\r" in body:
            raise Defect("line %d contains a bare CR" % number)
        if len(body) > MAX_LINE:
            raise Defect("line %d is %d octets long (at most %d)" % (number, len(body), MAX_LINE))
    return linesep


def check_raw_headers(raw):
    """The header block (up to the first empty line) must be 7-bit ASCII."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    for number, line in enumerate(head.split(b"\n"), 1):
        if any(octet >= 0x80 for octet in line):
            raise Defect("header line %d holds 8-bit octets (not RFC 2047 encoded)" % number)


def undecodable(text):
    """True if decoding left a replacement character or an escaped octet in text."""
    return "\ufffd" in text or any("\udc80" <= ch <= "\udcff" for ch in text)


def header_summary(msg):
    """Checks every header of msg; returns (pairs, addresses)."""
    pairs, addresses, counts = [], {}, {}
    for name, value in msg.items():
        key = name.lower()
        counts[key] = counts.get(key, 0) + 1
        if value.defects:
            raise Defect("header %s: %s" % (name, "; ".join(str(d) for d in value.defects)))
        if key == "date" and value.datetime is None:
            raise Defect("header Date: not an RFC 5322 date")
        if key in ADDRESS_HEADERS:
            addresses[name] = [{"display_name": a.display_name, "addr_spec": a.addr_spec}
                               for a in value.addresses]
            if any(not a.username or not a.domain for a in value.addresses):
                raise Defect("header %s: an address lacks a local part or a domain" % name)
        if undecodable(str(value)):
            raise Defect("header %s: an encoded word does not decode in its charset" % name)
        pairs.append([name, str(value)])
    for key in REQUIRED_ONCE:
        if counts.get(key, 0) != 1:
            raise Defect("header %s appears %d times (exactly once required)"
                         % (key, counts.get(key, 0)))
    for key in SINGLETONS:
        if counts.get(key, 0) > 1:
            raise Defect("header %s appears %d times (at most once)" % (key, counts[key]))
    if "mime-version" in counts and str(msg["MIME-Version"]).strip() != "1.0":
        raise Defect("MIME-Version is %r, not 1.0" % str(msg["MIME-Version"]))
    return pairs, addresses


def decode_body(part, cte, index):
    """Returns the decoded octets of a leaf part, checking they are valid for cte."""
    if cte in ("7bit", "8bit", "binary"):
        data = part.get_payload(decode=True)
        if cte == "7bit" and any(octet >= 0x80 for octet in data):
            raise Defect("part %d: 8-bit octets in a 7bit part" % index)
        return data
    payload = part.get_payload(decode=False)
    if not isinstance(payload, str) or not payload.isascii():
        raise Defect("part %d: 8-bit octets in a %s part" % (index, cte))
    data = payload.encode("ascii")
    if cte == "base64":
        try:
            return binascii.a2b_base64(b"".join(data.split()), strict_mode=True)
        except binascii.Error as exc:
            raise Defect("part %d: invalid base64: %s" % (index, exc)) from None
    for number, line in enumerate(data.splitlines(), 1):
        if not QP_LINE.match(line):
            raise Defect("part %d: invalid quoted-printable on body line %d" % (index, number))
    return part.get_payload(decode=True)


def part_summary(part, index):
    """Checks one leaf part and returns its JSON summary."""
    for name, value in part.items():
        if value.defects:
            raise Defect("part %d header %s: %s"
                         % (index, name, "; ".join(str(d) for d in value.defects)))
    cte = part.get("Content-Transfer-Encoding", "7bit").strip().lower()
    if cte not in ENCODINGS:
        raise Defect("part %d: unknown Content-Transfer-Encoding %r" % (index, cte))
    data = decode_body(part, cte, index)
    summary = {
        "content_type": part.get_content_type(),
        "params": {k: v for k, v in part.get_params()[1:]} if part.get_params() else {},
        "transfer_encoding": cte,
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
    }
    if part.get_content_maintype() == "text":
        charset = part.get_content_charset("us-ascii")
        try:
            summary["text"] = data.decode(charset, errors="strict").replace("\r\n", "\n")
        except (LookupError, UnicodeDecodeError) as exc:
            raise Defect("part %d: does not decode as %s: %s" % (index, charset, exc)) from None
    else:
        summary["size"] = len(data)
    return summary


def check_message(raw, require_crlf):
    """Returns the JSON-ready summary of raw, or raises Defect."""
    linesep = check_lines(raw, require_crlf)
    check_raw_headers(raw)
    try:
        msg = email.parser.BytesParser(policy=email.policy.strict).parsebytes(raw)
        pairs, addresses = header_summary(msg)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                if not part.get_boundary():
                    raise Defect("a multipart part has no boundary")
                continue
            parts.append(part_summary(part, len(parts)))
    except (email.errors.MessageError, email.errors.MessageDefect, ValueError, LookupError) as exc:
        # policy.strict raises the parser's defects (MessageDefect, a ValueError).
        raise Defect("%s: %s" % (type(exc).__name__, str(exc) or "raised by the parser")) from None
    if not parts:
        raise Defect("the message has no body part")
    return {"linesep": linesep, "headers": pairs, "addresses": addresses, "parts": parts}


def main(argv):
    args = argv[1:]
    require_crlf = "--require-crlf" in args
    args = [a for a in args if a != "--require-crlf"]
    if len(args) > 1 or (args and args[0].startswith("-") and args[0] != "-"):
        sys.stderr.write("usage: strict_parse.py [--require-crlf] [FILE]\n")
        return 2
    try:
        if args and args[0] != "-":
            with open(args[0], "rb") as f:
                raw = f.read()
        else:
            raw = sys.stdin.buffer.read()
    except OSError as exc:
        sys.stderr.write("strict_parse: %s\n" % exc)
        return 2
    try:
        summary = check_message(raw, require_crlf)
    except Defect as exc:
        sys.stderr.write("strict_parse: %s\n" % exc)
        return 1
    json.dump(summary, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
