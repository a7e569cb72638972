// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only)
/*
 * Syscall tracepoint capture backend: the baseline that works on hardened
 * kernels without kprobes or fentry (tp_btf only).
 *
 * Cost model: every process pays one switch on the syscall number at
 * sys_exit (there is no sys_enter program); processes outside zt_pid_filter
 * pay one hash lookup for the few syscalls we care about and nothing else.
 * Arguments are read back from the saved user registers at sys_exit, so no
 * per-thread map is written between enter and exit. Connection identity
 * (addresses, ports, process name) goes to user space once per socket, not
 * with every read and write. Closes come from the TCP state tracepoint, which
 * fires per connection instead of per syscall.
 */
#include "../include/socket_lookup.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* x86_64 syscall numbers (the only architecture built for now). */
#define ZT_NR_read 0
#define ZT_NR_write 1
#define ZT_NR_readv 19
#define ZT_NR_writev 20
#define ZT_NR_sendfile 40
#define ZT_NR_connect 42
#define ZT_NR_accept 43
#define ZT_NR_sendto 44
#define ZT_NR_recvfrom 45
#define ZT_NR_sendmsg 46
#define ZT_NR_recvmsg 47
#define ZT_NR_listen 50
#define ZT_NR_accept4 288
#define ZT_EINPROGRESS 115
#define ZT_TCP_SYN_SENT 2
#define ZT_TCP_CLOSE 7
#define ZT_TCP_LISTEN 10
#define ZT_MSG_PEEK 2

/* Set by the loader before load (it writes the fields in this order). */
const volatile struct {
	/* Data events wake the reader only once this many bytes are waiting, so
	 * a busy server does not cause one wake-up per call. */
	__u64 wakeup_bytes;
	/* Bytes copied of a segment that starts an HTTP head (<= ZT_HEAD_MAX). */
	__u64 head_capture;
	/* Benchmarks only (ZEROTRACE_BENCH_FLOOR): the data hooks return at once
	 * (ZT_FLOOR_HOOKS), after the pid bitmap or filter (ZT_FLOOR_FILTER), once the
	 * socket and its state are known (ZT_FLOOR_SOCKET), or before the ring
	 * buffer write (ZT_FLOOR_COPY), or before it for reads only
	 * (ZT_FLOOR_WRITES: one record per exchange, as pairing in the kernel
	 * would write), to measure what each part costs. 0 in
	 * use. The verifier follows only the branch the read-only value takes,
	 * but removing the others needs CAP_SYS_ADMIN, which the loader lacks:
	 * each check stays a load and a predicted branch. In a
	 * process with TLS hooks, ZT_FLOOR_SOCKET stops before the plain-HTTP
	 * mark is taken from the payload: it pays the TLS bookkeeping that the
	 * whole path skips for such sockets. */
	__u64 floor;
} zt_settings = {.wakeup_bytes = 65536, .head_capture = ZT_HEAD_MAX};

#define ZT_FLOOR_HOOKS 1
#define ZT_FLOOR_FILTER 2
#define ZT_FLOOR_SOCKET 3
#define ZT_FLOOR_COPY 4
#define ZT_FLOOR_WRITES 5

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} zt_events SEC(".maps");

/* tgid -> flags; only these processes produce data events. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} zt_pid_filter SEC(".maps");

/* One bit per tgid below ZT_PID_BITS_WORDS * 64 (the kernel's largest
 * pid_max, 2^22): set for every process in zt_pid_filter (the worker sets and
 * clears them through a shared mapping, zt_process_fork for children). A
 * clear bit answers "not instrumented" with one array load, so other
 * processes' socket I/O never pays the hash lookup; a set bit of a process
 * no longer in the filter costs that lookup, nothing else. The second
 * ZT_PID_BITS_WORDS words hold a second bit per tgid, set by the worker for
 * Go programs: their data events name the goroutine, not the thread
 * (zt_thread_of). */
#define ZT_PID_BITS_WORDS 65536
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, 1U << 10); /* BPF_F_MMAPABLE */
	__uint(max_entries, 2 * ZT_PID_BITS_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} zt_pid_bits SEC(".maps");

/* A pointer of one Go process (a goroutine's runtime.g, a *persistConn). */
struct zt_go_pointer_key {
	__u32 tgid;
	__u32 pad;
	__u64 pointer;
};

/* What a key maps to, and the life of the process that wrote it. */
struct zt_go_pointer_value {
	__u64 pointer;
	__u32 stamp; /* zt_process_stamp */
	__u32 pad;
};

/* A stamp of the current process's life: its leader's start time, low 32
 * bits. Entries of a Go process that exited stay until the LRU drops them,
 * and a Go program that gets its pid lays out its heap, so its goroutines,
 * alike: an entry of another stamp is not its own. Checked on a hit only,
 * so other data events of Go processes pay no helper call for it. */
static __always_inline __u32 zt_process_stamp(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	return (__u32)task->group_leader->start_time;
}

/* net/http's client connections (go_tls_hooks.h, the persistConn hooks):
 * the goroutine of a connection's writeLoop or readLoop -> the connection,
 * from the loop's entry to its RET; and the connection -> the goroutine
 * that called its roundTrip last (HTTP/1: one call at a time). The calling
 * goroutine is what zt_thread_of names in the loops' events. 8,192 each
 * (4,096 client connections' loops), LRU beyond: a forgotten one names the
 * loop's own goroutine, as before, and its calls are left roots. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct zt_go_pointer_key);
	__type(value, struct zt_go_pointer_value);
} zt_go_loop_conn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct zt_go_pointer_key);
	__type(value, struct zt_go_pointer_value);
} zt_go_conn_caller SEC(".maps");

/* struct sock address -> role and tuple generation, for sockets of instrumented processes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct zt_conn_state);
} zt_conn_state SEC(".maps");

/* The same state kept in the socket itself, for the socket backend's data
 * path: its tracepoints hand over the socket as a trusted pointer, and a
 * lookup in the socket's own storage costs a fraction of the LRU hash's
 * (measured ~50 ns per request, see docs/benchmarks.md). It lives as long as
 * the socket and needs no bound of its own. Creating it costs more than the
 * lookups it spares a short connection (allocations, memory accounting,
 * locks: ~1 µs per socket here), so a socket's state starts in zt_conn_state
 * and moves here when the connection proves long (zt_count_young_record): a
 * connection of one request and its response never allocates. The TLS library hooks (the
 * socket is only an address to them) and the syscall-exit backend (the
 * socket comes from the fd table walk) keep using zt_conn_state. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct zt_conn_state);
} zt_conn_storage SEC(".maps");

/* When the socket backend moves a socket's state from zt_conn_state into
 * zt_conn_storage: at the second turn of its data's direction (a second
 * request on a connection: server in, out, in; client out, in, out), or at
 * its ZT_YOUNG_RECORDS_MAX-th data record, whichever comes first. */
#define ZT_YOUNG_TURNS 2
#define ZT_YOUNG_RECORDS_MAX 8

/* [0]: the current worker generation, bumped by the loader at every worker start
 * so a restarted worker receives each socket's tuple again. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} zt_generation SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZT_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} zt_counters SEC(".maps");

struct zt_event_buffer {
	struct zt_event event;
	/* Twice the largest capture, so the verifier can see that a copy that
	 * starts below ZT_HEAD_MAX and is at most ZT_HEAD_MAX long stays inside. */
	__u8 payload[2 * ZT_HEAD_MAX];
	/* Ring bytes this CPU submitted with ZT_WAKE_BATCHED since it last
	 * asked the ring how much is waiting (zt_wakeup_flags). Never sent. */
	__u64 batched_bytes;
};

/* Vectored I/O (writev, sendmsg...) is captured across this many iovecs
 * (the kernel's own limit, UIO_MAXIOV): nginx and HTTP/2 servers write frame
 * headers and bodies as separate pieces, and grpc's C core writes the header
 * blocks of a hundred calls started at once, in its first flight, as three
 * hundred and more; the copy stops at its length, whatever the count. With
 * bpf_loop (5.17+) the verifier checks the loop body once; without it the
 * loop is unrolled, which costs verification time per iteration, so kernels
 * without bpf_loop get the first ZT_UNROLLED_IOVECS only. */
#define ZT_MAX_IOVECS 1024
#define ZT_UNROLLED_IOVECS 8

/* Staging area, one entry per CPU (the loader sizes it to the possible
 * CPUs): events are too big for the 512-byte BPF stack, and with heads of up
 * to ZT_HEAD_MAX bytes too big for a per-CPU array's 32 KiB value limit. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zt_event_buffer);
} zt_scratch SEC(".maps");

/* A TLS library call in progress on a thread (SSL_read, SSL_write...). */
struct zt_tls_call {
	__u64 ssl;      /* the SSL object: the connection, as the library knows it */
	__u64 buf;      /* plaintext buffer */
	__u64 size_out; /* *_ex variants: where the byte count is written */
	__u64 sock_id;  /* socket the library read or wrote during the call, if any */
	__u32 kind;     /* enum zt_tls_kind */
	__u32 pad;
};

/* pid_tgid -> the TLS call that thread is in (threads inside SSL_read/SSL_write
 * at the same moment: a few per core). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct zt_tls_call);
} zt_tls_calls SEC(".maps");

struct zt_tls_key {
	__u32 tgid; /* SSL pointers are per address space */
	__u32 pad;
	__u64 ssl;
};

/* The socket an SSL object was last seen on. Both addresses come back: a
 * freed SSL object's for the next connection's, a closed socket's for
 * another socket, perhaps one still open. The socket's ports when it was
 * learnt tell a socket reused since apart. */
struct zt_tls_socket {
	__u64 sock_id;
	__u32 ports; /* skc_portpair: the peer's port and the local one */
	__u32 pad;
};

/* (process, SSL object) -> socket, learnt from the syscalls the library makes
 * (one per open TLS connection of instrumented processes; LRU beyond). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct zt_tls_key);
	__type(value, struct zt_tls_socket);
} zt_tls_sockets SEC(".maps");

/* pid_tgid -> the TCP socket that thread last read or wrote, for libraries fed
 * from memory (Node.js reads the socket first, then decrypts in SSL_read). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u64);
} zt_tls_last_socket SEC(".maps");

/* User-space ABI layouts (not kernel-internal, so no CO-RE). */
struct zt_user_iovec {
	__u64 base;
	__u64 len;
};

struct zt_user_msghdr {
	__u64 msg_name;
	__u32 msg_namelen;
	__u32 pad;
	__u64 msg_iov;
	__u64 msg_iovlen;
};

static __always_inline void zt_count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&zt_counters, &counter);
	if (value)
		*value += 1;
}

/* The bitmap word that holds `tgid`'s bit, or NULL beyond the bitmap. */
static __always_inline __u64 *zt_pid_bit_word(__u32 tgid)
{
	__u32 word_index = tgid >> 6;
	if (word_index >= ZT_PID_BITS_WORDS)
		return 0; /* the Go bits' half */
	return bpf_map_lookup_elem(&zt_pid_bits, &word_index);
}

/* Whether the worker said `tgid` runs a Go program. */
static __always_inline bool zt_pid_runs_go(__u32 tgid)
{
	__u32 word_index = tgid >> 6;
	if (word_index >= ZT_PID_BITS_WORDS)
		return 0;
	word_index += ZT_PID_BITS_WORDS;
	__u64 *word = bpf_map_lookup_elem(&zt_pid_bits, &word_index);
	return word && (*word & (1ULL << (tgid & 63)));
}

/* Who moved a data event's bytes, for in-process nesting: the thread, or in
 * a Go program the goroutine, whose runtime.g the register ABI (Go >= 1.17,
 * amd64) keeps in R14, also at the runtime's SYSCALL instruction and in the
 * crypto/tls hooks. Go moves goroutines between threads, and one thread
 * serves many: the goroutine is what stays with a request (net/http's
 * HTTP/1 server reads, handles and answers it on the connection's
 * goroutine, where database drivers write and read too). The g's address
 * shifted by its 16-byte alignment tells apart every g within 32 GiB. */
static __always_inline __u32 zt_thread_of(__u32 tgid, __u32 tid, __u64 g)
{
	if (!zt_pid_runs_go(tgid))
		return tid;
	/* A client connection's writeLoop or readLoop writes and reads for
	 * the goroutine that called: that one is named. */
	struct zt_go_pointer_key key = {.tgid = tgid, .pointer = g};
	struct zt_go_pointer_value *conn = bpf_map_lookup_elem(&zt_go_loop_conn, &key);
	if (conn) {
		__u32 stamp = zt_process_stamp();
		key.pointer = conn->pointer;
		struct zt_go_pointer_value *caller = bpf_map_lookup_elem(&zt_go_conn_caller, &key);
		if (conn->stamp == stamp && caller && caller->stamp == stamp && caller->pointer)
			g = caller->pointer;
	}
	return (__u32)(g >> 4) | ZT_TID_GOROUTINE;
}

#define ZT_PID_BIT(tgid) (1ULL << ((tgid) & 63))

/* The pid filter's flags for `tgid`, or NULL when it is not instrumented. */
static __always_inline __u32 *zt_pid_flags(__u32 tgid)
{
	__u64 *word = zt_pid_bit_word(tgid);
	if (word && !(*word & ZT_PID_BIT(tgid)))
		return 0;
	return bpf_map_lookup_elem(&zt_pid_filter, &tgid);
}

static __always_inline bool zt_is_instrumented(__u32 tgid)
{
	return zt_pid_flags(tgid) != 0;
}

/* Passed as a data event's pid flags when only the bitmap was read (its bit
 * is set): zt_on_data reads the filter's flags if the socket's state does
 * not settle them. ZT_PID_TLS is clear in it. */
#define ZT_PID_FLAGS_UNREAD 0x80000000u

/* Whether `tgid` may be instrumented, by the bitmap alone where it covers
 * the pid (the flags are then ZT_PID_FLAGS_UNREAD), else by the filter. */
static __always_inline bool zt_pid_may_be_instrumented(__u32 tgid, __u32 *pid_flags)
{
	__u64 *word = zt_pid_bit_word(tgid);
	if (word) {
		*pid_flags = ZT_PID_FLAGS_UNREAD;
		return *word & ZT_PID_BIT(tgid);
	}
	__u32 *flags = bpf_map_lookup_elem(&zt_pid_filter, &tgid);
	if (!flags)
		return 0;
	*pid_flags = *flags;
	return 1;
}

/* Sets `tgid`'s bit (a child forked by an instrumented process). An atomic
 * add of a bit that was clear sets it whatever other bits of the word change
 * meanwhile (the worker's atomic and/or), and needs no BPF atomics beyond
 * the oldest kernels' add. */
static __always_inline void zt_set_pid_bit(__u32 tgid)
{
	__u64 *word = zt_pid_bit_word(tgid);
	if (word && !(*word & ZT_PID_BIT(tgid)))
		__sync_fetch_and_add(word, ZT_PID_BIT(tgid));
}

static __always_inline __u32 zt_current_generation(void)
{
	__u32 zero = 0;
	__u32 *generation = bpf_map_lookup_elem(&zt_generation, &zero);
	return generation ? *generation : 0;
}

/* Event header without the connection identity (tuple zeroed, comm empty;
 * a DATA event's tuple and name are written only with its identity, as a
 * compact record's payload goes over them). */
/* The staging entry of the CPU the program runs on. */
static __always_inline struct zt_event_buffer *zt_cpu_buffer(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&zt_scratch, &cpu);
}

static __always_inline struct zt_event_buffer *zt_new_event(__u8 kind, __u64 pid_tgid)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	if (!buf)
		return 0;
	struct zt_event *e = &buf->event;
	e->kind = kind;
	e->direction = ZT_DIR_NONE;
	e->role = ZT_ROLE_UNKNOWN;
	e->flags = 0;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->captured_len = 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->sock_id = 0;
	e->bytes = 0;
	if (kind != ZT_EVENT_DATA) {
		__builtin_memset(&e->tuple, 0, sizeof(e->tuple));
		e->comm[0] = 0;
	}
	return buf;
}

/* Adds the connection identity: addresses, ports and the process name (a
 * DATA record then carries the whole header, ZT_EVENT_FLAG_IDENTITY). */
static __always_inline void zt_add_identity(struct zt_event *e, struct sock *sk)
{
	/* Zeroed here, not in zt_new_event, for DATA events: IPv4 fills 4 of
	 * each address's 16 bytes. */
	__builtin_memset(&e->tuple, 0, sizeof(e->tuple));
	if (sk)
		zt_fill_tuple(sk, &e->tuple);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->flags |= ZT_EVENT_FLAG_IDENTITY;
}

/* Where a DATA event's payload goes: after the whole header when it carries
 * the socket's identity, else right after its first ZT_EVENT_COMPACT_SIZE
 * bytes (over the unused tuple and name). Call once the identity is decided. */
static __always_inline __u8 *zt_payload_of(struct zt_event_buffer *buf)
{
	if (buf->event.flags & ZT_EVENT_FLAG_IDENTITY)
		return buf->payload;
	return (__u8 *)buf + ZT_EVENT_COMPACT_SIZE;
}

/* Whether the socket has reached TCP_CLOSE. Its bytes may still be read
 * (data queued before a reset, a peer's last record) or its TLS library may
 * still run, but the worker has already ended the connection (ZT_EVENT_CLOSE),
 * and the kernel zeroes the local port: state made now would outlive the
 * socket, and the next connection at the same address would inherit it
 * without sending its own identity. */
static __always_inline bool zt_socket_closed(struct sock *sk)
{
	unsigned char tcp_state = 0;
	bpf_probe_read_kernel(&tcp_state, sizeof(tcp_state),
			      (const void *)__builtin_preserve_access_index(&sk->__sk_common.skc_state));
	return tcp_state == ZT_TCP_CLOSE;
}

/* A socket's two ports (the peer's, then the local one), which tell apart
 * two connections that had the same socket address one after the other. */
static __always_inline __u32 zt_socket_ports(__u64 sock_id)
{
	__u32 ports = 0;
	struct sock *sk = (struct sock *)sock_id;
	/* skc_dport and skc_num side by side: the kernel's skc_portpair */
	bpf_probe_read_kernel(&ports, sizeof(ports),
			      (const void *)__builtin_preserve_access_index(&sk->__sk_common.skc_dport));
	return ports;
}

/* A socket's flags with `conn_flags` added; TLS seen on it ends a plain-HTTP verdict. */
static __always_inline __u8 zt_merged_conn_flags(__u8 flags, __u8 conn_flags)
{
	flags |= conn_flags;
	if (conn_flags & ZT_CONN_TLS)
		flags &= ~ZT_CONN_PLAIN;
	return flags;
}

/* Zeroes a connection state built on the stack field by field: an
 * initialiser of constants would be compiled to a constant in a read-only
 * section the loader does not expect. */
static __always_inline void zt_clear_conn_state(struct zt_conn_state *state)
{
	__builtin_memset(state, 0, sizeof(*state));
}

static __always_inline void zt_add_conn_flags(struct zt_conn_state *state, __u8 conn_flags)
{
	__u8 flags = zt_merged_conn_flags(state->flags, conn_flags);
	if (flags != state->flags)
		state->flags = flags;
}

/* A data event's role, from the socket's state; and the socket's identity
 * (addresses, ports, process name) the first time this worker generation
 * sees it, so a restarted worker learns open connections again. `conn_flags`
 * are added to the socket's state on the way. `state` is the socket's own
 * storage or its zt_conn_state entry, if it has either; a socket without is
 * given one in zt_conn_state. Returns the socket's state;
 * sets *closed (and returns 0) for a socket unknown in this generation that
 * already reached TCP_CLOSE: its event is not sent. */
static __always_inline struct zt_conn_state *zt_describe_known_socket(struct zt_event *e, struct sock *sk,
								       struct zt_conn_state *state, __u8 conn_flags,
								       bool *closed)
{
	__u64 sock_id = (__u64)sk;
	__u32 generation = zt_current_generation();
	if (state && state->generation == generation) {
		e->role = state->role;
		zt_add_conn_flags(state, conn_flags);
		return state;
	}
	/* Once per socket and worker generation: not on the hot path. */
	if (zt_socket_closed(sk)) {
		zt_count(ZT_COUNTER_AFTER_CLOSE);
		*closed = 1;
		return 0;
	}
	struct zt_conn_state fresh = {
		.role = state ? state->role : ZT_ROLE_UNKNOWN,
		.flags = zt_merged_conn_flags(state ? state->flags : 0, conn_flags),
		.head_reads = state ? state->head_reads : 0,
		.head_writes = state ? state->head_writes : 0,
		.generation = generation,
		.plain_tgid = state ? state->plain_tgid : 0,
		.young_records = state ? state->young_records : 0,
		.young_direction = state ? state->young_direction : 0,
		.young_turns = state ? state->young_turns : 0,
	};
	e->role = fresh.role;
	zt_add_identity(e, sk);
	if (state) {
		/* In place, from an earlier generation. */
		*state = fresh;
		return state;
	}
	bpf_map_update_elem(&zt_conn_state, &sock_id, &fresh, BPF_ANY);
	return bpf_map_lookup_elem(&zt_conn_state, &sock_id);
}

/* zt_describe_known_socket for a socket whose state was not looked up yet. */
static __always_inline struct zt_conn_state *zt_describe_socket(struct zt_event *e, struct sock *sk,
								 __u8 conn_flags, bool *closed)
{
	__u64 sock_id = (__u64)sk;
	struct zt_conn_state *state = bpf_map_lookup_elem(&zt_conn_state, &sock_id);
	return zt_describe_known_socket(e, sk, state, conn_flags, closed);
}

/* Data events ask for ZT_WAKE_BATCHED: the reader is woken once the backlog
 * reaches `wakeup_bytes`, and otherwise drains on its own period. Waking on
 * every record past the threshold cost a self-IPI (irq_work) per record until
 * the reader caught up: a fifth of the programs' run time under load. Asking
 * the ring how much is waiting is a helper call, paid once per
 * ZT_WAKE_STRIDE(threshold) bytes a CPU submits rather than on every record
 * (each call's return costs on kernels with return thunks): the reader is then
 * woken at most once per stride per CPU while it lags, and with a backlog of
 * at most the threshold plus a stride per CPU. Control events (exit, fork)
 * pass 0: the kernel's adaptive wakeup; those discovery must answer before
 * the process goes on (listen, a program captured from its exec) pass
 * ZT_WAKE_DISCOVERY. */
#define ZT_WAKE_BATCHED (~0ULL)
/* A listen: a server may be asked for its first request at once, and its
 * bytes are captured only once the worker has read this event and put it in
 * the pid filter. The kernel's adaptive wake-up does not wake a reader that
 * has batched data records still to read (up to 25 ms later), which lost a
 * new server's first requests when other processes were busy. Listens are
 * rare: the reader is woken at once. */
#define ZT_WAKE_DISCOVERY BPF_RB_FORCE_WAKEUP
#define ZT_WAKE_STRIDE(threshold) ((threshold) / 4)

static __always_inline __u64 zt_wakeup_flags(struct zt_event_buffer *buf, __u64 record_size, __u64 asked)
{
	if (asked != ZT_WAKE_BATCHED)
		return asked;
	__u64 threshold = zt_settings.wakeup_bytes;
	/* 8: the ring buffer's record header */
	__u64 batched = buf->batched_bytes + record_size + 8;
	if (batched < ZT_WAKE_STRIDE(threshold)) {
		buf->batched_bytes = batched;
		return BPF_RB_NO_WAKEUP;
	}
	buf->batched_bytes = 0;
	__u64 waiting = bpf_ringbuf_query(&zt_events, BPF_RB_AVAIL_DATA);
	return waiting + record_size + 8 >= threshold ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void zt_submit(struct zt_event_buffer *buf, __u32 payload_len, __u64 flags)
{
	if (payload_len > ZT_PAYLOAD_ROOM)
		payload_len = ZT_PAYLOAD_ROOM;
	bool compact = buf->event.kind == ZT_EVENT_DATA && !(buf->event.flags & ZT_EVENT_FLAG_IDENTITY);
	__u64 size = (compact ? ZT_EVENT_COMPACT_SIZE : sizeof(struct zt_event)) + payload_len;
	if (bpf_ringbuf_output(&zt_events, buf, size, zt_wakeup_flags(buf, size, flags)))
		zt_count(ZT_COUNTER_RINGBUF_DROPS);
	else
		zt_count(ZT_COUNTER_EVENTS_SUBMITTED);
}

static __always_inline void zt_on_connection(struct sock *sk, __u8 role, __u64 pid_tgid)
{
	__u64 sock_id = (__u64)sk;
	struct zt_conn_state state = {.role = role, .generation = zt_current_generation()};
	bpf_map_update_elem(&zt_conn_state, &sock_id, &state, BPF_ANY);
	struct zt_event_buffer *buf = zt_new_event(ZT_EVENT_CONNECTION, pid_tgid);
	if (!buf)
		return;
	buf->event.role = role;
	buf->event.sock_id = sock_id;
	zt_add_identity(&buf->event, sk);
	zt_submit(buf, 0, ZT_WAKE_BATCHED);
}

/* Copy state of one vectored read or write. */
struct zt_iovec_copy {
	__u8 *dst; /* the event's payload (zt_payload_of) */
	__u64 iov_ptr;
	__u64 count;
	__u64 total; /* bytes to copy at most (<= ZT_HEAD_MAX) */
	__u64 off;   /* bytes copied so far */
	__u64 first; /* iovecs already read (the loop starts after them) */
	__u64 skip;  /* bytes of the iovecs still to pass before copying */
};

/* Copies the bytes of one iovec after those copied so far; returns 1 to stop.
 * `max` (a constant) bounds the copy's length for the verifier: ZT_HEAD_MAX
 * for a copy at the payload's start, ZT_TAIL_LEN for a segment's end copied
 * after its first bytes. */
static __always_inline long zt_copy_iovec_data(struct zt_iovec_copy *c, const struct zt_user_iovec *iov,
					       const __u32 max)
{
	__u64 off = c->off;
	__u64 base = iov->base;
	__u64 len = iov->len;
	if (c->skip) {
		if (len <= c->skip) {
			c->skip -= len;
			return 0;
		}
		base += c->skip;
		len -= c->skip;
		c->skip = 0;
	}
	if (off >= c->total)
		return 1;
	if (len > c->total - off)
		len = c->total - off;
	if (off >= max || len > max)
		return 1;
	if (len && bpf_probe_read_user(&c->dst[off], len, (void *)base))
		return 1;
	c->off = off + len;
	return 0;
}

/* Copies iovec number `c->first + i`; returns 1 to stop. */
static __always_inline long zt_copy_one_iovec(__u64 i, struct zt_iovec_copy *c, const __u32 max)
{
	i += c->first;
	if (i >= c->count || c->off >= c->total)
		return 1;
	struct zt_user_iovec iov = {};
	if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(c->iov_ptr + i * sizeof(iov))))
		return 1;
	return zt_copy_iovec_data(c, &iov, max);
}

static long zt_copy_iovec_callback(__u64 i, void *ctx)
{
	return zt_copy_one_iovec(i, ctx, ZT_HEAD_MAX);
}

static long zt_copy_iovec_tail_callback(__u64 i, void *ctx)
{
	return zt_copy_one_iovec(i, ctx, ZT_TAIL_LEN);
}

#define ZT_WORD(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

/* Whether a segment's first four bytes begin an HTTP/1 request line (a
 * method), a status line, or the HTTP/2 preface. */
static __always_inline bool zt_starts_text_head(__u32 word)
{
	switch (word) {
	case ZT_WORD('G', 'E', 'T', ' '):
	case ZT_WORD('P', 'O', 'S', 'T'):
	case ZT_WORD('P', 'U', 'T', ' '):
	case ZT_WORD('H', 'E', 'A', 'D'):
	case ZT_WORD('D', 'E', 'L', 'E'):
	case ZT_WORD('P', 'A', 'T', 'C'):
	case ZT_WORD('O', 'P', 'T', 'I'):
	case ZT_WORD('C', 'O', 'N', 'N'):
	case ZT_WORD('T', 'R', 'A', 'C'):
	case ZT_WORD('H', 'T', 'T', 'P'):
	case ZT_WORD('P', 'R', 'I', ' '):
		return 1;
	}
	return 0;
}

/* Whether captured bytes begin an HTTP head: an HTTP/1 request or status
 * line, the HTTP/2 preface, or an HTTP/2 frame header of any type but DATA
 * (length below 64 KiB, reserved bit clear). A wrong yes costs a longer
 * copy, never a wrong span: the worker parses what it gets. The frame
 * header's shape is loose: about one random segment in 15,000 has it. */
static __always_inline bool zt_starts_head(const __u8 *p)
{
	if (p[0] == 0 && p[3] >= 1 && p[3] <= 9 && !(p[5] & 0x80))
		return 1;
	return zt_starts_text_head(ZT_WORD(p[0], p[1], p[2], p[3]));
}

/* The decimal number at p[1..] (at most 10 digits) of a RESP header, and in
 * `*crlf` the index of the line end after it; -1 when no line end follows
 * 1 to 10 digits. */
static __always_inline __s64 zt_resp_length(const __u8 *p, __u32 *crlf)
{
	__s64 n = 0;
#pragma unroll
	for (int i = 1; i <= 11; i++) {
		__u8 c = p[i];
		if (c >= '0' && c <= '9') {
			n = n * 10 + (c - '0');
			continue;
		}
		if (i == 1 || c != '\r' || p[i + 1] != '\n')
			return -1;
		*crlf = i;
		return n;
	}
	return -1;
}

/* Whether a segment longer than the copy starts with Redis commands or
 * replies that may be followed by more (a pipeline): a command array
 * (`*3\r\n$3\r\nSET`), an array reply, a status or error line (`+OK`,
 * `-ERR`), an integer, or a bulk string shorter than the segment. Copied as a
 * head, the pipeline's commands and replies past the first ZT_PAYLOAD_MAX
 * bytes keep their framing; a single bulk string as long as the segment (a
 * large value) is followed by its length instead. A wrong yes costs a longer
 * copy, never a wrong span. */
static __always_inline bool zt_starts_resp_pipeline(const __u8 *p, __u64 len, bool written)
{
	__u8 type = p[0];
	/* An array read is one reply (LRANGE, HGETALL): its elements are
	 * followed by their lengths, and a large one is not copied whole. */
	if (type == '*' && !written)
		return 0;
	if (type == '+' || type == '-')
		return p[1] >= 'A' && p[1] <= 'Z' && p[2] >= 'A' && p[2] <= 'Z';
	if (type == '$' && p[1] == '-')
		return p[2] == '1' && p[3] == '\r' && p[4] == '\n';
	if (type != '*' && type != '$' && type != ':')
		return 0;
	/* one digit loop for the three: the verifier walks it once */
	__u32 crlf = 0;
	__s64 n = zt_resp_length(p, &crlf);
	if (n < 0)
		return 0;
	if (type == ':')
		return 1;
	if (type == '$')
		return (__u64)n + crlf + 4 < len;
	switch (p[crlf + 2]) {
	case '$':
	case '*':
	case ':':
	case '+':
	case '-':
		return 1;
	}
	return 0;
}

/* Whether a segment longer than the copy starts with a PostgreSQL message of
 * a pipeline, followed by more, or with a query longer than the copy (a
 * simple Query: psycopg2's execute_batch joins 100 INSERTs in one, an ORM's
 * `IN (…)` list of ids grows past 512 bytes): a Parse or Bind of the extended protocol
 * (a driver's batch: psycopg 3's and asyncpg's executemany write hundreds of
 * Bind and Execute messages at once), or their replies ParseComplete and
 * BindComplete, or a short CommandComplete (the replies of a batch of
 * INSERTs). Copied as a head, the batch's messages past the first
 * ZT_PAYLOAD_MAX bytes keep their framing. A read of rows (DataRow) is not
 * one: its end is copied apart (zt_copy_tail). */
static __always_inline bool zt_starts_pg_pipeline(const __u8 *p, __u64 len)
{
	if (p[1] || p[2] > 0x0f)
		return 0;
	__u32 length = (__u32)p[2] << 16 | (__u32)p[3] << 8 | p[4];
	switch (p[0]) {
	case 'Q':
		return length >= 4; /* a long query: several statements, or one long one */
	case 'P':
	case 'B':
		return length >= 4 && length + 1 < len;
	case '1':
	case '2':
		/* ParseComplete and BindComplete, then CommandComplete: the replies
		 * of a batch of INSERTs; a RowDescription or DataRow after them is
		 * a result, whose end is copied apart (zt_copy_tail) */
		if (length != 4)
			return 0;
		if ((p[5] == '1' || p[5] == '2') && !p[6] && !p[7] && !p[8] && p[9] == 4)
			return p[10] == 'C' || p[10] == 'n';
		return p[5] == 'C' || p[5] == 'n';
	case 'C':
		return length >= 5 && length < 64;
	}
	return 0;
}

/* Whether a segment longer than the copy starts with a MySQL query longer
 * than the copy: COM_QUERY or COM_STMT_PREPARE, sequence 0 (an ORM's
 * `IN (…)` list of ids, a multi-row INSERT: pymysql's executemany writes
 * one). */
static __always_inline bool zt_starts_mysql_query(const __u8 *p)
{
	return p[3] == 0 && (p[4] == 0x03 || p[4] == 0x16) && (p[0] | p[1] | p[2]);
}

/* Whether a segment longer than the copy starts with a memcached text
 * command or reply: pymemcache's set_many writes its `set`s at once, a
 * get_many is one `get` line of many keys, and their replies are runs of
 * `STORED` or of `VALUE` lines. */
static __always_inline bool zt_starts_memcached(const __u8 *p)
{
	switch (ZT_WORD(p[0], p[1], p[2], p[3])) {
	case ZT_WORD('g', 'e', 't', ' '):
	case ZT_WORD('g', 'e', 't', 's'):
	case ZT_WORD('g', 'a', 't', ' '):
	case ZT_WORD('g', 'a', 't', 's'):
	case ZT_WORD('s', 'e', 't', ' '):
	case ZT_WORD('a', 'd', 'd', ' '):
	case ZT_WORD('c', 'a', 's', ' '):
	case ZT_WORD('r', 'e', 'p', 'l'):
	case ZT_WORD('a', 'p', 'p', 'e'):
	case ZT_WORD('p', 'r', 'e', 'p'):
	case ZT_WORD('d', 'e', 'l', 'e'):
	case ZT_WORD('i', 'n', 'c', 'r'):
	case ZT_WORD('d', 'e', 'c', 'r'):
	case ZT_WORD('t', 'o', 'u', 'c'):
	case ZT_WORD('V', 'A', 'L', 'U'):
	case ZT_WORD('S', 'T', 'O', 'R'):
	case ZT_WORD('N', 'O', 'T', '_'):
	case ZT_WORD('E', 'X', 'I', 'S'):
	case ZT_WORD('D', 'E', 'L', 'E'):
	case ZT_WORD('T', 'O', 'U', 'C'):
		return 1;
	}
	/* meta commands (`mg key v`) and their replies (`VA 5`, `HD`) */
	return (p[0] == 'm' && (p[1] == 'g' || p[1] == 's' || p[1] == 'd') && p[2] == ' ') ||
	       (p[0] == 'V' && p[1] == 'A' && p[2] == ' ') || (p[0] == 'H' && p[1] == 'D' && p[2] == '\r');
}

/* Whether a `len`-byte segment longer than the copy, whose first bytes are
 * the payload of the CPU's event buffer, starts a database pipeline. A
 * global function: the verifier checks its branches once, not along every
 * path of every program that copies a segment (inlined, they tripled the
 * programs' load time). */
__attribute__((noinline)) int zt_payload_starts_db_pipeline(__u64 len, __u64 direction)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	if (!buf || len <= ZT_PAYLOAD_MAX)
		return 0;
	const __u8 *p = zt_payload_of(buf);
	return zt_starts_resp_pipeline(p, len, direction == ZT_DIR_EGRESS) || zt_starts_pg_pipeline(p, len) ||
	       zt_starts_memcached(p) || zt_starts_mysql_query(p);
}

/* The head capture in force: at most ZT_HEAD_MAX; at or below ZT_PAYLOAD_MAX
 * no segment is copied as a head. */
static __always_inline __u64 zt_head_limit(void)
{
	return zt_settings.head_capture < ZT_HEAD_MAX ? zt_settings.head_capture : ZT_HEAD_MAX;
}

/* How much of a `len`-byte segment to copy when its first ZT_PAYLOAD_MAX
 * bytes (already in buf) start or `continue` a head, or start a database
 * `pipeline`: more than ZT_PAYLOAD_MAX, or 0 to keep what was copied. */
static __always_inline __u64 zt_head_copy_len(const __u8 *dst, __u64 len, bool continues, bool pipeline)
{
	if (len <= ZT_PAYLOAD_MAX || zt_settings.head_capture <= ZT_PAYLOAD_MAX ||
	    !(continues || pipeline))
		return 0;
	__u64 limit = zt_head_limit();
	return len < limit ? len : limit;
}

/* Copies the first `limit` (<= `max`, a constant: see zt_copy_iovec_data)
 * bytes of an iovec array after its first `skip`; returns the bytes copied. */
static __always_inline __u32 zt_copy_iovecs_bounded(__u8 *dst, __u64 iov_ptr, __u64 count, __u64 total,
						    __u64 limit, __u64 skip, const __u32 max)
{
	if (limit > max)
		limit = max;
	struct zt_iovec_copy c = {
		.dst = dst,
		.iov_ptr = iov_ptr,
		.count = count,
		.total = total > limit ? limit : total,
		.skip = skip,
	};
	/* The first two iovecs in one read (a server's head and body, as nginx
	 * writes them): the usual case needs no loop. */
	struct zt_user_iovec pair[2] = {};
	__u64 first = count < 2 ? count : 2;
	if (first && !bpf_probe_read_user(pair, first * sizeof(pair[0]), (void *)iov_ptr)) {
		c.first = first;
		if (zt_copy_iovec_data(&c, &pair[0], max) || (first == 2 && zt_copy_iovec_data(&c, &pair[1], max)) ||
		    first == count)
			return c.off;
	}
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_loop)) {
		bpf_loop(ZT_MAX_IOVECS, max == ZT_TAIL_LEN ? zt_copy_iovec_tail_callback : zt_copy_iovec_callback, &c,
			 0);
	} else {
		for (int i = 0; i < ZT_UNROLLED_IOVECS; i++) {
			if (zt_copy_one_iovec(i, &c, max))
				break;
		}
	}
	return c.off;
}

/* Copies the first `limit` (<= ZT_HEAD_MAX) bytes of an iovec array after
 * its first `skip`; returns the bytes copied. */
static __always_inline __u32 zt_copy_iovecs_upto(__u8 *dst, __u64 iov_ptr, __u64 count, __u64 total,
						 __u64 limit, __u64 skip)
{
	return zt_copy_iovecs_bounded(dst, iov_ptr, count, total, limit, skip, ZT_HEAD_MAX);
}

/* What zt_copy_iovecs and zt_copy_rest return above the payload length. */
#define ZT_REST_SPLIT (1ull << 32)    /* the segment goes on in records of its own */
#define ZT_REST_PIPELINE (1ull << 33) /* it starts a database pipeline */

/* Whether this kernel can split a segment (bpf_loop, 5.17): without it, a
 * batch longer than the head capture keeps one record and its end. */
static __always_inline bool zt_can_split(void)
{
	return bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_loop);
}

/* Copies the first ZT_PAYLOAD_MAX bytes of an iovec array, or more of a
 * segment that starts or `continues` a head or starts a database batch
 * (then from the start again: heads larger than ZT_PAYLOAD_MAX are rare).
 * Returns the bytes copied, with the ZT_REST_ bits of a batch (node-redis
 * writes its pipelines with writev, 16 KiB at a time). */
static __always_inline __u64 zt_copy_iovecs(__u8 *dst, __u64 iov_ptr, __u64 count, __u64 total, bool continues,
					     __u8 direction)
{
	__u32 copied = zt_copy_iovecs_upto(dst, iov_ptr, count, total, ZT_PAYLOAD_MAX, 0);
	if (copied < ZT_PAYLOAD_MAX)
		return copied;
	/* an HTTP head first: a response is not looked at as a database batch */
	bool http_head = zt_starts_head(dst);
	bool pipeline = !http_head && zt_payload_starts_db_pipeline(total, direction);
	__u64 head = zt_head_copy_len(dst, total, continues || http_head, pipeline);
	if (!head)
		return copied;
	__u32 got = zt_copy_iovecs_upto(dst, iov_ptr, count, total, head, 0);
	if (!pipeline)
		return got;
	return ZT_REST_PIPELINE | (head < total && got == head && zt_can_split() ? ZT_REST_SPLIT : 0) | got;
}

/* Copies `limit` bytes of an iovec array after its first `skip` into the
 * CPU's event buffer's payload (zt_payload_of); returns the bytes copied.
 * A global function: the split of a long vectored batch calls it for each
 * record, and the verifier checks it once. */
__attribute__((noinline)) __u32 zt_copy_iovec_piece_into_event(__u64 iov_ptr, __u64 count, __u64 limit, __u64 skip)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	if (!buf)
		return 0;
	return zt_copy_iovecs_upto(zt_payload_of(buf), iov_ptr, count, limit, limit, skip);
}

/* After the first `copied` bytes of the CPU's event buffer's payload, which
 * hold a `len`-byte iovec array's bytes up to `at`, the rest of the array
 * when at most ZT_TAIL_LEN bytes are left, else its last ZT_TAIL_LEN
 * (`event.flags` gets ZT_EVENT_FLAG_TAIL), as zt_copy_tail does for a
 * contiguous buffer: Node.js writes a chunked response's last chunk with
 * one writev after the data before it, and a vectored database batch's last
 * record ends with its segment's end. Returns the payload length. A global
 * function: the verifier checks the walk once. */
__attribute__((noinline)) __u32 zt_copy_iovec_tail_into_event(__u64 iov_ptr, __u64 count, __u64 len, __u64 at,
							      __u64 copied)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	if (!buf || at >= len || copied > ZT_HEAD_MAX)
		return copied;
	__u64 rest = len - at;
	__u64 want = rest < ZT_TAIL_LEN ? rest : ZT_TAIL_LEN;
	__u32 got = zt_copy_iovecs_bounded(zt_payload_of(buf) + copied, iov_ptr, count, want, want, len - want,
					   ZT_TAIL_LEN);
	if (got != want)
		return copied;
	if (rest > ZT_TAIL_LEN)
		buf->event.flags |= ZT_EVENT_FLAG_TAIL;
	return copied + got;
}

/* zt_copy_iovecs into the CPU's event buffer's payload (zt_payload_of). A
 * global function, checked once by the verifier rather than along every
 * path of the programs that call it. */
__attribute__((noinline)) __u64 zt_copy_iovecs_into_event(__u64 iov_ptr, __u64 count, __u64 total, __u64 continues,
							 __u64 direction)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	if (!buf)
		return 0;
	return zt_copy_iovecs(zt_payload_of(buf), iov_ptr, count, total, continues != 0, direction);
}

/* Frames walked at most in one segment of an HTTP/2 connection, and how far
 * into it (a bound the verifier needs to see the walk's states converge). */
#define ZT_H2_WALK_FRAMES 256
#define ZT_H2_WALK_MAX (1 << 20)
#define ZT_H2_UNROLLED_FRAMES 6

/* Where, in the CPU's event buffer's payload, the walk notes frame headers
 * before the copy's length is known: past the largest copy and the notes'
 * final place. The buffer is looked up where it is needed: a pointer kept in
 * the walk's stack frame would set apart, for the verifier, the paths with a
 * compact and a whole event header, and their states would multiply. */
#define ZT_H2_NOTES_SCRATCH (ZT_HEAD_MAX + 4096)

static __always_inline __u8 *zt_h2_notes_scratch(void)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	return buf ? buf->payload + ZT_H2_NOTES_SCRATCH : 0;
}

/* The count of the notes at zt_h2_notes_scratch() follows them. It lives in
 * the map, not in the walk's frame: a count the verifier knows would make
 * each turn of the walk a new state to explore. */
#define ZT_H2_NOTES_COUNT (ZT_H2_NOTES * ZT_H2_NOTE_SIZE)
/* Then the bytes of frame bodies gathered (two bytes, little-endian). */
#define ZT_H2_BODIES_LEN (ZT_H2_NOTES_COUNT + 1)

/* Where the bodies of noted frames are gathered, relative to the notes'
 * scratch: ZT_H2_BODIES_ROOM bytes, and the room a body's copy may take
 * past them as far as the verifier knows (an offset under the room, then up
 * to ZT_H2_BODY_MAX bytes). */
#define ZT_H2_BODIES_SCRATCH 2048
#define ZT_H2_BODIES_SPAN (ZT_H2_BODIES_ROOM + ZT_H2_BODY_MAX)

_Static_assert(ZT_H2_NOTES_SCRATCH >= ZT_PAYLOAD_ROOM, "the notes' scratch overlaps their final place");
_Static_assert(ZT_H2_BODIES_SCRATCH >= ZT_H2_BODIES_LEN + 2, "the bodies' scratch overlaps the notes'");
_Static_assert(ZT_H2_NOTES_SCRATCH + ZT_H2_BODIES_SCRATCH + ZT_H2_BODIES_SPAN < 2 * ZT_HEAD_MAX,
	       "the notes' scratch is past the buffer");
_Static_assert((ZT_H2_BODIES_ROOM & (ZT_H2_BODIES_ROOM - 1)) == 0, "the bodies' offset is a mask");
_Static_assert(ZT_H2_NOTES < 256 && (ZT_H2_NOTES & (ZT_H2_NOTES - 1)) == 0,
	       "the notes' count is one byte, and their index a mask");

/* Walk over the frame headers of one HTTP/2 segment. The headers of frames
 * past the first ZT_PAYLOAD_MAX bytes are noted in the event buffer (zt_h2_notes_scratch; ZT_H2_NOTES at most, ZT_H2_NOTE_SIZE
 * bytes each), so that the event can carry those the copy leaves out. */
struct zt_h2_walk {
	__u64 src;   /* user buffer */
	__u64 len;   /* bytes in the segment */
	__u64 limit; /* bytes that may be copied at most */
	__u64 off;   /* next frame header */
	__u64 need;  /* end of the last non-DATA frame that starts below the limit */
	bool header; /* the frame that ends at `off` is not DATA */
	bool ended;  /* the walk reached the segment's end on a frame boundary or inside a frame */
	__u32 want_body; /* vectored walks: the length of the body the frame just noted wants copied */
};

/* Copies the `len`-byte body of the frame just noted (`note`) from `body`
 * (user memory) into the bodies' scratch, if it fits, and marks the note. */
static __always_inline void zt_h2_note_body(__u8 *scratch, __u8 *note, __u64 body, __u64 len)
{
	__u32 used = scratch[ZT_H2_BODIES_LEN] | (__u32)scratch[ZT_H2_BODIES_LEN + 1] << 8;
	if (len > ZT_H2_BODY_MAX || used + len > ZT_H2_BODIES_ROOM)
		return;
	__u8 *bodies = scratch + ZT_H2_BODIES_SCRATCH;
	if (bpf_probe_read_user(bodies + (used & (ZT_H2_BODIES_ROOM - 1)), len, (void *)body))
		return;
	note[3] |= ZT_H2_NOTE_BODY >> 24;
	used += len;
	scratch[ZT_H2_BODIES_LEN] = used;
	scratch[ZT_H2_BODIES_LEN + 1] = used >> 8;
}

/* Takes the frame header `h` found at w->off, whose body, if wholly in the
 * segment and in one piece of user memory, is at `body` (else 0); returns 1
 * to stop. */
static __always_inline long zt_h2_frame(struct zt_h2_walk *w, const __u8 *h, __u64 body)
{
	__u64 off = w->off;
	if (h[3] > 9)
		return 1; /* not a frame header: the walk lost the boundaries */
	__u64 len = (__u64)h[0] << 16 | (__u64)h[1] << 8 | h[2];
	__u64 end = off + 9 + len;
	w->header = h[3] != 0;
	if (w->header && off < w->limit)
		w->need = end; /* HEADERS, CONTINUATION, RST_STREAM...: the decoder needs it whole */
	if (off + 9 > ZT_PAYLOAD_MAX) {
		/* Maybe past the copy: noted, so that the decoder keeps the frame
		 * boundaries and END_STREAM flags of what it does not see. */
		__u8 *scratch = zt_h2_notes_scratch();
		if (!scratch)
			return 1;
		__u8 n = scratch[ZT_H2_NOTES_COUNT];
		if (n >= ZT_H2_NOTES)
			return 1;
		__u8 *note = scratch + (n & (ZT_H2_NOTES - 1)) * ZT_H2_NOTE_SIZE;
		note[0] = off;
		note[1] = off >> 8;
		note[2] = off >> 16;
		note[3] = off >> 24;
		__builtin_memcpy(note + 4, h, 9);
		scratch[ZT_H2_NOTES_COUNT] = n + 1;
		/* A header block the copy cannot hold whole: its body too (a
		 * vectored walk copies it in its next steps, iovec by iovec). */
		if (w->header && end > w->limit && end <= w->len) {
			if (body)
				zt_h2_note_body(scratch, note, body, len);
			else if (len && len <= ZT_H2_BODY_MAX)
				w->want_body = len;
		}
	}
	w->off = end;
	return 0;
}

/* Whether the walk is over: at the segment's end (w->ended), or at a frame
 * header it cannot read (cut by the segment's end, or far into a huge
 * write: the boundaries are lost). */
static __always_inline bool zt_h2_walk_over(struct zt_h2_walk *w)
{
	__u64 off = w->off;
	if (off >= w->len) {
		w->ended = 1;
		return 1;
	}
	return off + 9 > w->len || off >= ZT_H2_WALK_MAX;
}

/* Reads the frame header at w->off of a contiguous segment; returns 1 to stop. */
static __always_inline long zt_h2_walk_one(__u64 i, struct zt_h2_walk *w)
{
	if (zt_h2_walk_over(w))
		return 1;
	__u8 h[9];
	if (bpf_probe_read_user(h, sizeof(h), (void *)(w->src + w->off)))
		return 1;
	return zt_h2_frame(w, h, w->src + w->off + 9);
}

/* Where, in the CPU's event buffer's payload, a walk keeps its state: past
 * the notes' and bodies' scratch. In the map, not on the stack, the state's
 * values are unknown to the verifier at each step, so that it checks a step
 * once instead of following each value through the loop (which took it
 * 0.37 s per program). A vectored walk's state starts with the same. */
#define ZT_H2_WALK_SCRATCH (ZT_H2_NOTES_SCRATCH + ZT_H2_BODIES_SCRATCH + ZT_H2_BODIES_SPAN)

static __always_inline struct zt_h2_walk *zt_h2_walk_state(void)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	return buf ? (struct zt_h2_walk *)(buf->payload + ZT_H2_WALK_SCRATCH) : 0;
}

static long zt_h2_walk_callback(__u64 i, void *ctx)
{
	struct zt_h2_walk *w = zt_h2_walk_state();
	return w ? zt_h2_walk_one(i, w) : 1;
}

/* Frames past this length are not followed into the next segment. */
#define ZT_H2_NEXT_MAX (1u << 24)

/* A walk starts at the direction's carry (zt_conn_state.h2_next): the
 * rest of a frame the last segment cut, maybe a header block's. */
static __always_inline void zt_h2_walk_start(struct zt_h2_walk *w, __u64 len, __u32 carried)
{
	__u64 limit = zt_head_limit();
	__u64 start = carried & ~ZT_H2_NEXT_HEADER;
	w->len = len;
	w->limit = limit;
	w->off = start;
	w->need = (carried & ZT_H2_NEXT_HEADER) ? start : 0;
	w->header = (carried & ZT_H2_NEXT_HEADER) != 0;
	w->ended = 0;
	__u8 *scratch = zt_h2_notes_scratch();
	if (scratch) {
		scratch[ZT_H2_NOTES_COUNT] = 0;
		scratch[ZT_H2_BODIES_LEN] = 0;
		scratch[ZT_H2_BODIES_LEN + 1] = 0;
	}
}

/* After the walk: sets the direction's carry `*next` for its next segment,
 * and returns how much of the segment to copy (see zt_h2_copy_len). */
static __always_inline __u64 zt_h2_walk_finish(struct zt_h2_walk *w, __u64 len, __u32 *next)
{
	__u32 carry = 0;
	if (w->ended && w->off > len && w->off - len < ZT_H2_NEXT_MAX)
		carry = (__u32)(w->off - len) | (w->header ? ZT_H2_NEXT_HEADER : 0);
	if (*next != carry)
		*next = carry;
	if (w->need <= ZT_PAYLOAD_MAX || w->limit <= ZT_PAYLOAD_MAX)
		return 0;
	__u64 copy = w->need < len ? w->need : len;
	return copy < w->limit ? copy : w->limit;
}

/* How much of an HTTP/2 segment to copy for its frames: up to the end of
 * its last non-DATA frame (a header block after a DATA frame, as servers
 * batch one stream's DATA with the next one's HEADERS and a gRPC reply's
 * message with its trailers; or the rest of a header block the last segment
 * cut, `*next`), within the head capture; 0 when that is within
 * ZT_PAYLOAD_MAX. DATA payloads are skipped by their length. `next` (the
 * direction's carry, see zt_conn_state.h2_next) is read first, then set for
 * the next segment. */
static __always_inline __u64 zt_h2_copy_len(struct zt_h2_walk *w, __u64 src, __u64 len, __u32 *next)
{
	w->src = src;
	zt_h2_walk_start(w, len, *next);
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_loop)) {
		bpf_loop(ZT_H2_WALK_FRAMES, zt_h2_walk_callback, 0, 0);
	} else {
		for (int i = 0; i < ZT_H2_UNROLLED_FRAMES; i++) {
			if (zt_h2_walk_one(i, w))
				break;
		}
	}
	return zt_h2_walk_finish(w, len, next);
}

/* The iovecs of a vectored segment walked as one stream of bytes: the
 * iovec loaded (its index, base and length, and where its first byte lies
 * in the stream), and the bytes of the frame header at w.off read so far
 * (a header may straddle two iovecs). */
struct zt_h2_iov_walk {
	struct zt_h2_walk w;
	__u64 iov_ptr;
	__u64 count;
	__u64 idx;
	__u64 base;
	__u64 iov_len;
	__u64 start;
	__u8 h[24];
	__u8 have;
	bool loaded;
	__u32 body_left; /* bytes of the noted frame's body still to copy */
	__u32 body_done; /* and those copied */
	__u64 body_pos;  /* where its next byte lies in the stream */
};

/* iovecs a vectored walk follows at most (the kernel takes up to 1,024: a
 * gRPC core writes up to 260), and the steps it takes at most: one per
 * iovec, and per frame one or two for its header and one or more for a
 * body copied. */
#define ZT_H2_WALK_IOVECS 1024
#define ZT_H2_IOV_WALK_STEPS (3 * ZT_H2_WALK_FRAMES + 300)

/* Copies what the loaded iovec holds, from `pos`, of the body of the frame
 * noted last; once whole, marks its note and counts its bytes. A body that
 * does not fit, or cannot be read, is given up: its note stays unmarked. */
static __always_inline long zt_h2_iov_body_step(struct zt_h2_iov_walk *v, __u64 pos)
{
	__u8 *scratch = zt_h2_notes_scratch();
	if (!scratch)
		return 1;
	__u32 used = scratch[ZT_H2_BODIES_LEN] | (__u32)scratch[ZT_H2_BODIES_LEN + 1] << 8;
	__u32 left = v->body_left;
	__u32 done = v->body_done;
	if (left > ZT_H2_BODY_MAX || used + done + left > ZT_H2_BODIES_ROOM) {
		v->body_left = 0;
		return 0;
	}
	__u64 n = v->iov_len - pos;
	if (n > left)
		n = left;
	__u8 *bodies = scratch + ZT_H2_BODIES_SCRATCH;
	if (n > ZT_H2_BODY_MAX || /* restated for the verifier */
	    bpf_probe_read_user(bodies + ((used + done) & (ZT_H2_BODIES_ROOM - 1)), n, (void *)(v->base + pos))) {
		v->body_left = 0;
		return 0;
	}
	v->body_pos += n;
	v->body_done = done + n;
	v->body_left = left - n;
	if (left > n)
		return 0;
	__u8 count = scratch[ZT_H2_NOTES_COUNT];
	if (!count || count > ZT_H2_NOTES)
		return 0;
	__u8 *note = scratch + ((count - 1) & (ZT_H2_NOTES - 1)) * ZT_H2_NOTE_SIZE;
	note[3] |= ZT_H2_NOTE_BODY >> 24;
	used += done + n;
	scratch[ZT_H2_BODIES_LEN] = used;
	scratch[ZT_H2_BODIES_LEN + 1] = used >> 8;
	return 0;
}

/* One step of a vectored walk: moves to the next iovec when the loaded one
 * ends before the next byte wanted, else copies what it holds of the body
 * being copied, or reads what it holds of the frame header at w.off.
 * Returns 1 to stop. */
static __always_inline long zt_h2_iov_step(struct zt_h2_iov_walk *v)
{
	struct zt_h2_walk *w = &v->w;
	bool body = v->body_left != 0;
	if (!body && zt_h2_walk_over(w))
		return 1;
	__u8 have = v->have;
	if (have > 8)
		return 1;
	__u64 at = body ? v->body_pos : w->off + have;
	if (!v->loaded || at - v->start >= v->iov_len) {
		__u64 idx = v->loaded ? v->idx + 1 : 0;
		if (idx >= v->count || idx >= ZT_H2_WALK_IOVECS)
			return 1;
		struct zt_user_iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(v->iov_ptr + idx * sizeof(iov))))
			return 1;
		if (v->loaded)
			v->start += v->iov_len;
		v->idx = idx;
		v->base = iov.base;
		v->iov_len = iov.len;
		v->loaded = 1;
		return 0;
	}
	if (at < v->start)
		return 1;
	__u64 pos = at - v->start;
	if (body)
		return zt_h2_iov_body_step(v, pos);
	__u64 n = 9 - have;
	if (n > v->iov_len - pos)
		n = v->iov_len - pos;
	if (n < 1 || n > 9) /* restated for the verifier */
		return 1;
	if (bpf_probe_read_user(&v->h[have & 15], n, (void *)(v->base + pos)))
		return 1;
	have += n;
	if (have < 9) {
		v->have = have;
		return 0;
	}
	v->have = 0;
	__u64 body_at = w->off + 9;
	w->want_body = 0;
	long stop = zt_h2_frame(w, v->h, 0);
	if (w->want_body) {
		v->body_left = w->want_body;
		v->body_done = 0;
		v->body_pos = body_at;
	}
	return stop;
}

/* A vectored walk's state: where a contiguous walk's is (it starts with it). */
#define ZT_H2_IOV_WALK_SCRATCH ZT_H2_WALK_SCRATCH
_Static_assert(ZT_H2_IOV_WALK_SCRATCH + sizeof(struct zt_h2_iov_walk) <= 2 * ZT_HEAD_MAX,
	       "the vectored walk's state is past the buffer");

static __always_inline struct zt_h2_iov_walk *zt_h2_iov_walk_state(void)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	return buf ? (struct zt_h2_iov_walk *)(buf->payload + ZT_H2_IOV_WALK_SCRATCH) : 0;
}

static long zt_h2_iov_walk_callback(__u64 i, void *ctx)
{
	struct zt_h2_iov_walk *v = zt_h2_iov_walk_state();
	return v ? zt_h2_iov_step(v) : 1;
}

/* Appends to the `copied` bytes at `dst` the bodies gathered, then the
 * noted frame headers (ZT_H2_NOTE_SIZE bytes each: the frame's offset in
 * the segment, little-endian u32 with ZT_H2_NOTE_BODY when its body is
 * among those, and its 9-byte header), then their count. Notes of
 * frames the copy holds are the decoder's to drop: sorting them out here
 * costs the verifier more than the bytes cost the ring. Returns the payload
 * length, or `copied` when nothing was appended. */
static __always_inline __u32 zt_h2_append_notes(__u8 *dst, __u32 copied)
{
	__u8 *notes = zt_h2_notes_scratch();
	if (!notes)
		return copied;
	__u32 n = notes[ZT_H2_NOTES_COUNT];
	__u32 used = notes[ZT_H2_BODIES_LEN] | (__u32)notes[ZT_H2_BODIES_LEN + 1] << 8;
	if (!n || n > ZT_H2_NOTES || copied > ZT_HEAD_MAX || used > ZT_H2_BODIES_ROOM)
		return copied;
	if (used && bpf_probe_read_kernel(dst + copied, used, notes + ZT_H2_BODIES_SCRATCH))
		return copied;
	__u32 at = copied + used;
	if (at > ZT_HEAD_MAX + ZT_H2_BODIES_ROOM) /* restated for the verifier */
		return copied;
	if (bpf_probe_read_kernel(dst + at, n * ZT_H2_NOTE_SIZE, notes))
		return copied;
	__u32 end = at + n * ZT_H2_NOTE_SIZE;
	if (end > ZT_HEAD_MAX + ZT_H2_BODIES_ROOM + ZT_H2_NOTES * ZT_H2_NOTE_SIZE) /* restated for the verifier */
		return copied;
	dst[end] = n;
	return end + 1;
}

/* The carry of an HTTP/2 connection's direction (zt_conn_state.h2_next), or
 * NULL for any other socket. */
static __always_inline __u32 *zt_h2_next(struct zt_conn_state *state, __u8 direction)
{
	if (!state || !(state->flags & ZT_CONN_H2))
		return 0;
	return &state->h2_next[direction == ZT_DIR_EGRESS ? 1 : 0];
}

/* The client preface's length: its first frame header follows. */
#define ZT_H2_PREFACE_LEN 24

/* The copy of `copy` (<= ZT_PAYLOAD_MAX) bytes at `dst` extended to `head`
 * bytes of `src` (0: not extended). Returns the bytes copied. */
static __always_inline __u32 zt_copy_more(__u8 *dst, __u64 src, __u32 copy, __u64 head)
{
	if (head <= ZT_PAYLOAD_MAX)
		return copy;
	__u64 extra = head - ZT_PAYLOAD_MAX;
	if (extra > ZT_HEAD_MAX - ZT_PAYLOAD_MAX) /* restated for the verifier */
		extra = ZT_HEAD_MAX - ZT_PAYLOAD_MAX;
	if (bpf_probe_read_user(&dst[ZT_PAYLOAD_MAX], extra, (void *)(src + ZT_PAYLOAD_MAX)))
		return copy;
	return ZT_PAYLOAD_MAX + extra;
}

/* Follows the frames of one segment of an HTTP/2 connection: a contiguous
 * `len`-byte buffer at `src` (`iov_count` 0) or `iov_count` iovecs at
 * `src`, of which `copy` bytes are in the CPU's event buffer's payload
 * (zt_payload_of). The walk starts at the direction's carry (the low 32 bits
 * of `carry_head`); the copy is extended to the end of the segment's last
 * header block within the head capture, or to `head` (the high 32 bits: the
 * head the first bytes start, contiguous buffers only) if longer, and the
 * headers of the frames it leaves out are appended. Returns the payload
 * length in the low 31 bits, ZT_H2_FOLLOWED_NOTES when notes end it, and the
 * direction's new carry in the high 32.
 *
 * A global function: the verifier checks it once, on its own, instead of
 * along every path of every program that copies a segment (which had
 * brought the socket programs near its limit of a million instructions). */
#define ZT_H2_FOLLOWED_NOTES (1u << 31)

__attribute__((noinline)) __u64 zt_h2_follow_frames(__u64 src, __u64 iov_count, __u64 len, __u64 carry_head,
						     __u64 copy)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	if (!buf || copy > ZT_HEAD_MAX)
		return copy; /* and no carry: nothing to trust */
	__u8 *dst = zt_payload_of(buf);
	__u32 next = carry_head;
	__u64 head = carry_head >> 32;
	if (!iov_count) {
		if (copy > ZT_PAYLOAD_MAX)
			return copy;
		struct zt_h2_walk *w = (struct zt_h2_walk *)(buf->payload + ZT_H2_WALK_SCRATCH);
		__builtin_memset(w, 0, sizeof(*w));
		__u64 frames = zt_h2_copy_len(w, src, len, &next);
		copy = zt_copy_more(dst, src, copy, frames > head ? frames : head);
	} else {
		if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_loop))
			return copy; /* not walked: no carry to trust */
		struct zt_h2_iov_walk *v = (struct zt_h2_iov_walk *)(buf->payload + ZT_H2_IOV_WALK_SCRATCH);
		__builtin_memset(v, 0, sizeof(*v));
		v->iov_ptr = src;
		v->count = iov_count;
		zt_h2_walk_start(&v->w, len, next);
		bpf_loop(ZT_H2_IOV_WALK_STEPS, zt_h2_iov_walk_callback, 0, 0);
		__u64 frames = zt_h2_walk_finish(&v->w, len, &next);
		if (frames > copy)
			copy = zt_copy_iovecs_upto(dst, src, iov_count, len, frames, 0);
	}
	__u32 total = zt_h2_append_notes(dst, copy);
	return (__u64)next << 32 | (total != copy ? ZT_H2_FOLLOWED_NOTES : 0) | total;
}

/* The carry of the direction of a segment whose `copied` first bytes are at
 * `dst`, when its socket carries HTTP/2: marked before, or marked now, as the
 * segment starts with the client preface (written by the client, read by the
 * server, or h2c after an upgrade; its frames are followed from the
 * preface's end). NULL for any other segment. */
static __always_inline __u32 *zt_h2_segment(struct zt_conn_state *state, __u8 direction, const __u8 *dst,
					     __u32 copied, __u64 len)
{
	if (!state)
		return 0;
	if (!(state->flags & ZT_CONN_H2)) {
		if (copied < 4 || ZT_WORD(dst[0], dst[1], dst[2], dst[3]) != ZT_WORD('P', 'R', 'I', ' '))
			return 0;
		state->flags |= ZT_CONN_H2;
		__u32 *next = zt_h2_next(state, direction);
		if (!next)
			return 0;
		/* The preface alone: the frames start with the next segment. */
		*next = len > ZT_H2_PREFACE_LEN ? ZT_H2_PREFACE_LEN : 0;
		return len > ZT_H2_PREFACE_LEN ? next : 0;
	}
	return zt_h2_next(state, direction);
}

/* Follows an HTTP/2 segment's frames (zt_h2_follow_frames) and keeps the
 * direction's carry `*next`; `event_flags` gets ZT_EVENT_FLAG_H2_NOTES when
 * frame headers follow the copy. Returns the payload length. */
static __always_inline __u32 zt_h2_copy(__u32 *next, __u64 src, __u64 iov_count, __u64 len, __u64 head,
					__u32 copy, __u8 *event_flags)
{
	__u64 followed = zt_h2_follow_frames(src, iov_count, len, (__u64)*next | head << 32, copy);
	__u32 carry = followed >> 32;
	if (*next != carry)
		*next = carry;
	if (followed & ZT_H2_FOLLOWED_NOTES)
		*event_flags |= ZT_EVENT_FLAG_H2_NOTES;
	return followed & (ZT_H2_FOLLOWED_NOTES - 1);
}

/* After the `copied` bytes of a `len`-byte user buffer at `src`, the rest of
 * it when at most ZT_TAIL_LEN bytes are left, else its last ZT_TAIL_LEN
 * bytes (`event_flags` gets ZT_EVENT_FLAG_TAIL): a database client reads a
 * large result in large reads, and the result's end (PostgreSQL's row count
 * and ReadyForQuery) is their last bytes. Returns the payload length. */
static __always_inline __u32 zt_copy_tail(__u8 *dst, __u64 src, __u64 len, __u32 copied, __u8 *event_flags)
{
	if (len <= copied || copied > ZT_HEAD_MAX)
		return copied;
	__u64 rest = len - copied;
	if (rest <= ZT_TAIL_LEN) {
		if (bpf_probe_read_user(dst + copied, rest, (void *)(src + copied)))
			return copied;
		return copied + rest;
	}
	if (bpf_probe_read_user(dst + copied, ZT_TAIL_LEN, (void *)(src + len - ZT_TAIL_LEN)))
		return copied;
	*event_flags |= ZT_EVENT_FLAG_TAIL;
	return copied + ZT_TAIL_LEN;
}

/* The copy of a `len`-byte user buffer at `src` that is no HTTP/2
 * connection's, whose first `copy` bytes are the payload of the CPU's event
 * buffer: extended when they start or `continues` a head, or start a
 * database pipeline; a pipeline longer than the head capture is whole and
 * goes on in records of its own (ZT_REST_SPLIT, zt_submit_split_rest), any
 * other segment gets its end (zt_copy_tail). Returns the payload length
 * with the ZT_REST_ bits. A global function: the verifier checks its
 * branches once, not along every path of every program that copies a
 * segment (inlined, they tripled the programs' load time). */
__attribute__((noinline)) __u64 zt_copy_rest(__u64 src, __u64 len, __u64 copy, __u64 continues, __u64 direction)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	if (!buf || copy > ZT_PAYLOAD_MAX)
		return 0;
	__u8 *dst = zt_payload_of(buf);
	/* an HTTP head first: a request is not looked at as a database batch */
	bool http_head = zt_starts_head(dst);
	bool pipeline = !http_head && copy == ZT_PAYLOAD_MAX && zt_payload_starts_db_pipeline(len, direction);
	__u64 head = zt_head_copy_len(dst, len, continues || http_head, pipeline);
	__u32 copied = zt_copy_more(dst, src, copy, head);
	__u64 bits = pipeline ? ZT_REST_PIPELINE : 0;
	if (pipeline && head && head < len && copied == head && zt_can_split())
		return bits | ZT_REST_SPLIT | copied;
	return bits | zt_copy_tail(dst, src, len, copied, &buf->event.flags);
}

/* Copies the first ZT_PAYLOAD_MAX bytes of a `len`-byte user buffer, or more
 * when they start or `continues` a head, or, on an HTTP/2 connection
 * (`state`'s mark, or the client preface), hold a header block after DATA
 * or the rest of one the last segment cut; on an HTTP/2 connection, the
 * headers of the frames the copy leaves out follow it, and `event_flags`
 * gets ZT_EVENT_FLAG_H2_NOTES; on any other, zt_copy_rest decides the rest:
 * `*split_at` is then where the record ends when the segment goes on in
 * records of its own, and `*pipeline` whether it starts a database
 * pipeline. Returns the payload length. */
static __always_inline __u32 zt_copy_buffer(__u8 *dst, __u64 src, __u64 len, bool continues,
					    struct zt_conn_state *state, __u8 direction, __u8 *event_flags,
					    __u64 *split_at, bool *pipeline)
{
	__u32 copy = len > ZT_PAYLOAD_MAX ? ZT_PAYLOAD_MAX : len;
	if (copy > ZT_PAYLOAD_MAX) /* restated for the verifier */
		copy = ZT_PAYLOAD_MAX;
	if (bpf_probe_read_user(dst, copy, (void *)src)) {
		__u32 *next = zt_h2_next(state, direction);
		if (next && *next)
			*next = 0;
		return 0;
	}
	__u32 *next = zt_h2_segment(state, direction, dst, copy, len);
	if (next)
		return zt_h2_copy(next, src, 0, len, zt_head_copy_len(dst, len, continues || zt_starts_head(dst), 0),
				  copy, event_flags);
	if (len <= copy)
		return copy; /* whole: the usual HTTP/1 request, no call */
	__u64 rest = zt_copy_rest(src, len, copy, continues, direction);
	if (rest & ZT_REST_SPLIT)
		*split_at = (__u32)rest;
	*pipeline = (rest & ZT_REST_PIPELINE) != 0;
	return (__u32)rest;
}

/* Records a database pipeline longer than the head capture is sent in, the
 * last with the segment's end (zt_copy_tail): 256 KiB whole with the default
 * capture (asyncpg writes a batch of 2,000 INSERTs' Bind and Execute messages
 * in one 130 KiB write; redis.asyncio 3,500 SETs in one of 148 KiB). */
#define ZT_SPLIT_RECORDS 16

/* Where a split segment's records stand (zt_split_record). */
struct zt_split {
	__u64 src;
	__u64 iov_count;
	__u64 off;   /* bytes of the segment sent so far */
	__u64 len;   /* the segment's length */
	__u64 piece; /* bytes of each record */
};

/* Sends record `i + 1` of a split segment; returns 1 to stop. A bpf_loop
 * callback: the verifier checks one record, not ZT_SPLIT_RECORDS of them
 * unrolled (which doubled the copying programs' load time). */
static long zt_split_record(__u64 i, void *ctx)
{
	struct zt_split *sp = ctx;
	struct zt_event_buffer *buf = zt_cpu_buffer();
	if (!buf || sp->off >= sp->len)
		return 1;
	__u64 rest = sp->len - sp->off;
	bool last = i + 2 == ZT_SPLIT_RECORDS;
	__u32 copy = rest < sp->piece ? rest : sp->piece;
	if (copy > ZT_HEAD_MAX) /* restated for the verifier */
		copy = ZT_HEAD_MAX;
	buf->event.flags &= ~ZT_EVENT_FLAG_TAIL;
	__u8 *dst = zt_payload_of(buf);
	if (sp->iov_count) {
		copy = zt_copy_iovec_piece_into_event(sp->src, sp->iov_count, copy, sp->off);
		if (!copy)
			return 1;
		buf->event.bytes = last ? rest : copy;
		if (last)
			copy = zt_copy_iovec_tail_into_event(sp->src, sp->iov_count, sp->len, sp->off + copy, copy);
	} else {
		if (bpf_probe_read_user(dst, copy, (void *)(sp->src + sp->off)))
			return 1;
		buf->event.bytes = last ? rest : copy;
		if (last)
			copy = zt_copy_tail(dst, sp->src + sp->off, rest, copy, &buf->event.flags);
	}
	buf->event.captured_len = copy;
	zt_submit(buf, copy, ZT_WAKE_BATCHED);
	sp->off += buf->event.bytes;
	return 0;
}

/* Sends the rest of a `len`-byte segment at `src` whose first `off` bytes
 * went in the record the CPU's event buffer holds (zt_copy_buffer's
 * `split_at`), as if the program had written or read it in pieces of the
 * head capture: each record whole, up to ZT_SPLIT_RECORDS in all, the last
 * with the segment's end. The records keep the first one's header, without
 * the identity it carried. A global function: the verifier checks it once. */
__attribute__((noinline)) int zt_submit_split_rest(__u64 src, __u64 iov_count, __u64 off, __u64 len)
{
	struct zt_event_buffer *buf = zt_cpu_buffer();
	if (!buf || off < ZT_PAYLOAD_MAX || off > ZT_HEAD_MAX || !zt_can_split())
		return 0;
	buf->event.flags &= ~(ZT_EVENT_FLAG_IDENTITY | ZT_EVENT_FLAG_TAIL);
	struct zt_split sp = {.src = src, .iov_count = iov_count, .off = off, .len = len, .piece = off};
	bpf_loop(ZT_SPLIT_RECORDS - 1, zt_split_record, &sp, 0);
	return 0;
}

/* Submits the data record the CPU's event buffer holds, `copy` bytes of a
 * `len`-byte segment at `src`, and, when zt_copy_buffer split the segment
 * at `split_at`, the records of the rest. */
static __always_inline void zt_submit_segment(struct zt_event_buffer *buf, __u64 src, __u64 iov_count, __u64 len,
					      __u32 copy, __u64 split_at)
{
	buf->event.bytes = split_at ? split_at : len;
	buf->event.captured_len = copy;
	zt_submit(buf, copy, ZT_WAKE_BATCHED);
	if (split_at)
		zt_submit_split_rest(src, iov_count, split_at, len);
}

/* Copies a vectored segment (zt_copy_iovecs) and, when it is not split,
 * its end (zt_copy_iovec_tail_into_event), or, on an HTTP/2 connection,
 * follows its frames as zt_copy_buffer does a contiguous one's: a gRPC core
 * writes a connection's first flight, and each call's headers, message and
 * trailers, with one sendmsg. Returns the payload length. */
static __always_inline __u32 zt_copy_vectored(__u8 *dst, __u64 iov_ptr, __u64 count, __u64 len, bool continues,
					      struct zt_conn_state *state, __u8 direction, __u8 *event_flags,
					      __u64 *split_at, bool *pipeline)
{
	__u64 got = zt_copy_iovecs_into_event(iov_ptr, count, len, continues, direction);
	__u32 copy = got;
	if (copy > ZT_HEAD_MAX) /* restated for the verifier */
		return 0;
	__u32 *next = zt_h2_segment(state, direction, dst, copy, len);
	if (!next || !count) {
		if (got & ZT_REST_SPLIT)
			*split_at = copy;
		else if (count && copy < len)
			copy = zt_copy_iovec_tail_into_event(iov_ptr, count, len, copy, copy);
		*pipeline = (got & ZT_REST_PIPELINE) != 0;
		return copy;
	}
	return zt_h2_copy(next, iov_ptr, count, len, 0, copy, event_flags);
}

/* Following segments copied as head after one that leaves a head open. */
#define ZT_HEAD_CONTINUATIONS 2

/* Read buffers and write buffers larger than this hold a whole head. */
#define ZT_HEAD_BUFFER_MAX 8192

/* Whether the head in a segment may go on in the next one of the same
 * direction: a read that filled the reader's buffer (nginx reads 1 KiB
 * first), a write that moved less than asked, or a whole number of KiB
 * (buffered writers flush full buffers: Go 4 KiB, Java 8 KiB). `asked` is 0
 * when unknown (vectored I/O). A wrong yes costs two longer copies. */
static __always_inline bool zt_head_may_continue(__u8 direction, __u64 asked, __u64 moved)
{
	if (moved > ZT_HEAD_BUFFER_MAX)
		return 0;
	if (direction == ZT_DIR_INGRESS)
		return asked && moved == asked;
	return (asked && moved < asked) || (moved & 1023) == 0;
}

/* A direction's head count with this bit set counts the segments of a
 * database pipeline still copied as head (ZT_PIPELINE_CONTINUATIONS at
 * most): a server sends a batch's replies in reads that start amid a
 * message (PostgreSQL in 8 KiB pieces), a client may write a long batch in
 * pieces (redis-py 6,000 bytes at a time). */
#define ZT_PIPELINE_CONTINUES 0x80
#define ZT_PIPELINE_CONTINUATIONS 63

/* Counts down the segments still copied as head for one direction of a
 * socket: armed by a segment that starts a head and may continue, kept by a
 * continuation that may continue again, cleared otherwise. A segment longer
 * than the copy that starts a database pipeline arms the pipeline's count,
 * which each longer segment after it counts down; a short one ends it. */
static __always_inline void zt_track_head(__u8 *left, const __u8 *dst, __u32 copied, __u64 len, bool pipeline,
					  bool may_continue)
{
	__u8 next = 0;
	if (pipeline) {
		next = ZT_PIPELINE_CONTINUES | ZT_PIPELINE_CONTINUATIONS;
	} else if (*left & ZT_PIPELINE_CONTINUES) {
		if (len > ZT_PAYLOAD_MAX && (*left & ~ZT_PIPELINE_CONTINUES) > 1)
			next = *left - 1;
	} else if (may_continue) {
		if (copied >= 6 && zt_starts_head(dst))
			next = ZT_HEAD_CONTINUATIONS;
		else if (*left)
			next = *left - 1;
	}
	if (*left != next)
		*left = next;
}

/* Where a TLS socket's plaintext in `direction` counts the segments that
 * follow a database batch (zt_track_head's pipeline count): its head count,
 * free on a TLS socket, whose socket bytes are not copied. Only batches are
 * followed there (zt_track_head is told no head may continue): the
 * library's reads and writes are not the socket's. NULL without state. */
static __always_inline __u8 *zt_tls_batch_count(struct zt_conn_state *state, __u8 direction)
{
	if (!state)
		return 0;
	return direction == ZT_DIR_INGRESS ? &state->head_reads : &state->head_writes;
}

/* Marks a socket as carrying TLS records (keeps its role and generation). */
static __always_inline void zt_mark_tls_socket(__u64 sock_id)
{
	struct zt_conn_state *state = bpf_map_lookup_elem(&zt_conn_state, &sock_id);
	if (state) {
		zt_add_conn_flags(state, ZT_CONN_TLS);
		return;
	}
	/* A closed socket's state would outlive it (zt_socket_closed). */
	if (zt_socket_closed((struct sock *)sock_id))
		return;
	/* Opened before the agent: generation 0 was never sent, so the first
	 * plaintext event carries the identity. */
	struct zt_conn_state fresh;
	zt_clear_conn_state(&fresh);
	fresh.flags = ZT_CONN_TLS;
	bpf_map_update_elem(&zt_conn_state, &sock_id, &fresh, BPF_NOEXIST);
}

/* Socket I/O of a process whose TLS library is hooked (ZT_PID_TLS: only those
 * pay for this). `state` is the socket's zt_conn_state entry, if known, or
 * its own storage (ZT_CONN_IN_SOCKET), which holds no TLS mark. Returns true
 * when the bytes are TLS records, which are then not sent: the library hooks
 * send the plaintext. */
static __always_inline bool zt_tls_socket_io(__u64 pid_tgid, __u64 sock_id, const struct zt_conn_state *state)
{
	struct zt_tls_call *call = bpf_map_lookup_elem(&zt_tls_calls, &pid_tgid);
	if (call) {
		/* The library itself reads or writes: this is its socket. Its
		 * plaintext path looks the socket up by address. */
		call->sock_id = sock_id;
		zt_mark_tls_socket(sock_id);
		return 1;
	}
	/* Stored in place: an update of an LRU map pops and pushes a node (about
	 * a tenth of the programs' time when every segment of a busy thread did it). */
	__u64 *last = bpf_map_lookup_elem(&zt_tls_last_socket, &pid_tgid);
	if (last)
		*last = sock_id;
	else
		bpf_map_update_elem(&zt_tls_last_socket, &pid_tgid, &sock_id, BPF_ANY);
	if (!state || !(state->flags & ZT_CONN_IN_SOCKET))
		return state && (state->flags & ZT_CONN_TLS);
	/* The TLS marks are kept by address (zt_mark_tls_socket, the Go hooks). */
	struct zt_conn_state *by_address = bpf_map_lookup_elem(&zt_conn_state, &sock_id);
	return by_address && (by_address->flags & ZT_CONN_TLS);
}

/* Whether captured bytes start an HTTP/1 request or status line that no TLS
 * can follow on the same socket: any method but CONNECT (a proxy tunnel,
 * whose client goes on in TLS), or a status line. Text only: the HTTP/2
 * frame header's loose shape (zt_starts_head) turns up in encrypted bytes,
 * and a TLS socket wrongly marked plain would lose its plaintext. */
static __always_inline bool zt_starts_plain_http(const __u8 *p, __u32 copied)
{
	if (copied < 4)
		return 0;
	__u32 word = ZT_WORD(p[0], p[1], p[2], p[3]);
	return word != ZT_WORD('C', 'O', 'N', 'N') && word != ZT_WORD('P', 'R', 'I', ' ') && zt_starts_text_head(word);
}

/* Counts a data record of a socket whose state is kept by address (the
 * socket backend's young sockets), and moves the state into the socket's
 * storage once the connection proves long (ZT_YOUNG_TURNS). Returns where the
 * state is now. The address entry stays for a client socket or a TLS one:
 * the library hooks find those by address. */
static __always_inline struct zt_conn_state *zt_count_young_record(struct sock *sk, __u64 sock_id,
								   struct zt_conn_state *state, __u8 direction)
{
	if (state->young_records && state->young_direction != direction)
		state->young_turns++;
	state->young_direction = direction;
	state->young_records++;
	if (state->young_turns < ZT_YOUNG_TURNS && state->young_records < ZT_YOUNG_RECORDS_MAX)
		return state;
	struct zt_conn_state moved = *state;
	moved.flags |= ZT_CONN_IN_SOCKET;
	struct zt_conn_state *stored =
		bpf_sk_storage_get(&zt_conn_storage, sk, &moved, BPF_SK_STORAGE_GET_F_CREATE);
	if (!stored)
		return state; /* no memory: it stays by address, and is counted again */
	if (moved.role != ZT_ROLE_CLIENT && !(moved.flags & ZT_CONN_TLS))
		bpf_map_delete_elem(&zt_conn_state, &sock_id);
	return stored;
}

static __always_inline void zt_on_data(long nr, struct pt_regs *regs, long ret, __u64 pid_tgid,
				       __u32 pid_flags, struct sock *expected)
{
	struct sock *sk;
	if (expected && bpf_rdonly_cast)
		sk = zt_user_tcp_sock(expected); /* not TCP, or a kernel socket's I/O */
	else if (!(sk = zt_tcp_sock_of_fd(regs->di)) || (expected && sk != expected))
		return; /* not TCP, or the socket tracepoint fired for another socket */
	if (!sk)
		return;

	__u8 direction = ZT_DIR_INGRESS;
	__u64 payload = 0;
	__u64 iov_ptr = 0, iov_count = 0;
	switch (nr) {
	case ZT_NR_write:
	case ZT_NR_sendto:
		direction = ZT_DIR_EGRESS;
		/* fall through */
	case ZT_NR_read:
	case ZT_NR_recvfrom:
		payload = regs->si;
		break;
	case ZT_NR_writev:
		direction = ZT_DIR_EGRESS;
		/* fall through */
	case ZT_NR_readv:
		iov_ptr = regs->si;
		iov_count = regs->dx;
		break;
	case ZT_NR_sendmsg:
		direction = ZT_DIR_EGRESS;
		/* fall through */
	case ZT_NR_recvmsg: {
		struct zt_user_msghdr msg = {};
		if (!bpf_probe_read_user(&msg, sizeof(msg), (void *)regs->si)) {
			iov_ptr = msg.msg_iov;
			iov_count = msg.msg_iovlen;
		}
		break;
	}
	case ZT_NR_sendfile:
		direction = ZT_DIR_EGRESS; /* file contents: counted, not copied */
		break;
	default:
		return;
	}

	__u64 sock_id = (__u64)sk;
	/* The socket backend's socket is trusted: its state is in the socket,
	 * or still by address while the socket is young (zt_count_young_record). */
	struct zt_conn_state *known = expected ? bpf_sk_storage_get(&zt_conn_storage, expected, 0, 0) : 0;
	if (!known)
		known = bpf_map_lookup_elem(&zt_conn_state, &sock_id);
	bool plain = known && (known->flags & ZT_CONN_PLAIN);
	__u32 tgid = pid_tgid >> 32;
	/* The bitmap said yes, but the filter is the authority (a bit may
	 * outlive an exit until the worker clears it; the worker may set bits):
	 * its hash is read unless this very process marked the socket plain,
	 * after the filter confirmed it. */
	if (pid_flags == ZT_PID_FLAGS_UNREAD && !(plain && known->plain_tgid == tgid)) {
		__u32 *flags = bpf_map_lookup_elem(&zt_pid_filter, &tgid);
		if (!flags)
			return;
		pid_flags = *flags;
	}
	/* Processes with TLS hooks: a socket may carry TLS records, unless it is
	 * known to carry plain HTTP (the common case for a server linking libssl). */
	bool tls_checked = (pid_flags & ZT_PID_TLS) && !plain;
	if (tls_checked && zt_tls_socket_io(pid_tgid, sock_id, known))
		return; /* TLS records: the plaintext comes from the library hooks */

	struct zt_event_buffer *buf = zt_new_event(ZT_EVENT_DATA, pid_tgid);
	if (!buf)
		return;
	struct zt_event *e = &buf->event;
	e->tid = zt_thread_of(tgid, (__u32)pid_tgid, regs->r14);
	bool closed = 0;
	struct zt_conn_state *state = zt_describe_known_socket(e, sk, known, 0, &closed);
	if (state && expected && !(state->flags & ZT_CONN_IN_SOCKET))
		state = zt_count_young_record(expected, sock_id, state, direction);
	if (closed || zt_settings.floor == ZT_FLOOR_SOCKET)
		return;
	e->direction = direction;
	e->sock_id = sock_id;
	e->bytes = ret;
	__u8 *dst = zt_payload_of(buf);

	__u8 *head_left = 0;
	if (state)
		head_left = direction == ZT_DIR_INGRESS ? &state->head_reads : &state->head_writes;
	bool continues = head_left && *head_left;
	__u32 copy = 0;
	__u64 split_at = 0;
	bool pipeline = 0;
	if (iov_ptr)
		copy = zt_copy_vectored(dst, iov_ptr, iov_count, ret, continues, state, direction,
					&buf->event.flags, &split_at, &pipeline);
	else if (payload)
		copy = zt_copy_buffer(dst, payload, ret, continues, state, direction, &buf->event.flags,
				      &split_at, &pipeline);
	/* Any process: the mark also spares its later segments the filter's hash. */
	if (state && !(state->flags & ZT_CONN_PLAIN) && zt_starts_plain_http(dst, copy)) {
		state->plain_tgid = tgid;
		state->flags |= ZT_CONN_PLAIN;
	}
	if (head_left) {
		/* read, write, recvfrom and sendto: the size asked for is the third argument */
		__u64 asked = payload ? regs->dx : 0;
		zt_track_head(head_left, dst, copy, ret, pipeline, zt_head_may_continue(direction, asked, ret));
	}
	if (zt_settings.floor == ZT_FLOOR_COPY ||
	    (zt_settings.floor == ZT_FLOOR_WRITES && direction == ZT_DIR_INGRESS))
		return;
	zt_submit_segment(buf, iov_ptr ? iov_ptr : payload, iov_ptr ? iov_count : 0, ret, copy, split_at);
}

/* A process that listens on a port a selector names (the worker wrote its
 * key in the pid filter) is put in the filter now, pending the worker's
 * decision: a server asked for its first request as soon as it listens is
 * captured from it. */
static __always_inline void zt_listen_pending(__u32 tgid, __u16 port)
{
	__u32 port_key = ZT_PID_FILTER_PORT_KEYS | port;
	if (!bpf_map_lookup_elem(&zt_pid_filter, &port_key))
		return;
	__u32 pending = ZT_PID_EXEC_PENDING;
	if (!bpf_map_update_elem(&zt_pid_filter, &tgid, &pending, BPF_NOEXIST))
		zt_set_pid_bit(tgid);
}

/* A listen event: the socket's identity, after putting its process in the
 * filter if its port is one a selector names. */
static __always_inline void zt_report_listen(struct sock *sk, __u64 pid_tgid)
{
	struct zt_event_buffer *buf = zt_new_event(ZT_EVENT_LISTEN, pid_tgid);
	if (!buf)
		return;
	buf->event.sock_id = (__u64)sk;
	zt_add_identity(&buf->event, sk);
	zt_listen_pending(pid_tgid >> 32, buf->event.tuple.local_port);
	zt_submit(buf, 0, ZT_WAKE_DISCOVERY);
}

static __always_inline void zt_on_listen(struct pt_regs *regs, __u64 pid_tgid)
{
	struct sock *sk = zt_tcp_sock_of_fd(regs->di);
	if (!sk)
		return;
	zt_report_listen(sk, pid_tgid);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(zt_sys_exit, struct pt_regs *regs, long ret)
{
	if (zt_settings.floor == ZT_FLOOR_HOOKS)
		return 0;
	long nr = regs->orig_ax;
	switch (nr) {
	case ZT_NR_read: case ZT_NR_write: case ZT_NR_readv: case ZT_NR_writev:
	case ZT_NR_sendto: case ZT_NR_recvfrom: case ZT_NR_sendmsg: case ZT_NR_recvmsg:
	case ZT_NR_sendfile: case ZT_NR_accept: case ZT_NR_accept4: case ZT_NR_connect:
	case ZT_NR_listen:
		break;
	default:
		return 0;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (nr == ZT_NR_listen) {
		/* Every process: discovery needs to see new servers. */
		if (ret == 0)
			zt_on_listen(regs, pid_tgid);
		return 0;
	}
	__u32 tgid = pid_tgid >> 32;
	__u32 *pid_flags = zt_pid_flags(tgid);
	if (!pid_flags || zt_settings.floor == ZT_FLOOR_FILTER)
		return 0;

	if (nr == ZT_NR_accept || nr == ZT_NR_accept4) {
		struct sock *sk = ret >= 0 ? zt_tcp_sock_of_fd(ret) : 0;
		if (sk)
			zt_on_connection(sk, ZT_ROLE_SERVER, pid_tgid);
		return 0;
	}
	if (nr == ZT_NR_connect) {
		struct sock *sk = (ret == 0 || ret == -ZT_EINPROGRESS) ? zt_tcp_sock_of_fd(regs->di) : 0;
		if (sk)
			zt_on_connection(sk, ZT_ROLE_CLIENT, pid_tgid);
		return 0;
	}
	if (ret > 0)
		zt_on_data(nr, regs, ret, pid_tgid, *pid_flags, 0);
	return 0;
}

/* Where the saved user registers sit in a task's kernel stack, as an offset
 * from its base (task_pt_regs: the top of the stack, less the arch's padding
 * and the registers, the same for every task of a kernel): learnt from
 * bpf_task_pt_regs at the first data event, 0 until then. Each helper call
 * costs its return (a return thunk on kernels with SRSO or retbleed
 * mitigations): the two calls this replaces were about 7 % of the data
 * programs' time (bench/bpf_profile.sh). Global data, which the worker never
 * receives: a wrong offset cannot be planted from there. */
__u64 zt_regs_offset;
#define ZT_KERNEL_STACK_MAX (64 * 1024)

/* The current task's saved user registers (the syscall's arguments). */
static __always_inline struct pt_regs *zt_current_regs(struct task_struct *task)
{
	__u64 stack = (__u64)task->stack;
	__u64 offset = zt_regs_offset;
	if (offset && bpf_rdonly_cast)
		return bpf_rdonly_cast((void *)(stack + offset), bpf_core_type_id_kernel(struct pt_regs));
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	/* Learnt only when the registers lie inside the stack (x86-64 stacks
	 * are 16 KiB, 32 with KASAN): anything else keeps the helper. */
	if (regs && stack && (__u64)regs > stack && (__u64)regs - stack < ZT_KERNEL_STACK_MAX)
		zt_regs_offset = (__u64)regs - stack;
	return regs;
}

/* Socket backend (kernel >= 6.3): data from the socket layer's own
 * tracepoints, which fire for socket I/O only, so other syscalls of other
 * processes do not take the tracepoint path at all. The buffer comes from the
 * syscall's arguments in the task's saved user registers, as at sys_exit. */
static __always_inline void zt_on_socket_io(struct sock *sk, int ret)
{
	if (zt_settings.floor == ZT_FLOOR_HOOKS)
		return;
	/* The task, not bpf_get_current_pid_tgid: one helper call for both. */
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 pid_tgid = (__u64)(__u32)task->tgid << 32 | (__u32)task->pid;
	__u32 pid_flags = 0;
	if (!zt_pid_may_be_instrumented(pid_tgid >> 32, &pid_flags) || zt_settings.floor == ZT_FLOOR_FILTER)
		return;
	struct pt_regs *regs = zt_current_regs(task);
	if (!regs)
		return;
	long nr = regs->orig_ax; /* kernel-internal sends carry another syscall's: ignored below */
	zt_on_data(nr, regs, ret, pid_tgid, pid_flags, sk);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(zt_sock_send, struct sock *sk, int ret, int flags)
{
	if (ret > 0)
		zt_on_socket_io(sk, ret);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(zt_sock_recv, struct sock *sk, int ret, int flags)
{
	if (ret > 0 && !(flags & ZT_MSG_PEEK)) /* peeked bytes are read again later */
		zt_on_socket_io(sk, ret);
	return 0;
}

/* A tracked socket is gone: one event per connection, not a hook on every
 * syscall. With the socket backend (`socket_backend`), connect (SYN_SENT) and
 * listen (LISTEN), both in the caller's context, are seen here too, and the
 * socket's state is in its own storage as well. */
static __always_inline void zt_on_sock_state(struct sock *sk, int newstate, bool socket_backend)
{
	if (newstate == ZT_TCP_LISTEN || newstate == ZT_TCP_SYN_SENT) {
		if (!socket_backend)
			return; /* zt_sys_exit reports them */
		__u64 pid_tgid = bpf_get_current_pid_tgid();
		if (newstate == ZT_TCP_SYN_SENT) {
			/* connect() picks the local port after this state change: only
			 * the role is recorded now, and generation 0 (never current)
			 * makes the first data event carry the complete identity. By
			 * address, where the TLS hooks' plaintext events find it too;
			 * the data path moves it into the socket's storage when the
			 * connection lasts (zt_count_young_record). */
			if (zt_is_instrumented(pid_tgid >> 32)) {
				__u64 sock_id = (__u64)sk;
				struct zt_conn_state state;
				zt_clear_conn_state(&state);
				state.role = ZT_ROLE_CLIENT;
				bpf_map_update_elem(&zt_conn_state, &sock_id, &state, BPF_ANY);
				/* A socket connecting again: its storage is the last connection's. */
				bpf_sk_storage_delete(&zt_conn_storage, sk);
			}
			return;
		}
		zt_report_listen(sk, pid_tgid);
		return;
	}
	if (newstate != ZT_TCP_CLOSE)
		return;
	__u64 sock_id = (__u64)sk;
	/* Every TCP socket of the host closes through here, and few are in the
	 * map (with the socket backend, only connecting and TLS ones): a
	 * lockless lookup first, so that only those pay the delete's bucket
	 * lock. A socket's storage is deleted without a lock when it has none. */
	bool known = bpf_map_lookup_elem(&zt_conn_state, &sock_id) && !bpf_map_delete_elem(&zt_conn_state, &sock_id);
	if (socket_backend)
		known |= !bpf_sk_storage_delete(&zt_conn_storage, sk);
	if (!known)
		return; /* not a socket of an instrumented process */
	struct zt_event_buffer *buf = zt_new_event(ZT_EVENT_CLOSE, bpf_get_current_pid_tgid());
	if (!buf)
		return;
	buf->event.sock_id = sock_id;
	zt_submit(buf, 0, ZT_WAKE_BATCHED);
}

/* Two programs on one hook, the loader loads the one of its backend: the
 * syscall-exit backend's may not call the socket storage helpers (tracing
 * programs may only from kernel 5.11). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(zt_sock_state, struct sock *sk, int oldstate, int newstate)
{
	zt_on_sock_state(sk, newstate, 1);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(zt_sock_state_exit, struct sock *sk, int oldstate, int newstate)
{
	zt_on_sock_state(sk, newstate, 0);
	return 0;
}

/* An instrumented process forked (nginx, gunicorn workers): instrument the child too. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(zt_process_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid)
		return 0; /* a new thread, not a new process */
	__u32 parent_tgid = parent->tgid;
	__u32 *flags = zt_pid_flags(parent_tgid);
	if (!flags)
		return 0;
	__u32 child_tgid = child->tgid;
	__u32 child_flags = *flags;
	bpf_map_update_elem(&zt_pid_filter, &child_tgid, &child_flags, BPF_ANY);
	zt_set_pid_bit(child_tgid);
	struct zt_event_buffer *buf = zt_new_event(ZT_EVENT_PROCESS_FORK, bpf_get_current_pid_tgid());
	if (!buf)
		return 0;
	bpf_get_current_comm(buf->event.comm, sizeof(buf->event.comm));
	buf->event.pid = child_tgid;
	buf->event.bytes = parent_tgid;
	zt_submit(buf, 0, 0);
	return 0;
}

/* A new program runs: discovery may want it (exe_path selectors). Rare event.
 * With ZT_FILTER_EXEC_PENDING set, a process not in the filter yet is put
 * there from now on, marked ZT_PID_EXEC_PENDING: its bytes are captured
 * before the worker, which reads this event first, has decided about it (a
 * curl is done in a few milliseconds). The worker takes out those it does
 * not want and drops what they sent. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(zt_process_exec, struct task_struct *task, int old_pid, struct linux_binprm *bprm)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 settings_key = ZT_PID_FILTER_SETTINGS;
	__u32 *settings = bpf_map_lookup_elem(&zt_pid_filter, &settings_key);
	__u64 wakeup = 0;
	if (settings && (*settings & ZT_FILTER_EXEC_PENDING)) {
		__u32 tgid = pid_tgid >> 32;
		__u32 pending = ZT_PID_EXEC_PENDING;
		if (!bpf_map_update_elem(&zt_pid_filter, &tgid, &pending, BPF_NOEXIST)) {
			zt_set_pid_bit(tgid);
			/* The worker must read /proc/PID/exe before the program is
			 * done: woken now, not when batched records are due. */
			wakeup = ZT_WAKE_DISCOVERY;
		}
	}
	struct zt_event_buffer *buf = zt_new_event(ZT_EVENT_PROCESS_EXEC, pid_tgid);
	if (!buf)
		return 0;
	bpf_get_current_comm(buf->event.comm, sizeof(buf->event.comm));
	__u32 path_len = 0;
	if (wakeup) {
		/* Put in the filter: the path it was exec'd by, should it be done
		 * before the worker can read its executable. */
		long n = bpf_probe_read_kernel_str(buf->payload, ZT_EXEC_PATH_MAX, bprm->interp);
		if (n > 1)
			path_len = n - 1; /* without the NUL */
	}
	buf->event.captured_len = path_len;
	zt_submit(buf, path_len, wakeup);
	return 0;
}

/* The whole process is gone: forget it in the kernel and tell the worker. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(zt_process_exit, struct task_struct *task)
{
	if (task->pid != task->tgid)
		return 0; /* a thread of a process that lives on */
	__u32 tgid = task->tgid;
	if (bpf_map_delete_elem(&zt_pid_filter, &tgid))
		return 0; /* was not instrumented */
	struct zt_event_buffer *buf = zt_new_event(ZT_EVENT_PROCESS_EXIT, bpf_get_current_pid_tgid());
	if (!buf)
		return 0;
	zt_submit(buf, 0, 0);
	return 0;
}

/*
 * TLS plaintext: uprobes on the TLS library's read and write functions
 * (SSL_read, SSL_write, SSL_read_ex, SSL_write_ex), attached by the loader on
 * the worker's validated request, one link per library file and function for
 * every process that maps it; the pid filter keeps the cost to a lookup for
 * processes that are not instrumented. The entry program says which function
 * fired (enum zt_tls_kind); the return program is shared.
 */
static __always_inline int zt_tls_enter(struct pt_regs *ctx, __u32 kind)
{
	/* x86_64 SysV: SSL *ssl, void *buf, int/size_t num, size_t *size_out */
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 *flags = zt_pid_flags(pid_tgid >> 32);
	if (!flags)
		return 0;
	/* A process forked before its hooks marked its parent (nginx's workers,
	 * forked as it starts; a daemon's children) is marked at its first call:
	 * its socket I/O in this very call then goes to the library's plaintext.
	 * Not atomic: a mark lost to a concurrent update is made again next call. */
	if (!(*flags & ZT_PID_TLS))
		*flags |= ZT_PID_TLS;
	struct zt_tls_call call = {
		.ssl = ctx->di,
		.buf = ctx->si,
		.size_out = (kind & ZT_TLS_EX) ? ctx->cx : 0,
		.kind = kind,
	};
	bpf_map_update_elem(&zt_tls_calls, &pid_tgid, &call, BPF_ANY);
	return 0;
}

/* One entry program per function (libbpf finds versioned symbols such as
 * SSL_read@@OPENSSL_3.0.0 only through its pattern lookup, which takes no
 * attach cookies): the function's kind is a constant. */
SEC("uprobe.multi")
int zt_tls_enter_read(struct pt_regs *ctx)
{
	return zt_tls_enter(ctx, ZT_TLS_READ);
}

SEC("uprobe.multi")
int zt_tls_enter_write(struct pt_regs *ctx)
{
	return zt_tls_enter(ctx, ZT_TLS_WRITE);
}

SEC("uprobe.multi")
int zt_tls_enter_read_ex(struct pt_regs *ctx)
{
	return zt_tls_enter(ctx, ZT_TLS_READ | ZT_TLS_EX);
}

SEC("uprobe.multi")
int zt_tls_enter_write_ex(struct pt_regs *ctx)
{
	return zt_tls_enter(ctx, ZT_TLS_WRITE | ZT_TLS_EX);
}

SEC("uretprobe.multi")
int zt_tls_exit(struct pt_regs *ctx)
{
	/* Every hooked function returns int: the upper half of rax is not part of it. */
	int ret = (int)ctx->ax;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct zt_tls_call *active = bpf_map_lookup_elem(&zt_tls_calls, &pid_tgid);
	if (!active)
		return 0;
	struct zt_tls_call call = *active;
	bpf_map_delete_elem(&zt_tls_calls, &pid_tgid);

	__u64 bytes = 0;
	if (call.kind & ZT_TLS_EX) {
		if (ret != 1 || !call.size_out ||
		    bpf_probe_read_user(&bytes, sizeof(bytes), (void *)call.size_out))
			return 0;
	} else {
		if (ret <= 0)
			return 0;
		bytes = ret;
	}
	if (!bytes)
		return 0;

	/* Which socket: the one the library used during this call, else the one
	 * this SSL object used before, else the thread's last socket. */
	struct zt_tls_key key = {.tgid = pid_tgid >> 32, .ssl = call.ssl};
	struct zt_tls_socket *known = bpf_map_lookup_elem(&zt_tls_sockets, &key);
	__u64 sock_id = call.sock_id;
	if (!sock_id && known) {
		/* Only while that socket is open, and still the same connection
		 * (zt_tls_socket): a stale one would give this call's bytes to
		 * another connection. */
		if (bpf_map_lookup_elem(&zt_conn_state, &known->sock_id) &&
		    zt_socket_ports(known->sock_id) == known->ports)
			sock_id = known->sock_id;
	}
	if (!sock_id) {
		__u64 *last = bpf_map_lookup_elem(&zt_tls_last_socket, &pid_tgid);
		if (last)
			sock_id = *last;
	}
	if (!sock_id) {
		zt_count(ZT_COUNTER_TLS_UNASSOCIATED);
		return 0;
	}
	__u32 ports = zt_socket_ports(sock_id);
	if (!known || known->sock_id != sock_id || known->ports != ports) {
		struct zt_tls_socket learnt = {.sock_id = sock_id, .ports = ports};
		bpf_map_update_elem(&zt_tls_sockets, &key, &learnt, BPF_ANY);
	}

	struct zt_event_buffer *buf = zt_new_event(ZT_EVENT_DATA, pid_tgid);
	if (!buf)
		return 0;
	struct zt_event *e = &buf->event;
	/* One state lookup both marks the socket as TLS and gives its role. */
	bool closed = 0;
	struct zt_conn_state *state = zt_describe_socket(e, (struct sock *)sock_id, ZT_CONN_TLS, &closed);
	if (closed)
		return 0;
	e->flags |= ZT_EVENT_FLAG_TLS;
	e->direction = (call.kind & ZT_TLS_WRITE) ? ZT_DIR_EGRESS : ZT_DIR_INGRESS;
	e->sock_id = sock_id;
	e->bytes = bytes;
	__u8 *dst = zt_payload_of(buf);
	__u64 split_at = 0;
	bool pipeline = 0;
	__u8 *batch = zt_tls_batch_count(state, e->direction);
	__u32 copy = zt_copy_buffer(dst, call.buf, bytes, batch && *batch, state, e->direction, &e->flags, &split_at,
				    &pipeline);
	if (batch)
		zt_track_head(batch, dst, copy, bytes, pipeline, 0);
	zt_submit_segment(buf, call.buf, 0, bytes, copy, split_at);
	return 0;
}

/* Go crypto/tls hooks: their own file, this object's maps and helpers. */
#include "../go_tls/go_tls_hooks.h"
