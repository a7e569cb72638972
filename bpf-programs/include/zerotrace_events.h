/* SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only) */
/*
 * Every struct that crosses the kernel/user boundary. The Rust mirror lives in
 * shared/src/event.rs; shared/build.rs compiles this header on the host and the
 * Rust side asserts at compile time that sizes and offsets agree.
 */
#ifndef ZEROTRACE_EVENTS_H
#define ZEROTRACE_EVENTS_H

/* Bytes of each payload copied into an event. Power of two, >= 256. */
#ifndef ZT_PAYLOAD_MAX
#define ZT_PAYLOAD_MAX 512
#endif

/* Bytes copied at most of a segment that starts an HTTP head (an HTTP/1
 * start line, the HTTP/2 preface or a non-DATA HTTP/2 frame): request heads
 * with tokens and cookies, and header blocks, are whole up to this size. The
 * loader may lower it at load time (zt_settings.head_capture). Power of two. */
#define ZT_HEAD_MAX 16384

enum zt_event_kind {
	ZT_EVENT_DATA = 1,         /* bytes moved on an instrumented TCP socket */
	ZT_EVENT_CONNECTION = 2,   /* socket accepted (server) or connected (client) */
	ZT_EVENT_CLOSE = 3,        /* a tracked TCP socket reached TCP_CLOSE */
	ZT_EVENT_LISTEN = 4,       /* any process started listening on a TCP port */
	ZT_EVENT_PROCESS_EXIT = 5, /* an instrumented process exited */
	ZT_EVENT_PROCESS_FORK = 6, /* an instrumented process forked; the child is instrumented */
	ZT_EVENT_PROCESS_EXEC = 7, /* any process exec'd a program (for exe_path selectors) */
};

enum zt_direction {
	ZT_DIR_NONE = 0,
	ZT_DIR_INGRESS = 1, /* read by the process */
	ZT_DIR_EGRESS = 2,  /* written by the process */
};

enum zt_role {
	ZT_ROLE_UNKNOWN = 0, /* socket opened before the agent started */
	ZT_ROLE_SERVER = 1,  /* returned by accept */
	ZT_ROLE_CLIENT = 2,  /* passed to connect */
};

/* Indexes of the per-CPU counter array `zt_counters`. */
enum zt_counter {
	ZT_COUNTER_EVENTS_SUBMITTED = 0,
	ZT_COUNTER_RINGBUF_DROPS = 1,
	ZT_COUNTER_TLS_UNASSOCIATED = 2, /* TLS plaintext whose socket was never learnt */
	ZT_COUNTER_AFTER_CLOSE = 3,      /* bytes moved on a socket already in TCP_CLOSE: not sent */
	ZT_COUNTER_MAX = 4,
};

/* zt_event.flags */
enum zt_event_flag {
	ZT_EVENT_FLAG_TLS = 1, /* DATA: plaintext from a TLS library, not socket bytes */
	/* DATA: the record is a whole struct zt_event (the socket's tuple and the
	 * process name: the first event of a socket in a worker generation).
	 * Without it, a DATA record is only the event's first
	 * ZT_EVENT_COMPACT_SIZE bytes, up to `tuple`, and its payload follows
	 * them: 56 bytes less to write into the ring and to read back. */
	ZT_EVENT_FLAG_IDENTITY = 2,
	/* DATA on an HTTP/2 connection: the payload ends with notes of the frames
	 * whose headers the copy does not hold (frames past the capture: large
	 * DATA, header blocks after it), ZT_H2_NOTE_SIZE bytes each (the frame's
	 * offset in the segment, little-endian u32, then its 9-byte header), in
	 * segment order, then one byte: their count. Before the notes, the
	 * payloads of the noted frames whose offset has ZT_H2_NOTE_BODY.
	 * `captured_len` counts them all; the copied bytes are the rest. */
	ZT_EVENT_FLAG_H2_NOTES = 4,
	/* DATA: the segment is longer than the copy by more than ZT_TAIL_LEN
	 * bytes, and the payload's last ZT_TAIL_LEN bytes are the segment's
	 * last: the end of a database result (PostgreSQL's CommandComplete and
	 * ReadyForQuery, MySQL's closing EOF or OK) read in one large read.
	 * `captured_len` counts them; the copied bytes are the rest. Never with
	 * ZT_EVENT_FLAG_H2_NOTES. */
	ZT_EVENT_FLAG_TAIL = 8,
};

/* Bytes of a segment's end copied after the copy of its start (see
 * ZT_EVENT_FLAG_TAIL); a segment at most this much longer than its copy is
 * copied whole instead. */
#define ZT_TAIL_LEN 128

/* Frame headers noted at most per segment, and the size of one note. */
#define ZT_H2_NOTES 128
#define ZT_H2_NOTE_SIZE 13
/* A noted frame that is not DATA (a header block: a gRPC reply's trailers
 * after its message, the next stream's HEADERS) and that the copy does not
 * hold whole has its payload copied too when it is at most ZT_H2_BODY_MAX
 * bytes and the segment's bodies fit in ZT_H2_BODIES_ROOM: its note's offset
 * then has ZT_H2_NOTE_BODY set, and the bodies of such notes, in their
 * order, come between the copy and the notes. */
#define ZT_H2_BODY_MAX 1024
#define ZT_H2_BODIES_ROOM 2048
#define ZT_H2_NOTE_BODY 0x80000000u
/* Payload bytes a DATA record carries at most: a head capture, frame
 * bodies and notes. */
#define ZT_PAYLOAD_ROOM (ZT_HEAD_MAX + ZT_H2_BODIES_ROOM + ZT_H2_NOTES * ZT_H2_NOTE_SIZE + 1)

/* Values of the pid filter map (tgid -> flags). */
enum zt_pid_flag {
	ZT_PID_INSTRUMENTED = 1,
	ZT_PID_TLS = 2, /* TLS library hooks attached for this process */
	/* Captured from its exec (ZT_FILTER_EXEC_PENDING) or its listen on a
	 * port a selector names (ZT_PID_FILTER_PORT_KEYS) until discovery
	 * decides: a short-lived program or a server asked at once is seen from
	 * its first byte, and the worker drops what a process it rejects sent. */
	ZT_PID_EXEC_PENDING = 4,
};

/* The pid filter's key that is never a tgid (pids end at 2^22): its value
 * holds the filter's own settings, written by the worker. */
#define ZT_PID_FILTER_SETTINGS 0xffffffffu
/* Settings: every program exec'd is put in the filter (ZT_PID_EXEC_PENDING). */
#define ZT_FILTER_EXEC_PENDING 1
/* The pid filter's keys for the ports a selector names (never tgids either):
 * a process that listens on one is put in the filter, ZT_PID_EXEC_PENDING,
 * before the worker has read its listen, so that a server asked at once is
 * captured from its first request. */
#define ZT_PID_FILTER_PORT_KEYS 0xffff0000u
/* A PROCESS_EXEC event of a program put in the filter carries the path it
 * was exec'd by (the interpreter's, for a script) as its payload, at most
 * this long: the worker judges by it a program gone before it could read
 * /proc/PID/exe. */
#define ZT_EXEC_PATH_MAX 256

/* zt_conn_state.flags */
enum zt_conn_flag {
	ZT_CONN_TLS = 1, /* bytes on this socket are TLS records: only plaintext is sent */
	ZT_CONN_H2 = 2,  /* the HTTP/2 preface went by: segments are walked for header frames */
	/* An HTTP/1 start line went by outside any TLS library call: the
	 * socket's later segments skip the TLS bookkeeping (a process with TLS
	 * hooks serving or calling plain HTTP) and the pid filter's flags. */
	ZT_CONN_PLAIN = 4,
	/* This state is the socket's own storage (zt_conn_storage), where the
	 * socket backend moves it from zt_conn_state once the connection lasts. */
	ZT_CONN_IN_SOCKET = 8,
};

/* Which TLS library function fired (set by its entry program). */
enum zt_tls_kind {
	ZT_TLS_READ = 1,  /* SSL_read*: data flows into the process */
	ZT_TLS_WRITE = 2, /* SSL_write* */
	ZT_TLS_EX = 4,    /* *_ex variant: the byte count is written through argument 4 */
};

struct zt_conn_tuple {
	__u8 local_addr[16]; /* IPv4 in the first 4 bytes when family == AF_INET */
	__u8 peer_addr[16];
	__u16 local_port;    /* host byte order */
	__u16 peer_port;     /* host byte order */
	__u16 family;        /* AF_INET or AF_INET6 */
	__u16 pad;
};

/* Header of every ring buffer record; ZT_EVENT_DATA records are followed by
 * `captured_len` payload bytes. To keep the per-syscall cost down, DATA events
 * carry `tuple` and `comm` only the first time a socket is seen in a worker
 * generation (ZT_EVENT_FLAG_IDENTITY); the others stop before `tuple`, where
 * their payload starts (ZT_EVENT_COMPACT_SIZE). */
struct zt_event {
	__u8 kind;        /* enum zt_event_kind */
	__u8 direction;   /* enum zt_direction */
	__u8 role;        /* enum zt_role */
	__u8 flags;       /* enum zt_event_flag */
	__u32 pid;        /* tgid, as seen from the initial pid namespace */
	__u32 tid;        /* DATA: the thread, or a Go program's goroutine (ZT_TID_GOROUTINE) */
	__u32 captured_len;
	__u64 ts_ns;      /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 sock_id;    /* kernel address of struct sock: connection identity */
	__u64 bytes;      /* DATA: bytes the syscall moved; FORK: parent pid */
	struct zt_conn_tuple tuple;
	char comm[16];
};

/* Set in a DATA event's `tid` when it names a goroutine of a Go program the
 * worker marked in zt_pid_bits (the goroutine's runtime.g address shifted
 * right by 4 in the other bits); thread ids stay below 2^22. */
#define ZT_TID_GOROUTINE 0x80000000u

/* Header bytes of a DATA record without ZT_EVENT_FLAG_IDENTITY. */
#define ZT_EVENT_COMPACT_SIZE __builtin_offsetof(struct zt_event, tuple)

/* Per-socket state kept by the kernel (zt_conn_state map). */
struct zt_conn_state {
	__u8 role;         /* enum zt_role */
	__u8 flags;        /* enum zt_conn_flag */
	/* Following reads / writes still copied as part of an HTTP head that a
	 * full read buffer or a partial or buffer-sized write left open (nginx
	 * reads 1 KiB first; buffered writers flush 4 KiB at a time). */
	__u8 head_reads;
	__u8 head_writes;
	__u32 generation;  /* worker generation that last received this socket's tuple */
	/* The process whose segment set ZT_CONN_PLAIN, confirmed in the pid
	 * filter then: its later segments on the socket skip the filter's hash. */
	__u32 plain_tgid;
	/* While the socket backend keeps a young socket's state by address, in
	 * zt_conn_state, before it moves into the socket's own storage: the
	 * data records seen, the last one's direction (enum zt_direction), and
	 * how often the direction changed between them. */
	__u8 young_records;
	__u8 young_direction;
	__u8 young_turns;
	/* HTTP/2 only, per direction ([0] reads, [1] writes): where the next
	 * frame header lies in the direction's next segment, when the last one
	 * ended inside a frame (a header block cut by a TLS record or a short
	 * read); ZT_H2_NEXT_HEADER set when that frame is not DATA, so its rest
	 * is copied. 0: the next segment starts with a frame header, or where
	 * it does is not known. */
	__u32 h2_next[2];
};

#define ZT_H2_NEXT_HEADER 0x80000000u

/* Record written by the listener iterator: one listening TCP socket of one process. */
struct zt_listener {
	__u32 pid;
	__u16 port;
	__u16 family;
};

#endif
