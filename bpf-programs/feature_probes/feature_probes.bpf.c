// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only)
/*
 * One trivial program per hook family, loaded and attached one at a time by
 * `zerotrace check` to find out what this kernel and these privileges allow.
 * Feature-probe, never assume: hardened kernels refuse some families.
 */
#include "../include/vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sys_enter")
int BPF_PROG(probe_tp_btf, struct pt_regs *regs, long id)
{
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int probe_raw_tracepoint(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int probe_tracepoint(void *ctx)
{
	return 0;
}

SEC("kprobe/do_sys_openat2")
int probe_kprobe(void *ctx)
{
	return 0;
}

SEC("fentry/do_sys_openat2")
int BPF_PROG(probe_fentry)
{
	return 0;
}

SEC("uprobe")
int probe_uprobe(void *ctx)
{
	return 0;
}

SEC("uprobe.multi")
int probe_uprobe_multi(void *ctx)
{
	return 0;
}
