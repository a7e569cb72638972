/* SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only) */
/* fd -> struct sock resolution and connection tuple extraction, shared by programs. */
#ifndef ZEROTRACE_SOCKET_LOOKUP_H
#define ZEROTRACE_SOCKET_LOOKUP_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "zerotrace_events.h"

#define ZT_AF_INET 2
#define ZT_AF_INET6 10
#define ZT_SOCK_STREAM 1
#define ZT_IPPROTO_TCP 6
#define ZT_S_IFMT 00170000
#define ZT_S_IFSOCK 0140000
#define ZT_TCP_LISTEN 10

/* kfunc (kernel >= 6.2): turns a kernel address into a read-only typed pointer,
 * so fields load directly instead of through one helper call each. Weak: on
 * kernels without it the probe-read path below is used. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* Fast path of zt_tcp_sock_of_file, with direct loads through rdonly_cast pointers. */
static __always_inline struct sock *zt_tcp_sock_of_file_cast(void *file_addr)
{
	struct file *file = bpf_rdonly_cast(file_addr, bpf_core_type_id_kernel(struct file));
	struct inode *inode = file->f_inode;
	if (!inode || (inode->i_mode & ZT_S_IFMT) != ZT_S_IFSOCK)
		return 0;
	struct socket *socket = bpf_rdonly_cast(file->private_data, bpf_core_type_id_kernel(struct socket));
	if (!socket)
		return 0;
	struct sock *sk = socket->sk;
	if (!sk)
		return 0;
	unsigned short family = sk->__sk_common.skc_family;
	if (family != ZT_AF_INET && family != ZT_AF_INET6)
		return 0;
	if (sk->sk_type != ZT_SOCK_STREAM || sk->sk_protocol != ZT_IPPROTO_TCP)
		return 0;
	return sk;
}

/* `sk` when it is an IPv4/IPv6 TCP socket a process holds as a file (kernel
 * sockets — NFS, CIFS, iSCSI — have none), else NULL. The socket tracepoints
 * fire inside sock_sendmsg/sock_recvmsg for the very socket the syscall
 * names, unless a kernel socket does I/O on the task's behalf: so a user
 * socket there is the syscall's own, and the fd walk is not needed (kernel
 * >= 6.2 with bpf_rdonly_cast; callers fall back to the walk otherwise). */
static __always_inline struct sock *zt_user_tcp_sock(struct sock *sk_addr)
{
	struct sock *sk = bpf_rdonly_cast(sk_addr, bpf_core_type_id_kernel(struct sock));
	unsigned short family = sk->__sk_common.skc_family;
	if (family != ZT_AF_INET && family != ZT_AF_INET6)
		return 0;
	if (sk->sk_type != ZT_SOCK_STREAM || sk->sk_protocol != ZT_IPPROTO_TCP)
		return 0;
	struct socket *socket = bpf_rdonly_cast(sk->sk_socket, bpf_core_type_id_kernel(struct socket));
	if (!socket || !socket->file)
		return 0;
	return sk_addr;
}

/* The TCP sock behind a file, or NULL for anything else (files, pipes, UDP, unix). */
static __always_inline struct sock *zt_tcp_sock_of_file(struct file *file)
{
	if (!file)
		return 0;
	umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & ZT_S_IFMT) != ZT_S_IFSOCK)
		return 0;
	struct socket *socket = BPF_CORE_READ(file, private_data);
	if (!socket)
		return 0;
	struct sock *sk = BPF_CORE_READ(socket, sk);
	if (!sk)
		return 0;
	unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != ZT_AF_INET && family != ZT_AF_INET6)
		return 0;
	if (BPF_CORE_READ(sk, sk_type) != ZT_SOCK_STREAM ||
	    BPF_CORE_READ(sk, sk_protocol) != ZT_IPPROTO_TCP)
		return 0;
	return sk;
}

/* The TCP sock behind fd `fd` of the current task. */
static __always_inline struct sock *zt_tcp_sock_of_fd(__u64 fd)
{
	/* Direct loads: the current task is a trusted BTF pointer. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct files_struct *files = task->files;
	if (!files)
		return 0;
	struct fdtable *fdt = files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return 0;
	struct file **fd_array = fdt->fd;
	struct file *file = 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fd_array[fd]) || !file)
		return 0;
	if (bpf_rdonly_cast)
		return zt_tcp_sock_of_file_cast(file);
	return zt_tcp_sock_of_file(file);
}

static __always_inline void zt_fill_tuple(struct sock *sk, struct zt_conn_tuple *t)
{
	unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->family = family;
	t->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->peer_port = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == ZT_AF_INET) {
		__u32 local = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 peer = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(t->local_addr, &local, 4);
		__builtin_memcpy(t->peer_addr, &peer, 4);
	} else {
		BPF_CORE_READ_INTO(&t->local_addr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&t->peer_addr, sk, __sk_common.skc_v6_daddr);
	}
}

#endif
