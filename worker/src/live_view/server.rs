//! The read-only local socket that streams the live view: mode 0600, root and
//! the worker's own uid only (`SO_PEERCRED`), a client that writes is
//! disconnected, at most [`MAX_CLIENTS`] at once.

use super::*;

fn log(message: &str) {
    tracing::warn!("{message}");
}

/// Which peers may read the live view.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerPolicy {
    /// The worker's own (effective) uid.
    pub(super) own_uid: u32,
    /// Root may read it too (always, except in tests of the refusal).
    pub(super) allow_root: bool,
}

impl PeerPolicy {
    pub(super) fn allows(self, uid: u32) -> bool {
        (self.allow_root && uid == 0) || uid == self.own_uid
    }
}

pub(super) struct Shared {
    view: Arc<Mutex<LiveView>>,
    policy: PeerPolicy,
    /// The last snapshot as a JSON line, shared by every client.
    cache: Mutex<Option<(Instant, Arc<[u8]>)>>,
    clients: AtomicUsize,
    refusals: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// The current snapshot line, computed at most every [`SNAPSHOT_REUSE`].
    fn frame(&self) -> Result<Arc<[u8]>, String> {
        let mut cache = lock(&self.cache);
        if let Some((at, line)) = cache.as_ref() {
            if at.elapsed() < SNAPSHOT_REUSE {
                return Ok(Arc::clone(line));
            }
        }
        let now = Instant::now();
        let snapshot = lock(&self.view).snapshot(now);
        let mut line =
            serde_json::to_vec(&snapshot).map_err(|e| format!("encoding a live snapshot: {e}"))?;
        line.push(b'\n');
        let line: Arc<[u8]> = line.into();
        *cache = Some((now, Arc::clone(&line)));
        Ok(line)
    }
}

/// Writes all of `bytes` (MSG_NOSIGNAL: a closed peer is an error, not a signal).
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match send(stream.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(std::io::Error::from(e)),
        }
    }
    Ok(())
}

fn refuse(stream: &UnixStream, reason: &str) {
    let refusal = LiveRefusal {
        refused: reason.to_owned(),
    };
    if let Ok(mut line) = serde_json::to_vec(&refusal) {
        line.push(b'\n');
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = send_all(stream, &line);
    }
}

/// Serves one allowed client until it goes away.
fn stream_to(stream: UnixStream, shared: &Shared) {
    if let Err(e) = stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT)) {
        log(&format!("live view: setting a client's write timeout: {e}"));
        return;
    }
    let mut scratch = [0u8; 64];
    loop {
        let frame = match shared.frame() {
            Ok(frame) => frame,
            Err(e) => {
                log(&format!("live view: {e}"));
                return;
            }
        };
        if send_all(&stream, &frame).is_err() {
            return; // gone, or not reading
        }
        // Wait for the next frame, noticing a close meanwhile.
        let next = Instant::now() + FRAME_INTERVAL;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(1) {
                break;
            }
            if stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match (&stream).read(&mut scratch) {
                Ok(_) => return, // closed (0), or a client that talks: the channel is read-only
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// Decrements the client count when a client thread ends.
struct ClientSlot(Arc<Shared>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

fn accept(stream: UnixStream, shared: &Arc<Shared>) {
    let credentials = match getsockopt(&stream, sockopt::PeerCredentials) {
        Ok(credentials) => credentials,
        Err(e) => {
            log(&format!("live view: reading a client's credentials: {e}"));
            return;
        }
    };
    let uid = credentials.uid();
    if !shared.policy.allows(uid) {
        let n = shared.refusals.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 10 || n.is_multiple_of(1000) {
            log(&format!(
                "live view: refused a client with uid {uid} (pid {}): only root and uid {} may read it ({n} refused so far)",
                credentials.pid(),
                shared.policy.own_uid
            ));
        }
        refuse(
            &stream,
            &format!(
                "uid {uid} may not read this live view (only root and uid {})",
                shared.policy.own_uid
            ),
        );
        return;
    }
    if shared.clients.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
        shared.clients.fetch_sub(1, Ordering::Relaxed);
        refuse(
            &stream,
            &format!("too many live view clients (at most {MAX_CLIENTS})"),
        );
        return;
    }
    let slot = ClientSlot(Arc::clone(shared));
    let spawned = std::thread::Builder::new()
        .name("live-client".into())
        .spawn(move || {
            let slot = slot;
            stream_to(stream, &slot.0);
        });
    if let Err(e) = spawned {
        // The closure (and its slot) was dropped: the count is already given back.
        log(&format!("live view: starting a client thread: {e}"));
    }
}

/// Binds at a temporary name, restricts it to 0600, then renames it into
/// place, so the socket is never reachable with wider permissions. A stale
/// socket is replaced; a live one (another agent serving it) or a path that
/// is not a socket is left alone and reported.
pub(super) fn bind(path: &Path) -> Result<UnixListener, String> {
    let shown = path.display();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!(
            "live view socket {shown}: directory {} does not exist",
            dir.display()
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "live view socket {shown} is already served by another process (another agent?); not taking it over"
                ));
            }
        }
        Ok(_) => {
            return Err(format!(
                "live view socket {shown}: the path exists and is not a socket; not replacing it"
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("live view socket {shown}: {e}")),
    }
    let temporary: PathBuf = dir.join(format!(".live-{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary)
        .map_err(|e| format!("binding {}: {e}", temporary.display()))?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod 0600 {}: {e}", temporary.display()))
        .and_then(|()| {
            std::fs::rename(&temporary, path)
                .map_err(|e| format!("moving the live view socket to {shown}: {e}"))
        });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(listener)
}

/// Serves the live view on a Unix stream socket at `socket_path` (its
/// directory must exist) from a background thread; returns once listening.
/// Only root and this process's uid may connect; each gets one JSON
/// [`LiveSnapshot`] per line every second.
pub fn serve(socket_path: &Path, view: Arc<Mutex<LiveView>>) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    serve_with(
        socket_path,
        view,
        PeerPolicy {
            own_uid,
            allow_root: true,
        },
    )
}

pub(super) fn serve_with(
    socket_path: &Path,
    view: Arc<Mutex<LiveView>>,
    policy: PeerPolicy,
) -> Result<(), String> {
    let listener = bind(socket_path)?;
    let shared = Arc::new(Shared {
        view,
        policy,
        cache: Mutex::new(None),
        clients: AtomicUsize::new(0),
        refusals: AtomicU64::new(0),
    });
    std::thread::Builder::new()
        .name("live-view".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => accept(stream, &shared),
                    Err(e) => {
                        log(&format!("live view: accept: {e}"));
                        // e.g. out of descriptors: do not spin
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(|e| format!("starting the live view thread: {e}"))?;
    Ok(())
}
