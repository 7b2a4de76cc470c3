"""Time to the 28P01 for an unknown user and for a known user with a wrong password, over Poold's client port.

A raw protocol-3.0 client (no libpq), so each leg of the exchange is timed on its own:
  lookup  = StartupMessage sent -> authentication request received (the pool_passwd / auth_query look-up),
  first   = SCRAM client-first sent -> server-first received,
  final   = SCRAM client-final (or md5 PasswordMessage) sent -> ErrorResponse received (proof check, refetch),
  server  = lookup + first + final (everything but the client's own PBKDF2),
  total   = connect -> ErrorResponse.
Usage: auth_timing.py HOST PORT DATABASE METHOD(scram|md5) N KNOWN_USER UNKNOWN_USER [cold]
Attempts alternate known / unknown. Warm (the default): 5 warm-up attempts each, then N attempts of each name. Cold:
each attempt uses a name never tried before (KNOWN_USER1..N, UNKNOWN_USER1..N), no warm-up: a first attempt, before
any cache holds the name. prints one Markdown table row per user kind and leg (median, p90, ms), and the
SCRAM iteration counts and salt lengths each kind was offered (they must not tell the two apart)."""
import base64
import hashlib
import hmac
import os
import socket
import statistics
import struct
import sys
import time


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data


def read_message(sock):
    head = recv_exact(sock, 5)
    kind, length = head[:1], struct.unpack("!I", head[1:])[0]
    return kind, recv_exact(sock, length - 4)


def send(sock, kind, body):
    sock.sendall(kind + struct.pack("!I", len(body) + 4) + body)


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode()
    return fields


def attempt(host, port, database, user, password):
    """One login that must fail; returns (legs in ns, sqlstate, message, offered iterations, salt length)."""
    t0 = time.perf_counter_ns()
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
        body = struct.pack("!I", 196608) + params
        t1 = time.perf_counter_ns()
        sock.sendall(struct.pack("!I", len(body) + 4) + body)
        kind, msg = read_message(sock)
        t2 = time.perf_counter_ns()
        if kind != b"R":
            raise RuntimeError("expected an authentication request, got %r %r" % (kind, msg))
        code = struct.unpack("!I", msg[:4])[0]
        first = 0
        iterations = salt_len = None
        if code == 10:  # SASL
            nonce = base64.b64encode(os.urandom(18)).decode()
            bare = "n=,r=" + nonce
            client_first = ("n,," + bare).encode()
            send(sock, b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(client_first)) + client_first)
            t3 = time.perf_counter_ns()
            kind, msg = read_message(sock)
            t4 = time.perf_counter_ns()
            first = t4 - t3
            server_first = msg[4:].decode()
            attrs = dict(a.split("=", 1) for a in server_first.split(","))
            iterations, salt = int(attrs["i"]), base64.b64decode(attrs["s"])
            salt_len = len(salt)
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
            client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
            stored = hashlib.sha256(client_key).digest()
            without_proof = "c=biws,r=" + attrs["r"]
            auth_message = (bare + "," + server_first + "," + without_proof).encode()
            signature = hmac.new(stored, auth_message, hashlib.sha256).digest()
            proof = bytes(a ^ b for a, b in zip(client_key, signature))
            final = (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()
            t5 = time.perf_counter_ns()
            send(sock, b"p", final)
        elif code == 5:  # md5
            salt = msg[4:8]
            inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
            digest = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()
            t5 = time.perf_counter_ns()
            send(sock, b"p", digest.encode() + b"\0")
        else:
            raise RuntimeError("unexpected authentication request %d" % code)
        while True:
            kind, msg = read_message(sock)
            if kind == b"E":
                break
            if kind == b"R" and struct.unpack("!I", msg[:4])[0] == 0:
                raise RuntimeError("the login succeeded: %s" % user)
        t6 = time.perf_counter_ns()
        fields = error_fields(msg)
        legs = {"lookup": t2 - t1, "first": first, "final": t6 - t5, "server": (t2 - t1) + first + (t6 - t5), "total": t6 - t0}
        return legs, fields.get("C"), fields.get("M", "").replace(user, "U"), iterations, salt_len
    finally:
        sock.close()


def p90(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def main():
    host, port, database, method, n, known, unknown = sys.argv[1:8]
    cold = sys.argv[8:9] == ["cold"]
    port, n = int(port), int(n)
    results = {"known": [], "unknown": []}
    offered = {"known": set(), "unknown": set()}
    messages = {"known": set(), "unknown": set()}
    if not cold:
        for kind, user in (("known", known), ("unknown", unknown)):  # warm-up: first look-ups, PBKDF2 caches, JIT
            for _ in range(5):
                attempt(host, port, database, user, "wrong password")
    for i in range(2 * n):
        kind, user = ("known", known) if i % 2 == 0 else ("unknown", unknown)
        if cold:
            user += str(i // 2 + 1)
        legs, state, message, iterations, salt_len = attempt(host, port, database, user, "wrong password")
        if state != "28P01":
            raise RuntimeError("%s: expected 28P01, got %s %s" % (user, state, message))
        results[kind].append(legs)
        offered[kind].add((iterations, salt_len))
        messages[kind].add(message)
    legs = ["lookup", "first", "final", "server", "total"] if method == "scram" else ["lookup", "final", "server", "total"]
    for leg in legs:
        row = []
        for kind in ("known", "unknown"):
            values = [r[leg] / 1e6 for r in results[kind]]
            row += ["%.3f" % statistics.median(values), "%.3f" % p90(values)]
        k, u = statistics.median(r[leg] for r in results["known"]), statistics.median(r[leg] for r in results["unknown"])
        print("| %s | %s | %s | %s | %s | %+.3f |" % (leg, *row, (k - u) / 1e6))
    print("offered (iterations, salt bytes): known %s, unknown %s" % (sorted(offered["known"], key=str), sorted(offered["unknown"], key=str)))
    print("messages: known %s, unknown %s" % (sorted(messages["known"]), sorted(messages["unknown"])))


main()
