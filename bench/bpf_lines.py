#!/usr/bin/env python3
"""Where the data programs spend their time, by source line and by kernel callee.

    bpf_lines.py dump OUTDIR NAME...      JIT line table of each loaded program NAME
    bpf_lines.py report OUTDIR SCRIPT NAME...

`dump` asks the kernel (BPF_OBJ_GET_INFO_BY_FD) for each program's JIT image
and its line info: the JIT address where each source line's code starts, with
the file and line from the program's BTF. It needs no libbfd (Debian's bpftool
has none, so `bpftool prog dump jited ... linum` does not work there).

`report` reads `perf script -F ip,sym,symoff` output of a `perf record -a -g`
run and prints, over the samples whose call chain holds one of the programs:
  - the leaf function (the program's own code, or the helper or kernel
    function it called), and
  - for the program's own samples, the source line their JIT address belongs to.
A sample just after a helper call also carries the call's return (on kernels
with return thunks, a real cost), so a line with a call collects some of it.
Used by bench/bpf_profile.sh.
"""
import bisect
import collections
import ctypes
import json
import os
import re
import struct
import subprocess
import sys

SYS_BPF = 321  # x86-64
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_BTF_GET_FD_BY_ID = 19
INFO_SIZE = 256

libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 144)
    fd = libc.syscall(SYS_BPF, cmd, buf, 144)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return fd


def object_info(fd, size, request=b""):
    info = ctypes.create_string_buffer(request, size)
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, size, ctypes.addressof(info)))
    return info


def btf_strings(btf_id):
    fd = bpf(BPF_BTF_GET_FD_BY_ID, struct.pack("<I", btf_id))
    try:
        (size,) = struct.unpack_from("<I", object_info(fd, 32), 8)
        raw = ctypes.create_string_buffer(size)
        request = bytearray(32)
        struct.pack_into("<QI", request, 0, ctypes.addressof(raw), size)
        object_info(fd, 32, bytes(request))
    finally:
        os.close(fd)
    data = raw.raw
    (header_len,) = struct.unpack_from("<I", data, 4)
    str_off, str_len = struct.unpack_from("<II", data, 16)
    strings = data[header_len + str_off : header_len + str_off + str_len]
    return lambda off: strings[off : strings.index(b"\0", off)].decode(errors="replace")


def line_table(prog_id):
    """[(jit offset, file, line, source text)] of a loaded program."""
    fd = bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<I", prog_id))
    try:
        info = object_info(fd, INFO_SIZE)
        (btf_id,) = struct.unpack_from("<I", info, 128)
        (nr_lines,) = struct.unpack_from("<I", info, 148)
        (nr_jited_lines,) = struct.unpack_from("<I", info, 168)
        line_rec, jited_rec = struct.unpack_from("<II", info, 172)
        if not nr_lines or nr_lines != nr_jited_lines:
            raise SystemExit(f"program {prog_id}: no line info (loaded without BTF?)")
        lines = ctypes.create_string_buffer(nr_lines * line_rec)
        jited = ctypes.create_string_buffer(nr_jited_lines * jited_rec)
        ksyms = ctypes.create_string_buffer(8)
        request = bytearray(INFO_SIZE)
        struct.pack_into("<II", request, 104, 1, 0)  # nr_jited_ksyms: the main function's address
        struct.pack_into("<Q", request, 112, ctypes.addressof(ksyms))
        struct.pack_into("<IIQQI", request, 144, 0, nr_lines, ctypes.addressof(lines), ctypes.addressof(jited), nr_jited_lines)
        struct.pack_into("<II", request, 172, line_rec, jited_rec)
        object_info(fd, INFO_SIZE, bytes(request))
    finally:
        os.close(fd)
    (start,) = struct.unpack_from("<Q", ksyms, 0)
    name_of = btf_strings(btf_id)
    table = []
    for i in range(nr_lines):
        _insn, file_off, line_off, line_col = struct.unpack_from("<IIII", lines, i * line_rec)
        (address,) = struct.unpack_from("<Q", jited, i * jited_rec)
        table.append((address - start, os.path.basename(name_of(file_off)), line_col >> 10, name_of(line_off).strip()))
    return sorted(table)


def dump(outdir, names):
    progs = json.loads(subprocess.check_output(["bpftool", "-j", "prog", "show"]))
    for name in names:
        ids = [p["id"] for p in progs if p.get("name") == name]
        if not ids:
            raise SystemExit(f"no loaded program named {name}")
        table = line_table(ids[-1])
        with open(os.path.join(outdir, f"{name}.lines.json"), "w") as out:
            json.dump(table, out)


def samples(script):
    """Call chains of `perf script -F ip,sym,symoff`, leaf first."""
    chain = []
    with open(script, errors="replace") as lines:
        for line in lines:
            parts = line.split()
            if not parts:
                if chain:
                    yield chain
                chain = []
            elif len(parts) >= 2 and re.fullmatch(r"[0-9a-f]+", parts[0]):
                chain.append(parts[1])
    if chain:
        yield chain


def report(outdir, script, names):
    tables = {}
    for name in names:
        with open(os.path.join(outdir, f"{name}.lines.json")) as table:
            tables[name] = json.load(table)
    program = re.compile(r"bpf_prog_[0-9a-f]+_(" + "|".join(map(re.escape, names)) + r")(?:\+0x([0-9a-f]+))?$")
    leaves, by_line, text = collections.Counter(), collections.Counter(), {}
    total = in_programs = 0
    for chain in samples(script):
        total += 1
        if not any(program.match(frame) for frame in chain):
            continue
        in_programs += 1
        own = program.match(chain[0])
        if not own:
            leaves[re.sub(r"\+0x[0-9a-f]+$", "", chain[0])] += 1
            continue
        name, offset = own.group(1), int(own.group(2) or "0", 16)
        leaves[f"({name}'s own code)"] += 1
        table = tables[name]
        i = bisect.bisect_right([row[0] for row in table], offset) - 1
        key = (table[i][1], table[i][2]) if i >= 0 else ("?", 0)
        by_line[key] += 1
        text[key] = table[i][3] if i >= 0 else ""
    if not in_programs:
        raise SystemExit("no samples in the programs: was the load running?")
    print(f"{in_programs} of {total} samples ({100 * in_programs / total:.1f} %) have a program in their call chain")
    print("\nleaf function (the program's own code, or what it called):")
    for leaf, count in leaves.most_common(25):
        print(f"  {count:6d}  {100 * count / in_programs:5.1f} %  {leaf}")
    own = sum(by_line.values())
    print(f"\nthe programs' own samples ({own}) by source line:")
    for (path, line), count in by_line.most_common(25):
        print(f"  {count:6d}  {100 * count / own:5.1f} %  {path}:{line}  {text[(path, line)][:80]}")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "dump":
        dump(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 5 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
