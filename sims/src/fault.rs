//! Deterministic fault injection on a simulator's vendor API.
//!
//! Design decision: whether the n-th request matching rule i fails is a pure
//! function of (seed, i, n) (a SHA-256 roll), so the same seed and the same
//! request sequence give the same faults, whatever other routes do in
//! between. Faults are a middleware on the vendor router only; the admin
//! router never has it.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::TimeScale;
use crate::server::ConnKill;
use crate::util::lock;

/// What a fault does to a matching request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this 5xx status and the vendor's error body.
    Status { status: u16 },
    /// Answer 429 with the vendor's rate-limit headers; the nominal
    /// Retry-After is scaled by the configured time scale.
    RateLimit { retry_after_secs: u64 },
    /// Delay the request, then handle it normally.
    Latency { ms: u64 },
    /// Close the connection without any response.
    Drop,
    /// Send the status and headers with the full Content-Length, then half
    /// the body, then close.
    Truncate,
}

/// One rule: requests whose method and path match fail with `kind` at `rate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// HTTP method, or none for any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path pattern: `*` or `{name}` matches one segment, a final `**` the rest.
    pub path: String,
    /// Probability in [0, 1] that a matching request fails.
    pub rate: f64,
    #[serde(flatten)]
    pub kind: FaultKind,
}

impl FaultRule {
    pub fn new(method: Option<&str>, path: &str, rate: f64, kind: FaultKind) -> Self {
        Self {
            method: method.map(str::to_owned),
            path: path.to_owned(),
            rate,
            kind,
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method)
        {
            return false;
        }
        let mut pat = self.path.trim_matches('/').split('/');
        let mut segs = path.trim_matches('/').split('/');
        loop {
            match (pat.next(), segs.next()) {
                (Some("**"), _) => return true,
                (None, None) => return true,
                (Some(p), Some(s)) => {
                    let wild = p == "*" || (p.starts_with('{') && p.ends_with('}'));
                    if !wild && p != s {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }
}

/// A fault that fired, as listed by `GET /admin/faults`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// Index of the rule that fired.
    pub rule: usize,
    /// The rule's own request counter (0-based) when it fired.
    pub n: u64,
    pub method: String,
    pub path: String,
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// The fault settings of one system, as read and written by the admin API.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FaultSettings {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// How a vendor answers errors; used for injected 5xx and 429s.
pub(crate) trait ErrorStyle: Send + Sync {
    fn error(&self, status: StatusCode, message: &str) -> Response;
    /// A 429; the default adds `Retry-After`, vendors add their own headers.
    fn rate_limited(&self, retry_after_secs: u64) -> Response {
        let mut r = self.error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        r
    }
}

#[derive(Debug, Default)]
struct Inner {
    settings: FaultSettings,
    counters: Vec<u64>,
    log: Vec<FaultEvent>,
}

pub(crate) struct Faults {
    inner: Mutex<Inner>,
    style: Arc<dyn ErrorStyle>,
    scale: TimeScale,
}

impl Faults {
    pub(crate) fn new(settings: FaultSettings, style: Arc<dyn ErrorStyle>, scale: TimeScale) -> Self {
        let counters = vec![0; settings.rules.len()];
        Self {
            inner: Mutex::new(Inner {
                settings,
                counters,
                log: Vec::new(),
            }),
            style,
            scale,
        }
    }

    /// Replaces the rules and seed and restarts the counters and the log.
    pub(crate) fn set(&self, settings: FaultSettings) {
        let mut inner = lock(&self.inner);
        inner.counters = vec![0; settings.rules.len()];
        inner.settings = settings;
        inner.log.clear();
    }

    pub(crate) fn settings(&self) -> FaultSettings {
        lock(&self.inner).settings.clone()
    }

    pub(crate) fn log(&self) -> Vec<FaultEvent> {
        lock(&self.inner).log.clone()
    }

    fn decide(&self, method: &str, path: &str) -> Option<FaultKind> {
        let mut inner = lock(&self.inner);
        let Inner {
            settings,
            counters,
            log,
        } = &mut *inner;
        for (i, rule) in settings.rules.iter().enumerate() {
            if !rule.matches(method, path) {
                continue;
            }
            let Some(counter) = counters.get_mut(i) else {
                continue;
            };
            let n = *counter;
            *counter += 1;
            if roll(settings.seed, i, n) < rule.rate {
                tracing::debug!(rule = i, n, method, path, kind = ?rule.kind, "sims: fault injected");
                log.push(FaultEvent {
                    rule: i,
                    n,
                    method: method.to_owned(),
                    path: path.to_owned(),
                    kind: rule.kind.clone(),
                });
                return Some(rule.kind.clone());
            }
        }
        None
    }
}

/// A uniform number in [0, 1) from (seed, rule, n).
fn roll(seed: u64, rule: usize, n: u64) -> f64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update((rule as u64).to_le_bytes());
    h.update(n.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
    #[allow(clippy::cast_precision_loss, reason = "53 bits of randomness suffice")]
    let r = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
    r
}

pub(crate) async fn middleware(State(faults): State<Arc<Faults>>, req: Request, next: Next) -> Response {
    let Some(kind) = faults.decide(req.method().as_str(), req.uri().path()) else {
        return next.run(req).await;
    };
    match kind {
        FaultKind::Latency { ms } => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            next.run(req).await
        }
        FaultKind::Status { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            faults.style.error(status, "Injected server error")
        }
        FaultKind::RateLimit { retry_after_secs } => {
            faults.style.rate_limited(faults.scale.secs(retry_after_secs))
        }
        FaultKind::Drop => {
            let kill = req.extensions().get::<ConnKill>().cloned();
            drop(req);
            drop_connection(kill).await
        }
        FaultKind::Truncate => {
            let kill = req.extensions().get::<ConnKill>().cloned();
            let resp = next.run(req).await;
            let (mut parts, body) = resp.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
                return Response::from_parts(parts, Body::empty());
            };
            if bytes.len() < 2 {
                // Nothing to cut in half: the closest fault is a dropped connection.
                if let Some(k) = kill {
                    k.kill();
                }
                return std::future::pending().await;
            }
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            let half = bytes.slice(..bytes.len() / 2);
            // Pause before failing so hyper flushes the head and the first half.
            let first = futures::stream::iter([Ok::<_, std::io::Error>(half)]);
            let fail = futures::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Err(std::io::Error::other("injected truncation"))
            });
            Response::from_parts(parts, Body::from_stream(futures::StreamExt::chain(first, fail)))
        }
    }
}

async fn drop_connection(kill: Option<ConnKill>) -> Response {
    match kill {
        Some(k) => {
            k.kill();
            std::future::pending().await
        }
        None => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::empty())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments() {
        let r = FaultRule::new(Some("POST"), "/a/{id}/c", 1.0, FaultKind::Drop);
        assert!(r.matches("post", "/a/42/c"));
        assert!(!r.matches("GET", "/a/42/c"));
        assert!(!r.matches("POST", "/a/42/c/d"));
        let r = FaultRule::new(None, "/rest/**", 1.0, FaultKind::Drop);
        assert!(r.matches("GET", "/rest/orgs/201/apps"));
        assert!(!r.matches("GET", "/v4/domains"));
    }

    #[test]
    fn rolls_depend_on_seed() {
        let a: Vec<bool> = (0..64).map(|n| roll(1, 0, n) < 0.5).collect();
        let b: Vec<bool> = (0..64).map(|n| roll(1, 0, n) < 0.5).collect();
        let c: Vec<bool> = (0..64).map(|n| roll(2, 0, n) < 0.5).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
