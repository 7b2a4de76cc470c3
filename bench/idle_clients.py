#!/usr/bin/env python3
"""Opens COUNT PostgreSQL client connections that log in fully (trust authentication) and then stay idle.

Used by bench/idle-clients.sh. Logins run CONCURRENCY at a time. With --tls each connection sends SSLRequest and
wraps the socket with TLS before the startup packet. When every login has finished, writes a JSON summary to
--ready-file, then holds the connections until --release-file exists; then counts the connections the server has
not closed meanwhile, sends Terminate on each, prints a final JSON summary and exits (status 1 if any login failed or
any connection was closed by the server).
"""
import argparse
import asyncio
import json
import os
import resource
import ssl
import struct
import sys
import time


def startup_packet(user: str, database: str) -> bytes:
    body = struct.pack("!i", 196608)
    for key, value in (("user", user), ("database", database), ("application_name", "idle_clients")):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    header = await reader.readexactly(5)
    length = struct.unpack("!i", header[1:])[0]
    return header[:1], await reader.readexactly(length - 4)


def error_text(body: bytes) -> str:
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('S', '?')} {fields.get('C', '?')}: {fields.get('M', '?')}"


class Client:
    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.closed_by_server = False
        self.watch: asyncio.Task | None = None

    async def connect(self, args: argparse.Namespace, tls: ssl.SSLContext | None) -> None:
        self.reader, self.writer = await asyncio.open_connection(args.host, args.port)
        if tls is not None:
            self.writer.write(struct.pack("!ii", 8, 80877103))
            await self.writer.drain()
            answer = await self.reader.readexactly(1)
            if answer != b"S":
                raise RuntimeError(f"server refused SSL ({answer!r})")
            await self.writer.start_tls(tls)
        self.writer.write(startup_packet(args.user, args.database))
        await self.writer.drain()
        while True:
            kind, body = await read_message(self.reader)
            if kind == b"R":
                code = struct.unpack("!i", body[:4])[0]
                if code != 0:
                    raise RuntimeError(f"authentication request {code}: only trust is supported")
            elif kind == b"E":
                raise RuntimeError(error_text(body))
            elif kind == b"Z":
                break
        self.watch = asyncio.ensure_future(self.watch_close())

    async def watch_close(self) -> None:
        # Idle: the server should send nothing; EOF (or anything) means the session ended.
        try:
            data = await self.reader.read(1)
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            self.closed_by_server = True

    async def close(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
        if self.writer is None:
            return
        try:
            if not self.closed_by_server:
                self.writer.write(b"X" + struct.pack("!i", 4))
            self.writer.close()
        except (ConnectionError, ssl.SSLError, RuntimeError):
            pass


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--release-file", required=True)
    parser.add_argument("--hold-timeout", type=float, default=600)
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tls = None
    if args.tls:
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE

    gate = asyncio.Semaphore(args.concurrency)
    errors: dict[str, int] = {}
    clients: list[Client] = []

    async def login() -> None:
        async with gate:
            client = Client()
            try:
                await client.connect(args, tls)
                clients.append(client)
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                text = f"{type(e).__name__}: {e}"
                errors[text] = errors.get(text, 0) + 1
                await client.close()

    started = time.monotonic()
    await asyncio.gather(*(login() for _ in range(args.count)))
    elapsed = time.monotonic() - started
    summary = {"requested": args.count, "logged_in": len(clients), "failed": sum(errors.values()), "errors": errors,
               "login_seconds": round(elapsed, 2), "tls": args.tls}
    with open(args.ready_file + ".tmp", "w") as f:
        json.dump(summary, f)
    os.replace(args.ready_file + ".tmp", args.ready_file)

    deadline = time.monotonic() + args.hold_timeout
    while not os.path.exists(args.release_file) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    summary["closed_by_server_while_idle"] = sum(1 for c in clients if c.closed_by_server)
    summary["released_by"] = "file" if os.path.exists(args.release_file) else "timeout"
    for c in clients:
        await c.close()
    await asyncio.sleep(0.5)
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 and summary["closed_by_server_while_idle"] == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
