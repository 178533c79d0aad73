//! `rota:plugin/http`: the only network a plugin has.
//!
//! Design decision: the request's origin is decided by the plugin's
//! `HttpPolicy` (declared AND granted, DNS answers checked) BEFORE any secret
//! is resolved, so a handle can only ever travel to a granted origin of a
//! plugin it is bound to; captured values go straight into the store and the
//! plugin gets a handle back, with the field removed from what it sees.
//! The vendor's key ID (the action's `key_id` pointer) is read from the same
//! answer and committed with the secret; a capture whose commit fails is
//! remembered for the call, which then fails with `CaptureFailed` whatever
//! the plugin returns, so the executor can revoke the key by that ID.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rota_core::{CaptureTarget, Provenance, Secret, SecretAccessError, SecretRef};

use serde_json::Value;
use tracing::Instrument;
use wasmtime::component::{HasSelf, Linker};

use super::clock::now_ms;
use crate::bindings::v1::rota::plugin::http;
use crate::host::{CallCtx, CaptureFailure};

/// One call's HTTP state: the call's policy and client (via the call), the
/// request count against its limit, and the time spent waiting on the
/// network, which the CPU budget does not charge.
pub(crate) struct HttpState {
    ctx: Arc<CallCtx>,
    requests: u32,
    host_time: Duration,
    limit_hit: bool,
}

impl HttpState {
    pub(crate) fn new(ctx: Arc<CallCtx>) -> Self {
        Self {
            ctx,
            requests: 0,
            host_time: Duration::ZERO,
            limit_hit: false,
        }
    }

    /// Wall time spent inside `send` so far.
    pub(crate) fn host_time(&self) -> Duration {
        self.host_time
    }

    /// Whether the plugin was stopped for exceeding its request limit.
    pub(crate) fn request_limit_hit(&self) -> bool {
        self.limit_hit
    }
}

/// Links `rota:plugin/http`; `get` projects the store's data to its state.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut HttpState,
) -> wasmtime::Result<()> {
    http::add_to_linker::<T, HasSelf<HttpState>>(linker, get)
}

impl http::Host for HttpState {
    async fn send(
        &mut self,
        req: http::Request,
    ) -> wasmtime::Result<Result<http::Response, http::HttpError>> {
        let ctx = self.ctx.clone();
        let span = tracing::info_span!(
            "plugin.http.send",
            plugin = %ctx.plugin,
            action = %ctx.action,
            method = ?req.method,
            origin = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        self.requests += 1;
        if self.requests > ctx.limits.requests {
            self.limit_hit = true;
            return Err(wasmtime::Error::msg("HTTP request limit reached"));
        }
        let start = Instant::now();
        let result = send(&ctx, req).instrument(span).await;
        self.host_time += start.elapsed();
        Ok(result)
    }
}

fn denied(ctx: &crate::host::CallCtx, origin: &str, reason: String) -> http::HttpError {
    tracing::warn!(
        plugin = %ctx.plugin,
        action = %ctx.action,
        refused_origin = %origin,
        reason = %reason,
        "plugin HTTP request denied"
    );
    http::HttpError::Denied(format!("{}.{}: {reason}", ctx.plugin, ctx.action))
}

fn secret_for(ctx: &crate::host::CallCtx, handle: &str) -> Result<Secret, http::HttpError> {
    let h: SecretRef = handle
        .parse()
        .map_err(|e: String| http::HttpError::Invalid(format!("bad secret handle: {e}")))?;
    ctx.call.secrets.value_for(&ctx.plugin, &h).map_err(|e| match e {
        SecretAccessError::NotBound { .. } => {
            tracing::warn!(plugin = %ctx.plugin, action = %ctx.action, handle = %h, "secret injection refused: {e}");
            http::HttpError::Denied(format!("{}.{}: {e}", ctx.plugin, ctx.action))
        }
        other => http::HttpError::Invalid(other.to_string()),
    })
}

fn hmac_sign(alg: http::HmacAlgorithm, key: &[u8], msg: &[u8]) -> Result<Vec<u8>, http::HttpError> {
    let bad = |_| http::HttpError::Invalid("bad HMAC key".to_owned());
    Ok(match alg {
        http::HmacAlgorithm::Sha1 => {
            let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).map_err(bad)?;
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        http::HmacAlgorithm::Sha256 => {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).map_err(bad)?;
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
    })
}

fn replace_handle(value: &mut Value, handle: &str, secret: &Secret) -> usize {
    if let Some(h) = SecretRef::from_json(value)
        && h.to_string() == handle
    {
        *value = Value::String(secret.expose().to_owned());
        return 1;
    }
    match value {
        Value::Array(items) => items.iter_mut().map(|v| replace_handle(v, handle, secret)).sum(),
        Value::Object(m) => m.values_mut().map(|v| replace_handle(v, handle, secret)).sum(),
        _ => 0,
    }
}

async fn send(ctx: &crate::host::CallCtx, req: http::Request) -> Result<http::Response, http::HttpError> {
    // A capture the action may not make is refused before the vendor is
    // called, whatever it would answer.
    let targets = req
        .capture
        .iter()
        .map(|spec| capture_target(ctx, spec))
        .collect::<Result<Vec<_>, _>>()?;
    let (url, origin) = match ctx.policy.check_url(&req.url) {
        Ok(ok) => ok,
        Err(d) => {
            let shown = url::Url::parse(&req.url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| req.url.clone());
            return Err(denied(ctx, &shown, d.0));
        }
    };
    tracing::Span::current().record("origin", tracing::field::display(&origin));
    let method = match req.method {
        http::Method::Get => reqwest::Method::GET,
        http::Method::Head => reqwest::Method::HEAD,
        http::Method::Post => reqwest::Method::POST,
        http::Method::Put => reqwest::Method::PUT,
        http::Method::Patch => reqwest::Method::PATCH,
        http::Method::Delete => reqwest::Method::DELETE,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    let mut add = |name: &str, value: &str, sensitive: bool| -> Result<(), http::HttpError> {
        let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| http::HttpError::Invalid(format!("bad header name {name:?}")))?;
        if n == reqwest::header::HOST {
            return Err(http::HttpError::Invalid(
                "plugins cannot set the Host header".to_owned(),
            ));
        }
        let mut v = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| http::HttpError::Invalid(format!("bad value for header {name:?}")))?;
        v.set_sensitive(sensitive);
        headers.insert(n, v);
        Ok(())
    };
    for h in &req.headers {
        add(&h.name, &h.value, false)?;
    }
    let mut body = req.body;
    let b64 = base64::engine::general_purpose::STANDARD;
    for inj in &req.inject {
        match inj {
            http::Injection::Bearer(h) => {
                let s = secret_for(ctx, h)?;
                add("authorization", &format!("Bearer {}", s.expose()), true)?;
            }
            http::Injection::Basic(b) => {
                let id = match &b.id {
                    http::BasicId::Literal(id) => Secret::new(id.clone()),
                    http::BasicId::Secret(h) => secret_for(ctx, h)?,
                };
                let s = secret_for(ctx, &b.secret)?;
                let token = b64.encode(format!("{}:{}", id.expose(), s.expose()));
                add("authorization", &format!("Basic {token}"), true)?;
            }
            http::Injection::Header(nh) => {
                let s = secret_for(ctx, &nh.value)?;
                add(&nh.name, &format!("{}{}", nh.prefix, s.expose()), true)?;
            }
            http::Injection::JsonBody(h) => {
                let s = secret_for(ctx, h)?;
                let raw = body.as_deref().ok_or_else(|| {
                    http::HttpError::Invalid("json-body injection without a body".to_owned())
                })?;
                let mut json: Value = serde_json::from_slice(raw).map_err(|e| {
                    http::HttpError::Invalid(format!("json-body injection: body is not JSON: {e}"))
                })?;
                if replace_handle(&mut json, h, &s) == 0 {
                    return Err(http::HttpError::Invalid(format!(
                        "json-body injection: the body has no {{\"$secret\": \"{h}\"}} placeholder"
                    )));
                }
                body = Some(serde_json::to_vec(&json).map_err(|e| http::HttpError::Invalid(e.to_string()))?);
            }
            http::Injection::Signed(sh) => {
                let key = secret_for(ctx, &sh.key)?;
                let ts = now_ms().to_string();
                let msg = sh.message.replace("{timestamp-ms}", &ts);
                let sig = hmac_sign(sh.algorithm, key.expose().as_bytes(), msg.as_bytes())?;
                let sig = match sh.encoding {
                    http::SignatureEncoding::Hex => hex::encode(sig),
                    http::SignatureEncoding::Base64 => b64.encode(sig),
                };
                let mut value = sh
                    .value
                    .replace("{timestamp-ms}", &ts)
                    .replace("{signature}", &sig);
                for (i, h) in sh.secrets.iter().enumerate() {
                    let s = secret_for(ctx, h)?;
                    value = value.replace(&format!("{{secret.{i}}}"), s.expose());
                }
                add(&sh.name, &value, true)?;
            }
        }
    }
    let timeout = Duration::from_millis(
        req.timeout_ms
            .map(u64::from)
            .unwrap_or(ctx.limits.read_timeout_ms)
            .min(ctx.limits.read_timeout_ms),
    );
    let mut rb = ctx.client.request(method, url).headers(headers).timeout(timeout);
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let mut resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return Err(transport_error(ctx, &origin.to_string(), &e)),
    };
    let status = resp.status().as_u16();
    tracing::Span::current().record("status", status);
    let cap = usize::try_from(ctx.limits.response_kib.saturating_mul(1024)).unwrap_or(usize::MAX);
    let too_large = || {
        tracing::warn!(plugin = %ctx.plugin, action = %ctx.action, origin = %origin, limit_kib = ctx.limits.response_kib, "response too large");
        http::HttpError::TooLarge(format!(
            "{}.{}: the response from {origin} exceeds the {} KiB response limit",
            ctx.plugin, ctx.action, ctx.limits.response_kib
        ))
    };
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut resp_headers: Vec<http::Header> = resp
        .headers()
        .iter()
        .map(|(k, v)| http::Header {
            name: k.as_str().to_owned(),
            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
        })
        .collect();
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > cap {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport_error(ctx, &origin.to_string(), &e)),
        }
    }
    // A vendor's error answer (a 503, a 429) carries no secret: the plugin
    // sees the status and its typed error, which a retry may get past.
    let captured = if req.capture.is_empty() || !(200..300).contains(&status) {
        Vec::new()
    } else {
        capture(ctx, &req.capture, targets, &mut resp_headers, &mut bytes).await?
    };
    Ok(http::Response {
        status,
        headers: resp_headers,
        body: bytes,
        captured,
    })
}

fn transport_error(ctx: &crate::host::CallCtx, origin: &str, e: &reqwest::Error) -> http::HttpError {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(d) = s.downcast_ref::<crate::caps::Denial>() {
            return denied(ctx, origin, d.0.clone());
        }
        src = s.source();
    }
    if e.is_timeout() {
        return http::HttpError::Timeout(format!(
            "{}.{}: {origin} did not answer within the time limit",
            ctx.plugin, ctx.action
        ));
    }
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    http::HttpError::Transport(format!("{}.{}: {origin}: {chain}", ctx.plugin, ctx.action))
}

/// The vendor's key ID at `pointer` of the answer, as text.
fn read_key_id(doc: Option<&Value>, pointer: &str) -> Option<String> {
    match doc?.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Where a capture goes (its label and target), or why it cannot be taken:
/// decided before the request is sent, so a plugin's capture that the
/// action does not declare, or the step does not map, fails before the
/// vendor makes a secret nobody could keep.
fn capture_target(
    ctx: &crate::host::CallCtx,
    spec: &http::Capture,
) -> Result<(String, CaptureTarget), http::HttpError> {
    let fail = |m: String| http::HttpError::CaptureFailed(format!("{}.{}: {m}", ctx.plugin, ctx.action));
    Ok(match &spec.into {
        http::CaptureInto::Step(name) => {
            if !ctx.declared_captures.contains(name) {
                return Err(fail(format!(
                    "capture {name:?} is not declared by the action (declared: {})",
                    if ctx.declared_captures.is_empty() {
                        "none".to_owned()
                    } else {
                        ctx.declared_captures.join(", ")
                    }
                )));
            }
            let target = ctx.call.captures.get(name).cloned().ok_or_else(|| {
                fail(format!(
                    "the step maps no secret to capture {name:?}; add it to the step's secrets"
                ))
            })?;
            (name.clone(), target)
        }
        http::CaptureInto::Ephemeral(label) => {
            let name = format!("{}/ephemeral/{label}", ctx.plugin);
            rota_core::secret::validate_secret_name(&name).map_err(fail)?;
            (
                label.clone(),
                CaptureTarget {
                    name,
                    send_to: Vec::new(),
                    ephemeral: true,
                },
            )
        }
    })
}

async fn capture(
    ctx: &crate::host::CallCtx,
    specs: &[http::Capture],
    targets: Vec<(String, CaptureTarget)>,
    headers: &mut Vec<http::Header>,
    body: &mut Vec<u8>,
) -> Result<Vec<http::Captured>, http::HttpError> {
    let span = tracing::info_span!("plugin.http.capture", plugin = %ctx.plugin, action = %ctx.action);
    capture_in_span(ctx, specs, targets, headers, body)
        .instrument(span)
        .await
}

async fn capture_in_span(
    ctx: &crate::host::CallCtx,
    specs: &[http::Capture],
    targets: Vec<(String, CaptureTarget)>,
    headers: &mut Vec<http::Header>,
    body: &mut Vec<u8>,
) -> Result<Vec<http::Captured>, http::HttpError> {
    let fail = |m: String| http::HttpError::CaptureFailed(format!("{}.{}: {m}", ctx.plugin, ctx.action));
    // `answer` is the moment a secret bound for the store is in the host's
    // hands; a run-only token (a sign-in on the way to the real call) is not
    // that moment, and would stop the step before its call was even made.
    if specs.iter().any(|s| matches!(s.into, http::CaptureInto::Step(_))) {
        rota_core::journal::crash_point(&ctx.call.step_id, "answer");
    }
    let mut json: Option<Value> = serde_json::from_slice(body).ok();
    let key_id = ctx.key_id.as_deref().and_then(|ptr| {
        let found = read_key_id(json.as_ref(), ptr);
        if found.is_none() {
            tracing::warn!(plugin = %ctx.plugin, action = %ctx.action, key_id = %ptr,
                "the answer has no vendor key ID at the action's key_id pointer; the secret is stored without one");
        }
        found
    });
    let mut out = Vec::new();
    for (spec, (label, target)) in specs.iter().zip(targets) {
        let value = match &spec.source {
            http::CaptureSource::Header(name) => {
                let i = headers
                    .iter()
                    .position(|h| h.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| fail(format!("the response has no header {name:?}")))?;
                let value = headers.remove(i).value;
                if name.eq_ignore_ascii_case("set-cookie") {
                    cookie_pair(&value)
                        .ok_or_else(|| fail("the Set-Cookie header has no name=value".to_owned()))?
                } else {
                    value
                }
            }
            http::CaptureSource::JsonPointer(ptr) => {
                let doc = match json.as_mut() {
                    Some(doc) => doc,
                    None => {
                        let e = serde_json::from_slice::<Value>(body).err();
                        return Err(fail(format!(
                            "the response is not JSON: {}",
                            e.map(|e| e.to_string()).unwrap_or_default()
                        )));
                    }
                };
                let taken = take_pointer(doc, ptr)
                    .ok_or_else(|| fail(format!("the response has nothing at {ptr}")))?;
                match taken {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    _ => return Err(fail(format!("the value at {ptr} is not a string"))),
                }
            }
        };
        let provenance = Provenance {
            run_id: Some(ctx.call.run_id.clone()),
            step_id: Some(ctx.call.step_id.clone()),
            source: Some(ctx.plugin.clone()),
            key_id: if target.ephemeral { None } else { key_id.clone() },
            idempotency_key: Some(ctx.call.idempotency_key.clone()),
        };
        // The commit is synced SQLite I/O: off the async workers.
        let scope = ctx.call.secrets.clone();
        let (plugin, secret) = (ctx.plugin.clone(), target.name.clone());
        let value = Secret::new(value);
        let committed =
            tokio::task::spawn_blocking(move || scope.capture(&plugin, &target, value, provenance))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        let handle = match committed {
            Ok(h) => h,
            Err(e) => {
                let message = format!(
                    "{}.{}: the vendor answered with secret {secret} but rota could not store it ({e}); \
                     the key it belongs to ({}) is live at the vendor and rota does not hold its value",
                    ctx.plugin,
                    ctx.action,
                    match &key_id {
                        Some(k) => format!("vendor key ID {k}"),
                        None => "vendor key ID unknown".to_owned(),
                    }
                );
                tracing::error!(plugin = %ctx.plugin, action = %ctx.action, capture = %label, secret = %secret,
                    key_id = key_id.as_deref().unwrap_or("-"), "captured secret not stored");
                ctx.capture_failed(CaptureFailure {
                    message: message.clone(),
                    key_id: key_id.clone(),
                });
                return Err(http::HttpError::CaptureFailed(message));
            }
        };
        tracing::info!(plugin = %ctx.plugin, action = %ctx.action, capture = %label, handle = %handle,
            key_id = key_id.as_deref().unwrap_or("-"), "secret captured");
        out.push(http::Captured {
            name: label,
            handle: handle.to_string(),
        });
    }
    if let Some(doc) = json
        && !specs
            .iter()
            .all(|c| matches!(c.source, http::CaptureSource::Header(_)))
    {
        *body = serde_json::to_vec(&doc).map_err(|e| fail(e.to_string()))?;
    }
    Ok(out)
}

/// The `name=value` of a `Set-Cookie` value: its attributes (`Path`,
/// `HttpOnly`, ...) tell the client how to keep the cookie and are no part
/// of what it sends back (RFC 6265 section 5.2).
fn cookie_pair(set_cookie: &str) -> Option<String> {
    let pair = set_cookie.split(';').next()?.trim();
    let (name, _) = pair.split_once('=')?;
    (!name.trim().is_empty()).then(|| pair.to_owned())
}

/// Removes and returns the value at an RFC 6901 pointer.
fn take_pointer(doc: &mut Value, ptr: &str) -> Option<Value> {
    let (parent, last) = ptr.rsplit_once('/')?;
    let last = last.replace("~1", "/").replace("~0", "~");
    let parent = if parent.is_empty() {
        doc
    } else {
        doc.pointer_mut(parent)?
    };
    match parent {
        Value::Object(m) => m.shift_remove(&last),
        Value::Array(a) => {
            let i: usize = last.parse().ok()?;
            (i < a.len()).then(|| a.remove(i))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn take_pointer_removes_the_field() {
        let mut doc = json!({"key": {"id": "k1", "secret": "s"}, "list": ["a", "b"]});
        assert_eq!(take_pointer(&mut doc, "/key/secret"), Some(json!("s")));
        assert_eq!(take_pointer(&mut doc, "/list/1"), Some(json!("b")));
        assert_eq!(take_pointer(&mut doc, "/missing"), None);
        assert_eq!(doc, json!({"key": {"id": "k1"}, "list": ["a"]}));
    }

    #[test]
    fn a_set_cookie_capture_keeps_the_name_value_pair_only() {
        assert_eq!(
            cookie_pair("DCSESSION=abc123; Path=/; HttpOnly; SameSite=Lax").as_deref(),
            Some("DCSESSION=abc123")
        );
        assert_eq!(cookie_pair("sid=x=y").as_deref(), Some("sid=x=y"));
        assert_eq!(cookie_pair("=nameless; Path=/"), None);
        assert_eq!(cookie_pair("no-pair-here"), None);
    }

    #[test]
    fn json_body_injection_replaces_only_that_handle() {
        let mut body = json!({"a": {"$secret": "x@1"}, "b": [{"$secret": "y@2"}], "c": {"$secret": "x@1"}});
        assert_eq!(replace_handle(&mut body, "x@1", &Secret::new("v")), 2);
        assert_eq!(body, json!({"a": "v", "b": [{"$secret": "y@2"}], "c": "v"}));
    }

    #[test]
    fn hmac_matches_known_vectors() -> Result<(), http::HttpError> {
        // RFC 2202 test case 2 (SHA-1) and RFC 4231 test case 2 (SHA-256).
        let sig = hmac_sign(
            http::HmacAlgorithm::Sha1,
            b"Jefe",
            b"what do ya want for nothing?",
        )?;
        assert_eq!(hex::encode(sig), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        let sig = hmac_sign(
            http::HmacAlgorithm::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
        )?;
        assert_eq!(
            hex::encode(sig),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        Ok(())
    }
}
