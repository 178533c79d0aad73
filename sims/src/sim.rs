//! What every simulator shares: its context (clock, time scale, seed,
//! faults), the admin routes common to all systems, and the handle the
//! rest of rota holds.
//!
//! Design decision: the vendor API and the admin API are two routers on two
//! listeners; only the vendor router gets the fault middleware, and only
//! its origin is meant to be granted to plugins.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::System;
use crate::clock::{Clock, TimeScale};
use crate::fault::{FaultSettings, Faults};
use crate::requests::{LoggedRequest, RequestLog};
use crate::server;
use crate::util::{iso, parse_json};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Per-system context handed to a simulator when it is built.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) clock: Clock,
    pub(crate) scale: TimeScale,
    pub(crate) seed: Arc<AtomicU64>,
    pub(crate) config: Arc<crate::SimsConfig>,
    /// The request-log sequence shared by every system of one `Sims`.
    pub(crate) requests_seq: Arc<AtomicU64>,
}

impl Ctx {
    /// The seed fixtures are (re)built from; `POST /admin/reset` may change it.
    pub(crate) fn seed(&self) -> u64 {
        self.seed.load(Ordering::SeqCst)
    }
}

pub(crate) trait Simulator: Send + Sync + 'static {
    /// The full state as JSON, secrets as fingerprints.
    fn state(&self) -> Value;
    /// Throws the state away and seeds the fixtures again.
    fn reset(&self);
    /// The credentials the operator drives the vendor API with (clear text:
    /// what rota's config or secret store would hold in rehearsal).
    fn operator(&self) -> Value {
        json!({})
    }
    /// One round of background work (app host logins, consumer calls, sync).
    fn tick(self: Arc<Self>) -> BoxFuture<Value> {
        Box::pin(async { json!({"ticked": false}) })
    }
}

/// A running simulator: where it listens and how to look inside.
#[derive(Clone)]
pub struct SimHandle {
    system: System,
    origin: String,
    admin_origin: String,
    sim: Arc<dyn Simulator>,
    clock: Clock,
    faults: Arc<Faults>,
    requests: Arc<RequestLog>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("system", &self.system)
            .field("origin", &self.origin)
            .field("admin_origin", &self.admin_origin)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    pub fn system(&self) -> System {
        self.system
    }

    /// The vendor API origin, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The admin API origin; never grant it to a plugin.
    pub fn admin_origin(&self) -> &str {
        &self.admin_origin
    }

    /// The same snapshot as `GET /admin/state`.
    pub fn state(&self) -> Value {
        snapshot(self.system, &self.clock, &*self.sim)
    }

    /// The operator's credentials for this system (same as `GET /admin/operator`).
    pub fn operator(&self) -> Value {
        self.sim.operator()
    }

    /// Runs one round of background work now (same as `POST /admin/tick`).
    pub async fn tick(&self) -> Value {
        self.sim.clone().tick().await
    }

    /// Moves this simulator's "now" to wall time + `secs`.
    pub fn set_clock_offset_secs(&self, secs: i64) {
        self.clock.set_offset_secs(secs);
    }

    /// Replaces the fault rules and seed (same as `PUT /admin/faults`).
    pub fn set_faults(&self, settings: FaultSettings) {
        self.faults.set(settings);
    }

    /// Faults injected so far.
    pub fn fault_log(&self) -> Vec<crate::FaultEvent> {
        self.faults.log()
    }

    /// The vendor-API requests served so far, in order (same as `GET /admin/requests`).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.requests.entries()
    }

    /// Forgets the requests served so far (same as `DELETE /admin/requests`).
    pub fn clear_requests(&self) {
        self.requests.clear();
    }
}

fn snapshot(system: System, clock: &Clock, sim: &dyn Simulator) -> Value {
    json!({
        "system": system.name(),
        "now": iso(clock.now()),
        "clock_offset_secs": clock.offset_secs(),
        "state": sim.state(),
    })
}

#[derive(Clone)]
struct Common {
    seed: Arc<AtomicU64>,
    system: System,
    clock: Clock,
    sim: Arc<dyn Simulator>,
    faults: Arc<Faults>,
    requests: Arc<RequestLog>,
}

fn bad_request(msg: String) -> Response {
    crate::util::json(StatusCode::BAD_REQUEST, json!({"error": msg}))
}

fn common_admin(c: Common) -> Router {
    Router::new()
        .route(
            "/admin/state",
            get(|State(c): State<Common>| async move { Json(snapshot(c.system, &c.clock, &*c.sim)) }),
        )
        .route(
            "/admin/clock",
            get(|State(c): State<Common>| async move {
                Json(json!({"offset_secs": c.clock.offset_secs(), "now": iso(c.clock.now())}))
            })
            .put(|State(c): State<Common>, body: Bytes| async move {
                #[derive(Deserialize)]
                struct B {
                    offset_secs: i64,
                }
                match parse_json::<B>(&body) {
                    Ok(b) => {
                        c.clock.set_offset_secs(b.offset_secs);
                        crate::util::json(
                            StatusCode::OK,
                            json!({"offset_secs": c.clock.offset_secs(), "now": iso(c.clock.now())}),
                        )
                    }
                    Err(e) => bad_request(e),
                }
            }),
        )
        .route(
            "/admin/faults",
            get(|State(c): State<Common>| async move {
                let s = c.faults.settings();
                Json(json!({"seed": s.seed, "rules": s.rules, "log": c.faults.log()}))
            })
            .put(|State(c): State<Common>, body: Bytes| async move {
                match parse_json::<FaultSettings>(&body) {
                    Ok(s) => {
                        c.faults.set(s.clone());
                        crate::util::json(StatusCode::OK, json!({"seed": s.seed, "rules": s.rules}))
                    }
                    Err(e) => bad_request(e),
                }
            }),
        )
        .route(
            "/admin/reset",
            post(|State(c): State<Common>, body: Bytes| async move {
                #[derive(Deserialize)]
                struct B {
                    seed: Option<u64>,
                }
                match parse_json::<B>(&body) {
                    Ok(b) => {
                        if let Some(seed) = b.seed {
                            c.seed.store(seed, Ordering::SeqCst);
                        }
                        c.sim.reset();
                        crate::util::json(StatusCode::OK, snapshot(c.system, &c.clock, &*c.sim))
                    }
                    Err(e) => bad_request(e),
                }
            }),
        )
        .route(
            "/admin/requests",
            get(|State(c): State<Common>| async move {
                Json(json!({"system": c.system.name(), "requests": c.requests.entries()}))
            })
            .delete(|State(c): State<Common>| async move {
                c.requests.clear();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/admin/operator",
            get(|State(c): State<Common>| async move { Json(c.sim.operator()) }),
        )
        .route(
            "/admin/tick",
            post(|State(c): State<Common>| async move { Json(c.sim.clone().tick().await) }),
        )
        .with_state(c)
}

/// Binds both listeners and starts serving.
#[allow(
    clippy::too_many_arguments,
    reason = "one call per simulator; a params struct would only rename them"
)]
pub(crate) async fn launch(
    system: System,
    ctx: &Ctx,
    sim: Arc<dyn Simulator>,
    style: Arc<dyn crate::fault::ErrorStyle>,
    api: Router,
    admin: Router,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> std::io::Result<SimHandle> {
    let settings = FaultSettings {
        seed: ctx.config.fault_seed.unwrap_or(ctx.config.seed),
        rules: ctx.config.faults.get(&system).cloned().unwrap_or_default(),
    };
    let faults = Arc::new(Faults::new(settings, style, ctx.scale));
    let requests = Arc::new(RequestLog::new(ctx.requests_seq.clone()));
    // The log wraps the faults, so a faulted request is logged as answered.
    let api = api
        .layer(axum::middleware::from_fn_with_state(
            faults.clone(),
            crate::fault::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            requests.clone(),
            crate::requests::middleware,
        ));
    let common = Common {
        seed: ctx.seed.clone(),
        system,
        clock: ctx.clock.clone(),
        sim: sim.clone(),
        faults: faults.clone(),
        requests: requests.clone(),
    };
    let admin = admin.merge(common_admin(common));
    let (api_l, api_addr) = server::bind().await?;
    let (admin_l, admin_addr) = server::bind().await?;
    tasks.push(server::spawn(api_l, api, shutdown.clone()));
    tasks.push(server::spawn(admin_l, admin, shutdown.clone()));
    Ok(SimHandle {
        system,
        origin: format!("http://{api_addr}"),
        admin_origin: format!("http://{admin_addr}"),
        sim,
        clock: ctx.clock.clone(),
        faults,
        requests,
    })
}
