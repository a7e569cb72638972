#!/usr/bin/env python3
"""Records a real client/server exchange for the database decoders' tests.

Listens on 127.0.0.1:LISTEN_PORT, relays each accepted connection to
127.0.0.1:SERVER_PORT, and appends every chunk either side sent to OUT as
one line: `> <hex>` for bytes the client wrote, `< <hex>` for bytes it read.
Connections are recorded one after another (a line `= conn` starts each).
Stops after --connections connections have closed. With --concurrent,
connections are relayed at the same time (a Kafka client keeps its bootstrap
connection open while it opens the broker's), each recorded apart and
written in the order they were accepted (once 5 s pass without a new one).

    record_relay.py LISTEN_PORT SERVER_PORT OUT [--connections N] [--concurrent]
"""
import argparse
import io
import selectors
import socket
import threading


def relay(client, server, out):
    out.write("= conn\n")
    sel = selectors.DefaultSelector()
    sel.register(client, selectors.EVENT_READ, (server, ">"))
    sel.register(server, selectors.EVENT_READ, (client, "<"))
    open_sides = 2
    while open_sides:
        for key, _ in sel.select():
            peer, mark = key.data
            data = key.fileobj.recv(65536)
            if not data:
                sel.unregister(key.fileobj)
                open_sides -= 1
                try:
                    peer.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            out.write(f"{mark} {data.hex()}\n")
            out.flush()
            peer.sendall(data)
    client.close()
    server.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("listen_port", type=int)
    parser.add_argument("server_port", type=int)
    parser.add_argument("out")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--concurrent", action="store_true")
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.listen_port))
    listener.listen(4)
    if args.concurrent:
        # Up to --connections; stops accepting after 5 s without a new one.
        listener.settimeout(5)
        buffers, threads = [], []
        for _ in range(args.connections):
            try:
                client, _ = listener.accept()
            except socket.timeout:
                break
            client.settimeout(None)
            server = socket.create_connection(("127.0.0.1", args.server_port))
            buffers.append(io.StringIO())
            thread = threading.Thread(target=relay, args=(client, server, buffers[-1]))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        with open(args.out, "w") as out:
            for buffer in buffers:
                out.write(buffer.getvalue())
        listener.close()
        return
    with open(args.out, "w") as out:
        for _ in range(args.connections):
            client, _ = listener.accept()
            server = socket.create_connection(("127.0.0.1", args.server_port))
            relay(client, server, out)
    listener.close()


if __name__ == "__main__":
    main()
