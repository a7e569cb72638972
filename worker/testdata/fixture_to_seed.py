#!/usr/bin/env python3
"""Turns a recorded fixture (record_relay.py's format) into fuzz seeds, one
per connection, in the layout of the database fuzz targets:
[control][len][len bytes]..., control bit0 = client write; with --wide (the
kafka target) the length is two bytes, big-endian.

    fixture_to_seed.py FIXTURE OUT_DIR [--wide]
"""
import os
import sys


def main():
    fixture, out_dir = sys.argv[1], sys.argv[2]
    wide = "--wide" in sys.argv[3:]
    most = 65535 if wide else 255
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.splitext(os.path.basename(fixture))[0]
    seeds, current = [], None
    for line in open(fixture):
        mark, _, hex_bytes = line.strip().partition(" ")
        if mark == "=":
            current = bytearray()
            seeds.append(current)
            continue
        data = bytes.fromhex(hex_bytes)
        control = 1 if mark == ">" else 0
        for i in range(0, len(data), most):
            piece = data[i:i + most]
            length = len(piece).to_bytes(2 if wide else 1, "big")
            current += bytes([control]) + length + piece
    for n, seed in enumerate(seeds):
        with open(os.path.join(out_dir, f"{base}_{n}"), "wb") as out:
            out.write(seed)


if __name__ == "__main__":
    main()
