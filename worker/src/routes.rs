//! OBI's `routes` section at work: what `http.route` becomes for a request
//! path, and whether a span is dropped from traces, metrics or both. The
//! settings and the pattern syntax are `config::routes`.
//!
//! * `patterns` — route templates. A path matching one gets the template as
//!   its route. Placeholders (the syntaxes OBI accepts): `:name`, `{name}`
//!   (also `{name:constraint}`, `{name?}`, `{name=default}`, `{name<regex>}`),
//!   `<name>` / `<conv:name>` (Flask), and `prefix:name` (a segment starting
//!   with `prefix`, e.g. `/@:user`). Multi-segment placeholders: `*`,
//!   `{name:path}`, `{*name}`, `{**name}`, `<path:name>`; at the end of a
//!   pattern they match zero or more segments (`/static/*` matches `/static`
//!   and `/static/a/b.css`), in the middle one or more (`/files/<path:p>/meta`).
//!   Precedence at each segment: literal text, then single-segment
//!   placeholders in definition order, then a multi-segment placeholder; a
//!   dead end backtracks. Trailing slashes are not significant.
//! * `ignored_patterns` + `ignore_mode` (`all` (default), `traces`,
//!   `metrics`) — same syntax; a matching path's span is dropped from traces
//!   and/or metrics.
//! * `unmatched` — the route of a path matching no pattern: `unset` (none),
//!   `path` (the path itself: unbounded cardinality), `wildcard` (`/**`),
//!   `heuristic` (default: ids, numbers, UUIDs, hashes and random tokens
//!   become `wildcard_char`), `low-cardinality` (heuristic, then at most
//!   `max_path_segment_cardinality` distinct values per segment position and
//!   service, see [`SegmentCardinalityLimiter`]). An empty value means
//!   `wildcard`, as in OBI.
//!
//! Matching runs per request: patterns are compiled once into a segment trie,
//! and [`RouteMatcher::classify`] allocates only when the heuristic rewrites a
//! path (a matched pattern or an unchanged path is borrowed).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::config::routes::{
    parse_pattern, parse_wildcard_char, path_body, IgnoreMode, PatternSegment, RouteSettings,
    UnmatchedMode,
};
use crate::hashing::FastState;

mod word_memo;
pub use word_memo::WordMemo;

/// The route of every unmatched path in `wildcard` mode (OBI's value).
pub const WILDCARD_ROUTE: &str = "/**";
/// The heuristic keeps at most this many path segments (deeper ones are
/// dropped), which also bounds the cardinality of very deep paths.
pub const HEURISTIC_MAX_SEGMENTS: usize = 10;
/// Segments longer than this are never kept by the heuristic.
const HEURISTIC_MAX_SEGMENT_LEN: usize = 64;
/// Nodes one [`SegmentCardinalityLimiter`] may hold before it stops learning
/// new segment values (they then become the wildcard).
const LIMITER_MAX_NODES: usize = 20_000;

/// The outcome for one request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision<'a> {
    /// `http.route`, when there is one. Borrowed from the pattern or the path
    /// unless the heuristic rewrote the path.
    pub route: Option<Cow<'a, str>>,
    /// Drop the span from traces (the trace printer and OTLP traces).
    pub ignore_traces: bool,
    /// Leave the request out of metrics.
    pub ignore_metrics: bool,
    /// The route came from the heuristic in `low-cardinality` mode: pass it
    /// through the service's [`SegmentCardinalityLimiter`].
    pub needs_cardinality_cap: bool,
}

/// An `instrument` entry's own routes, and which of them a span takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRoute {
    /// The entry's place among those with routes (`ServiceExport::routes`).
    pub index: u16,
    /// A client call's (`outgoing`), not a server request's (`incoming`).
    pub outgoing: bool,
}

/// An entry's own patterns, compiled.
#[derive(Debug, Clone, Default)]
struct ServicePatterns {
    incoming: PatternSet,
    outgoing: PatternSet,
}

/// The compiled `routes` section. Immutable and shareable; see the module
/// documentation for the semantics.
#[derive(Debug, Clone)]
pub struct RouteMatcher {
    patterns: PatternSet,
    /// The `instrument` entries' own patterns, tried after `patterns`.
    services: Vec<ServicePatterns>,
    ignored: PatternSet,
    ignore_mode: IgnoreMode,
    unmatched: UnmatchedMode,
    wildcard: char,
    max_path_segment_cardinality: usize,
}

impl RouteMatcher {
    /// Compiles the settings. Errors name the key, the bad pattern and what
    /// is expected, e.g. `patterns[2] "/users/{id": "{id" has no closing "}"`.
    pub fn new(settings: &RouteSettings) -> Result<Self, String> {
        let wildcard = parse_wildcard_char(&settings.wildcard_char)
            .map_err(|e| format!("wildcard_char: {e}"))?;
        let services = settings
            .services
            .iter()
            .map(|routes| {
                Ok(ServicePatterns {
                    incoming: PatternSet::build(&routes.incoming, "incoming")?,
                    outgoing: PatternSet::build(&routes.outgoing, "outgoing")?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            patterns: PatternSet::build(&settings.patterns, "patterns")?,
            services,
            ignored: PatternSet::build(&settings.ignored_patterns, "ignored_patterns")?,
            ignore_mode: settings.ignore_mode,
            unmatched: settings.unmatched,
            wildcard,
            max_path_segment_cardinality: settings.max_path_segment_cardinality,
        })
    }

    /// Route and ignore flags for a request path (a query string or fragment,
    /// if present, is not part of the route).
    pub fn classify<'a>(&'a self, path: &'a str) -> RouteDecision<'a> {
        self.classify_with(path, None, &mut is_word_like)
    }

    /// Whether some `instrument` entry has its own routes.
    pub fn has_service_routes(&self) -> bool {
        !self.services.is_empty()
    }

    /// [`Self::classify_remembering`] for a process whose entry has its own
    /// routes (`service`), tried after the section's patterns: those of its
    /// server requests, or of its client calls when `outgoing`.
    pub fn classify_for_service<'a>(
        &'a self,
        path: &'a str,
        service: Option<ServiceRoute>,
        words: &mut WordMemo,
    ) -> RouteDecision<'a> {
        self.classify_with(path, service, &mut |segment| {
            words.is_word(segment, is_word_like)
        })
    }

    /// [`Self::classify`], with the heuristic's words remembered in `words`
    /// (the pipeline's: it classifies every request).
    pub fn classify_remembering<'a>(
        &'a self,
        path: &'a str,
        words: &mut WordMemo,
    ) -> RouteDecision<'a> {
        self.classify_with(path, None, &mut |segment| {
            words.is_word(segment, is_word_like)
        })
    }

    fn classify_with<'a>(
        &'a self,
        path: &'a str,
        service: Option<ServiceRoute>,
        is_word: &mut impl FnMut(&str) -> bool,
    ) -> RouteDecision<'a> {
        let path = strip_query(path);
        let ignored = !self.ignored.is_empty() && self.ignored.find(path).is_some();
        let ignore_traces = ignored && self.ignore_mode.drops_traces();
        let ignore_metrics = ignored && self.ignore_mode.drops_metrics();
        let mut decision = RouteDecision {
            route: None,
            ignore_traces,
            ignore_metrics,
            needs_cardinality_cap: false,
        };
        if ignore_traces && ignore_metrics {
            return decision; // the span goes nowhere: no route needed
        }
        if let Some(route) = self.patterns.find(path) {
            decision.route = Some(Cow::Borrowed(route));
            return decision;
        }
        if let Some(route) = service.and_then(|service| self.service_route(path, service)) {
            decision.route = Some(Cow::Borrowed(route));
            return decision;
        }
        decision.route = match self.unmatched {
            UnmatchedMode::Unset => None,
            UnmatchedMode::Path => Some(Cow::Borrowed(path)),
            UnmatchedMode::Wildcard => Some(Cow::Borrowed(WILDCARD_ROUTE)),
            UnmatchedMode::Heuristic => Some(judged_route(path, self.wildcard, is_word)),
            UnmatchedMode::LowCardinality => {
                decision.needs_cardinality_cap = self.max_path_segment_cardinality > 0;
                Some(judged_route(path, self.wildcard, is_word))
            }
        };
        decision
    }

    fn service_route(&self, path: &str, service: ServiceRoute) -> Option<&str> {
        let patterns = self.services.get(usize::from(service.index))?;
        if service.outgoing {
            patterns.outgoing.find(path)
        } else {
            patterns.incoming.find(path)
        }
    }

    /// The pattern a path matches, if any (no unmatched handling).
    pub fn matched_pattern(&self, path: &str) -> Option<&str> {
        self.patterns.find(strip_query(path))
    }

    /// Whether the path matches `ignored_patterns` (whatever the mode).
    pub fn is_ignored(&self, path: &str) -> bool {
        self.ignored.find(strip_query(path)).is_some()
    }

    pub fn unmatched(&self) -> UnmatchedMode {
        self.unmatched
    }

    pub fn wildcard_char(&self) -> char {
        self.wildcard
    }

    /// A fresh per-service limiter for `low-cardinality` mode, or `None` when
    /// the mode is different or the cap is disabled (0).
    pub fn new_cardinality_limiter(&self) -> Option<SegmentCardinalityLimiter> {
        (self.unmatched == UnmatchedMode::LowCardinality && self.max_path_segment_cardinality > 0)
            .then(|| {
                SegmentCardinalityLimiter::new(self.max_path_segment_cardinality, self.wildcard)
            })
    }
}

/// Paths up to this long are searched byte by byte: `memchr2`'s setup
/// costs more than the walk over a short path (`/`, `/api/users/42`).
const SHORT_PATH: usize = 16;

fn strip_query(path: &str) -> &str {
    let bytes = path.as_bytes();
    let end = if bytes.len() <= SHORT_PATH {
        bytes.iter().position(|&b| b == b'?' || b == b'#')
    } else {
        memchr::memchr2(b'?', b'#', bytes)
    };
    match end {
        Some(end) => path.get(..end).unwrap_or(path),
        None => path,
    }
}

// ---------------------------------------------------------------------------
// Pattern trie
// ---------------------------------------------------------------------------

fn split_first(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((segment, tail)) => (segment, Some(tail)),
        None => (rest, None),
    }
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Index of the pattern ending here.
    route: Option<u32>,
    /// Sorted by segment text, for binary search.
    literals: Vec<(Box<str>, Node)>,
    /// Single-segment placeholders by literal prefix, in definition order.
    params: Vec<(Box<str>, Node)>,
    /// The multi-segment placeholder's subtree.
    rest: Option<Box<Node>>,
}

impl Node {
    fn is_leaf(&self) -> bool {
        self.literals.is_empty() && self.params.is_empty() && self.rest.is_none()
    }

    fn child(&mut self, segment: PatternSegment<'_>) -> &mut Node {
        match segment {
            PatternSegment::Literal(text) => {
                let index = match self.literals.binary_search_by(|(key, _)| (**key).cmp(text)) {
                    Ok(index) => index,
                    Err(index) => {
                        self.literals.insert(index, (text.into(), Node::default()));
                        index
                    }
                };
                &mut self.literals[index].1
            }
            PatternSegment::Param { prefix } => {
                let index = match self.params.iter().position(|(p, _)| **p == *prefix) {
                    Some(index) => index,
                    None => {
                        self.params.push((prefix.into(), Node::default()));
                        self.params.len() - 1
                    }
                };
                &mut self.params[index].1
            }
            PatternSegment::Rest => self.rest.get_or_insert_with(Box::default),
        }
    }

    /// The first route reachable from here for the remaining segments
    /// (`None` = no segment left). Recursion depth is bounded by the depth
    /// of the trie, not by the path.
    fn find(&self, rest: Option<&str>) -> Option<u32> {
        let Some(rest) = rest else {
            return self
                .route
                .or_else(|| self.rest.as_ref().and_then(|node| node.route));
        };
        let (segment, tail) = split_first(rest);
        if let Ok(index) = self
            .literals
            .binary_search_by(|(key, _)| (**key).cmp(segment))
        {
            if let Some(route) = self.literals[index].1.find(tail) {
                return Some(route);
            }
        }
        for (prefix, node) in &self.params {
            let fits = prefix.is_empty()
                || (segment.len() > prefix.len() && segment.starts_with(&**prefix));
            if fits {
                if let Some(route) = node.find(tail) {
                    return Some(route);
                }
            }
        }
        let node = self.rest.as_deref()?;
        if !node.is_leaf() {
            // A suffix follows the placeholder: consume as many segments as
            // possible while leaving at least one for the suffix.
            for (slash, _) in rest.rmatch_indices('/') {
                if let Some(route) = node.find(Some(&rest[slash + 1..])) {
                    return Some(route);
                }
            }
        }
        node.route
    }
}

#[derive(Debug, Clone, Default)]
struct PatternSet {
    root: Node,
    routes: Vec<Box<str>>,
}

impl PatternSet {
    fn build(patterns: &[String], key: &str) -> Result<Self, String> {
        let mut set = Self::default();
        for (index, pattern) in patterns.iter().enumerate() {
            let bad = |why: String| format!("{key}[{index}] {pattern:?}: {why}");
            let segments = parse_pattern(pattern).map_err(bad)?;
            let route_index =
                u32::try_from(set.routes.len()).map_err(|_| bad("too many patterns".into()))?;
            let mut node = &mut set.root;
            for segment in segments {
                node = node.child(segment);
            }
            // The first definition of the same shape wins.
            if node.route.is_none() {
                node.route = Some(route_index);
                set.routes.push(pattern.as_str().into());
            }
        }
        Ok(set)
    }

    fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn find(&self, path: &str) -> Option<&str> {
        if self.routes.is_empty() {
            return None;
        }
        let index = self.root.find(path_body(path))?;
        self.routes.get(index as usize).map(|r| &**r)
    }
}

// ---------------------------------------------------------------------------
// Heuristic
// ---------------------------------------------------------------------------

/// OBI's `heuristic` unmatched mode: every path segment that does not look
/// like a word — it has digits (except one in second place, as in `v1` or
/// `k8s`), characters other than ASCII letters, `-`, `_` and `.`, an odd mix
/// of upper and lower case, or letters that do not read like (English or
/// technical) words — becomes `wildcard`. Empty segments and a trailing `/`
/// are kept; segments past the tenth are dropped; the query is removed.
///
/// `/users/123/orders/8f14e45f-ceea-467a-9af0-3c5c1f4f2d19` →
/// `/users/*/orders/*`. Best effort, as in OBI: a path that is a tree of
/// real words (`/blog/my-first-post`) keeps its cardinality; use patterns or
/// `low-cardinality` for those.
pub fn heuristic_route(path: &str, wildcard: char) -> Cow<'_, str> {
    judged_route(strip_query(path), wildcard, &mut is_word_like)
}

/// [`heuristic_route`] of a path without its query, with `is_word` telling
/// which segments read like words. The root path, the commonest of all
/// (pages, health checks), has no segment to judge: it is its own route
/// without a walk.
#[inline]
fn judged_route<'a>(
    path: &'a str,
    wildcard: char,
    is_word: &mut impl FnMut(&str) -> bool,
) -> Cow<'a, str> {
    if matches!(path, "/" | "") {
        return Cow::Borrowed(path);
    }
    judged_segments(path, wildcard, is_word)
}

/// [`judged_route`] segment by segment.
fn judged_segments<'a>(
    path: &'a str,
    wildcard: char,
    is_word: &mut impl FnMut(&str) -> bool,
) -> Cow<'a, str> {
    let bytes = path.as_bytes();
    let mut out: Option<String> = None;
    let mut start: usize = 0; // byte offset of the current segment
    for index in 0.. {
        let end = bytes
            .get(start..)
            .and_then(|rest| rest.iter().position(|&b| b == b'/'))
            .map_or(bytes.len(), |i| start + i);
        if index > HEURISTIC_MAX_SEGMENTS {
            // Drop this segment and everything after it.
            let kept = path.get(..start - 1).unwrap_or(path);
            return match out {
                Some(route) => Cow::Owned(route),
                None => Cow::Borrowed(kept),
            };
        }
        let segment = path.get(start..end).unwrap_or_default();
        // The empty segment before a path's first slash (and any between
        // two slashes) is kept, as `is_word_like` keeps it, without asking.
        let word = segment.is_empty() || is_word(segment);
        if !word && out.is_none() {
            // The route is never longer than the path (the wildcard is ASCII).
            let mut route = String::with_capacity(path.len());
            route.push_str(path.get(..start.saturating_sub(1)).unwrap_or_default());
            out = Some(route);
        }
        if let Some(route) = out.as_mut() {
            if index > 0 {
                route.push('/');
            }
            if word {
                route.push_str(segment);
            } else {
                route.push(wildcard);
            }
        }
        if end >= bytes.len() {
            break;
        }
        start = end + 1;
    }
    match out {
        Some(route) => Cow::Owned(route),
        None => Cow::Borrowed(path),
    }
}

fn is_vowel(letter: u8) -> bool {
    matches!(letter, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

/// Letter-pair statistics of words, in three tiers: common in English text
/// (cost 0), plausible inside a word (cost 1: any pair with a vowel — y
/// counts — except `q` not followed by `u`, `s` after anything, the
/// consonant clusters and the pairs of the vocabulary below), and the rest
/// (cost 3). A word's average cost stays low; random letters' does not.
struct Bigrams {
    common: [u32; 26],
    plausible: [u32; 26],
}

/// The most frequent letter pairs of English text, most frequent first.
const COMMON_PAIRS: &str =
    "th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng \
    se ha as ou io le ve co me de hi ri ro ic ne ea ra ce li ch ll be ma si \
    om ur ca el ta la ns di fo ho pe ec pr no ct us ac ot il tr ly nc et ut \
    ss so rs un lo wa ge ie wh ee wi em ad ol rt po we na ul ni ts mo ow pa \
    im mi ai sh ir su id os iv ia am fi ci vi pl ig tu ev ld ry mp fe bl ab \
    gh ty op wo sa ay ex ke fr oo av ag if ap gr od bo sp rd do uc bu ei ov \
    by rm ep tt oc fa ef cu rn sc gi da yo cr cl du ga qu ue ff ba ey ls va \
    um pp ua up lu go ht ru ug ds lt pi rc rr eg au ck ew mu br bi pt ak pu \
    ui rg ib tl ny ki rk ys";

/// Consonant clusters of English words.
const CONSONANT_CLUSTERS: &str = "bb bl br bj bt bm bd \
    ch ck cl cr ct cc cq \
    dd dr dl dm dj dg dn dv dw dh \
    ff fl fr ft \
    gg gh gl gn gr gm gt \
    ht hn hm hl hr \
    kl kn kg kw \
    ll lb lc ld lf lg lk lm ln lp lt lv lw \
    mm mb mp mn ml mf \
    nn nc nd ng nk nt nv nf nj nq nl nm nh nr nx \
    pp pl pr pt ph pd pg \
    rr rb rc rd rf rg rk rl rm rn rp rt rv rw rh \
    sc sh sk sl sm sn sp sq st sw sf sd \
    tt th tr tw tl tc tm tp tn tb tf tg tz \
    wh wn wr wl wd \
    xt xp xc xh \
    zz";

/// Words of web APIs (and a few of everyday English) that are always kept,
/// and whose letter pairs count as plausible (tech words have clusters
/// English lacks: sql, http, pprof).
const VOCABULARY: &str = "api admin auth oauth login logout signup signin session token user account \
    profile settings config configuration health healthz healthcheck ready readiness live liveness \
    metrics prometheus status ping version info debug pprof swagger openapi graphql grpc http https \
    html xhtml xml json yaml csv pdf png jpeg jpg gif svg webp css javascript script scripts static \
    assets public images media upload download files docs documentation search query filter sort \
    page order cart checkout payment invoice product catalog category item inventory stock shipping \
    customer vendor report dashboard analytics event webhook webhooks callback notification message \
    chat inbox email mail sms phone address contact support help faq about terms privacy policy blog \
    post comment article news feed tags topic group team member role permission organization project \
    workspace repo repository commit branch release build deploy deployment job task queue worker \
    cluster node namespace pod service endpoint proxy gateway cache redis postgres postgresql mysql \
    sqlite mongo kafka elastic index backup restore export import sync async batch stream socket \
    websocket beta alpha internal external private console portal home main default create update \
    delete remove list show view detail summary stats statistics count total history audit logs \
    trace span kubernetes docker container registry storage bucket object blob key secret \
    certificate cert certs tls ssl well known acme challenge openid jwks userinfo authorize \
    authorization redirect favicon robots sitemap manifest bundle chunk runtime polyfills styles \
    fonts icons logo widget nginx apache django flask rails spring express fastapi laravel symfony \
    dotnet golang python ruby java node npm pypi cargo crates rust wasm ebpf kernel linux cgroup \
    netns xdp tcp udp dns smtp ftp sftp ssh vpn cdn rpc hls dash mpeg sdk cli gui url uri uuid \
    guid hash checksum sha crc etag jwt saml ldap kerberos scim fhir dicom iso utc gmt \
    getquote bookmarks cookbook sandbox workflow thumbnails feedback firmware playbook rhythms \
    strengths lengths twelfths hello world attach quote store shop price offer deal coupon \
    discount review rating wish favorite friend follow followers following like share photo \
    video audio music playlist album artist movie episode season channel schedule calendar \
    booking reservation ticket flight hotel travel weather map location place region country \
    city street";

impl Bigrams {
    const fn index(letter: u8) -> usize {
        (letter.to_ascii_lowercase() - b'a') as usize
    }

    const fn build() -> Self {
        let mut plausible = [0u32; 26];
        let mut a = 0;
        while a < 26 {
            let mut b = 0;
            while b < 26 {
                let (x, y) = (b'a' + a as u8, b'a' + b as u8);
                let vowel = matches!(x, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
                    || matches!(y, b'a' | b'e' | b'i' | b'o' | b'u' | b'y');
                if (vowel && x != b'q') || (x == b'q' && y == b'u') || y == b's' {
                    plausible[a] |= 1 << b;
                }
                b += 1;
            }
            a += 1;
        }
        let common = Self::add_pairs([0u32; 26], COMMON_PAIRS.as_bytes());
        plausible = Self::add_pairs(plausible, COMMON_PAIRS.as_bytes());
        plausible = Self::add_pairs(plausible, CONSONANT_CLUSTERS.as_bytes());
        plausible = Self::add_pairs(plausible, VOCABULARY.as_bytes());
        Self { common, plausible }
    }

    const fn add_pairs(mut table: [u32; 26], text: &[u8]) -> [u32; 26] {
        let mut i = 1;
        while i < text.len() {
            let (x, y) = (text[i - 1], text[i]);
            if x.is_ascii_lowercase() && y.is_ascii_lowercase() {
                table[Self::index(x)] |= 1 << Self::index(y);
            }
            i += 1;
        }
        table
    }

    fn cost(&self, first: u8, second: u8) -> usize {
        let (row, bit) = (Self::index(first), 1u32 << Self::index(second));
        if self.common[row] & bit != 0 {
            0
        } else if self.plausible[row] & bit != 0 {
            1
        } else {
            3
        }
    }
}

static BIGRAMS: Bigrams = Bigrams::build();

/// The vocabulary as a set, and the length of its longest word.
struct Vocabulary {
    words: hashbrown::HashSet<&'static [u8], FastState>,
    longest: usize,
}

fn vocabulary() -> &'static Vocabulary {
    static WORDS: OnceLock<Vocabulary> = OnceLock::new();
    WORDS.get_or_init(|| {
        let words: hashbrown::HashSet<&'static [u8], FastState> =
            VOCABULARY.split_whitespace().map(str::as_bytes).collect();
        let longest = words.iter().map(|w| w.len()).max().unwrap_or(0);
        Vocabulary { words, longest }
    })
}

impl Vocabulary {
    fn contains(&self, word: &[u8]) -> bool {
        word.len() <= self.longest && self.words.contains(word)
    }
}

/// Whether a path segment reads like a word (kept) or like an identifier.
fn is_word_like(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return true;
    }
    if bytes.len() > HEURISTIC_MAX_SEGMENT_LEN {
        return false;
    }
    for (i, &c) in bytes.iter().enumerate() {
        let ok = c.is_ascii_alphabetic()
            || matches!(c, b'-' | b'_' | b'.')
            // One digit in second place after a letter: v1, v2, k8s, h2, s3.
            || (i == 1
                && c.is_ascii_digit()
                && bytes[0].is_ascii_alphabetic()
                && !bytes.get(2).is_some_and(u8::is_ascii_digit));
        if !ok {
            return false;
        }
    }
    // A leading dot is a hidden name (.well-known); other separators must
    // join non-empty parts.
    let body = bytes.strip_prefix(b".").unwrap_or(bytes);
    body.split(|&b| matches!(b, b'-' | b'_' | b'.'))
        .all(|part| !part.is_empty() && part_is_word(part))
}

fn part_is_word(part: &[u8]) -> bool {
    // One pass: the letters as written and in lower case, and their capitals
    // (a segment has at most HEURISTIC_MAX_SEGMENT_LEN bytes).
    let mut original = [0u8; HEURISTIC_MAX_SEGMENT_LEN];
    let mut lower = [0u8; HEURISTIC_MAX_SEGMENT_LEN];
    let mut count = 0;
    let mut first_upper = false;
    let mut inner_upper = 0;
    for &c in part.iter().filter(|c| c.is_ascii_alphabetic()) {
        if let (Some(slot), Some(low)) = (original.get_mut(count), lower.get_mut(count)) {
            *slot = c;
            *low = c.to_ascii_lowercase();
        }
        if c.is_ascii_uppercase() {
            if count == 0 {
                first_upper = true;
            } else {
                inner_upper += 1;
            }
        }
        count += 1;
    }
    if count <= 4 {
        return true; // api, v, id, json: too short to judge
    }
    let kept = count.min(HEURISTIC_MAX_SEGMENT_LEN);
    let letters = original.get(..kept).unwrap_or_default();
    let lower = lower.get(..kept).unwrap_or_default();
    let all_upper = first_upper && inner_upper + 1 == count;
    // camelCase has at most one capital per three letters; random base-52
    // tokens have one per two.
    if !all_upper && inner_upper * 3 > count {
        return false;
    }
    // A word is kept if it reads like one or is in the vocabulary; most
    // words read like one, so the vocabulary is consulted last.
    reads_like_a_word(letters, lower, all_upper) || vocabulary().contains(lower)
}

/// The letter-pair test of [`part_is_word`]: `letters` as written, `lower`
/// the same in lower case.
fn reads_like_a_word(letters: &[u8], lower: &[u8], all_upper: bool) -> bool {
    let mut previous: Option<u8> = None;
    let mut vowels = 0;
    let mut consonant_run = 0;
    let mut same_run = 0;
    let mut cost = 0;
    let mut pairs = 0;
    for (&c, &low) in letters.iter().zip(lower) {
        if is_vowel(low) {
            vowels += 1;
            consonant_run = 0;
        } else {
            consonant_run += 1;
            if consonant_run > 5 {
                return false;
            }
        }
        // A new camelCase hump starts a new word: no pair across it.
        let new_hump = !all_upper && c.is_ascii_uppercase();
        match previous {
            Some(prev) if !new_hump => {
                same_run = if prev == low { same_run + 1 } else { 0 };
                if same_run >= 2 {
                    return false; // three of a kind
                }
                cost += BIGRAMS.cost(prev, low);
                pairs += 1;
            }
            _ => same_run = 0,
        }
        previous = Some(low);
    }
    // Average pair cost at most 1/2.
    vowels > 0 && cost * 2 <= pairs
}

// ---------------------------------------------------------------------------
// low-cardinality
// ---------------------------------------------------------------------------

/// OBI's `low-cardinality` mode, for one service: remembers the distinct
/// values seen at each position of the (heuristic) route tree; once a
/// position has had more than `max` distinct values it collapses — all its
/// values, past and future, become the wildcard, and what was learned below
/// them is merged. Memory is bounded (a node budget), after which unseen
/// values become the wildcard.
#[derive(Debug, Clone)]
pub struct SegmentCardinalityLimiter {
    max: usize,
    wildcard: char,
    root: LimiterNode,
    nodes: usize,
}

#[derive(Debug, Clone, Default)]
struct LimiterNode {
    children: HashMap<Box<str>, LimiterNode>,
    /// Set once this position collapsed: the single child for every value.
    collapsed: Option<Box<LimiterNode>>,
}

impl LimiterNode {
    fn size(&self) -> usize {
        1 + self.children.values().map(LimiterNode::size).sum::<usize>()
            + self.collapsed.as_ref().map_or(0, |c| c.size())
    }

    /// Merges `other` (a subtree from a collapsed sibling) into `self`,
    /// applying the cap again.
    fn merge(&mut self, other: LimiterNode, max: usize) {
        if let Some(collapsed) = other.collapsed {
            self.collapse(max);
            if let Some(mine) = self.collapsed.as_mut() {
                mine.merge(*collapsed, max);
            }
        }
        for (segment, child) in other.children {
            if let Some(mine) = self.collapsed.as_mut() {
                mine.merge(child, max);
            } else if let Some(mine) = self.children.get_mut(&segment) {
                mine.merge(child, max);
            } else {
                self.children.insert(segment, child);
                if self.children.len() > max {
                    self.collapse(max);
                }
            }
        }
    }

    fn collapse(&mut self, max: usize) {
        if self.collapsed.is_some() {
            return;
        }
        let mut merged = LimiterNode::default();
        for (_, child) in std::mem::take(&mut self.children) {
            merged.merge(child, max);
        }
        self.collapsed = Some(Box::new(merged));
    }
}

impl SegmentCardinalityLimiter {
    /// `max` distinct values per position (at least 1).
    pub fn new(max: usize, wildcard: char) -> Self {
        Self {
            max: max.max(1),
            wildcard,
            root: LimiterNode::default(),
            nodes: 1,
        }
    }

    /// The capped form of a route (borrowed when unchanged).
    pub fn limit<'r>(&mut self, route: &'r str) -> Cow<'r, str> {
        let Self {
            max,
            wildcard,
            root,
            nodes,
        } = self;
        let (max, wildcard) = (*max, *wildcard);
        let mut out: Option<String> = None;
        let mut node = Some(root);
        let mut start: usize = 0;
        for (index, segment) in route.split('/').enumerate() {
            let mut replace = false;
            if !segment.is_empty() {
                match node.take() {
                    Some(current) => {
                        if current.collapsed.is_none()
                            && !current.children.contains_key(segment)
                            && current.children.len() >= max
                        {
                            let before = current.size();
                            current.collapse(max);
                            *nodes = (*nodes + current.size()).saturating_sub(before);
                        }
                        if current.collapsed.is_some() {
                            replace = true;
                            node = current.collapsed.as_deref_mut();
                        } else if current.children.contains_key(segment)
                            || *nodes < LIMITER_MAX_NODES
                        {
                            if !current.children.contains_key(segment) {
                                *nodes += 1;
                            }
                            node = Some(current.children.entry(segment.into()).or_default());
                        } else {
                            // Out of budget: stop learning; the rest is wildcards.
                            replace = true;
                        }
                    }
                    None => replace = true,
                }
            }
            if replace && out.is_none() {
                out = Some(route[..start.saturating_sub(1)].to_owned());
            }
            if let Some(capped) = out.as_mut() {
                if index > 0 {
                    capped.push('/');
                }
                if replace {
                    capped.push(wildcard);
                } else {
                    capped.push_str(segment);
                }
            }
            start += segment.len() + 1;
        }
        match out {
            Some(capped) => Cow::Owned(capped),
            None => Cow::Borrowed(route),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn matcher(settings: RouteSettings) -> RouteMatcher {
        RouteMatcher::new(&settings).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_entry_s_own_routes_come_after_the_section_s_for_its_direction() {
        let strings = |list: &[&str]| list.iter().map(|p| p.to_string()).collect();
        let m = matcher(RouteSettings {
            patterns: strings(&["/users/{id}"]),
            ignored_patterns: strings(&["/health"]),
            services: vec![
                crate::config::routes::ServiceRoutes {
                    incoming: strings(&["/items/{id}", "/users/me"]),
                    outgoing: strings(&["/api/:version/users"]),
                },
                crate::config::routes::ServiceRoutes {
                    incoming: Vec::new(),
                    outgoing: strings(&["/items/{id}"]),
                },
            ],
            ..RouteSettings::default()
        });
        assert!(m.has_service_routes());
        let mut words = WordMemo::default();
        let mut route = |path: &'static str, service: Option<(u16, bool)>| {
            let service = service.map(|(index, outgoing)| ServiceRoute { index, outgoing });
            m.classify_for_service(path, service, &mut words)
                .route
                .map(Cow::into_owned)
        };
        let some = |route: &str| Some(route.to_owned());
        // Server requests take the entry's incoming patterns, calls its outgoing ones.
        assert_eq!(
            route("/items/42?x=1", Some((0, false))),
            some("/items/{id}")
        );
        assert_eq!(
            route("/api/v2/users", Some((0, true))),
            some("/api/:version/users")
        );
        assert_eq!(route("/items/42", Some((1, true))), some("/items/{id}"));
        // Not the other direction's, nor another entry's: the heuristic then.
        assert_eq!(route("/items/42", Some((0, true))), some("/items/*"));
        assert_eq!(route("/items/42", Some((1, false))), some("/items/*"));
        assert_eq!(route("/items/42", None), some("/items/*"));
        // The section's patterns first; its ignored paths stay ignored.
        assert_eq!(route("/users/me", Some((0, false))), some("/users/{id}"));
        // An index past the list (none such is made) finds nothing.
        assert_eq!(route("/items/42", Some((9, false))), some("/items/*"));
        let ignored = m.classify_for_service(
            "/health",
            Some(ServiceRoute {
                index: 0,
                outgoing: false,
            }),
            &mut WordMemo::default(),
        );
        assert!(ignored.ignore_traces && ignored.ignore_metrics);
        assert!(!with_patterns(&["/a"]).has_service_routes());
    }

    fn with_patterns(patterns: &[&str]) -> RouteMatcher {
        matcher(RouteSettings {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            unmatched: UnmatchedMode::Unset,
            ..RouteSettings::default()
        })
    }

    fn route(m: &RouteMatcher, path: &str) -> Option<String> {
        m.classify(path).route.map(|r| r.into_owned())
    }

    proptest::proptest! {
        #[test]
        fn the_query_is_cut_at_its_first_question_mark_or_hash_whatever_the_length(
            path in "[/a?#]{0,80}"
        ) {
            let want = path.split(['?', '#']).next().unwrap_or_default();
            proptest::prop_assert_eq!(strip_query(&path), want);
        }
    }

    #[test]
    fn placeholders_in_every_accepted_syntax() {
        let m = with_patterns(&[
            "/users/{id}",
            "/users/{id}/basket/{product}",
            "/api/v1/items/:id",
            "/flask/<int:id>",
            "/flask/<name>/x",
            "/dotnet/{id:int}",
            "/dotnet/{id?}/opt",
            "/dotnet/{controller=Home}/c",
            "/symfony/{id<\\d+>}",
            "/@:username/followers",
        ]);
        for (path, want) in [
            ("/users/123", "/users/{id}"),
            ("/users/abc/", "/users/{id}"),
            ("/users/1/basket/3", "/users/{id}/basket/{product}"),
            ("/api/v1/items/42", "/api/v1/items/:id"),
            ("/flask/7", "/flask/<int:id>"),
            ("/flask/bob/x", "/flask/<name>/x"),
            ("/dotnet/7", "/dotnet/{id:int}"),
            ("/dotnet/7/opt", "/dotnet/{id?}/opt"),
            ("/dotnet/Products/c", "/dotnet/{controller=Home}/c"),
            ("/symfony/42", "/symfony/{id<\\d+>}"),
            ("/@alice/followers", "/@:username/followers"),
        ] {
            assert_eq!(route(&m, path).as_deref(), Some(want), "{path}");
        }
        for path in [
            "/users",
            "/users/1/basket",
            "/users/1/basket/3/x",
            "/api/v1/items",
            "/alice/followers",
            "/@/followers",
            "/other",
        ] {
            assert_eq!(route(&m, path), None, "{path}");
        }
    }

    #[test]
    fn trailing_wildcards_match_the_prefix_and_everything_below() {
        let m = with_patterns(&[
            "/static/*",
            "/files/{rest:path}",
            "/dl/<path:file>",
            "/net/{**all}",
        ]);
        for (path, want) in [
            ("/static", "/static/*"),
            ("/static/", "/static/*"),
            ("/static/css/site.css", "/static/*"),
            ("/files/a/b/c.txt", "/files/{rest:path}"),
            ("/dl/x", "/dl/<path:file>"),
            ("/net/a/b", "/net/{**all}"),
        ] {
            assert_eq!(route(&m, path).as_deref(), Some(want), "{path}");
        }
        assert_eq!(route(&m, "/staticx"), None);
    }

    #[test]
    fn a_multi_segment_placeholder_with_a_suffix_backtracks() {
        let m = with_patterns(&["/files/<path:name>/metadata", "/files/static", "/files"]);
        assert_eq!(route(&m, "/files").as_deref(), Some("/files"));
        assert_eq!(route(&m, "/files/static").as_deref(), Some("/files/static"));
        for path in [
            "/files/a/metadata",
            "/files/a/b/metadata",
            "/files/static/x/metadata",
            "/files/a/metadata/b/metadata",
        ] {
            assert_eq!(
                route(&m, path).as_deref(),
                Some("/files/<path:name>/metadata"),
                "{path}"
            );
        }
        for path in ["/files/metadata", "/files/a/b", "/files/a/metadata/x"] {
            assert_eq!(route(&m, path), None, "{path}");
        }
    }

    #[test]
    fn literals_win_then_placeholders_in_definition_order_with_fallback() {
        let m = with_patterns(&[
            "/foo/bar/bae/",
            "/foo/:id",
            "/foo/{id}/push",
            "/admin/*",
            "/admin/:id/settings",
            "/",
        ]);
        assert_eq!(route(&m, "/").as_deref(), Some("/"));
        assert_eq!(route(&m, "").as_deref(), Some("/"));
        assert_eq!(route(&m, "/foo/bar/bae").as_deref(), Some("/foo/bar/bae/"));
        assert_eq!(route(&m, "/foo/bar").as_deref(), Some("/foo/:id"));
        assert_eq!(
            route(&m, "/foo/5678/push").as_deref(),
            Some("/foo/{id}/push")
        );
        assert_eq!(route(&m, "/foo/1234/down"), None);
        assert_eq!(route(&m, "/admin").as_deref(), Some("/admin/*"));
        assert_eq!(route(&m, "/admin/token").as_deref(), Some("/admin/*"));
        assert_eq!(
            route(&m, "/admin/token/settings").as_deref(),
            Some("/admin/:id/settings")
        );
        // A literal that dead-ends falls back to the placeholder.
        let m = with_patterns(&["/a/b/c", "/a/{x}/d"]);
        assert_eq!(route(&m, "/a/b/d").as_deref(), Some("/a/{x}/d"));
        // Prefix placeholders before catch-alls when declared first.
        let m = with_patterns(&["/@:user/profile", "/:section/profile"]);
        assert_eq!(
            route(&m, "/@carol/profile").as_deref(),
            Some("/@:user/profile")
        );
        assert_eq!(
            route(&m, "/settings/profile").as_deref(),
            Some("/:section/profile")
        );
    }

    #[test]
    fn the_query_is_not_part_of_the_path() {
        let m = with_patterns(&["/users/{id}"]);
        assert_eq!(route(&m, "/users/7?x=1").as_deref(), Some("/users/{id}"));
        assert_eq!(route(&m, "/users/7#top").as_deref(), Some("/users/{id}"));
    }

    #[test]
    fn bad_patterns_are_named_with_a_hint() {
        for (pattern, hint) in [
            ("/users/{id", "closing"),
            ("/users/{}", "parameter name"),
            ("/users/:", "parameter name"),
            ("/users/:1x", "parameter name"),
            ("/users/<>", "parameter name"),
            ("/files/{name}.json", "whole segment"),
            ("/static/*.css", "whole segments"),
            ("/a/*/b/*", "at most one"),
            ("/search?q=1", "query"),
            ("", "empty"),
            ("/a/foo:", "parameter name"),
        ] {
            let err = RouteMatcher::new(&RouteSettings {
                patterns: vec!["/ok/{id}".into(), pattern.into()],
                ..RouteSettings::default()
            })
            .err()
            .unwrap_or_default();
            assert!(
                err.starts_with("patterns[1] ") && err.contains(&format!("{pattern:?}")),
                "{pattern}: {err}"
            );
            assert!(err.contains(hint), "{pattern}: {err}");
        }
        let err = RouteMatcher::new(&RouteSettings {
            ignored_patterns: vec!["/x/{".into()],
            ..RouteSettings::default()
        })
        .err()
        .unwrap_or_default();
        assert!(err.starts_with("ignored_patterns[0] "), "{err}");
        for bad in ["**", "/", "ab"] {
            let err = RouteMatcher::new(&RouteSettings {
                wildcard_char: bad.into(),
                ..RouteSettings::default()
            })
            .err()
            .unwrap_or_default();
            assert!(err.starts_with("wildcard_char: "), "{err}");
        }
    }

    #[test]
    fn ignore_modes() {
        let settings = |mode| RouteSettings {
            patterns: vec!["/users/{id}".into()],
            ignored_patterns: vec!["/health".into(), "/v1/*".into()],
            ignore_mode: mode,
            ..RouteSettings::default()
        };
        let all = matcher(settings(IgnoreMode::All));
        let d = all.classify("/health");
        assert!(d.ignore_traces && d.ignore_metrics && d.route.is_none());
        let d = all.classify("/v1/anything/below?x");
        assert!(d.ignore_traces && d.ignore_metrics);
        assert!(all.is_ignored("/v1") && !all.is_ignored("/healthz"));
        let d = all.classify("/users/3");
        assert!(!d.ignore_traces && !d.ignore_metrics);

        let traces = matcher(settings(IgnoreMode::Traces));
        let d = traces.classify("/health");
        assert!(d.ignore_traces && !d.ignore_metrics);
        assert_eq!(d.route.as_deref(), Some("/health")); // metrics still need it

        let metrics = matcher(settings(IgnoreMode::Metrics));
        let d = metrics.classify("/health");
        assert!(!d.ignore_traces && d.ignore_metrics);
    }

    #[test]
    fn unmatched_modes() {
        let with = |unmatched| {
            matcher(RouteSettings {
                patterns: vec!["/users/{id}".into()],
                unmatched,
                ..RouteSettings::default()
            })
        };
        let path = "/orders/42/items?x=1";
        assert_eq!(route(&with(UnmatchedMode::Unset), path), None);
        assert_eq!(
            route(&with(UnmatchedMode::Path), path).as_deref(),
            Some("/orders/42/items")
        );
        assert_eq!(
            route(&with(UnmatchedMode::Wildcard), path).as_deref(),
            Some("/**")
        );
        assert_eq!(
            route(&with(UnmatchedMode::Heuristic), path).as_deref(),
            Some("/orders/*/items")
        );
        let low = with(UnmatchedMode::LowCardinality);
        let d = low.classify(path);
        assert!(d.needs_cardinality_cap);
        assert_eq!(d.route.as_deref(), Some("/orders/*/items"));
        assert!(low.new_cardinality_limiter().is_some());
        assert!(with(UnmatchedMode::Heuristic)
            .new_cardinality_limiter()
            .is_none());
        // A matched pattern is never rewritten or capped.
        let d = low.classify("/users/9");
        assert_eq!(d.route.as_deref(), Some("/users/{id}"));
        assert!(!d.needs_cardinality_cap);
        // Default settings are OBI's: heuristic.
        assert_eq!(RouteSettings::default().unmatched, UnmatchedMode::Heuristic);
    }

    #[test]
    fn classify_borrows_unless_the_heuristic_rewrites() {
        let m = matcher(RouteSettings {
            patterns: vec!["/users/{id}".into()],
            ..RouteSettings::default()
        });
        assert!(matches!(
            m.classify("/users/1").route,
            Some(Cow::Borrowed(_))
        ));
        assert!(matches!(
            m.classify("/api/health").route,
            Some(Cow::Borrowed(_))
        ));
        assert!(matches!(m.classify("/api/12").route, Some(Cow::Owned(_))));
    }

    #[test]
    fn heuristic_examples() {
        for (path, want) in [
            ("", ""),
            ("/", "/"),
            ("/users/fdklsd/j4elk/23993/job/2", "/users/*/j4elk/*/job/*"),
            ("123", "*"),
            ("/123", "/*"),
            ("123/", "*/"),
            ("/u/2", "/u/*"),
            ("/v1/products/2", "/v1/products/*"),
            ("/v1/products/22j", "/v1/products/*"),
            ("/products/1/org/3", "/products/*/org/*"),
            ("/products//org/3", "/products//org/*"),
            ("/v1/k6-test-runs/1", "/v1/k6-test-runs/*"),
            ("/attach", "/attach"),
            ("/attach?session_id=ddfsdsf&track_id=sjdklnfldsn", "/attach"),
            ("/attach#section-1", "/attach"),
            (
                "/usuarios/fdklsd/j4elk/23993/trabajo/2",
                "/usuarios/*/j4elk/*/trabajo/*",
            ),
            (
                "/Benutzer/fdklsd/j4elk/23993/Arbeit/2",
                "/Benutzer/*/j4elk/*/Arbeit/*",
            ),
            ("/products/", "/products/"),
            ("/user-space/", "/user-space/"),
            ("/user_space/", "/user_space/"),
            ("/api/hello.world", "/api/hello.world"),
            (
                "/api.backup/hello.world.again",
                "/api.backup/hello.world.again",
            ),
            ("/getquote", "/getquote"),
            (
                "/document/d/CfMkAGbE_aivhFydEpaRafPuGWbmHfG/edit",
                "/document/d/*/edit",
            ),
            (
                "/document/d/C2fMkAGb3E_aivhFyd5EpaRafP123uGWbmHfG/edit",
                "/document/d/*/edit",
            ),
            ("/orders/8f14e45f-ceea-467a-9af0-3c5c1f4f2d19", "/orders/*"),
            (
                "/blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "/blobs/*",
            ),
            ("/files/deadbeefcafe0001", "/files/*"),
            ("/a/b/c/d/e/f/g/h/i/j/k/l", "/a/b/c/d/e/f/g/h/i/j"),
            (
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration",
            ),
            ("/api/v2/getUserById/77", "/api/v2/getUserById/*"),
            ("/static/favicon.ico", "/static/favicon.ico"),
            ("/img/logo192.png", "/img/*"),
            ("/users/alice%40example.com", "/users/*"),
            ("/p/2024-01-31/report", "/p/*/report"),
            ("/t/QmFzZTY0VG9rZW4=", "/t/*"),
            ("/healthcheck", "/healthcheck"),
            ("/dashboard/settings", "/dashboard/settings"),
        ] {
            assert_eq!(heuristic_route(path, '*'), want, "{path}");
        }
        assert_eq!(heuristic_route("/users/42", '#'), "/users/#");
    }

    /// A small deterministic generator (xorshift) for the cardinality tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn token(&mut self, alphabet: &[u8], len: usize) -> String {
            (0..len)
                .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
                .collect()
        }
        fn uuid(&mut self) -> String {
            let hex = self.token(b"0123456789abcdef", 32);
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        }
    }

    #[test]
    fn ten_thousand_distinct_ids_give_a_bounded_number_of_routes() {
        let m = matcher(RouteSettings::default());
        let mut rng = Rng(0x5eed_1234_abcd_9876);
        let mut routes = HashSet::new();
        let mut paths = HashSet::new();
        for i in 0..10_000u64 {
            let path = match i % 8 {
                0 => format!("/users/{}", rng.next() % 1_000_000_000),
                1 => format!("/orders/{}", rng.uuid()),
                2 => format!("/orders/{}/items/{}", rng.uuid(), rng.next() % 100),
                3 => format!("/blobs/sha256:{}", rng.token(b"0123456789abcdef", 64)),
                4 => format!("/blobs/{}", rng.token(b"0123456789abcdef", 64)),
                5 => format!("/api/v1/accounts/{}/profile", rng.next()),
                6 => format!(
                    "/s/{}",
                    rng.token(
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                        22
                    )
                ),
                _ => format!("/download/{}.tar.gz", rng.next() % 100_000),
            };
            paths.insert(path.clone());
            let decision = m.classify(&path);
            routes.insert(decision.route.map(Cow::into_owned));
        }
        assert!(paths.len() > 9_900, "the test needs distinct paths");
        let mut sorted: Vec<_> = routes.iter().flatten().cloned().collect();
        sorted.sort();
        assert!(routes.len() <= 10, "{} routes: {sorted:?}", routes.len());
        for want in [
            "/users/*",
            "/orders/*",
            "/orders/*/items/*",
            "/blobs/*",
            "/api/v1/accounts/*/profile",
            "/s/*",
        ] {
            assert!(
                routes.contains(&Some(want.to_string())),
                "{want}: {sorted:?}"
            );
        }
    }

    /// The pipeline's classification, which remembers words, gives every
    /// path the route the plain one does: words, ids, random tokens of
    /// letters (some read like words, some not) and camelCase, repeated and
    /// interleaved, in both heuristic modes.
    #[test]
    fn remembering_words_changes_no_route() {
        let mut rng = Rng(0x0dd_5eed);
        let letters = b"abcdefghijklmnopqrstuvwxyz";
        let tokens: Vec<String> = (0..400)
            .map(|i| match i % 4 {
                0 => rng.token(letters, 5 + i % 9),
                1 => rng.token(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 8),
                2 => rng.uuid(),
                _ => (rng.next() % 100_000).to_string(),
            })
            .collect();
        let words = [
            "users",
            "orders",
            "sessions",
            "items",
            "static",
            "getUserProfile",
            "v1",
        ];
        for unmatched in [UnmatchedMode::Heuristic, UnmatchedMode::LowCardinality] {
            let m = matcher(RouteSettings {
                unmatched,
                ..RouteSettings::default()
            });
            let mut memo = WordMemo::default();
            for i in 0..4_000usize {
                let token = |n: usize| tokens[(i * 7 + n * 13) % tokens.len()].as_str();
                let path = format!(
                    "/{}/{}/{}/{}.js",
                    words[i % words.len()],
                    token(0),
                    words[(i / 3) % words.len()],
                    token(1)
                );
                assert_eq!(
                    m.classify_remembering(&path, &mut memo),
                    m.classify(&path),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn random_letter_tokens_are_mostly_collapsed_and_words_are_kept() {
        let mut rng = Rng(42);
        for (alphabet, len, max_kept) in [
            (&b"abcdefghijklmnopqrstuvwxyz"[..], 12, 50),
            (&b"abcdefghijklmnopqrstuvwxyz"[..], 16, 20),
            (
                &b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[..],
                10,
                30,
            ),
            (&b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"[..], 12, 50),
        ] {
            let kept = (0..1000)
                .filter(|_| is_word_like(&rng.token(alphabet, len)))
                .count();
            assert!(kept <= max_kept, "{kept}/1000 random tokens of {len} kept");
        }
        for word in VOCABULARY.split_whitespace().chain([
            "healthcheck",
            "getquote",
            "addToCart",
            "orderHistory",
            "README",
            "strengths",
            "environment",
            "subscriptions",
            "notifications",
            "administrator",
            "thumbnails",
            "transactions",
            "authentication",
            "checkout",
            "leaderboard",
            "playground",
            "background",
            "keyboard",
            "bookmarks",
        ]) {
            assert!(is_word_like(word), "{word} collapsed");
        }
    }

    #[test]
    fn low_cardinality_caps_each_position_and_collapses() {
        let mut limiter = SegmentCardinalityLimiter::new(3, '*');
        assert_eq!(limiter.limit("/users/a/profile"), "/users/a/profile");
        assert_eq!(limiter.limit("/users/b/profile"), "/users/b/profile");
        assert_eq!(limiter.limit("/users/c/profile"), "/users/c/profile");
        assert!(matches!(
            limiter.limit("/users/c/profile"),
            Cow::Borrowed(_)
        ));
        // The fourth distinct value collapses the position, the old ones too.
        assert_eq!(limiter.limit("/users/d/profile"), "/users/*/profile");
        assert_eq!(limiter.limit("/users/a/profile"), "/users/*/profile");
        assert_eq!(limiter.limit("/users/zz/settings"), "/users/*/settings");
        assert_eq!(limiter.limit("/orders/1"), "/orders/1");
        assert_eq!(limiter.limit("/"), "/");
        assert_eq!(limiter.limit("/users/"), "/users/");
        // Ten thousand distinct slugs stay within a handful of routes.
        let mut routes = HashSet::new();
        for i in 0..10_000 {
            let path = format!("/blog/post-{}/comments", i % 5000);
            routes.insert(limiter.limit(&path).into_owned());
        }
        assert!(routes.len() <= 4, "{routes:?}");
        assert!(routes.contains("/blog/*/comments"));
    }

    #[test]
    fn low_cardinality_memory_is_bounded() {
        let mut limiter = SegmentCardinalityLimiter::new(1000, '*');
        let mut rng = Rng(7);
        for _ in 0..30_000 {
            let a = rng.next() % 900;
            let b = rng.next() % 900;
            let path = format!("/{a}/{b}/x");
            limiter.limit(&path);
        }
        assert!(
            limiter.root.size() <= LIMITER_MAX_NODES + 1,
            "{}",
            limiter.root.size()
        );
    }

    /// Matching cost: run with
    /// `cargo test --release -p zerotrace-worker --lib routes::tests::speed -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run in release"]
    fn speed() {
        let mut patterns: Vec<String> = (0..30)
            .map(|i| format!("/api/v1/resource{i}/{{id}}/sub/:child"))
            .collect();
        patterns.push("/static/*".into());
        patterns.push("/users/{id}/orders/{order}".into());
        let m = matcher(RouteSettings {
            patterns,
            ignored_patterns: vec!["/health".into(), "/metrics".into()],
            ..RouteSettings::default()
        });
        let paths = [
            "/api/v1/resource17/12345/sub/abc",
            "/users/42/orders/99",
            "/static/js/app.js",
            "/health",
            "/unknown/8f14e45f-ceea-467a-9af0-3c5c1f4f2d19/items",
        ];
        let rounds = 200_000;
        let start = std::time::Instant::now();
        let mut routed = 0usize;
        for i in 0..rounds {
            let d = m.classify(paths[i % paths.len()]);
            routed += usize::from(d.route.is_some());
        }
        let per = start.elapsed() / rounds as u32;
        println!("classify: {per:?} per path ({routed} routed)");
        assert!(per < std::time::Duration::from_micros(1), "{per:?}");
    }
}
