// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only)
/*
 * BPF iterator over every open file of every process: writes one zt_listener
 * record per listening TCP socket. It lets discovery find servers that were
 * already listening before the agent started, without the ptrace-level access
 * that /proc/PID/fd of other users' processes would need.
 */
#include "../include/socket_lookup.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("iter/task_file")
int zt_list_listeners(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	if (!task || !file)
		return 0;
	struct sock *sk = zt_tcp_sock_of_file(file);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_state) != ZT_TCP_LISTEN)
		return 0;
	struct zt_listener record = {
		.pid = BPF_CORE_READ(task, tgid),
		.port = BPF_CORE_READ(sk, __sk_common.skc_num),
		.family = BPF_CORE_READ(sk, __sk_common.skc_family),
	};
	bpf_seq_write(seq, &record, sizeof(record));
	return 0;
}
