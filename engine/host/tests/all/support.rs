use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use rota_core::{
    ActionCall, ActionError, ActionRunner, CaptureTarget, MemoryStore, Provenance, Secret, SecretRef,
    SecretScope,
};
use rota_host::{Config, HostOptions, Limits, Modeled, PluginHost, TargetConfig, config::PluginConfig};
use serde_json::{Value, json};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A loopback vendor: records hits, echoes what it received.
#[derive(Clone, Default)]
pub struct Server {
    pub hits: Arc<AtomicUsize>,
    pub last_headers: Arc<Mutex<Vec<(String, String)>>>,
    pub last_body: Arc<Mutex<Value>>,
}

impl Server {
    pub fn header(&self, name: &str) -> Option<String> {
        let h = self.last_headers.lock().unwrap_or_else(|e| e.into_inner());
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    pub fn body(&self) -> Value {
        self.last_body.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn record(State(s): State<Server>, headers: HeaderMap) {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let mut last = s.last_headers.lock().unwrap_or_else(|e| e.into_inner());
    *last = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
}

pub async fn serve() -> (SocketAddr, Server) {
    let state = Server::default();
    let app = Router::new()
        .route(
            "/json",
            get(|st: State<Server>, h: HeaderMap| async move {
                record(st, h).await;
                axum::Json(json!({"ok": true}))
            }),
        )
        .route(
            "/leak",
            get(|st: State<Server>, h: HeaderMap| async move {
                record(st, h.clone()).await;
                let auth = h
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                axum::Json(json!({"auth": auth}))
            }),
        )
        .route(
            "/keys",
            post(|st: State<Server>, h: HeaderMap, body: Bytes| async move {
                record(st, h.clone()).await;
                // Basic "acct:admin-token"
                let want = "Basic YWNjdDphZG1pbi10b2tlbg==";
                if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(want) {
                    return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
                }
                let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                axum::Json(json!({"id": "key-1", "secret": "NEW-SECRET-VALUE", "sent": sent})).into_response()
            }),
        )
        .route(
            "/echo",
            any(|st: State<Server>, h: HeaderMap, body: Bytes| async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                *st.last_body.lock().unwrap_or_else(|e| e.into_inner()) = body;
                record(st, h).await;
                axum::Json(json!({"ok": true}))
            }),
        )
        .route(
            "/login",
            post(|st: State<Server>, h: HeaderMap, body: Bytes| async move {
                record(st, h).await;
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if body["password"] != "pw" {
                    return (StatusCode::UNAUTHORIZED, "no").into_response();
                }
                axum::Json(json!({"token": "SESSION-JWT"})).into_response()
            }),
        )
        .route(
            "/me",
            get(|st: State<Server>, h: HeaderMap| async move {
                record(st, h.clone()).await;
                let ok = h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer SESSION-JWT");
                axum::Json(json!({"authenticated": ok}))
            }),
        )
        .route(
            "/redirect/{port}",
            get(
                |st: State<Server>, h: HeaderMap, Path(port): Path<u16>| async move {
                    record(st, h).await;
                    Response::builder()
                        .status(302)
                        .header("location", format!("http://127.0.0.1:{port}/json"))
                        .body(axum::body::Body::empty())
                        .unwrap_or_default()
                },
            ),
        )
        .route(
            "/huge",
            get(|st: State<Server>, h: HeaderMap| async move {
                record(st, h).await;
                vec![b'x'; 4 << 20]
            }),
        )
        .route(
            "/status/{code}",
            any(
                |st: State<Server>, h: HeaderMap, Path(code): Path<u16>| async move {
                    record(st, h).await;
                    (
                        StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
                        "status body",
                    )
                },
            ),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, state)
}

pub fn origin(addr: SocketAddr) -> String {
    format!("http://127.0.0.1:{}", addr.port())
}

pub fn target(origins: Vec<String>) -> TargetConfig {
    TargetConfig {
        name: "test".into(),
        base_url: origins.first().cloned(),
        origins,
        limits: Limits {
            cpu_ms: 300,
            memory_mib: 32,
            wall_ms: 5_000,
            response_kib: 64,
            ..Limits::default()
        },
        modeled: Modeled::Disabled,
        reveal: false,
        rehearsal: false,
    }
}

pub struct Fixture {
    pub host: PluginHost,
    pub scope: Arc<SecretScope>,
    pub store: Arc<MemoryStore>,
    pub _state: tempfile::TempDir,
}

pub fn state_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A host with the echo and hostile plugins, each granted `origins`.
pub fn fixture(
    targets: BTreeMap<&str, TargetConfig>,
    resolver: Option<Arc<dyn rota_host::Resolver>>,
) -> Fixture {
    let state = state_dir();
    fixture_in(state, targets, resolver)
}

pub fn fixture_in(
    state: tempfile::TempDir,
    targets: BTreeMap<&str, TargetConfig>,
    resolver: Option<Arc<dyn rota_host::Resolver>>,
) -> Fixture {
    let config = Config {
        plugins: targets
            .into_iter()
            .map(|(p, t)| (p.to_owned(), PluginConfig { targets: vec![t] }))
            .collect(),
        ..Config::default()
    };
    let mut opts = HostOptions::new(state.path());
    opts.extra_plugins = vec![
        PathBuf::from(rota_host::test_plugins::ECHO),
        PathBuf::from(rota_host::test_plugins::HOSTILE),
    ];
    opts.resolver = resolver;
    let host = PluginHost::new(&config, opts).expect("host");
    let store = Arc::new(MemoryStore::new());
    let scope = Arc::new(SecretScope::new(store.clone(), "run-1"));
    Fixture {
        host,
        scope,
        store,
        _state: state,
    }
}

pub fn both(origins: Vec<String>) -> BTreeMap<&'static str, TargetConfig> {
    BTreeMap::from([("echo", target(origins.clone())), ("hostile", target(origins))])
}

impl Fixture {
    pub fn call(&self, plugin: &str, action: &str, input: Value) -> ActionCall {
        ActionCall {
            run_id: "run-1".into(),
            step_id: "step-1".into(),
            attempt: 1,
            idempotency_key: "idem-1".into(),
            plugin: plugin.into(),
            action: action.into(),
            input,
            captures: BTreeMap::new(),
            secrets: self.scope.clone(),
        }
    }

    pub async fn run(&self, plugin: &str, action: &str, input: Value) -> Result<Value, ActionError> {
        self.host.invoke(self.call(plugin, action, input)).await
    }

    /// Puts a secret in the store, bound to `plugins`.
    pub fn secret(&self, name: &str, value: &str, owner: &str, send_to: &[&str]) -> SecretRef {
        self.scope
            .capture(
                owner,
                &CaptureTarget {
                    name: name.into(),
                    send_to: send_to.iter().map(|s| s.to_string()).collect(),
                    ephemeral: false,
                },
                Secret::new(value),
                Provenance::default(),
            )
            .expect("store secret")
    }

    /// The host still works after whatever happened before.
    pub async fn still_works(&self) {
        let out = self.run("echo", "echo", json!({"message": "still here"})).await;
        assert_eq!(out.ok().map(|v| v["message"].clone()), Some(json!("still here")));
        let out = self.run("hostile", "echo", json!({"x": 1})).await;
        assert_eq!(out.ok(), Some(json!({"x": 1})));
    }
}

/// Collects tracing output of the current thread.
#[derive(Clone, Default)]
pub struct Logs(pub Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let sub = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(sub);
    (logs, guard)
}
