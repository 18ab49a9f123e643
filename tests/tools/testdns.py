#!/usr/bin/env python3
"""testdns: a small authoritative DNS server for the tests, that can also misbehave.

Python 3 standard library only. Serves zones from a master-file subset over UDP and TCP on
loopback, counts the queries it gets, and takes orders on a line-based TCP control channel
(misbehaviour per query name, counters, records added or removed at run time).
See tests/tools/README.md.

  testdns.py --zone FILE [--zone FILE...] [--addr 127.0.0.1 [--addr ::1]] [--port 0]
             [--control-port 0] [--portfile PATH] [-v]
  testdns.py --ctl PORT 'COMMAND' ['COMMAND'...]
"""
import argparse
import os
import random
import signal
import socket
import struct
import sys
import threading

# ---------------------------------------------------------------- constants

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
         "AAAA": 28, "SRV": 33, "OPT": 41, "DS": 43, "RRSIG": 46, "NSEC": 47,
         "DNSKEY": 48, "SVCB": 64, "HTTPS": 65, "AXFR": 252, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
CLASSES = {"IN": 1, "CH": 3, "HS": 4, "ANY": 255}
CLASS_NAMES = {v: k for k, v in CLASSES.items()}
T_A, T_NS, T_CNAME, T_SOA, T_PTR, T_MX, T_TXT, T_AAAA, T_SRV, T_OPT, T_ANY = (
    1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 255)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS = 0, 1, 2, 3, 4, 5, 16
QR, AA, TC, RD = 0x8000, 0x0400, 0x0200, 0x0100
OUR_UDP_SIZE = 1232
MODES = ("normal", "servfail", "refused", "nxdomain", "wrong_question", "wrong_id", "tc",
         "slow", "silent", "garbage", "ttl")
WRONG_QNAME = (b"wrong-question", b"invalid")


class ParseError(Exception):
    pass


def type_num(text):
    t = text.upper()
    if t in TYPES:
        return TYPES[t]
    if t.startswith("TYPE") and t[4:].isdigit():
        return int(t[4:]) & 0xFFFF
    raise ValueError("unknown type %r" % text)


def type_text(n):
    return TYPE_NAMES.get(n, "TYPE%d" % n)


def class_num(text):
    c = text.upper()
    if c in CLASSES:
        return CLASSES[c]
    if c.startswith("CLASS") and c[5:].isdigit():
        return int(c[5:]) & 0xFFFF
    raise ValueError("unknown class %r" % text)


def is_class(text):
    try:
        class_num(text)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- names (tuples of bytes labels)

def name_from_text(text, origin=()):
    """'www.Example.com.' -> (b'www', b'Example', b'com'); relative names get origin appended."""
    if text == "@":
        return tuple(origin)
    if text == ".":
        return ()
    labels, cur, i, raw = [], bytearray(), 0, text.encode("latin-1")
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):  # backslash
            if raw[i + 1:i + 4].isdigit() and len(raw[i + 1:i + 4]) == 3:
                cur.append(int(raw[i + 1:i + 4]) & 0xFF)
                i += 4
                continue
            cur.append(raw[i + 1])
            i += 2
            continue
        if c == 0x2E:  # dot
            if not cur:
                raise ValueError("empty label in %r" % text)
            labels.append(bytes(cur))
            cur = bytearray()
            i += 1
            continue
        cur.append(c)
        i += 1
    absolute = raw.endswith(b".") and not raw.endswith(b"\\.")
    if cur:
        labels.append(bytes(cur))
    for lab in labels:
        if len(lab) > 63:
            raise ValueError("label too long in %r" % text)
    if not absolute:
        labels.extend(origin)
    return tuple(labels)


def name_text(labels):
    if not labels:
        return "."
    out = []
    for lab in labels:
        s = []
        for b in lab:
            if b in (0x2E, 0x5C, 0x22, 0x3B, 0x28, 0x29):
                s.append("\\" + chr(b))
            elif b <= 0x20 or b >= 0x7F:
                s.append("\\%03d" % b)
            else:
                s.append(chr(b))
        out.append("".join(s))
    return ".".join(out) + "."


def lower(labels):
    return tuple(lab.lower() for lab in labels)


def key_text(text):
    """Normalised text key of a name given on the control channel ('*' stays '*')."""
    if text == "*":
        return "*"
    if not text.endswith(".") or text.endswith("\\."):
        text += "."
    return name_text(lower(name_from_text(text)))


# ---------------------------------------------------------------- records

class RR:
    __slots__ = ("owner", "rtype", "rclass", "ttl", "rdata")

    def __init__(self, owner, rtype, rclass, ttl, rdata):
        self.owner, self.rtype, self.rclass, self.ttl, self.rdata = owner, rtype, rclass, ttl, rdata


def parse_ttl(tok):
    if tok.isdigit():
        return int(tok)
    total, num = 0, ""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    for ch in tok.lower():
        if ch.isdigit():
            num += ch
        elif ch in units and num:
            total += int(num) * units[ch]
            num = ""
        else:
            raise ValueError("bad TTL %r" % tok)
    if num:
        total += int(num)
    return total


def looks_like_ttl(tok):
    try:
        parse_ttl(tok)
        return tok[0].isdigit()
    except ValueError:
        return False


def txt_bytes(tok):
    """A token (quotes already stripped by the tokenizer, escapes kept) -> bytes."""
    out, i, raw = bytearray(), 0, tok.encode("latin-1")
    while i < len(raw):
        if raw[i] == 0x5C and i + 1 < len(raw):
            if raw[i + 1:i + 4].isdigit() and len(raw[i + 1:i + 4]) == 3:
                out.append(int(raw[i + 1:i + 4]) & 0xFF)
                i += 4
            else:
                out.append(raw[i + 1])
                i += 2
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def parse_rdata(rtype, toks, origin):
    """toks: list of (text, quoted). Returns the rdata object for RR.rdata."""
    vals = [t for t, _ in toks]
    if len(vals) >= 1 and vals[0] == "\\#":  # RFC 3597 generic
        length = int(vals[1])
        data = bytes.fromhex("".join(vals[2:]))
        if len(data) != length:
            raise ValueError("generic rdata length mismatch")
        return ("raw", data)
    if rtype == T_A:
        return ("raw", socket.inet_pton(socket.AF_INET, vals[0]))
    if rtype == T_AAAA:
        return ("raw", socket.inet_pton(socket.AF_INET6, vals[0]))
    if rtype in (T_NS, T_CNAME, T_PTR):
        return ("name", name_from_text(vals[0], origin))
    if rtype == T_SOA:
        if len(vals) != 7:
            raise ValueError("SOA needs 7 fields")
        return ("soa", name_from_text(vals[0], origin), name_from_text(vals[1], origin),
                int(vals[2]), parse_ttl(vals[3]), parse_ttl(vals[4]), parse_ttl(vals[5]),
                parse_ttl(vals[6]))
    if rtype == T_MX:
        return ("mx", int(vals[0]), name_from_text(vals[1], origin))
    if rtype == T_SRV:
        return ("srv", int(vals[0]), int(vals[1]), int(vals[2]), name_from_text(vals[3], origin))
    if rtype == T_TXT:
        strings = []
        for t, _ in toks:
            b = txt_bytes(t)
            if not b:
                strings.append(b"")
            while b:
                strings.append(b[:255])
                b = b[255:]
        if not strings:
            raise ValueError("TXT needs a string")
        return ("txt", strings)
    raise ValueError("type %s needs generic rdata (\\# LEN HEX)" % type_text(rtype))


def tokenize(line):
    """Split a zone line into (text, quoted) tokens, dropping ';' comments. Returns
    (tokens, paren_delta, starts_with_space)."""
    toks, i, depth, n = [], 0, 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t\r\n":
            i += 1
        elif c == ";":
            break
        elif c == "(":
            depth += 1
            i += 1
        elif c == ")":
            depth -= 1
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while j < n and line[j] != '"':
                if line[j] == "\\" and j + 1 < n:
                    buf.append(line[j:j + 2])
                    j += 2
                else:
                    buf.append(line[j])
                    j += 1
            if j >= n:
                raise ValueError("unterminated string")
            toks.append(("".join(buf), True))
            i = j + 1
        else:
            j = i
            while j < n and line[j] not in " \t\r\n;()\"":
                if line[j] == "\\" and j + 1 < n:
                    j += 2
                else:
                    j += 1
            toks.append((line[i:j], False))
            i = j
    return toks, depth, line[:1] in (" ", "\t")


class ZoneParser:
    def __init__(self):
        self.origin = ()
        self.default_ttl = 3600
        self.last_owner = None
        self.last_class = 1

    def parse_line(self, toks, blank_owner):
        """Returns an RR, or None for directives."""
        if not toks:
            return None
        first = toks[0][0]
        if first.upper() == "$ORIGIN":
            self.origin = name_from_text(toks[1][0], self.origin)
            return None
        if first.upper() == "$TTL":
            self.default_ttl = parse_ttl(toks[1][0])
            return None
        if first.startswith("$"):
            raise ValueError("unsupported directive %s" % first)
        i = 0
        if blank_owner:
            if self.last_owner is None:
                raise ValueError("no previous owner")
            owner = self.last_owner
        else:
            owner = name_from_text(first, self.origin)
            i = 1
        ttl, rclass = None, None
        while i < len(toks):
            t = toks[i][0]
            if ttl is None and looks_like_ttl(t):
                ttl = parse_ttl(t)
            elif rclass is None and is_class(t) and not t.upper().startswith("TYPE"):
                rclass = class_num(t)
            else:
                break
            i += 1
        if i >= len(toks):
            raise ValueError("missing type")
        rtype = type_num(toks[i][0])
        if rtype in (T_OPT, T_ANY):
            raise ValueError("type %s not allowed in zone data" % type_text(rtype))
        rdata = parse_rdata(rtype, toks[i + 1:], self.origin)
        if ttl is None:
            ttl = self.default_ttl
        if rclass is None:
            rclass = self.last_class
        self.last_owner, self.last_class = owner, rclass
        return RR(owner, rtype, rclass, ttl, rdata)

    def parse_text(self, text, where="zone"):
        rrs, pending, depth, blank, start = [], [], 0, False, 0
        for lineno, line in enumerate(text.splitlines(), 1):
            try:
                toks, d, b = tokenize(line)
            except ValueError as e:
                raise ValueError("%s:%d: %s" % (where, lineno, e))
            if depth == 0:
                pending, blank, start = [], b, lineno
            pending.extend(toks)
            depth += d
            if depth > 0:
                continue
            depth = 0
            try:
                rr = self.parse_line(pending, blank and bool(pending))
            except (ValueError, IndexError, OSError) as e:
                raise ValueError("%s:%d: %s" % (where, start, e))
            if rr is not None:
                rrs.append(rr)
        return rrs


# ---------------------------------------------------------------- wire encoding

class Builder:
    """Builds a DNS message with name compression (RFC 1035 4.1.4). Owner names compress
    case-insensitively (so answers point at the question name as the client spelled it);
    names inside RDATA only onto identical spellings, so their case is kept."""

    def __init__(self, ttl_override=None):
        self.buf = bytearray(12)
        self.comp_ci = {}
        self.comp_exact = {}
        self.ttl_override = ttl_override

    def name(self, labels, compress=True, owner=False):
        labels = tuple(labels)
        for i in range(len(labels)):
            exact = labels[i:]
            ci = lower(exact)
            off = (self.comp_ci.get(ci) if owner else self.comp_exact.get(exact)) if compress \
                else None
            if off is not None:
                self.buf += struct.pack("!H", 0xC000 | off)
                return
            if len(self.buf) < 0x3FFF:
                self.comp_ci.setdefault(ci, len(self.buf))
                self.comp_exact.setdefault(exact, len(self.buf))
            self.buf.append(len(labels[i]))
            self.buf += labels[i]
        self.buf.append(0)

    def question(self, qname, qtype, qclass):
        self.name(qname)
        self.buf += struct.pack("!HH", qtype, qclass)

    def rr(self, rr):
        self.name(rr.owner, owner=True)
        ttl = rr.ttl if self.ttl_override is None else self.ttl_override
        self.buf += struct.pack("!HHI", rr.rtype, rr.rclass, ttl & 0xFFFFFFFF)
        lenpos = len(self.buf)
        self.buf += b"\0\0"
        rd = rr.rdata
        kind = rd[0]
        if kind == "raw":
            self.buf += rd[1]
        elif kind == "name":
            self.name(rd[1])
        elif kind == "soa":
            self.name(rd[1])
            self.name(rd[2])
            self.buf += struct.pack("!IIIII", *[x & 0xFFFFFFFF for x in rd[3:8]])
        elif kind == "mx":
            self.buf += struct.pack("!H", rd[1])
            self.name(rd[2])
        elif kind == "srv":
            self.buf += struct.pack("!HHH", rd[1], rd[2], rd[3])
            self.name(rd[4], compress=False)
        elif kind == "txt":
            for s in rd[1]:
                self.buf.append(len(s))
                self.buf += s
        struct.pack_into("!H", self.buf, lenpos, len(self.buf) - lenpos - 2)

    def opt(self, udp_size, do, ext_rcode=0):
        self.buf += b"\0" + struct.pack("!HHBBHH", T_OPT, udp_size, ext_rcode, 0,
                                        0x8000 if do else 0, 0)

    def finish(self, qid, flags, counts):
        struct.pack_into("!HHHHHH", self.buf, 0, qid, flags, *counts)
        return bytes(self.buf)


# ---------------------------------------------------------------- wire decoding

def read_name(msg, off):
    """Returns (labels, offset after the name in place). Follows compression pointers."""
    labels, jumped, end, hops, total = [], False, None, 0, 0
    while True:
        if off >= len(msg):
            raise ParseError("name runs past the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise ParseError("truncated pointer")
            ptr = ((n & 0x3F) << 8) | msg[off + 1]
            if not jumped:
                end = off + 2
            jumped = True
            hops += 1
            if hops > 64 or ptr >= len(msg):
                raise ParseError("bad compression pointer")
            off = ptr
            continue
        if n & 0xC0:
            raise ParseError("bad label type")
        off += 1
        if n == 0:
            break
        if off + n > len(msg):
            raise ParseError("label runs past the message")
        labels.append(bytes(msg[off:off + n]))
        total += n + 1
        if total > 254:
            raise ParseError("name too long")
        off += n
    return tuple(labels), (end if jumped else off)


class Query:
    pass


def parse_query(msg):
    """Raises ParseError for a malformed query with a usable header."""
    q = Query()
    q.id, q.flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", msg, 0)
    q.opcode = (q.flags >> 11) & 0xF
    q.rd = bool(q.flags & RD)
    q.cd = bool(q.flags & 0x0010)
    q.qname, q.qtype, q.qclass = None, None, None
    q.edns, q.udp_size, q.do, q.version, q.nopts = False, 512, False, 0, 0
    if qd != 1:
        raise ParseError("QDCOUNT %d" % qd)
    q.qname, off = read_name(msg, 12)
    if off + 4 > len(msg):
        raise ParseError("truncated question")
    q.qtype, q.qclass = struct.unpack_from("!HH", msg, off)
    off += 4
    for section, count in ((1, an), (2, ns), (3, ar)):
        for _ in range(count):
            owner, off = read_name(msg, off)
            if off + 10 > len(msg):
                raise ParseError("truncated RR")
            rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", msg, off)
            off += 10
            if off + rdlen > len(msg):
                raise ParseError("truncated rdata")
            if rtype == T_OPT:
                if section != 3 or q.edns or owner:
                    raise ParseError("bad OPT")
                q.edns = True
                q.udp_size = max(512, rclass)
                q.version = (ttl >> 16) & 0xFF
                q.do = bool(ttl & 0x8000)
                o, end = off, off + rdlen
                while o < end:
                    if o + 4 > end:
                        raise ParseError("bad EDNS option")
                    _code, olen = struct.unpack_from("!HH", msg, o)
                    o += 4 + olen
                    if o > end:
                        raise ParseError("bad EDNS option length")
                    q.nopts += 1
            off += rdlen
    if off != len(msg):
        raise ParseError("trailing bytes")
    return q


# ---------------------------------------------------------------- the server state

class State:
    def __init__(self, verbose=False):
        self.lock = threading.Lock()
        self.data = {}        # (lower name, class) -> [RR]
        self.apexes = set()   # (lower name, class) with an SOA
        self.names = set()    # (lower name, class) of every owner and its ancestors
        self.modes = {}       # key text -> (mode, arg)
        self.counts = {}      # (key text, qtype, proto) -> n
        self.totals = {"udp": 0, "tcp": 0}
        self.last = {}        # key text -> description of the last query
        self.verbose = verbose

    # -- data
    def add(self, rr):
        with self.lock:
            k = (lower(rr.owner), rr.rclass)
            lst = self.data.setdefault(k, [])
            for old in lst:
                if old.rtype == rr.rtype and old.rdata == rr.rdata:
                    old.ttl = rr.ttl
                    break
            else:
                lst.append(rr)
            self._reindex()

    def delete(self, owner, rtype=None):
        with self.lock:
            key = lower(owner)
            for k in [k for k in self.data if k[0] == key]:
                self.data[k] = [r for r in self.data[k] if rtype is not None and r.rtype != rtype]
                if not self.data[k]:
                    del self.data[k]
            self._reindex()

    def _reindex(self):
        self.apexes = {k for k, lst in self.data.items() if any(r.rtype == T_SOA for r in lst)}
        names = set()
        for (name, cls) in self.data:
            for i in range(len(name) + 1):
                names.add((name[i:], cls))
        self.names = names

    def find_apex(self, key, cls):
        for i in range(len(key) + 1):
            if (key[i:], cls) in self.apexes:
                return key[i:]
        return None

    def soa(self, apex, cls):
        for r in self.data.get((apex, cls), ()):
            if r.rtype == T_SOA:
                return r
        return None

    def neg_soa(self, apex, cls):
        s = self.soa(apex, cls)
        return RR(s.owner, T_SOA, s.rclass, min(s.ttl, s.rdata[7]), s.rdata)

    def resolve(self, qname, qtype, qclass):
        """Returns (rcode, aa, answer, authority, additional); rcode None = not ours."""
        with self.lock:
            return self._resolve(qname, qtype, qclass)

    def _resolve(self, qname, qtype, qclass):
        ans, seen, name = [], set(), qname
        for step in range(16):
            key = lower(name)
            apex = self.find_apex(key, qclass)
            if apex is None:
                if step == 0:
                    return REFUSED, False, [], [], []
                return NOERROR, True, ans, [], []
            # delegation below the apex: referral (only for the name asked)
            for i in range(len(key) - len(apex) - 1, -1, -1):
                cut = key[i:]
                nss = [r for r in self.data.get((cut, qclass), ()) if r.rtype == T_NS]
                if nss:
                    if step > 0:
                        return NOERROR, True, ans, [], []
                    glue = []
                    for ns in nss:
                        for r in self.data.get((lower(ns.rdata[1]), qclass), ()):
                            if r.rtype in (T_A, T_AAAA):
                                glue.append(r)
                    return NOERROR, False, [], nss, glue
            rrs = self.data.get((key, qclass))
            if rrs is None:
                if (key, qclass) in self.names:  # empty non-terminal
                    return NOERROR, True, ans, [self.neg_soa(apex, qclass)], []
                return NXDOMAIN, True, ans, [self.neg_soa(apex, qclass)], []
            match = [r for r in rrs if r.rtype == qtype or qtype == T_ANY]
            if match:
                return NOERROR, True, ans + match, [], []
            cn = [r for r in rrs if r.rtype == T_CNAME]
            if cn:
                ans.append(cn[0])
                seen.add(key)
                name = cn[0].rdata[1]
                if lower(name) in seen:
                    return NOERROR, True, ans, [], []
                continue
            return NOERROR, True, ans, [self.neg_soa(apex, qclass)], []
        return NOERROR, True, ans, [], []

    # -- modes & counters
    def mode_for(self, keyt):
        with self.lock:
            return self.modes.get(keyt) or self.modes.get("*") or ("normal", None)

    def record(self, q, keyt, proto, peer):
        with self.lock:
            k = (keyt, q.qtype, proto)
            self.counts[k] = self.counts.get(k, 0) + 1
            self.totals[proto] += 1
            self.last[keyt] = (
                "proto=%s id=%d qname=%s qtype=%s qclass=%s rd=%d cd=%d edns=%d udpsize=%d "
                "do=%d version=%d nopts=%d from=%s" % (
                    proto, q.id, name_text(q.qname), type_text(q.qtype),
                    CLASS_NAMES.get(q.qclass, "CLASS%d" % q.qclass), q.rd, q.cd, q.edns,
                    q.udp_size if q.edns else 0, q.do, q.version, q.nopts,
                    "%s:%d" % (peer[0], peer[1]) if peer else "?"))
        if self.verbose:
            print("testdns: %s %s %s" % (proto, name_text(q.qname), type_text(q.qtype)),
                  file=sys.stderr, flush=True)


# ---------------------------------------------------------------- query handling

def error_reply(msg, rcode):
    """Header-only reply (plus the question if it parses) for a malformed query."""
    qid, flags = struct.unpack_from("!HH", msg, 0)
    b = Builder()
    qd = 0
    try:
        qdcount = struct.unpack_from("!H", msg, 4)[0]
        if qdcount == 1:
            qname, off = read_name(msg, 12)
            if off + 4 <= len(msg):
                qtype, qclass = struct.unpack_from("!HH", msg, off)
                b.question(qname, qtype, qclass)
                qd = 1
    except (ParseError, struct.error):
        pass
    return b.finish(qid, QR | (flags & 0x7900) | rcode, (qd, 0, 0, 0))


def handle(state, msg, proto, peer):
    """Returns (reply bytes or None, delay seconds)."""
    if len(msg) < 12:
        return None, 0
    flags = struct.unpack_from("!H", msg, 2)[0]
    if flags & QR:
        return None, 0
    try:
        q = parse_query(msg)
    except (ParseError, struct.error):
        return error_reply(msg, FORMERR), 0
    if q.opcode != 0:
        return error_reply(msg, NOTIMP), 0
    keyt = name_text(lower(q.qname))
    state.record(q, keyt, proto, peer)
    mode, arg = state.mode_for(keyt)
    delay = 0
    if mode == "silent":
        return None, 0
    if mode == "garbage":
        return os.urandom(random.randint(12, 80)), 0
    if mode == "slow":
        delay = arg / 1000.0
    limit = q.udp_size if q.edns else 512
    qid = q.id
    if mode == "wrong_id":
        qid = (q.id + 1) & 0xFFFF
    base = QR | (q.flags & (0x7800 | RD | 0x0010))  # opcode, RD, CD copied
    qname = WRONG_QNAME if mode == "wrong_question" else q.qname

    def reply(rcode, aa, ans, auth, add, tc=False, ttl=None):
        b = Builder(ttl_override=ttl)
        b.question(qname, q.qtype, q.qclass)
        counts = [1, 0, 0, 0]
        if not tc:
            for r in ans:
                b.rr(r)
            for r in auth:
                b.rr(r)
            for r in add:
                b.rr(r)
            counts = [1, len(ans), len(auth), len(add)]
        ext = 0
        if q.edns:
            ext = rcode >> 4
            b.opt(OUR_UDP_SIZE, q.do, ext)
            counts[3] += 1
        f = base | (rcode & 0xF) | (AA if aa else 0) | (TC if tc else 0)
        return b.finish(qid, f, counts)

    if q.edns and q.version > 0:
        return reply(BADVERS, False, [], [], []), delay
    if mode == "servfail":
        return reply(SERVFAIL, False, [], [], []), delay
    if mode == "refused":
        return reply(REFUSED, False, [], [], []), delay
    if mode == "nxdomain":
        with state.lock:
            apex = state.find_apex(lower(q.qname), q.qclass)
            auth = [state.neg_soa(apex, q.qclass)] if apex is not None else []
        return reply(NXDOMAIN, True, [], auth, [], ttl=None), delay
    ttl = arg if mode == "ttl" else None
    if mode == "tc" and proto == "udp":
        return reply(NOERROR, True, [], [], [], tc=True), delay
    rcode, aa, ans, auth, add = state.resolve(q.qname, q.qtype, q.qclass)
    out = reply(rcode, aa, ans, auth, add, ttl=ttl)
    if proto == "udp" and len(out) > limit:
        out = reply(rcode, aa, ans, auth, add, tc=True, ttl=ttl)
    return out, delay


# ---------------------------------------------------------------- transports

def send_later(delay, fn, *args):
    if delay <= 0:
        fn(*args)
        return
    t = threading.Timer(delay, fn, args)
    t.daemon = True
    t.start()


def udp_loop(state, sock):
    def send(data, peer):
        try:
            sock.sendto(data, peer)
        except OSError:
            pass

    while True:
        try:
            msg, peer = sock.recvfrom(65535)
        except OSError:
            return
        try:
            out, delay = handle(state, msg, "udp", peer)
        except Exception as e:  # never die on input
            print("testdns: internal error: %r" % (e,), file=sys.stderr, flush=True)
            continue
        if out is not None:
            send_later(delay, send, out, peer)


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def tcp_conn(state, conn, peer):
    lock = threading.Lock()
    st = {"pending": 0, "eof": False}

    def close_if_done():  # called with lock held
        if st["eof"] and st["pending"] == 0:
            try:
                conn.close()
            except OSError:
                pass

    def send(data):
        with lock:
            st["pending"] -= 1
            try:
                conn.sendall(struct.pack("!H", len(data)) + data)
            except OSError:
                pass
            close_if_done()

    try:
        conn.settimeout(60)
        while True:
            hdr = recv_exact(conn, 2)
            if hdr is None:
                break
            msg = recv_exact(conn, struct.unpack("!H", hdr)[0])
            if msg is None:
                break
            try:
                out, delay = handle(state, msg, "tcp", peer)
            except Exception as e:
                print("testdns: internal error: %r" % (e,), file=sys.stderr, flush=True)
                continue
            if out is not None:
                with lock:
                    st["pending"] += 1
                send_later(delay, send, out)
    except OSError:
        pass
    finally:
        with lock:
            st["eof"] = True
            close_if_done()


def tcp_loop(state, lsock):
    while True:
        try:
            conn, peer = lsock.accept()
        except OSError:
            return
        threading.Thread(target=tcp_conn, args=(state, conn, peer), daemon=True).start()


# ---------------------------------------------------------------- control channel

def control_command(state, line):
    """Returns the reply line, or None to close the connection."""
    parts = line.split()
    if not parts:
        return "err empty command"
    cmd, args = parts[0].lower(), parts[1:]
    try:
        if cmd == "quit":
            return None
        if cmd == "ping":
            return "ok"
        if cmd == "mode":
            if len(args) < 2:
                return "err usage: mode NAME MODE [ARG]"
            keyt, mode = key_text(args[0]), args[1].lower()
            if mode not in MODES:
                return "err unknown mode %s" % mode
            arg = None
            if mode in ("slow", "ttl"):
                if len(args) != 3 or not args[2].isdigit():
                    return "err %s needs a number" % mode
                arg = int(args[2])
            elif len(args) != 2:
                return "err %s takes no argument" % mode
            with state.lock:
                if mode == "normal" and keyt == "*":
                    state.modes.pop("*", None)
                else:
                    state.modes[keyt] = (mode, arg)
            return "ok"
        if cmd == "count":
            if len(args) not in (2, 3):
                return "err usage: count NAME TYPE [udp|tcp]"
            keyt = key_text(args[0])
            qtype = None if args[1] == "*" else type_num(args[1])
            protos = (args[2].lower(),) if len(args) == 3 else ("udp", "tcp")
            with state.lock:
                n = sum(v for (k, t, p), v in state.counts.items()
                        if (keyt == "*" or k == keyt) and (qtype is None or t == qtype)
                        and p in protos)
            return str(n)
        if cmd == "total":
            with state.lock:
                if args:
                    return str(state.totals.get(args[0].lower(), 0))
                return str(state.totals["udp"] + state.totals["tcp"])
        if cmd == "last":
            if len(args) != 1:
                return "err usage: last NAME"
            with state.lock:
                return state.last.get(key_text(args[0]), "none")
        if cmd == "reset":
            with state.lock:
                state.counts.clear()
                state.totals = {"udp": 0, "tcp": 0}
                state.modes.clear()
                state.last.clear()
            return "ok"
        if cmd == "add":
            rest = line.strip().split(None, 1)[1] if len(parts) > 1 else ""
            zp = ZoneParser()
            rrs = zp.parse_text(rest, "add")
            if len(rrs) != 1:
                return "err usage: add NAME TTL CLASS TYPE RDATA"
            state.add(rrs[0])
            return "ok"
        if cmd == "del":
            if len(args) not in (1, 2):
                return "err usage: del NAME [TYPE]"
            owner = name_from_text(args[0] if args[0].endswith(".") else args[0] + ".")
            state.delete(owner, type_num(args[1]) if len(args) == 2 else None)
            return "ok"
        return "err unknown command %s" % cmd
    except (ValueError, IndexError, OSError) as e:
        return "err %s" % e


def control_conn(state, conn):
    try:
        buf = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                reply = control_command(state, line.decode("utf-8", "replace").strip())
                if reply is None:
                    return
                conn.sendall(reply.encode() + b"\n")
    except OSError:
        pass
    finally:
        conn.close()


def control_loop(state, lsock):
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        threading.Thread(target=control_conn, args=(state, conn), daemon=True).start()


def ctl_client(port, commands, host="127.0.0.1"):
    rc = 0
    with socket.create_connection((host, port), timeout=10) as s:
        f = s.makefile("rb")
        for c in commands:
            s.sendall(c.encode() + b"\n")
            line = f.readline().decode().rstrip("\n")
            print(line)
            if line.startswith("err") or not line:
                rc = 1
        s.sendall(b"quit\n")
    return rc


# ---------------------------------------------------------------- main

def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def bind_all(addrs, port):
    """Binds UDP+TCP on every address with one port; port 0 picks a free one (retried)."""
    for attempt in range(100):
        socks = []
        try:
            chosen = port
            for addr in addrs:
                u = socket.socket(family(addr), socket.SOCK_DGRAM)
                socks.append(u)
                u.bind((addr, chosen))
                chosen = u.getsockname()[1]
                t = socket.socket(family(addr), socket.SOCK_STREAM)
                socks.append(t)
                t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                t.bind((addr, chosen))
                t.listen(64)
            return chosen, socks
        except OSError:
            for s in socks:
                s.close()
            if port != 0 or attempt == 99:
                raise
    raise OSError("no free port")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zone", action="append", default=[], help="zone file (repeatable)")
    ap.add_argument("--addr", action="append", default=[], help="listen address (repeatable)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--control-addr", default="127.0.0.1")
    ap.add_argument("--portfile")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--ctl", type=int, metavar="PORT", help="send control commands and exit")
    ap.add_argument("commands", nargs="*")
    a = ap.parse_args(argv)

    if a.ctl is not None:
        try:
            return ctl_client(a.ctl, a.commands, a.control_addr)
        except OSError as e:
            print("testdns: control: %s" % e, file=sys.stderr)
            return 2
    if a.commands:
        ap.error("commands only with --ctl")

    state = State(verbose=a.verbose)
    for path in a.zone:
        try:
            with open(path) as f:
                for rr in ZoneParser().parse_text(f.read(), path):
                    state.add(rr)
        except (OSError, ValueError) as e:
            print("testdns: %s" % e, file=sys.stderr)
            return 2

    addrs = a.addr or ["127.0.0.1"]
    try:
        port, socks = bind_all(addrs, a.port)
        csock = socket.socket(family(a.control_addr), socket.SOCK_STREAM)
        csock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        csock.bind((a.control_addr, a.control_port))
        csock.listen(16)
    except OSError as e:
        print("testdns: bind: %s" % e, file=sys.stderr)
        return 2
    cport = csock.getsockname()[1]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    for s in socks:
        target = udp_loop if s.type == socket.SOCK_DGRAM else tcp_loop
        threading.Thread(target=target, args=(state, s), daemon=True).start()
    threading.Thread(target=control_loop, args=(state, csock), daemon=True).start()

    if a.portfile:
        tmp = a.portfile + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d %d\n" % (port, cport))
        os.rename(tmp, a.portfile)
    if a.verbose:
        print("testdns: dns %s port %d, control %d" % (",".join(addrs), port, cport),
              file=sys.stderr, flush=True)

    while not stop.wait(0.2):
        pass
    for s in socks + [csock]:
        try:
            s.close()
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
