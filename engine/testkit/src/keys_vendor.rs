//! [`KeysVendor`]: a small key-management vendor on loopback, for resume
//! tests with the `keys` test plugin (`plugins/testing/keys`).
//!
//! Design decision: it models exactly what makes an interrupted rotation
//! dangerous: a created key's secret is shown once (in the create answer),
//! a list shows only IDs, names and creation order, deleting is by ID, and
//! setting a consumer's credential is an idempotent PUT. The test reads the
//! vendor's side through [`KeysVendor::view`] (secrets as fingerprints only)
//! and gets every value it minted for the leak scanner.
//!
//! API (every call needs `Authorization: Bearer <token>`):
//! `POST /keys {"name"}` -> 201 `{"id", "name", "created", "secret"}` ·
//! `GET /keys` -> `{"keys": [{"id", "name", "created"}]}` ·
//! `DELETE /keys/{id}` -> 204 or 404 ·
//! `PUT /consumers/{id}/credential {"key_id", "secret"}` -> 200.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `sha256:<hex>` of a secret value: how the vendor's view shows secrets.
pub fn fingerprint(value: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(value.as_bytes())))
}

/// A key as the vendor's admin sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub created: u64,
    pub fingerprint: String,
}

/// The credential a consumer holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialView {
    pub key_id: String,
    pub fingerprint: String,
}

/// The vendor's state, secrets as fingerprints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorView {
    /// Live keys, in creation order.
    pub keys: Vec<KeyView>,
    pub consumers: BTreeMap<String, CredentialView>,
    /// Keys created through the API.
    pub creates: u32,
    /// Keys deleted through the API.
    pub deletes: u32,
}

impl VendorView {
    pub fn key(&self, id: &str) -> Option<&KeyView> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn named(&self, name: &str) -> Vec<&KeyView> {
        self.keys.iter().filter(|k| k.name == name).collect()
    }
}

struct Key {
    id: String,
    name: String,
    created: u64,
    secret: String,
}

#[derive(Default)]
struct Vendor {
    token: String,
    seed: u64,
    serial: u64,
    keys: Vec<Key>,
    consumers: BTreeMap<String, (String, String)>,
    creates: u32,
    deletes: u32,
    minted: Vec<String>,
    failing_lists: bool,
}

impl Vendor {
    fn mint(&mut self, name: &str) -> &Key {
        self.serial += 1;
        let secret = format!(
            "ksec-{}",
            &hex::encode(Sha256::digest(format!("{}:{}", self.seed, self.serial)))[..32]
        );
        self.minted.push(secret.clone());
        self.keys.push(Key {
            id: format!("k-{}", self.serial),
            name: name.to_owned(),
            created: self.serial,
            secret,
        });
        let i = self.keys.len() - 1;
        &self.keys[i]
    }
}

type Shared = Arc<Mutex<Vendor>>;

fn lock(v: &Shared) -> MutexGuard<'_, Vendor> {
    v.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running vendor; stops when dropped.
pub struct KeysVendor {
    origin: String,
    state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for KeysVendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysVendor")
            .field("origin", &self.origin)
            .finish()
    }
}

impl KeysVendor {
    /// Starts the vendor on `127.0.0.1:<ephemeral>`, accepting `token`.
    pub fn start(token: &str) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let origin = format!("http://{}", listener.local_addr()?);
        let state: Shared = Arc::new(Mutex::new(Vendor {
            token: token.to_owned(),
            seed: std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
            ..Vendor::default()
        }));
        let router = axum::Router::new()
            .route("/keys", get(list_keys).post(create_key))
            .route("/keys/{id}", delete(delete_key))
            .route("/consumers/{id}/credential", put(set_credential))
            .with_state(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("keys-vendor".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        Ok(Self {
            origin,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`: the base URL and the origin to grant.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A key that exists before the test (not counted as a create); its ID.
    pub fn seed_key(&self, name: &str) -> String {
        lock(&self.state).mint(name).id.clone()
    }

    /// A consumer that holds `key_id`'s secret before the test.
    pub fn seed_consumer(&self, consumer: &str, key_id: &str) {
        let mut v = lock(&self.state);
        let secret = v
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .map(|k| k.secret.clone())
            .unwrap_or_default();
        v.consumers
            .insert(consumer.to_owned(), (key_id.to_owned(), secret));
    }

    /// Makes `GET /keys` answer 503 (an outage of the vendor's read side).
    pub fn fail_lists(&self, failing: bool) {
        lock(&self.state).failing_lists = failing;
    }

    /// The vendor's state, secrets as fingerprints.
    pub fn view(&self) -> VendorView {
        let v = lock(&self.state);
        VendorView {
            keys: v
                .keys
                .iter()
                .map(|k| KeyView {
                    id: k.id.clone(),
                    name: k.name.clone(),
                    created: k.created,
                    fingerprint: fingerprint(&k.secret),
                })
                .collect(),
            consumers: v
                .consumers
                .iter()
                .map(|(c, (key_id, secret))| {
                    (
                        c.clone(),
                        CredentialView {
                            key_id: key_id.clone(),
                            fingerprint: fingerprint(secret),
                        },
                    )
                })
                .collect(),
            creates: v.creates,
            deletes: v.deletes,
        }
    }

    /// Every secret value the vendor ever minted, for the leak scanner.
    pub fn minted_secrets(&self) -> Vec<String> {
        lock(&self.state).minted.clone()
    }
}

impl Drop for KeysVendor {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn authorized(v: &Vendor, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", v.token);
    headers.get("authorization").and_then(|h| h.to_str().ok()) == Some(expected.as_str())
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad token"}))).into_response()
}

async fn list_keys(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let v = lock(&state);
    if !authorized(&v, &headers) {
        return unauthorized();
    }
    if v.failing_lists {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "listing is down"})),
        )
            .into_response();
    }
    let keys: Vec<Value> = v
        .keys
        .iter()
        .map(|k| json!({"id": k.id, "name": k.name, "created": k.created}))
        .collect();
    Json(json!({ "keys": keys })).into_response()
}

async fn create_key(State(state): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut v = lock(&state);
    if !authorized(&v, &headers) {
        return unauthorized();
    }
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "name is required"})),
        )
            .into_response();
    };
    v.creates += 1;
    let k = v.mint(name);
    let answer = json!({"id": k.id, "name": k.name, "created": k.created, "secret": k.secret});
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn delete_key(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut v = lock(&state);
    if !authorized(&v, &headers) {
        return unauthorized();
    }
    match v.keys.iter().position(|k| k.id == id) {
        Some(i) => {
            v.keys.remove(i);
            v.deletes += 1;
            StatusCode::NO_CONTENT.into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no key {id}")})),
        )
            .into_response(),
    }
}

async fn set_credential(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(consumer): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut v = lock(&state);
    if !authorized(&v, &headers) {
        return unauthorized();
    }
    let (Some(key_id), Some(secret)) = (
        body.get("key_id").and_then(Value::as_str),
        body.get("secret").and_then(Value::as_str),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "key_id and secret are required"})),
        )
            .into_response();
    };
    v.consumers
        .insert(consumer.clone(), (key_id.to_owned(), secret.to_owned()));
    Json(json!({"consumer": consumer, "key_id": key_id})).into_response()
}
