//! The request log: every vendor-API request a simulator serves, in order,
//! so a test or the benchmark can prove two clients made the same calls.
//!
//! Design decisions:
//! - An entry is what identifies a call, never what authenticates it: the
//!   method, the path, the query (decoded, sorted pairs), the status
//!   answered, and a digest of the body in a canonical form (JSON with
//!   sorted keys and no whitespace, form pairs decoded and sorted, else the
//!   raw bytes). Two clients that send the same fields in another order or
//!   with other spacing log the same digest; headers (where credentials
//!   travel) are not logged at all. A body may carry a secret, so only a
//!   truncated SHA-256 of it is kept, never the value.
//! - One sequence counter is shared by every system of a [`crate::Sims`],
//!   so the logs of all systems merge into one order (`seq`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::util::lock;

/// Bodies above this are refused (the simulators' vendors never take
/// bodies that large).
const MAX_LOGGED_BODY: usize = 1 << 20;
/// Entries kept; beyond, the oldest go (a `rota sims serve` left running
/// with background work must not grow without bound).
const MAX_ENTRIES: usize = 200_000;

/// One request a simulator's vendor API served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoggedRequest {
    /// Position among every request served by every system of this `Sims`.
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// Query pairs, percent-decoded and sorted.
    pub query: Vec<(String, String)>,
    /// `sha256:<16 hex>` of the canonical body; `None` for an empty body.
    pub body: Option<String>,
    /// The status answered; 0 if the connection was dropped (a fault).
    pub status: u16,
}

/// The log of one system.
#[derive(Debug)]
pub(crate) struct RequestLog {
    seq: Arc<AtomicU64>,
    entries: Mutex<Vec<LoggedRequest>>,
}

impl RequestLog {
    pub(crate) fn new(seq: Arc<AtomicU64>) -> Self {
        Self {
            seq,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The entries in `seq` order.
    pub(crate) fn entries(&self) -> Vec<LoggedRequest> {
        let mut v = lock(&self.entries).clone();
        v.sort_by_key(|e| e.seq);
        v
    }

    pub(crate) fn clear(&self) {
        lock(&self.entries).clear();
    }

    fn push(&self, entry: LoggedRequest) {
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES {
            entries.drain(..MAX_ENTRIES / 2);
        }
        entries.push(entry);
    }
}

/// Records a request when it arrives (its `seq`) and its status when answered.
pub(crate) async fn middleware(State(log): State<Arc<RequestLog>>, req: Request, next: Next) -> Response {
    let seq = log.seq.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_LOGGED_BODY).await {
        Ok(b) => b,
        Err(_) => {
            // Too large or unreadable: the handler could not have read it either.
            log.push(LoggedRequest {
                seq,
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: query_pairs(parts.uri.query()),
                body: Some("unreadable".to_owned()),
                status: 400,
            });
            return Response::builder()
                .status(400)
                .body(Body::empty())
                .unwrap_or_default();
        }
    };
    let mut entry = LoggedRequest {
        seq,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: query_pairs(parts.uri.query()),
        body: body_digest(&bytes),
        status: 0,
    };
    // A dropped connection never gets here: the guard logs it with status 0.
    let mut guard = Pending {
        log: &log,
        entry: Some(entry.clone()),
    };
    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    guard.entry = None;
    entry.status = resp.status().as_u16();
    log.push(entry);
    resp
}

/// Logs its entry (status 0) if the request future is dropped unanswered.
struct Pending<'a> {
    log: &'a RequestLog,
    entry: Option<LoggedRequest>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            self.log.push(e);
        }
    }
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = query
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default();
    pairs.sort();
    pairs
}

/// `sha256:<16 hex>` of the body in canonical form, `None` when empty.
pub(crate) fn body_digest(bytes: &[u8]) -> Option<String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let canonical: Vec<u8> = if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        let mut out = String::new();
        canonical_json(&v, &mut out);
        out.into_bytes()
    } else if let Some(mut pairs) = std::str::from_utf8(bytes)
        .ok()
        .filter(|s| s.contains('='))
        .and_then(|s| serde_urlencoded::from_str::<Vec<(String, String)>>(s).ok())
    {
        pairs.sort();
        serde_urlencoded::to_string(pairs)
            .unwrap_or_default()
            .into_bytes()
    } else {
        bytes.to_vec()
    };
    let digest = Sha256::digest(&canonical);
    Some(format!(
        "sha256:{}",
        hex::encode(digest.get(..8).unwrap_or_default())
    ))
}

/// JSON with object keys sorted and no whitespace.
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(x) = map.get(*k) {
                    canonical_json(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_differing_only_in_key_order_and_spacing_digest_alike() {
        let a = body_digest(br#"{"b": [1, {"y": 2, "x": "s"}], "a": true}"#);
        let b = body_digest(br#"{"a":true,"b":[1,{"x":"s","y":2}]}"#);
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, body_digest(br#"{"a":true,"b":[1,{"x":"s","y":"2"}]}"#));
    }

    #[test]
    fn form_bodies_digest_by_their_decoded_sorted_pairs() {
        assert_eq!(
            body_digest(b"grant_type=client_credentials&scope=a+b"),
            body_digest(b"scope=a%20b&grant_type=client_credentials")
        );
    }

    #[test]
    fn an_empty_body_has_no_digest_and_a_digest_is_short() {
        assert_eq!(body_digest(b""), None);
        assert_eq!(body_digest(b" \n"), None);
        let d = body_digest(b"{}").unwrap_or_default();
        assert_eq!(d.len(), "sha256:".len() + 16, "{d}");
    }

    #[test]
    fn query_pairs_are_decoded_and_sorted() {
        assert_eq!(
            query_pairs(Some("name=Demand%20Caster&customerId=1")),
            vec![
                ("customerId".to_owned(), "1".to_owned()),
                ("name".to_owned(), "Demand Caster".to_owned())
            ]
        );
        assert_eq!(query_pairs(None), Vec::<(String, String)>::new());
    }
}
