#!/usr/bin/env python3
"""A TCP proxy that adds a fixed one-way delay in each direction, to measure round trips.

This kernel has no netem (tc qdisc netem), so latency is emulated in user space: every chunk
read from one side is written to the other side DELAY later, in order. A new connection also
waits one round trip before anything flows, as a TCP handshake to a distant server would.

Usage: delayproxy.py --one-way-ms 25 LISTEN_PORT:TARGET_HOST:TARGET_PORT [...]
Listens on 127.0.0.1. Prints "ready" on stdout once every port listens. Stops on SIGTERM.
"""

import argparse
import asyncio
import signal
import sys
import time

CONNECT_TIMEOUT = 10.0
# Bounds the bytes in flight per direction, so a fast sender cannot grow the queue unbounded.
MAX_QUEUED = 256


async def pump(reader, writer, delay, not_before):
    """Copies reader to writer, each chunk delivered `delay` after it was read."""
    queue = asyncio.Queue(MAX_QUEUED)

    async def read_side():
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((time.monotonic() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((time.monotonic() + delay, b""))

    async def write_side():
        try:
            while True:
                due, data = await queue.get()
                due = max(due, not_before)
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    await asyncio.gather(read_side(), write_side())


async def handle(client_r, client_w, target, delay):
    accepted = time.monotonic()
    try:
        server_r, server_w = await asyncio.wait_for(
            asyncio.open_connection(*target), CONNECT_TIMEOUT
        )
    except (OSError, asyncio.TimeoutError):
        client_w.close()
        return
    # A distant server: the client's connect() would return one round trip after it began,
    # its first byte would reach the server half a round trip later, and a greeting the server
    # sends on accepting would reach the client two round trips after connect() began.
    handshake = 2 * delay
    try:
        await asyncio.gather(
            pump(client_r, server_w, delay, accepted + handshake + delay),
            pump(server_r, client_w, delay, accepted + handshake + 2 * delay),
        )
    finally:
        for w in (client_w, server_w):
            try:
                w.close()
            except OSError:
                pass


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--one-way-ms", type=float, required=True)
    p.add_argument("routes", nargs="+", help="LISTEN_PORT:TARGET_HOST:TARGET_PORT")
    a = p.parse_args()
    delay = a.one_way_ms / 1000.0
    servers = []
    for route in a.routes:
        try:
            listen, host, port = route.split(":")
            target = (host, int(port))
            listen = int(listen)
        except ValueError:
            sys.exit(f"bad route {route!r}: write LISTEN_PORT:TARGET_HOST:TARGET_PORT")
        servers.append(
            await asyncio.start_server(
                lambda r, w, t=target: handle(r, w, t, delay),
                "127.0.0.1",
                listen,
                backlog=1024,
            )
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
