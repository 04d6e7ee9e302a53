//! The controller: one process, in-memory state. Agents report their links; the
//! controller keeps the link-quality graph, recomputes routes (see [`crate::routing`]) when
//! something changes, and pushes each relay its new route set through a long poll.
//!
//! HTTP+JSON (see `wecan_api`) because a network engineer can drive and inspect it with
//! `curl` and `jq`, and because agents need nothing more than request/response plus a long
//! poll; gRPC would add code generation and a binary protocol for no gain at this scale.
//!
//! Only over TLS, and every call but `/healthz` authenticated (see [`crate::auth`]): there is
//! no plain-HTTP mode to misconfigure.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use axum::{
    Json, Router as Http,
    extract::{
        ConnectInfo, FromRequestParts, Path as UrlPath, Query, State as AxumState,
        rejection::JsonRejection,
    },
    http::{
        HeaderValue, StatusCode,
        header::{AUTHORIZATION, WWW_AUTHENTICATE},
        request::Parts,
    },
    response::{IntoResponse, Response},
    routing::{get, post},
};
use log::info;
use serde::Deserialize;
use tokio::sync::{Notify, watch};

use wecan_api::{
    Ack, AuthReply, EdgeInfo, EdgeReport, ErrorReply, LinkReport, PushedRoute, Report, RoutesReply,
    SelectReply, SelectRequest, Topology, TopologyLink, TopologyNode,
};

use crate::{
    auth::{Auth, NodeCredential, OperatorCredential, Principal, Refusal},
    edges,
    routing::{Graph, Hysteresis, LinkMetrics, Router, link_cost},
    tls,
};

/// Controller settings (`configs/controller.toml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// A relay whose last report is older than this is out of the graph.
    pub stale_after_ms: u64,
    /// Route hysteresis: switch only for a relative *and* absolute improvement.
    pub hysteresis_relative: f64,
    pub hysteresis_absolute_us: f64,
    /// Reports arriving within this window are folded into one recomputation.
    pub debounce_ms: u64,
    /// The controller's certificate chain and private key (PEM files); required.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Relays that may report, each with the SHA-256 of its token; at least one.
    pub nodes: Vec<NodeCredential>,
    /// Read-only tokens for operators (topology, all routes, refusal counters).
    pub operators: Vec<OperatorCredential>,
}

impl Default for Settings {
    fn default() -> Self {
        let h = Hysteresis::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            stale_after_ms: 3000,
            hysteresis_relative: h.relative,
            hysteresis_absolute_us: h.absolute_us,
            debounce_ms: 10,
            tls_cert: None,
            tls_key: None,
            nodes: Vec::new(),
            operators: Vec::new(),
        }
    }
}

impl Settings {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let s: Self =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        if !(0.0..1.0).contains(&s.hysteresis_relative) || s.hysteresis_absolute_us < 0.0 {
            anyhow::bail!(
                "config {}: hysteresis_relative must be in [0, 1) and hysteresis_absolute_us >= 0",
                path.display()
            );
        }
        Ok(s)
    }

    /// The token checks and the TLS identity the settings name; errors name the field.
    pub fn security(&self) -> Result<(Auth, rustls::ServerConfig)> {
        let missing = |field: &str, what: &str| {
            anyhow::anyhow!(
                "{field}: missing; set it to the path of the controller's {what} (PEM), see \
                 README \"Control plane\""
            )
        };
        let cert = self.tls_cert.as_deref().ok_or_else(|| missing("tls_cert", "certificate"))?;
        let key = self.tls_key.as_deref().ok_or_else(|| missing("tls_key", "private key"))?;
        let auth = Auth::new(&self.nodes, &self.operators)?;
        Ok((auth, tls::server_config(cert, key)?))
    }
}

struct NodeState {
    last_report: Instant,
    report: Report,
}

struct State {
    settings: Settings,
    nodes: BTreeMap<u32, NodeState>,
    router: Router,
    routes: BTreeMap<u32, RoutesReply>,
    generation: u64,
}

/// The shared controller state behind the HTTP API.
pub struct Controller {
    state: Mutex<State>,
    /// Bumped whenever any relay's routes change; long polls wait on it.
    changed: watch::Sender<u64>,
    dirty: Notify,
    auth: Auth,
}

fn metrics(l: &LinkReport) -> LinkMetrics {
    LinkMetrics { rtt_us: l.rtt_us, loss: l.loss, jitter_us: l.jitter_us }
}

impl State {
    fn fresh(&self, now: Instant) -> impl Iterator<Item = (&u32, &NodeState)> {
        let stale = Duration::from_millis(self.settings.stale_after_ms);
        self.nodes.iter().filter(move |(_, n)| now.duration_since(n.last_report) < stale)
    }

    fn graph(&self, now: Instant) -> Graph {
        let mut g = Graph::new();
        let fresh: Vec<(&u32, &NodeState)> = self.fresh(now).collect();
        for &(&id, _) in &fresh {
            g.add_node(id, true);
        }
        for &(&id, n) in &fresh {
            for &c in &n.report.clients {
                g.add_node(c, false);
                let _ = g.set_link(id, c, &LinkMetrics { rtt_us: 0.0, loss: 0.0, jitter_us: 0.0 });
            }
            for l in n.report.links.iter().filter(|l| l.up) {
                // A peer that has not reported (or whose reports went stale) has no links of
                // its own in the graph: until it reports, it is a destination, never a hop.
                if !g.nodes().contains(&l.peer) {
                    g.add_node(l.peer, true);
                }
                let _ = g.set_link(id, l.peer, &metrics(l));
            }
        }
        g
    }

    /// Recomputes all routes; returns whether any relay's route set changed.
    fn recompute(&mut self, now: Instant) -> bool {
        let graph = self.graph(now);
        let choices = self.router.compute(&graph);
        let mut per_node: BTreeMap<u32, Vec<PushedRoute>> = BTreeMap::new();
        for (&(src, dst), c) in &choices {
            let r = PushedRoute { dst, next_hop: c.next_hop, backup: c.backup, cost_us: c.cost_us };
            per_node.entry(src).or_default().push(r);
        }
        let fresh: Vec<u32> = self.fresh(now).map(|(&id, _)| id).collect();
        let mut changed = false;
        for node in fresh {
            let routes = per_node.remove(&node).unwrap_or_default();
            let same = self.routes.get(&node).is_some_and(|old| same_routes(&old.routes, &routes));
            if !same {
                self.generation += 1;
                let r = RoutesReply { node, generation: self.generation, routes };
                self.routes.insert(node, r);
                changed = true;
            }
        }
        changed
    }

    fn topology(&self, now: Instant) -> Topology {
        let mut nodes: BTreeMap<u32, TopologyNode> = BTreeMap::new();
        let mut links = Vec::new();
        for (&id, n) in &self.nodes {
            let age_ms = Some(now.duration_since(n.last_report).as_millis() as u64);
            nodes.insert(id, TopologyNode { id, relay: true, age_ms });
            for &c in &n.report.clients {
                nodes.entry(c).or_insert(TopologyNode { id: c, relay: false, age_ms: None });
            }
            for l in &n.report.links {
                links.push(TopologyLink {
                    from: id,
                    to: l.peer,
                    up: l.up,
                    rtt_us: l.rtt_us,
                    loss: l.loss,
                    jitter_us: l.jitter_us,
                    cost_us: link_cost(&metrics(l)).filter(|_| l.up),
                });
            }
        }
        Topology { nodes: nodes.into_values().collect(), links }
    }
}

/// Route sets are equal when next hops and backups are; cost changes alone are not pushed.
fn same_routes(a: &[PushedRoute], b: &[PushedRoute]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x.dst, x.next_hop, x.backup) == (y.dst, y.next_hop, y.backup))
}

impl Controller {
    pub fn new(settings: Settings, auth: Auth) -> Arc<Self> {
        let h = Hysteresis {
            relative: settings.hysteresis_relative,
            absolute_us: settings.hysteresis_absolute_us,
        };
        Arc::new(Self {
            state: Mutex::new(State {
                settings,
                nodes: BTreeMap::new(),
                router: Router::new(h),
                routes: BTreeMap::new(),
                generation: 0,
            }),
            changed: watch::channel(0).0,
            dirty: Notify::new(),
            auth,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Recomputes routes after reports arrive (debounced) and when relays go stale.
    async fn recompute_loop(self: Arc<Self>) {
        let (debounce, stale) = {
            let s = &self.lock().settings;
            (Duration::from_millis(s.debounce_ms), Duration::from_millis(s.stale_after_ms))
        };
        loop {
            let _ = tokio::time::timeout(stale / 4, self.dirty.notified()).await;
            tokio::time::sleep(debounce).await;
            let me = self.clone();
            let changed = tokio::task::spawn_blocking(move || {
                let mut st = me.lock();
                st.recompute(Instant::now()).then_some(st.generation)
            })
            .await
            .ok()
            .flatten();
            if let Some(g) = changed {
                self.changed.send_replace(g);
            }
        }
    }
}

/// Runs the controller over TLS on `listener` until the process ends.
pub async fn serve(
    listener: std::net::TcpListener,
    settings: Settings,
    auth: Auth,
    tls: rustls::ServerConfig,
) -> Result<()> {
    let ctl = Controller::new(settings, auth);
    tokio::spawn(ctl.clone().recompute_loop());
    info!("controller listening on https://{}", listener.local_addr()?);
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    let failed = ctl.clone();
    axum_server::from_tcp_rustls(listener, tls)
        .context("TLS listener")?
        .accept_error_handler(move |peer, e| match peer {
            // With a peer: its TLS handshake failed (without one the accept itself did, and
            // the server retries).
            Some(peer) => failed.auth.tls_failed(&format_args!("{peer}: {e}")),
            None => log::warn!("accept: {e}"),
        })
        .serve(api(ctl).into_make_service_with_connect_info::<SocketAddr>())
        .await
        .context("HTTPS server")
}

/// The HTTP API over a controller.
pub fn api(ctl: Arc<Controller>) -> Http {
    Http::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/nodes/{id}/report", post(report))
        .route("/v1/nodes/{id}/routes", get(node_routes))
        .route("/v1/routes", get(all_routes))
        .route("/v1/topology", get(topology))
        .route("/v1/auth", get(auth_status))
        .route("/v1/edges", get(all_edges))
        .route("/v1/edges/select", post(select_edges))
        .with_state(ctl)
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(ErrorReply { error: self.1 })).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            // RFC 6750: say which scheme is expected.
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The authenticated caller of a request. Extracting it refuses (and counts) a request
/// without a valid token before its body is read.
struct Caller {
    who: Principal,
    /// Method, path and peer, for the refusal log.
    what: String,
}

impl FromRequestParts<Arc<Controller>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(p: &mut Parts, ctl: &Arc<Controller>) -> Result<Self, ApiError> {
        let peer = p.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let what = match peer {
            Some(peer) => format!("{} {} from {peer}", p.method, p.uri.path()),
            None => format!("{} {}", p.method, p.uri.path()),
        };
        match ctl.auth.authenticate(p.headers.get(AUTHORIZATION).map(|v| v.as_bytes())) {
            Ok(who) => Ok(Self { who, what }),
            Err(r) => Err(refused(ctl, r, &what)),
        }
    }
}

impl Caller {
    /// Passes `right` through, counting and answering a refusal.
    fn check(&self, ctl: &Controller, right: Result<(), Refusal>) -> Result<(), ApiError> {
        right.map_err(|r| refused(ctl, r, &format_args!("{} by {}", self.what, self.who)))
    }
}

fn refused(ctl: &Controller, r: Refusal, what: &dyn std::fmt::Display) -> ApiError {
    ctl.auth.refuse(r, what);
    let code = if r.status() == 401 { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
    ApiError(code, r.message().into())
}

fn bad(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

fn node_id(raw: &str) -> Result<u32, ApiError> {
    match raw.parse::<u32>() {
        Ok(0) => Err(bad("node id 0 is reserved; use the relay's node_id".into())),
        Ok(id) => Ok(id),
        Err(_) => Err(bad(format!("node id {raw:?} is not a number; use the relay's node_id"))),
    }
}

fn validate(id: u32, r: &Report) -> Result<(), ApiError> {
    for (i, l) in r.links.iter().enumerate() {
        if l.peer == 0 || l.peer == id {
            return Err(bad(format!("links[{i}].peer: {} is not another node's id", l.peer)));
        }
        if !(0.0..=1.0).contains(&l.loss) {
            return Err(bad(format!("links[{i}].loss: {} is outside 0..=1", l.loss)));
        }
        for (name, v) in [("rtt_us", l.rtt_us), ("jitter_us", l.jitter_us)] {
            if !v.is_finite() || v < 0.0 {
                return Err(bad(format!("links[{i}].{name}: {v} must be a finite number >= 0")));
            }
        }
    }
    if let Some(c) = r.clients.iter().find(|&&c| c == 0 || c == id) {
        return Err(bad(format!("clients: {c} is not a client node id")));
    }
    if let Some(e) = &r.edge {
        if e.capacity == 0 {
            return Err(bad("edge.capacity: 0; an edge admits at least one client".into()));
        }
        let not_key = |k: &String| k.parse::<wecan_access::PublicKey>().is_err();
        if not_key(&e.operator) {
            return Err(bad(format!("edge.operator: {:?} is not an operator key", e.operator)));
        }
        if let Some((i, k)) = e.serves.iter().enumerate().find(|(_, k)| not_key(k)) {
            return Err(bad(format!("edge.serves[{i}]: {k:?} is not an operator key")));
        }
    }
    Ok(())
}

/// A report body of node `id`, decoded and validated as `POST /v1/nodes/{id}/report` does
/// once the content type is checked; the error is the message of the 400 reply. For tests and
/// fuzzing of the endpoint's input without a server.
pub fn decode_report(id: u32, body: &[u8]) -> Result<Report, String> {
    checked_report(id, Json::from_bytes(body)).map_err(|ApiError(_, msg)| msg)
}

fn checked_report(id: u32, body: Result<Json<Report>, JsonRejection>) -> Result<Report, ApiError> {
    let Json(r) = body.map_err(|e| {
        bad(format!("report body: {}; expected {{\"clients\": [ids], \"links\": [{{\"peer\", \"up\", \"rtt_us\", \"loss\", \"jitter_us\", \"age_ms\", \"sent\", \"received\"}}]}}", e.body_text()))
    })?;
    validate(id, &r)?;
    Ok(r)
}

async fn report(
    AxumState(ctl): AxumState<Arc<Controller>>,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
    body: Result<Json<Report>, JsonRejection>,
) -> Result<Json<Ack>, ApiError> {
    let id = node_id(&id)?;
    caller.check(&ctl, caller.who.may_report(id))?;
    let r = checked_report(id, body)?;
    let generation = {
        let mut st = ctl.lock();
        let first = !st.nodes.contains_key(&id);
        st.nodes.insert(id, NodeState { last_report: Instant::now(), report: r });
        if first {
            info!("node {id} reported for the first time");
        }
        st.routes.get(&id).map_or(0, |r| r.generation)
    };
    ctl.dirty.notify_one();
    Ok(Json(Ack { generation }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollQuery {
    after: Option<u64>,
    wait_ms: Option<u64>,
}

/// Long poll: answers as soon as the node's routes are newer than `after`, or after
/// `wait_ms` (at most 30 s) with what it has.
async fn node_routes(
    AxumState(ctl): AxumState<Arc<Controller>>,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
    q: Result<Query<PollQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RoutesReply>, ApiError> {
    let id = node_id(&id)?;
    caller.check(&ctl, caller.who.may_read_node(id))?;
    let Query(q) =
        q.map_err(|e| bad(format!("query: {}; use ?after=GENERATION&wait_ms=MS", e.body_text())))?;
    let after = q.after.unwrap_or(0);
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(30_000));
    let mut rx = ctl.changed.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = ctl.lock().routes.get(&id).cloned();
        if let Some(r) = &current
            && r.generation > after
        {
            return Ok(Json(r.clone()));
        }
        if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
            return Ok(Json(current.unwrap_or(RoutesReply {
                node: id,
                generation: 0,
                routes: vec![],
            })));
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesQuery {
    node: Option<u32>,
}

async fn all_routes(
    AxumState(ctl): AxumState<Arc<Controller>>,
    caller: Caller,
    q: Result<Query<RoutesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RoutesReply>>, ApiError> {
    caller.check(&ctl, caller.who.may_read_all())?;
    let Query(q) = q.map_err(|e| bad(format!("query: {}; use ?node=ID", e.body_text())))?;
    let st = ctl.lock();
    let out: Vec<RoutesReply> =
        st.routes.values().filter(|r| q.node.is_none_or(|n| n == r.node)).cloned().collect();
    if let Some(n) = q.node
        && out.is_empty()
    {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("node {n} has no routes (has it reported?)"),
        ));
    }
    Ok(Json(out))
}

async fn topology(
    AxumState(ctl): AxumState<Arc<Controller>>,
    caller: Caller,
) -> Result<Json<Topology>, ApiError> {
    caller.check(&ctl, caller.who.may_read_all())?;
    Ok(Json(ctl.lock().topology(Instant::now())))
}

async fn auth_status(
    AxumState(ctl): AxumState<Arc<Controller>>,
    caller: Caller,
) -> Result<Json<AuthReply>, ApiError> {
    caller.check(&ctl, caller.who.may_read_all())?;
    let (nodes, operators) = ctl.auth.counts();
    Ok(Json(AuthReply { nodes, operators, refused: ctl.auth.refusals() }))
}

impl State {
    /// Edges whose last report is fresh, by node.
    fn edges(&self, now: Instant) -> Vec<(u32, Duration, &EdgeReport)> {
        let stale = Duration::from_millis(self.settings.stale_after_ms);
        self.nodes
            .iter()
            .filter_map(|(id, n)| {
                let age = now.duration_since(n.last_report);
                n.report.edge.as_ref().filter(|_| age < stale).map(|e| (*id, age, e))
            })
            .collect()
    }
}

async fn all_edges(
    AxumState(ctl): AxumState<Arc<Controller>>,
    caller: Caller,
) -> Result<Json<Vec<EdgeInfo>>, ApiError> {
    caller.check(&ctl, caller.who.may_read_all())?;
    let st = ctl.lock();
    let out = st
        .edges(Instant::now())
        .into_iter()
        .map(|(node, age, e)| EdgeInfo { node, age_ms: age.as_millis() as u64, edge: e.clone() })
        .collect();
    Ok(Json(out))
}

/// The scheduler's answer to a client (no bearer token: its credential is in the body).
async fn select_edges(
    AxumState(ctl): AxumState<Arc<Controller>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<SelectRequest>, JsonRejection>,
) -> Result<Json<SelectReply>, ApiError> {
    let Json(req) = body.map_err(|e| {
        bad(format!(
            "select body: {}; expected {{\"token\": \"wecan1…\", \"region\": optional, \"max\": optional}}",
            e.body_text()
        ))
    })?;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let st = ctl.lock();
    let fresh = st.edges(Instant::now());
    let operator =
        edges::client_operator(&req.token, fresh.iter().map(|e| e.2), now_s).map_err(|why| {
            let r = ctl
                .auth
                .refuse(Refusal::BadClientToken, &format_args!("select from {peer}: {why}"));
            ApiError(StatusCode::UNAUTHORIZED, format!("{why}: {}", r.message()))
        })?;
    let max = req.max.unwrap_or(edges::DEFAULT_CANDIDATES);
    let ranked =
        edges::rank(fresh.iter().map(|e| (e.0, e.2)), &operator, req.region.as_deref(), max);
    Ok(Json(SelectReply { edges: ranked }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(peer: u32, rtt_us: f64) -> LinkReport {
        LinkReport {
            peer,
            up: true,
            rtt_us,
            loss: 0.0,
            jitter_us: 0.0,
            age_ms: Some(1),
            sent: 10,
            received: 10,
        }
    }

    fn state() -> State {
        State {
            settings: Settings::default(),
            nodes: BTreeMap::new(),
            router: Router::new(Hysteresis::default()),
            routes: BTreeMap::new(),
            generation: 0,
        }
    }

    #[test]
    fn routes_follow_reports_and_clients() {
        let mut st = state();
        let now = Instant::now();
        // 1 — 2 — 3 cheap, 1 — 3 expensive; client 100 at 3.
        for (id, links, clients) in [
            (1, vec![link(2, 1000.0), link(3, 50_000.0)], vec![]),
            (2, vec![link(1, 1000.0), link(3, 1000.0)], vec![]),
            (3, vec![link(2, 1000.0), link(1, 50_000.0)], vec![100]),
        ] {
            let report = Report { clients, links, edge: None };
            st.nodes.insert(id, NodeState { last_report: now, report });
        }
        assert!(st.recompute(now));
        let r1 = &st.routes[&1];
        let to_client = r1.routes.iter().find(|r| r.dst == 100).unwrap();
        assert_eq!(to_client.next_hop, 2);
        assert_eq!(to_client.backup, Some(3));
        // Nothing changed: no new generation.
        let g = st.generation;
        assert!(!st.recompute(now));
        assert_eq!(st.generation, g);
        // The 2 — 3 link dies: node 1 now reaches 100 directly.
        st.nodes.get_mut(&2).unwrap().report.links[1].up = false;
        st.nodes.get_mut(&3).unwrap().report.links[0].up = false;
        assert!(st.recompute(now));
        assert_eq!(st.routes[&1].routes.iter().find(|r| r.dst == 100).unwrap().next_hop, 3);
    }

    #[test]
    fn shipped_config_parses_and_missing_tls_files_are_named() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/controller.toml");
        let s = Settings::load(&path).unwrap();
        assert_eq!((s.nodes.len(), s.operators.len()), (2, 1));
        let e = format!("{:#}", s.security().err().expect("no such certificate here"));
        assert!(e.starts_with("tls_cert: cannot read /etc/wecan/controller.crt"), "{e}");
        let e = format!("{:#}", Settings::default().security().err().expect("no TLS files"));
        assert!(e.starts_with("tls_cert: missing"), "{e}");
    }

    #[test]
    fn report_bodies_decode_from_bytes() {
        assert_eq!(
            decode_report(1, br#"{"links": []}"#),
            Ok(Report { clients: vec![], links: vec![], edge: None })
        );
        assert!(decode_report(1, b"{").unwrap_err().starts_with("report body:"));
        let own_id = br#"{"clients": [1], "links": []}"#;
        assert!(decode_report(1, own_id).unwrap_err().starts_with("clients: 1"));
    }

    #[test]
    fn bad_reports_are_refused_with_the_field() {
        let r = Report {
            clients: vec![],
            links: vec![LinkReport { loss: 1.5, ..link(2, 1.0) }],
            edge: None,
        };
        let ApiError(code, msg) = validate(1, &r).unwrap_err();
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(msg.contains("links[0].loss"), "{msg}");
        let r = Report { clients: vec![], links: vec![link(1, 1.0)], edge: None };
        assert!(validate(1, &r).unwrap_err().1.contains("links[0].peer"));
        let r = Report { clients: vec![], links: vec![link(2, f64::NAN)], edge: None };
        assert!(validate(1, &r).unwrap_err().1.contains("rtt_us"));
        assert!(node_id("abc").unwrap_err().1.contains("not a number"));
        assert!(node_id("0").is_err());
    }
}
