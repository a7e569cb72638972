//! Service graph: which service calls which, from spans as they are exported
//! (after trace linking). A server span whose parent is a client span seen
//! here is one request between two instrumented services, counted once with
//! both durations; a client span no server span claimed is a call to a peer
//! that is not instrumented (named by its address), and a server span whose
//! parent is unknown is a call from one. The metrics these observations feed
//! are in `metrics/service_graph.rs`; docs/metrics.md says what each label means.
//!
//! Both sides wait here a bounded time for their other half (either may be
//! exported first), in bounded queues: when one is full its oldest span is
//! counted as unpaired at once, and the eviction counted.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::hashing::FastMap;
use crate::semconv::{self, PeerKind};
use crate::spans::Span;

/// How long and how many spans wait for their other half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphSettings {
    /// How long a span waits for its other half before it counts alone.
    pub hold: Duration,
    /// Spans held at most per side (client, server).
    pub max_held: usize,
}

impl Default for GraphSettings {
    fn default() -> Self {
        Self {
            // Longer than the trace linker's wait, which may hold the server side first.
            hold: Duration::from_secs(2),
            max_held: 16_384,
        }
    }
}

impl GraphSettings {
    /// The default, with a hold that outlasts the linker's `wait` by 1.5 s
    /// (a linked pair is never split by the hold).
    pub fn after_link_wait(wait: Duration) -> Self {
        let default = Self::default();
        Self {
            hold: default.hold.max(wait + Duration::from_millis(1500)),
            ..default
        }
    }
}

/// `connection_type`, as Tempo's and the Collector's service graphs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnectionType {
    /// Both sides instrumented: a request seen from both ends (label value empty).
    Direct,
    /// One side is not instrumented and is named by its address.
    VirtualNode,
    /// The server is a database (client side only).
    Database,
    /// The server is a message broker (client side only).
    MessagingSystem,
}

impl ConnectionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionType::Direct => "",
            ConnectionType::VirtualNode => "virtual_node",
            ConnectionType::Database => "database",
            ConnectionType::MessagingSystem => "messaging_system",
        }
    }
}

/// A service, as the graph's `client`/`server` labels name it.
#[derive(Debug, Clone, Eq, PartialOrd, Ord)]
pub struct GraphNode {
    /// `service.name`, or the address of a peer that is not instrumented.
    pub name: Arc<str>,
    /// `service.namespace` (empty for a peer named by its address).
    pub namespace: Arc<str>,
}

/// By content, as derived, but by address first: the nodes compared per
/// span are nearly always clones of one another. (`Arc<str>`'s own `==`
/// compares the bytes only: std skips them for equal addresses only when
/// the pointee is `Sized`.)
impl PartialEq for GraphNode {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
        same(&self.name, &other.name) && same(&self.namespace, &other.namespace)
    }
}

/// As derived, by content: equal nodes hash alike.
impl Hash for GraphNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.namespace.hash(state);
    }
}

impl GraphNode {
    pub fn new(name: &str, namespace: &str) -> Self {
        Self {
            name: Arc::from(name),
            namespace: Arc::from(namespace),
        }
    }

    /// A peer that is not instrumented: its IP for a caller (its port is
    /// ephemeral), its IP and port for a callee (the port names the service).
    fn address(addr: SocketAddr, with_port: bool) -> Self {
        Self::new(&address_text(addr, with_port), "")
    }
}

fn address_text(addr: SocketAddr, with_port: bool) -> String {
    {
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_canonical(),
            v4 => v4,
        };
        if with_port {
            SocketAddr::new(ip, addr.port()).to_string()
        } else {
            ip.to_string()
        }
    }
}

/// Address nodes kept for reuse (naming a peer allocates): callers by IP,
/// callees by IP and port. Past the cap the cache starts over.
#[derive(Default)]
struct AddressNodes {
    callers: FastMap<IpAddr, GraphNode>,
    callees: FastMap<SocketAddr, GraphNode>,
    /// The last caller named, compared before the map is asked: the
    /// requests of one uninstrumented client (a load balancer, a proxy, a
    /// load generator) come in runs.
    last_caller: Option<(IpAddr, GraphNode)>,
}

const MAX_ADDRESS_NODES: usize = 4096;

impl AddressNodes {
    fn caller(&mut self, addr: SocketAddr) -> &GraphNode {
        let ip = addr.ip();
        if self
            .last_caller
            .as_ref()
            .is_some_and(|(last, _)| *last != ip)
        {
            self.last_caller = None;
        }
        let callers = &mut self.callers;
        let (_, node) = self.last_caller.get_or_insert_with(|| {
            if callers.len() >= MAX_ADDRESS_NODES {
                callers.clear();
            }
            let node = callers
                .entry(ip)
                .or_insert_with(|| GraphNode::address(addr, false));
            (ip, node.clone())
        });
        node
    }

    fn callee(&mut self, addr: SocketAddr) -> &GraphNode {
        if self.callees.len() >= MAX_ADDRESS_NODES {
            self.callees.clear();
        }
        self.callees
            .entry(addr)
            .or_insert_with(|| GraphNode::address(addr, true))
    }
}

/// One edge of the graph: the labels of every service graph series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey {
    pub client: GraphNode,
    pub server: GraphNode,
    pub connection_type: ConnectionType,
}

impl EdgeKey {
    /// A service calling itself (by name): OBI leaves these out of its metrics.
    pub fn is_self_reference(&self) -> bool {
        self.client == self.server
    }
}

/// One request on one edge: what the metrics record.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeObservation {
    pub edge: EdgeKey,
    /// The client span's duration, when the client side was seen.
    pub client_seconds: Option<f64>,
    /// The server span's duration, when the server side was seen.
    pub server_seconds: Option<f64>,
    /// Either side was an error by its protocol's conventions.
    pub failed: bool,
}

impl EdgeObservation {
    /// What is counted, without the edge.
    pub fn sample(&self) -> EdgeSample {
        EdgeSample {
            client_seconds: self.client_seconds,
            server_seconds: self.server_seconds,
            failed: self.failed,
        }
    }
}

/// One request on an edge named elsewhere (its run in [`EdgeObservations`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeSample {
    /// The client span's duration, when the client side was seen.
    pub client_seconds: Option<f64>,
    /// The server span's duration, when the server side was seen.
    pub server_seconds: Option<f64>,
    /// Either side was an error by its protocol's conventions.
    pub failed: bool,
}

/// Observations in the order they were made, as runs of one edge: the
/// requests of a run share one copy of its key. Under load nearly every
/// request extends the run before it (the same caller and server), so it
/// clones no name (their reference counts are atomic, and were a tenth of
/// the graph's cost) and its consumers look its edge up once per run.
#[derive(Debug, Default)]
pub struct EdgeObservations {
    /// Each run's edge and the end of its samples in `samples`.
    runs: Vec<(EdgeKey, usize)>,
    samples: Vec<EdgeSample>,
}

impl EdgeObservations {
    /// One request on the edge `client` → `server`.
    fn push(
        &mut self,
        client: &GraphNode,
        server: &GraphNode,
        connection_type: ConnectionType,
        sample: EdgeSample,
    ) {
        self.samples.push(sample);
        let end = self.samples.len();
        match self.runs.last_mut() {
            // Nodes compare by address first: a run's are nearly always the same Arcs.
            Some((edge, run_end))
                if edge.connection_type == connection_type
                    && edge.server == *server
                    && edge.client == *client =>
            {
                *run_end = end;
            }
            _ => self.runs.push((
                EdgeKey {
                    client: client.clone(),
                    server: server.clone(),
                    connection_type,
                },
                end,
            )),
        }
    }

    /// Each run: its edge and its requests, in order.
    pub fn runs(&self) -> impl Iterator<Item = (&EdgeKey, &[EdgeSample])> {
        let mut start = 0;
        self.runs.iter().map(move |(edge, end)| {
            let samples = &self.samples[start..*end];
            start = *end;
            (edge, samples)
        })
    }

    /// Requests observed.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn clear(&mut self) {
        self.runs.clear();
        self.samples.clear();
    }

    /// Every request with its own copy of its edge (for tests and inspection).
    pub fn to_vec(&self) -> Vec<EdgeObservation> {
        self.runs()
            .flat_map(|(edge, samples)| {
                samples.iter().map(move |sample| EdgeObservation {
                    edge: edge.clone(),
                    client_seconds: sample.client_seconds,
                    server_seconds: sample.server_seconds,
                    failed: sample.failed,
                })
            })
            .collect()
    }
}

/// What pairing did, for the self-metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphCounters {
    /// Requests seen from both ends.
    pub paired: u64,
    /// Held spans counted unpaired early because their queue was full.
    pub evicted: u64,
}

/// One side of a request, waiting for the other.
struct Waiting {
    span_id: [u8; 8],
    node: GraphNode,
    /// Of a client: its peer's address. Of a server: its caller's address.
    peer: SocketAddr,
    peer_kind: PeerKind,
    seconds: f64,
    failed: bool,
    due_ns: u64,
}

/// A bounded queue of spans waiting for their other half, by the id the
/// other half will name (a client's span id; a server's parent id).
#[derive(Default)]
struct WaitingSide {
    by_id: FastMap<[u8; 8], Waiting>,
    /// Ids in arrival order (due order: the hold is the same for all);
    /// ids already paired are skipped when they come up.
    order: VecDeque<([u8; 8], u64)>,
}

impl WaitingSide {
    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn insert(&mut self, id: [u8; 8], waiting: Waiting, max_held: usize) {
        // Paired ids stay queued until due: drop them early when they pile up.
        if self.order.len() >= max_held.saturating_mul(2) {
            let live = &self.by_id;
            self.order
                .retain(|(id, due)| live.get(id).is_some_and(|w| w.due_ns == *due));
        }
        self.order.push_back((id, waiting.due_ns));
        self.by_id.insert(id, waiting);
    }

    fn take(&mut self, id: &[u8; 8]) -> Option<Waiting> {
        self.by_id.remove(id)
    }

    /// The oldest still waiting, if it is due by `now_ns` (`None`: any age).
    fn pop_due(&mut self, now_ns: Option<u64>) -> Option<Waiting> {
        while let Some(&(id, due_ns)) = self.order.front() {
            if now_ns.is_some_and(|now| due_ns > now) {
                return None;
            }
            self.order.pop_front();
            // The same id may be queued twice (a span id reused): only the live entry counts.
            if let Some(waiting) = self.by_id.get(&id) {
                if waiting.due_ns == due_ns {
                    return self.by_id.remove(&id);
                }
            }
        }
        None
    }
}

fn seconds(span: &Span) -> f64 {
    span.duration_ns() as f64 / 1e9
}

/// Pairs client and server spans into service graph edges.
pub struct ServiceGraph {
    settings: GraphSettings,
    /// Client spans by their span id.
    clients: WaitingSide,
    /// Server spans by their parent id.
    servers: WaitingSide,
    addresses: AddressNodes,
    counters: GraphCounters,
}

impl ServiceGraph {
    pub fn new(settings: GraphSettings) -> Self {
        Self {
            settings,
            clients: WaitingSide::default(),
            servers: WaitingSide::default(),
            addresses: AddressNodes::default(),
            counters: GraphCounters::default(),
        }
    }

    pub fn counters(&self) -> GraphCounters {
        self.counters
    }

    /// Spans waiting for their other half (both sides).
    pub fn held_count(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    fn hold_ns(&self) -> u64 {
        u64::try_from(self.settings.hold.as_nanos()).unwrap_or(u64::MAX)
    }

    /// One exported span of the service `node`: an observation now when its
    /// edge is known, else it waits for its other half.
    pub fn observe(
        &mut self,
        span: &Span,
        node: &GraphNode,
        now_ns: u64,
        out: &mut EdgeObservations,
    ) {
        let failed = semconv::is_error(span);
        if span.kind.is_outgoing() {
            let peer_kind = semconv::peer_kind(span);
            // A database or a broker has no server span: its edge is known now.
            if peer_kind != PeerKind::Service {
                let server = self.addresses.callee(span.peer);
                out.push(
                    node,
                    server,
                    client_connection_type(peer_kind),
                    EdgeSample {
                        client_seconds: Some(seconds(span)),
                        server_seconds: None,
                        failed,
                    },
                );
                return;
            }
            let waiting = self.waiting(span, node, peer_kind, failed, now_ns);
            match self.servers.take(&waiting.span_id) {
                Some(server) => self.pair(waiting, server, out),
                None => self.hold(true, waiting.span_id, waiting, out),
            }
            return;
        }
        // A root server span: its caller is not instrumented (or not seen).
        let Some(parent_id) = span.ids.parent_span_id else {
            let client = self.addresses.caller(span.peer);
            out.push(
                client,
                node,
                ConnectionType::VirtualNode,
                EdgeSample {
                    client_seconds: None,
                    server_seconds: Some(seconds(span)),
                    failed,
                },
            );
            return;
        };
        let waiting = self.waiting(span, node, PeerKind::Service, failed, now_ns);
        match self.clients.take(&parent_id) {
            Some(client) => self.pair(client, waiting, out),
            None => self.hold(false, parent_id, waiting, out),
        }
    }

    /// A span that may wait for its other half.
    fn waiting(
        &self,
        span: &Span,
        node: &GraphNode,
        peer_kind: PeerKind,
        failed: bool,
        now_ns: u64,
    ) -> Waiting {
        Waiting {
            span_id: span.ids.span_id,
            node: node.clone(),
            peer: span.peer,
            peer_kind,
            seconds: seconds(span),
            failed,
            due_ns: now_ns.saturating_add(self.hold_ns()),
        }
    }

    fn hold(&mut self, client: bool, id: [u8; 8], waiting: Waiting, out: &mut EdgeObservations) {
        let max_held = self.settings.max_held.max(1);
        while self.side(client).len() >= max_held {
            let Some(oldest) = self.side(client).pop_due(None) else {
                break;
            };
            self.counters.evicted += 1;
            self.alone(client, oldest, out);
        }
        // A span id seen again before its first went out: the first counts alone.
        if let Some(previous) = self.side(client).take(&id) {
            self.alone(client, previous, out);
        }
        self.side(client).insert(id, waiting, max_held);
    }

    fn side(&mut self, client: bool) -> &mut WaitingSide {
        if client {
            &mut self.clients
        } else {
            &mut self.servers
        }
    }

    fn pair(&mut self, client: Waiting, server: Waiting, out: &mut EdgeObservations) {
        self.counters.paired += 1;
        out.push(
            &client.node,
            &server.node,
            ConnectionType::Direct,
            EdgeSample {
                client_seconds: Some(client.seconds),
                server_seconds: Some(server.seconds),
                failed: client.failed || server.failed,
            },
        );
    }

    /// Spans whose hold is over count alone.
    pub fn expire(&mut self, now_ns: u64, out: &mut EdgeObservations) {
        while let Some(client) = self.clients.pop_due(Some(now_ns)) {
            self.client_alone(client, out);
        }
        while let Some(server) = self.servers.pop_due(Some(now_ns)) {
            self.server_alone(server, out);
        }
    }

    /// Everything held counts alone (the agent stops).
    pub fn release_all(&mut self, out: &mut EdgeObservations) {
        while let Some(client) = self.clients.pop_due(None) {
            self.client_alone(client, out);
        }
        while let Some(server) = self.servers.pop_due(None) {
            self.server_alone(server, out);
        }
    }
}

/// The `connection_type` of a client span no server span claimed.
fn client_connection_type(peer_kind: PeerKind) -> ConnectionType {
    match peer_kind {
        PeerKind::Service => ConnectionType::VirtualNode,
        PeerKind::Database => ConnectionType::Database,
        PeerKind::MessagingSystem => ConnectionType::MessagingSystem,
    }
}

impl ServiceGraph {
    fn alone(&mut self, client: bool, waiting: Waiting, out: &mut EdgeObservations) {
        if client {
            self.client_alone(waiting, out)
        } else {
            self.server_alone(waiting, out)
        }
    }

    /// A client span no server span claimed: a call to its peer's address.
    fn client_alone(&mut self, client: Waiting, out: &mut EdgeObservations) {
        let server = self.addresses.callee(client.peer);
        out.push(
            &client.node,
            server,
            client_connection_type(client.peer_kind),
            EdgeSample {
                client_seconds: Some(client.seconds),
                server_seconds: None,
                failed: client.failed,
            },
        );
    }

    /// A server span with no instrumented caller: a call from its peer's address.
    fn server_alone(&mut self, server: Waiting, out: &mut EdgeObservations) {
        let client = self.addresses.caller(server.peer);
        out.push(
            client,
            &server.node,
            ConnectionType::VirtualNode,
            EdgeSample {
                client_seconds: None,
                server_seconds: Some(server.seconds),
                failed: server.failed,
            },
        );
    }
}
