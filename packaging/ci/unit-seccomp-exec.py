#!/usr/bin/python3
"""Runs a command under the seccomp-based settings of a systemd unit file.

    unit-seccomp-exec.py UNIT_FILE -- COMMAND [ARGS...]

Reproduces, with libseccomp (Debian: python3-seccomp), what systemd applies for
these settings of the unit's [Service] section, so the agent can be tried under
them on a machine where systemd is not PID 1:

  SystemCallFilter=       allow-list; @groups resolved by `systemd-analyze
                          syscall-filter` (the groups of the systemd installed)
  SystemCallErrorNumber=  the errno a filtered call fails with
  RestrictAddressFamilies= socket() of another family fails with EAFNOSUPPORT
  MemoryDenyWriteExecute= mmap(W|X), mprotect(X) and pkey_mprotect(X) fail (EPERM)

The filters are installed, then COMMAND is exec'd (it inherits them, as does
everything it starts). Must run with CAP_SYS_ADMIN or no_new_privs set.
Capabilities, users and mount namespaces are not this script's business.
"""

import errno
import os
import socket
import subprocess
import sys

import seccomp


def unit_settings(path):
    """The [Service] settings of a unit file: name -> list of values."""
    settings = {}
    section = None
    with open(path, encoding="utf-8") as unit:
        for raw in unit:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section != "[Service]" or "=" not in line:
                continue
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def syscall_groups():
    """@group -> members, from the systemd installed here."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter"], check=True, capture_output=True, text=True
    ).stdout
    groups, current = {}, None
    for raw in listing.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if raw.startswith("@"):
            current = groups.setdefault(line, [])
        elif current is not None:
            current.append(line)
    return groups


def expand(names, groups, seen=None):
    seen = set() if seen is None else seen
    calls = set()
    for name in names:
        if name.startswith("@"):
            if name in seen:
                continue
            seen.add(name)
            if name not in groups:
                sys.exit(f"unit-seccomp-exec: unknown group {name}")
            calls |= expand(groups[name], groups, seen)
        else:
            calls.add(name)
    return calls


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit(__doc__)
    unit, command = sys.argv[1], sys.argv[3:]
    settings = unit_settings(unit)

    # SystemCallFilter= (allow-list form only: that is what the unit uses).
    filters = " ".join(settings.get("SystemCallFilter", [])).split()
    if not filters:
        sys.exit("unit-seccomp-exec: the unit has no SystemCallFilter=")
    if any(f.startswith("~") for f in filters):
        sys.exit("unit-seccomp-exec: deny-lists (~) are not supported")
    allowed = expand(filters, syscall_groups())
    errno_name = (settings.get("SystemCallErrorNumber") or ["EPERM"])[-1]
    action = seccomp.ERRNO(getattr(errno, errno_name))
    allow_list = seccomp.SyscallFilter(defaction=action)
    unknown = []
    for call in sorted(allowed):
        try:
            allow_list.add_rule(seccomp.ALLOW, call)
        except (RuntimeError, ValueError):
            unknown.append(call)  # not a system call on this architecture
    print(
        f"unit-seccomp-exec: {len(allowed) - len(unknown)} system calls allowed, others fail with "
        f"{errno_name} ({len(unknown)} names not on this architecture)",
        file=sys.stderr,
    )

    # RestrictAddressFamilies=: families by name, as socket() numbers.
    extra = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    families = " ".join(settings.get("RestrictAddressFamilies", [])).split()
    if families:
        keep = {int(getattr(socket, f)) for f in families}
        for family in range(0, 64):
            if family not in keep:
                extra.add_rule(
                    seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family)
                )
    if (settings.get("MemoryDenyWriteExecute") or ["no"])[-1] in ("yes", "true", "1", "on"):
        wx = 0x2 | 0x4  # PROT_WRITE | PROT_EXEC
        extra.add_rule(seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx))
        for call in ("mprotect", "pkey_mprotect"):
            extra.add_rule(
                seccomp.ERRNO(errno.EPERM), call, seccomp.Arg(2, seccomp.MASKED_EQ, 0x4, 0x4)
            )

    extra.load()
    allow_list.load()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
