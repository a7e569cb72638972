/* SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only) */
/*
 * Go crypto/tls plaintext: uprobes on `crypto/tls.(*Conn).Read` and `.Write`,
 * at the entry and at every RET instruction, attached by the loader at file
 * offsets it found itself in the process's executable (zerotrace-gobin). Go
 * code gets no uretprobes: a uretprobe rewrites the return address on the
 * goroutine's stack, which the Go runtime moves when the stack grows.
 * Write's plaintext is sent at its entry (whole, and before the records it
 * becomes, so a reply can never be seen before its request); Read's at its
 * one call to runtime.memmove (the decrypted bytes copied into b), else at
 * each RET, where n is known. The entry hook sits on the prologue's stack check
 * (its JBE to runtime.morestack) when the loader found one: uprobes emulate
 * a conditional jump (no single-step trap), and the flags tell the pass that
 * grows the stack, after which the function starts again, from the real
 * one. Without it the hook is on the entry, which then runs twice when the
 * stack grows: the call kept until a RET tells the second run from a new
 * call. One program serves every hook; its attach cookie says which hook
 * fired (enum zt_tls_kind | enum zt_go_tls_hook).
 *
 * Included at the end of syscall_tracer.bpf.c, so it shares that object's
 * maps (ring buffer, pid filter, socket state) and helpers.
 *
 * Arguments come from Go's register ABI (Go >= 1.17, amd64): the receiver
 * `c *Conn` in RAX, `b []byte` as pointer in RBX and length in RCX, the
 * current goroutine `g` in R14; the result `n` in RAX at each RET.
 */
#ifndef ZEROTRACE_GO_TLS_HOOKS_H
#define ZEROTRACE_GO_TLS_HOOKS_H

/* Attach cookie of each hook: the function (enum zt_tls_kind) and where. */
enum zt_go_tls_hook {
	ZT_GO_HOOK_ENTRY = 16,  /* function entry: arguments in registers */
	ZT_GO_HOOK_RETURN = 32, /* a RET: n in RAX */
	/* With ENTRY: the hook is on the prologue's stack check (`CMP SP, g.stackguard;
	 * JBE morestack`), arguments still in registers, the flags set by the CMP. */
	ZT_GO_HOOK_AT_STACK_CHECK = 64,
	/* Read's one `CALL runtime.memmove(to, from, n)`: the plaintext copied into b
	 * is at RBX, n bytes (RCX); emulated like any direct call. */
	ZT_GO_HOOK_COPY = 128,
};

/* x86 flags the stack check's JBE tests (taken when either is set). */
#define ZT_X86_CF 0x1
#define ZT_X86_ZF 0x40

/*
 * Field offsets from the `*tls.Conn` to the socket's file descriptor, read
 * with reflect from Debian's Go 1.19 (docs/protocols.md has the table; these
 * declarations have kept their order since well before Go 1.17):
 *   tls.Conn.conn (net.Conn interface: itab, data)   data word at +8
 *   *net.TCPConn -> net.conn.fd (*net.netFD)         at +0
 *   net.netFD.pfd (poll.FD) .Sysfd, after fdMutex    at +16
 *   net.netFD.family, .sotype (after the 56-byte FD) at +56, +64
 */
#define ZT_GO_TLS_CONN_DATA 8
#define ZT_GO_TCPCONN_NETFD 0
#define ZT_GO_NETFD_SYSFD 16
#define ZT_GO_NETFD_FAMILY 56
#define ZT_GO_NETFD_SOTYPE 64

/* A Read or Write in progress on a goroutine (between its entry and a RET). */
struct zt_go_tls_call {
	__u64 buf;
	__u64 len;
	__u64 sock_id; /* from the Conn at entry; 0 when the walk failed */
	__u32 kind;    /* ZT_TLS_READ or ZT_TLS_WRITE */
	__u32 pad;
};

struct zt_go_tls_key {
	__u32 tgid; /* goroutine pointers are per address space */
	__u32 pad;
	__u64 goroutine;
};

/* (process, goroutine) -> its call in progress: a goroutine may park inside
 * Read or Write and resume on another thread, so the thread id cannot be the
 * key. Goroutines blocked in Read (one per idle keep-alive connection) fill
 * it; LRU beyond. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct zt_go_tls_key);
	__type(value, struct zt_go_tls_call);
} zt_go_tls_calls SEC(".maps");

/* The three words of a netFD the walk reads: Sysfd, and family and sotype
 * to check that it is one (an inet stream socket). */
struct zt_go_netfd_words {
	__s64 sysfd;
	__s64 family;
	__s64 sotype;
};

/* The TCP socket behind a `*tls.Conn` whose connection is a `*net.TCPConn`
 * (what net/http's servers and clients make), or 0. Another net.Conn type
 * leads elsewhere: what is found must look like a netFD of an inet stream
 * socket, and its fd must be a TCP socket of this process, or the caller
 * falls back to the thread's last socket (a Read) or drops the bytes (a
 * Write). */
static __always_inline __u64 zt_go_conn_socket(__u64 conn)
{
	__u64 data = 0, netfd = 0;
	struct zt_go_netfd_words words = {};
	if (!conn || bpf_probe_read_user(&data, sizeof(data), (void *)(conn + ZT_GO_TLS_CONN_DATA)) || !data)
		return 0;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(data + ZT_GO_TCPCONN_NETFD)) || !netfd)
		return 0;
	if (bpf_probe_read_user(&words.sysfd, sizeof(words.sysfd), (void *)(netfd + ZT_GO_NETFD_SYSFD)) ||
	    bpf_probe_read_user(&words.family, 2 * sizeof(__s64), (void *)(netfd + ZT_GO_NETFD_FAMILY)))
		return 0;
	if (words.sysfd < 0 || (words.family != ZT_AF_INET && words.family != ZT_AF_INET6) ||
	    words.sotype != ZT_SOCK_STREAM)
		return 0;
	return (__u64)zt_tcp_sock_of_fd(words.sysfd);
}

/* Sends `len` plaintext bytes at `src` as a TLS data event of `sock_id`
 * (capped like every payload; HTTP/2 header blocks are found as usual). */
static __always_inline void zt_go_tls_emit(__u64 pid_tgid, __u64 g, __u64 sock_id, __u8 direction, __u64 src,
					   __u64 len)
{
	struct zt_event_buffer *buf = zt_new_event(ZT_EVENT_DATA, pid_tgid);
	if (!buf)
		return;
	struct zt_event *e = &buf->event;
	e->tid = zt_thread_of(pid_tgid >> 32, (__u32)pid_tgid, g);
	bool closed = 0;
	struct zt_conn_state *state = zt_describe_socket(e, (struct sock *)sock_id, ZT_CONN_TLS, &closed);
	if (closed)
		return;
	e->flags |= ZT_EVENT_FLAG_TLS;
	e->direction = direction;
	e->sock_id = sock_id;
	e->bytes = len;
	__u8 *dst = zt_payload_of(buf);
	__u64 split_at = 0;
	bool pipeline = 0;
	__u8 *batch = zt_tls_batch_count(state, direction);
	__u32 copy = zt_copy_buffer(dst, src, len, batch && *batch, state, direction, &e->flags, &split_at, &pipeline);
	if (batch)
		zt_track_head(batch, dst, copy, len, pipeline, 0);
	zt_submit_segment(buf, src, 0, len, copy, split_at);
}

/* The socket of a Read: the Conn's own, else the thread's last socket (as
 * the OpenSSL hooks do: the Read's own read most often ran on this thread
 * just before), else none (counted). A Write's entry comes before its own
 * write, where the thread's last socket is another goroutine's: it has only
 * the Conn's. */
static __always_inline __u64 zt_go_tls_socket(__u64 pid_tgid, __u64 from_conn)
{
	if (from_conn)
		return from_conn;
	__u64 *last = bpf_map_lookup_elem(&zt_tls_last_socket, &pid_tgid);
	if (last && *last)
		return *last;
	zt_count(ZT_COUNTER_TLS_UNASSOCIATED);
	return 0;
}

/* Attach cookie of net/http's client connection hooks (with ZT_GO_HOOK_ENTRY,
 * ZT_GO_HOOK_AT_STACK_CHECK or ZT_GO_HOOK_RETURN): no bytes, only who calls. */
enum zt_go_http_hook {
	ZT_GO_HTTP_ROUND_TRIP = 256, /* (*persistConn).roundTrip, on the calling goroutine */
	ZT_GO_HTTP_WRITE_LOOP = 512, /* (*persistConn).writeLoop, the connection's writer */
	ZT_GO_HTTP_READ_LOOP = 1024, /* (*persistConn).readLoop, its reader */
};
#define ZT_GO_HTTP_ANY (ZT_GO_HTTP_ROUND_TRIP | ZT_GO_HTTP_WRITE_LOOP | ZT_GO_HTTP_READ_LOOP)

/* The receiver `pc *persistConn` in RAX, the goroutine in R14. A round trip
 * makes its goroutine the connection's caller; a loop's entry ties its
 * goroutine to the connection until one of its RETs (Go gives a finished
 * goroutine's runtime.g to a later one). An entry run again after a stack
 * growth writes the same again. */
static __always_inline void zt_go_http_client_hook(struct pt_regs *ctx, __u64 hook, __u32 tgid)
{
	if ((hook & ZT_GO_HOOK_AT_STACK_CHECK) && (ctx->flags & (ZT_X86_CF | ZT_X86_ZF)))
		return; /* the stack grows first, then the call starts again */
	__u64 conn = ctx->ax, g = ctx->r14;
	barrier_var(conn);
	barrier_var(g);
	if (!g)
		return;
	struct zt_go_pointer_key key = {.tgid = tgid, .pointer = g};
	if (hook & ZT_GO_HOOK_RETURN) {
		/* RAX holds no receiver at a RET: the goroutine alone is the key. */
		bpf_map_delete_elem(&zt_go_loop_conn, &key);
		return;
	}
	if (!conn)
		return;
	struct zt_go_pointer_value value = {.pointer = conn, .stamp = zt_process_stamp()};
	if (hook & ZT_GO_HTTP_ROUND_TRIP) {
		key.pointer = conn;
		value.pointer = g;
		bpf_map_update_elem(&zt_go_conn_caller, &key, &value, BPF_ANY);
		return;
	}
	bpf_map_update_elem(&zt_go_loop_conn, &key, &value, BPF_ANY);
}

SEC("uprobe.multi")
int zt_go_tls(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!zt_is_instrumented(pid_tgid >> 32))
		return 0;
	__u64 hook = bpf_get_attach_cookie(ctx);
	if (hook & ZT_GO_HTTP_ANY) {
		zt_go_http_client_hook(ctx, hook, pid_tgid >> 32);
		return 0;
	}
	__u32 kind = hook & (ZT_TLS_READ | ZT_TLS_WRITE);
	struct zt_go_tls_key key = {.tgid = pid_tgid >> 32, .goroutine = ctx->r14};

	if (hook & ZT_GO_HOOK_ENTRY) {
		struct zt_go_tls_call call = {.buf = ctx->bx, .len = ctx->cx, .kind = kind};
		bool at_check = hook & ZT_GO_HOOK_AT_STACK_CHECK;
		if (at_check) {
			if (ctx->flags & (ZT_X86_CF | ZT_X86_ZF))
				return 0; /* the stack grows first, then the call starts again */
		} else {
			struct zt_go_tls_call *open = bpf_map_lookup_elem(&zt_go_tls_calls, &key);
			if (open && open->kind == kind && open->buf == call.buf && open->len == call.len)
				return 0; /* the same call again, after runtime.morestack */
		}
		call.sock_id = zt_go_conn_socket(ctx->ax);
		/* Before Read or Write moves any record: the socket's own bytes
		 * are TLS records, not sent (zt_tls_socket_io). */
		if (call.sock_id)
			zt_mark_tls_socket(call.sock_id);
		/* Write's call is kept only where its returns are hooked (no stack check). */
		if (kind == ZT_TLS_READ || !at_check)
			bpf_map_update_elem(&zt_go_tls_calls, &key, &call, BPF_ANY);
		if (kind == ZT_TLS_WRITE && call.len) {
			if (call.sock_id)
				zt_go_tls_emit(pid_tgid, key.goroutine, call.sock_id, ZT_DIR_EGRESS, call.buf, call.len);
			else
				zt_count(ZT_COUNTER_TLS_UNASSOCIATED);
		}
		return 0;
	}

	/* A RET, or Read's copy: the goroutine's call in progress ends, if its
	 * entry was seen. */
	struct zt_go_tls_call *active = bpf_map_lookup_elem(&zt_go_tls_calls, &key);
	if (!active || active->kind != kind)
		return 0;
	struct zt_go_tls_call call = *active;
	bpf_map_delete_elem(&zt_go_tls_calls, &key);
	if (kind != ZT_TLS_READ)
		return 0; /* Write: sent at entry */
	/* Each register loaded on its own: a load from a chosen ctx offset is
	 * refused by the verifier. */
	__u64 ret_ax = ctx->ax, copy_cx = ctx->cx, copy_bx = ctx->bx;
	barrier_var(ret_ax);
	barrier_var(copy_cx);
	barrier_var(copy_bx);
	bool at_copy = hook & ZT_GO_HOOK_COPY;
	__s64 n = (__s64)(at_copy ? copy_cx : ret_ax);
	__u64 src = at_copy ? copy_bx : call.buf;
	if (n <= 0 || (__u64)n > call.len)
		return 0;
	__u64 sock_id = zt_go_tls_socket(pid_tgid, call.sock_id);
	if (sock_id)
		zt_go_tls_emit(pid_tgid, key.goroutine, sock_id, ZT_DIR_INGRESS, src, n);
	return 0;
}

#endif
