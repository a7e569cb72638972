#!/usr/bin/env python3
"""Records a real client/server exchange for the database decoders' tests.

Listens on 127.0.0.1:LISTEN_PORT, relays each accepted connection to
127.0.0.1:SERVER_PORT, and appends every chunk either side sent to OUT as
one line: `> <hex>` for bytes the client wrote, `< <hex>` for bytes it read.
Connections are recorded one after another (a line `= conn` starts each).
Stops after --connections connections have closed.

    record_relay.py LISTEN_PORT SERVER_PORT OUT [--connections N]
"""
import argparse
import selectors
import socket


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
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.listen_port))
    listener.listen(4)
    with open(args.out, "w") as out:
        for _ in range(args.connections):
            client, _ = listener.accept()
            server = socket.create_connection(("127.0.0.1", args.server_port))
            relay(client, server, out)
    listener.close()


if __name__ == "__main__":
    main()
