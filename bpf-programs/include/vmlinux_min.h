/* SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only) */
/*
 * The few kernel types zerotrace reads, declared by hand for CO-RE.
 *
 * Every struct carries preserve_access_index, so clang records each field
 * access by name and libbpf relocates it against the running kernel's BTF
 * (/sys/kernel/btf/vmlinux) at load time. Only the fields we read are listed;
 * their order and the struct sizes here do not matter. This keeps the build
 * independent of the build host's kernel (no bpftool, no generated vmlinux.h).
 */
#ifndef ZEROTRACE_VMLINUX_MIN_H
#define ZEROTRACE_VMLINUX_MIN_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
typedef __u16 umode_t;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_SK_STORAGE = 24,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

enum {
	BPF_SK_STORAGE_GET_F_CREATE = 1,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
};

/* Only to ask the running kernel (CO-RE enum relocation) whether a helper
 * exists; the values are the kernel's. */
enum bpf_func_id {
	BPF_FUNC_loop = 181,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct pt_regs {
	unsigned long r14; /* Go register ABI: the current goroutine (g) */
	unsigned long bx;  /* Go register ABI: second integer argument */
	unsigned long r10;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long flags; /* Go TLS hooks: the flags a stack check's CMP set */
};

struct in6_addr {
	__u8 in6_u[16];
};

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct socket;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_type;
	__u16 sk_protocol;
	struct socket *sk_socket;
};

struct file;

struct socket {
	short type;
	struct file *file;
	struct sock *sk;
};

struct inode {
	umode_t i_mode;
};

struct file {
	struct inode *f_inode;
	void *private_data;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct task_struct {
	int pid;
	int tgid;
	void *stack; /* the kernel stack: the saved user registers sit at a fixed offset in it */
	struct task_struct *group_leader;
	struct task_struct *real_parent;
	struct files_struct *files;
	__u64 start_time; /* CLOCK_MONOTONIC ns at fork */
};

/* The program being exec'd: the path it was asked for, and the file
 * actually run (the interpreter of a script). */
struct linux_binprm {
	const char *filename;
	const char *interp;
};

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
};

struct bpf_iter__task_file {
	union {
		struct bpf_iter_meta *meta;
	};
	union {
		struct task_struct *task;
	};
	__u32 fd;
	union {
		struct file *file;
	};
};

#pragma clang attribute pop

#endif
