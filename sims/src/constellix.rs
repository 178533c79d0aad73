//! Constellix simulator: the documented HMAC-SHA1 token (VENDORS.md §4.2)
//! on `Authorization: Bearer` (v4) or `x-cns-security-token` (v1), the v4
//! error bodies and `X-RateLimit-*` headers, and the `[INVENTED]` key and
//! audit shapes of §4.5: at most two keys per user with an expiry in months
//! or never, every create/view/delete of a key written to an audit log that
//! an account administrator can read and export.
//!
//! Design decision: the signature's timestamp is checked against the wall
//! clock (it is the client's clock), while key expiry uses the simulator's
//! clock, so an admin clock offset expires keys without breaking signing.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::Sha1;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::System;
use crate::consumers::Credential;
use crate::fault::ErrorStyle;
use crate::server::PeerAddr;
use crate::sim::{Ctx, SimHandle, Simulator, launch};
use crate::util::{Gen, add_months, fingerprint, iso, json, lock, parse_json};

const RATE_LIMIT: u64 = 60;
/// User ids of the scale benchmark's users start above this.
const BENCH_USER_BASE: u64 = 200_000;

struct ConstellixStyle;

impl ErrorStyle for ConstellixStyle {
    fn error(&self, status: StatusCode, message: &str) -> Response {
        json(status, json!({"message": message}))
    }

    fn rate_limited(&self, retry_after_secs: u64) -> Response {
        let mut r = self.error(StatusCode::TOO_MANY_REQUESTS, "Request Limit Exceeded");
        let h = r.headers_mut();
        h.insert("X-RateLimit-Limit", HeaderValue::from(RATE_LIMIT));
        h.insert("X-RateLimit-Remaining", HeaderValue::from(0u64));
        h.insert("X-RateLimit-Reset", HeaderValue::from(retry_after_secs));
        h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        r
    }
}

fn err(status: StatusCode, message: &str) -> Response {
    ConstellixStyle.error(status, message)
}

fn unauthorized() -> Response {
    err(StatusCode::UNAUTHORIZED, "Unauthorized")
}

/// The Constellix security token: `apiKey:base64(HMAC-SHA1(secret, ts)):ts`.
pub fn security_token(api_key: &str, secret_key: &str, ts_millis: i64) -> String {
    format!("{api_key}:{}:{ts_millis}", sign(secret_key, ts_millis))
}

fn sign(secret_key: &str, ts_millis: i64) -> String {
    let mac = Hmac::<Sha1>::new_from_slice(secret_key.as_bytes()).map(|mut m| {
        m.update(ts_millis.to_string().as_bytes());
        m.finalize().into_bytes().to_vec()
    });
    base64::engine::general_purpose::STANDARD.encode(mac.unwrap_or_default())
}

/// Accepted skew of the token timestamp (invented: five minutes).
const SKEW_MS: i64 = 5 * 60 * 1000;

struct User {
    id: u64,
    email: String,
    name: String,
    is_admin: bool,
}

struct Key {
    id: u64,
    user_id: u64,
    api_key: String,
    secret_key: String,
    created: OffsetDateTime,
    expires: Option<OffsetDateTime>,
}

impl Key {
    fn json(&self) -> Value {
        json!({"id": self.id, "apiKey": self.api_key, "expiresAt": self.expires.map(iso),
               "createdAt": iso(self.created), "hidden": true})
    }
}

struct Audit {
    id: u64,
    user_id: u64,
    api_key_id: u64,
    action: &'static str,
    ip: String,
    at: OffsetDateTime,
}

impl Audit {
    fn json(&self) -> Value {
        json!({"id": self.id, "userId": self.user_id, "apiKeyId": self.api_key_id, "action": self.action,
               "ip": self.ip, "createdAt": iso(self.at)})
    }
}

struct CState {
    ids: Gen,
    users: Vec<User>,
    keys: Vec<Key>,
    audit: Vec<Audit>,
    domains: Vec<(u64, String)>,
    next_key: u64,
    next_audit: u64,
    window: (i64, u64),
}

/// Ids of fixture users.
pub(crate) const ADMIN_USER: u64 = 101;
pub(crate) const ROLLOVER_USER: u64 = 102;
const MAX_KEYS: usize = 2;

impl CState {
    fn fixtures(seed: u64, now: OffsetDateTime, bench_users: u32) -> Self {
        let mut ids = Gen::new(seed, "constellix");
        let day = time::Duration::DAY;
        let mut users = vec![
            User {
                id: ADMIN_USER,
                email: "alice@acme-dns.example".into(),
                name: "Alice Admin".into(),
                is_admin: true,
            },
            User {
                id: ROLLOVER_USER,
                email: "bob@acme-dns.example".into(),
                name: "Bob Builder".into(),
                is_admin: false,
            },
            User {
                id: 103,
                email: "carol@acme-dns.example".into(),
                name: "Carol Ops".into(),
                is_admin: false,
            },
        ];
        // Alice: two keys (one never expires, one for 10 months); Bob: one key, 20 days left.
        let bob_created = now + day * 20 - (add_months(now, 5) - now);
        let specs = [
            (ADMIN_USER, now - day * 400, None),
            (ADMIN_USER, now - day * 60, Some(add_months(now - day * 60, 10))),
            (ROLLOVER_USER, bob_created, Some(now + day * 20)),
        ];
        let mut keys = Vec::new();
        let mut audit = Vec::new();
        for (i, (user_id, created, expires)) in specs.into_iter().enumerate() {
            let id = 1001 + i as u64;
            keys.push(Key {
                id,
                user_id,
                api_key: ids.uuid().to_string(),
                secret_key: ids.uuid().to_string(),
                created,
                expires,
            });
            audit.push(Audit {
                id: 1 + i as u64,
                user_id,
                api_key_id: id,
                action: "create",
                ip: "203.0.113.10".into(),
                at: created,
            });
        }
        // Independent targets for the scale benchmark: after the fixtures
        // above, so their ids and values do not move with the count.
        let mut next_key = 1004;
        for i in 1..=u64::from(bench_users) {
            let user_id = BENCH_USER_BASE + i;
            users.push(User {
                id: user_id,
                email: format!("bench-{i:04}@acme-dns.example"),
                name: format!("Bench User {i}"),
                is_admin: false,
            });
            let created = now - day * 30;
            keys.push(Key {
                id: next_key,
                user_id,
                api_key: ids.uuid().to_string(),
                secret_key: ids.uuid().to_string(),
                created,
                expires: None,
            });
            // No audit entry: the administrator's export stays the fixtures'.
            next_key += 1;
        }
        let domains = ["acme-dns.example", "acme-shop.example", "status.acme.example"]
            .iter()
            .enumerate()
            .map(|(i, d)| (338_000 + i as u64 * 17, (*d).to_owned()))
            .collect();
        Self {
            ids,
            users,
            keys,
            audit,
            domains,
            next_key,
            next_audit: 4,
            window: (0, 0),
        }
    }

    fn log(&mut self, user_id: u64, api_key_id: u64, action: &'static str, ip: &str, at: OffsetDateTime) {
        let id = self.next_audit;
        self.next_audit += 1;
        self.audit.push(Audit {
            id,
            user_id,
            api_key_id,
            action,
            ip: ip.to_owned(),
            at,
        });
    }

    /// Generates a key for a user; Err is the 422 answer.
    fn generate(
        &mut self,
        user_id: u64,
        months: Option<u32>,
        ip: &str,
        now: OffsetDateTime,
    ) -> Result<Value, Response> {
        if let Some(m) = months
            && !(1..=120).contains(&m)
        {
            return Err(json(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Validation failed", "errors": {"expiresInMonths": ["Must be between 1 and 120 months, or null for never"]}}),
            ));
        }
        if self.keys.iter().filter(|k| k.user_id == user_id).count() >= MAX_KEYS {
            return Err(json(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Validation failed", "errors": {"apikeys": ["A user may have at most 2 API keys"]}}),
            ));
        }
        let k = Key {
            id: self.next_key,
            user_id,
            api_key: self.ids.uuid().to_string(),
            secret_key: self.ids.uuid().to_string(),
            created: now,
            expires: months.map(|m| add_months(now, m)),
        };
        self.next_key += 1;
        self.log(user_id, k.id, "create", ip, now);
        let v = json!({"data": {"id": k.id, "apiKey": k.api_key, "secretKey": k.secret_key,
                                "expiresAt": k.expires.map(iso), "createdAt": iso(k.created)}});
        self.keys.push(k);
        Ok(v)
    }

    /// Deletes a user's key, logging the delete; false if there is no such key.
    fn delete(&mut self, user_id: u64, key_id: u64, ip: &str, now: OffsetDateTime) -> bool {
        let before = self.keys.len();
        self.keys.retain(|k| !(k.id == key_id && k.user_id == user_id));
        if self.keys.len() == before {
            return false;
        }
        self.log(user_id, key_id, "delete", ip, now);
        true
    }

    /// Shows a key's secret, logging the view.
    fn view(&mut self, user_id: u64, key_id: u64, ip: &str, now: OffsetDateTime) -> Option<Value> {
        let secret = self
            .keys
            .iter()
            .find(|k| k.id == key_id && k.user_id == user_id)?
            .secret_key
            .clone();
        self.log(user_id, key_id, "view", ip, now);
        Some(json!({"data": {"id": key_id, "secretKey": secret}}))
    }
}

pub(crate) struct Constellix {
    ctx: Ctx,
    state: Mutex<CState>,
}

impl Constellix {
    /// The credential the fixture DNS consumer holds: the rollover user's key.
    pub(crate) fn consumer_credential(&self) -> Credential {
        let st = lock(&self.state);
        let k = st.keys.iter().find(|k| k.user_id == ROLLOVER_USER);
        Credential::Constellix {
            api_key: k.map(|k| k.api_key.clone()).unwrap_or_default(),
            secret_key: k.map(|k| k.secret_key.clone()).unwrap_or_default(),
        }
    }

    /// Looks a key up by its ID, as the credential an integration holds: the
    /// stand-in for an operator copying a key from the portal into an
    /// integration by hand (the consumer service's `switch`).
    pub(crate) fn key_source(self: &Arc<Self>) -> crate::consumers::KeySource {
        let c = self.clone();
        Arc::new(move |key_id: &str| {
            let st = lock(&c.state);
            let k = st.keys.iter().find(|k| k.id.to_string() == key_id)?;
            Some(Credential::Constellix {
                api_key: k.api_key.clone(),
                secret_key: k.secret_key.clone(),
            })
        })
    }

    /// Verifies the security token; Ok((user id, key id)).
    fn authenticate(&self, headers: &HeaderMap) -> Result<(u64, u64), Response> {
        let h = |n| headers.get(n).and_then(|v: &HeaderValue| v.to_str().ok());
        let token = h(header::AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| h("x-cns-security-token"))
            .ok_or_else(unauthorized)?;
        let mut parts = token.trim().splitn(3, ':');
        let (Some(api_key), Some(hmac), Some(ts)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(unauthorized());
        };
        let ts: i64 = ts.parse().map_err(|_| unauthorized())?;
        let wall_ms = crate::util::epoch_ms(OffsetDateTime::now_utc());
        if (wall_ms - ts).abs() > SKEW_MS {
            return Err(unauthorized());
        }
        let now = self.ctx.clock.now();
        let st = lock(&self.state);
        let k = st
            .keys
            .iter()
            .find(|k| k.api_key == api_key)
            .ok_or_else(unauthorized)?;
        if sign(&k.secret_key, ts) != hmac {
            return Err(unauthorized());
        }
        if k.expires.is_some_and(|e| e <= now) {
            return Err(unauthorized());
        }
        Ok((k.user_id, k.id))
    }

    /// `X-RateLimit-*` for a response, counting calls per wall-clock minute.
    fn rate_headers(&self, r: &mut Response) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let minute = now / 60;
        let used = {
            let mut st = lock(&self.state);
            if st.window.0 != minute {
                st.window = (minute, 0);
            }
            st.window.1 += 1;
            st.window.1
        };
        let h = r.headers_mut();
        h.insert("X-RateLimit-Limit", HeaderValue::from(RATE_LIMIT));
        h.insert(
            "X-RateLimit-Remaining",
            HeaderValue::from(RATE_LIMIT.saturating_sub(used)),
        );
        h.insert("X-RateLimit-Reset", HeaderValue::from(60 - now.rem_euclid(60)));
    }
}

impl Simulator for Constellix {
    fn operator(&self) -> Value {
        operator_view(self)
    }

    fn state(&self) -> Value {
        let st = lock(&self.state);
        let now = self.ctx.clock.now();
        json!({
            "users": st.users.iter().map(|u| json!({"id": u.id, "email": u.email, "name": u.name, "isAdmin": u.is_admin})).collect::<Vec<_>>(),
            "apiKeys": st.keys.iter().map(|k| {
                let mut v = k.json();
                if let Some(o) = v.as_object_mut() {
                    o.insert("userId".into(), json!(k.user_id));
                    o.insert("expired".into(), json!(k.expires.is_some_and(|e| e <= now)));
                    o.insert("secretKeyFingerprint".into(), json!(fingerprint(&k.secret_key)));
                }
                v
            }).collect::<Vec<_>>(),
            "audit": st.audit.iter().map(Audit::json).collect::<Vec<_>>(),
            "domains": st.domains.iter().map(|(id, n)| json!({"id": id, "name": n})).collect::<Vec<_>>(),
        })
    }

    fn reset(&self) {
        *lock(&self.state) = CState::fixtures(
            self.ctx.seed(),
            self.ctx.clock.now(),
            self.ctx.config.constellix_bench_users,
        );
    }
}

type S = State<Arc<Constellix>>;

fn ip(peer: PeerAddr) -> String {
    peer.0.ip().to_string()
}

#[derive(Deserialize)]
struct Page {
    page: Option<u64>,
    #[serde(rename = "perPage")]
    per_page: Option<u64>,
    from: Option<String>,
    to: Option<String>,
}

fn paginate(items: Vec<Value>, q: &Page, path: &str) -> Value {
    let per = q.per_page.unwrap_or(20).clamp(1, 100);
    let total = items.len() as u64;
    let pages = total.div_ceil(per).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let data: Vec<Value> = items
        .into_iter()
        .skip(usize::try_from((page - 1) * per).unwrap_or(0))
        .take(usize::try_from(per).unwrap_or(20))
        .collect();
    let link = |p: u64| format!("{path}?page={p}&perPage={per}");
    json!({"data": data, "meta": {"pagination": {"total": total, "count": data.len(), "perPage": per,
        "currentPage": page, "totalPages": pages},
        "links": {"self": link(page), "first": link(1), "last": link(pages),
                  "previous": (page > 1).then(|| link(page - 1)), "next": (page < pages).then(|| link(page + 1))}}})
}

async fn list_keys(State(c): S, headers: HeaderMap, Query(q): Query<Page>) -> Response {
    let (user, _) = match c.authenticate(&headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let items: Vec<Value> = lock(&c.state)
        .keys
        .iter()
        .filter(|k| k.user_id == user)
        .map(Key::json)
        .collect();
    json(StatusCode::OK, paginate(items, &q, "/v4/users/me/apikeys"))
}

#[derive(Deserialize)]
struct Generate {
    #[serde(rename = "expiresInMonths", default)]
    expires_in_months: Option<u32>,
}

async fn create_key(
    State(c): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user, _) = match c.authenticate(&headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let g = match parse_json::<Generate>(&body) {
        Ok(g) => g,
        Err(e) => {
            return json(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Validation failed", "errors": {"expiresInMonths": [e]}}),
            );
        }
    };
    let now = c.ctx.clock.now();
    match lock(&c.state).generate(user, g.expires_in_months, &ip(peer), now) {
        Ok(v) => json(StatusCode::CREATED, v),
        Err(r) => r,
    }
}

async fn view_secret(
    State(c): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let (user, _) = match c.authenticate(&headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = c.ctx.clock.now();
    match lock(&c.state).view(user, id, &ip(peer), now) {
        Some(v) => json(StatusCode::OK, v),
        None => err(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn delete_key(
    State(c): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let (user, _) = match c.authenticate(&headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = c.ctx.clock.now();
    if lock(&c.state).delete(user, id, &ip(peer), now) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        err(StatusCode::NOT_FOUND, "Not Found")
    }
}

fn parse_time(s: &Option<String>) -> Result<Option<OffsetDateTime>, Response> {
    match s {
        None => Ok(None),
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map(Some).map_err(|_| {
            json(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Validation failed", "errors": {"from/to": ["Use an RFC 3339 date-time"]}}),
            )
        }),
    }
}

/// The audit entries an administrator may read, filtered by `from`/`to`.
fn audit_entries(c: &Constellix, headers: &HeaderMap, q: &Page) -> Result<Vec<Value>, Response> {
    let (user, _) = c.authenticate(headers)?;
    let (from, to) = (parse_time(&q.from)?, parse_time(&q.to)?);
    let st = lock(&c.state);
    if !st.users.iter().any(|u| u.id == user && u.is_admin) {
        return Err(err(StatusCode::FORBIDDEN, "Forbidden"));
    }
    Ok(st
        .audit
        .iter()
        .filter(|a| from.is_none_or(|f| a.at >= f) && to.is_none_or(|t| a.at <= t))
        .map(Audit::json)
        .collect())
}

async fn audit(State(c): S, headers: HeaderMap, Query(q): Query<Page>) -> Response {
    match audit_entries(&c, &headers, &q) {
        Ok(items) => json(StatusCode::OK, paginate(items, &q, "/v4/audit/apikeys")),
        Err(r) => r,
    }
}

async fn audit_export(State(c): S, headers: HeaderMap, Query(q): Query<Page>) -> Response {
    match audit_entries(&c, &headers, &q) {
        Ok(items) => {
            let mut csv = String::from("id,userId,apiKeyId,action,ip,createdAt\n");
            for a in items {
                let f = |k: &str| {
                    a.get(k)
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .unwrap_or_default()
                };
                csv.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    f("id"),
                    f("userId"),
                    f("apiKeyId"),
                    f("action"),
                    f("ip"),
                    f("createdAt")
                ));
            }
            let mut r = (StatusCode::OK, csv).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            r.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"apikey-audit.csv\""),
            );
            r
        }
        Err(r) => r,
    }
}

async fn domains_v4(State(c): S, headers: HeaderMap, Query(q): Query<Page>) -> Response {
    if let Err(r) = c.authenticate(&headers) {
        return r;
    }
    let items: Vec<Value> = lock(&c.state)
        .domains
        .iter()
        .map(|(id, n)| json!({"id": id, "name": n, "status": "ACTIVE", "links": {"self": format!("/v4/domains/{id}")}}))
        .collect();
    json(StatusCode::OK, paginate(items, &q, "/v4/domains"))
}

async fn domains_v1(State(c): S, headers: HeaderMap) -> Response {
    if c.authenticate(&headers).is_err() {
        return json(StatusCode::UNAUTHORIZED, json!({"errors": ["Unauthorized"]}));
    }
    let items: Vec<Value> = lock(&c.state)
        .domains
        .iter()
        .map(|(id, n)| json!({"id": id, "name": n}))
        .collect();
    json(StatusCode::OK, Value::Array(items))
}

/// The Add API Key window: `expiration` is the option picked, a number of
/// months as text (`"10"`) or `"never"`; `expiresInMonths` is the API's field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UiGenerate {
    #[serde(rename = "expiresInMonths", default)]
    expires_in_months: Option<u32>,
    #[serde(default)]
    expiration: Option<String>,
}

impl UiGenerate {
    fn months(&self) -> Result<Option<u32>, String> {
        match (self.expiration.as_deref(), self.expires_in_months) {
            (None, m) => Ok(m),
            (Some(_), Some(_)) => Err("give expiration or expiresInMonths, not both".to_owned()),
            (Some("never"), None) => Ok(None),
            (Some(text), None) => text
                .trim()
                .parse::<u32>()
                .map(Some)
                .map_err(|_| format!("expiration {text:?}: expected a number of months or \"never\"")),
        }
    }
}

async fn ui_generate(State(c): S, Path(user): Path<u64>, body: Bytes) -> Response {
    let months = match parse_json::<UiGenerate>(&body).and_then(|g| g.months()) {
        Ok(m) => m,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let now = c.ctx.clock.now();
    let mut st = lock(&c.state);
    if !st.users.iter().any(|u| u.id == user) {
        return err(StatusCode::NOT_FOUND, "Not Found");
    }
    match st.generate(user, months, "portal", now) {
        Ok(v) => json(StatusCode::CREATED, v),
        Err(r) => r,
    }
}

async fn ui_view(State(c): S, Path((user, id)): Path<(u64, u64)>) -> Response {
    let now = c.ctx.clock.now();
    match lock(&c.state).view(user, id, "portal", now) {
        Some(v) => json(StatusCode::OK, v),
        None => err(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// The profile page: the user's keys with their expiry, secrets hidden (not a view).
async fn ui_profile(State(c): S, Path(user): Path<u64>) -> Response {
    let st = lock(&c.state);
    if !st.users.iter().any(|u| u.id == user) {
        return err(StatusCode::NOT_FOUND, "Not Found");
    }
    let keys: Vec<Value> = st
        .keys
        .iter()
        .filter(|k| k.user_id == user)
        .map(Key::json)
        .collect();
    json(StatusCode::OK, json!({"data": keys}))
}

/// Deleting a key on the profile page: logged like the API's delete.
async fn ui_delete(State(c): S, Path((user, id)): Path<(u64, u64)>) -> Response {
    let now = c.ctx.clock.now();
    if lock(&c.state).delete(user, id, "portal", now) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        err(StatusCode::NOT_FOUND, "Not Found")
    }
}

#[derive(Deserialize)]
struct UiAudit {
    /// Comma-separated key IDs; none: every entry.
    #[serde(rename = "apiKeyIds", default)]
    api_key_ids: Option<String>,
}

/// The administrator's export of the key audit log in the portal, with the
/// counts a person reading it would make (stand-in for a guided step).
async fn ui_audit(State(c): S, Query(q): Query<UiAudit>) -> Response {
    let ids: Option<Vec<u64>> = match q.api_key_ids.as_deref().map(|s| {
        s.split(',')
            .map(|x| x.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
    }) {
        None => None,
        Some(Ok(ids)) => Some(ids),
        Some(Err(_)) => return err(StatusCode::BAD_REQUEST, "apiKeyIds: comma-separated key IDs"),
    };
    let st = lock(&c.state);
    let entries: Vec<&Audit> = st
        .audit
        .iter()
        .filter(|a| ids.as_ref().is_none_or(|ids| ids.contains(&a.api_key_id)))
        .collect();
    let count = |action: &str| entries.iter().filter(|a| a.action == action).count();
    json(
        StatusCode::OK,
        json!({"data": entries.iter().map(|a| a.json()).collect::<Vec<_>>(),
               "counts": {"create": count("create"), "view": count("view"), "delete": count("delete")}}),
    )
}

fn operator_view(c: &Constellix) -> Value {
    let st = lock(&c.state);
    json!({"users": st.users.iter().map(|u| json!({
        "id": u.id, "email": u.email, "isAdmin": u.is_admin,
        "apiKeys": st.keys.iter().filter(|k| k.user_id == u.id).map(|k| json!({"id": k.id, "apiKey": k.api_key, "secretKey": k.secret_key})).collect::<Vec<_>>(),
    })).collect::<Vec<_>>()})
}

async fn rate_headers(State(c): S, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    if !r.headers().contains_key("X-RateLimit-Limit") {
        c.rate_headers(&mut r);
    }
    r
}

pub(crate) async fn start(
    ctx: Ctx,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> std::io::Result<(SimHandle, Arc<Constellix>)> {
    let state = CState::fixtures(ctx.seed(), ctx.clock.now(), ctx.config.constellix_bench_users);
    let c = Arc::new(Constellix {
        ctx: ctx.clone(),
        state: Mutex::new(state),
    });
    let api = Router::new()
        .route("/v4/users/me/apikeys", get(list_keys).post(create_key))
        .route("/v4/users/me/apikeys/{id}", axum::routing::delete(delete_key))
        .route("/v4/users/me/apikeys/{id}/secret", get(view_secret))
        .route("/v4/audit/apikeys", get(audit))
        .route("/v4/audit/apikeys/export", get(audit_export))
        .route("/v4/domains", get(domains_v4))
        .route("/v1/domains", get(domains_v1))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "Not Found") })
        .layer(axum::middleware::from_fn_with_state(c.clone(), rate_headers))
        .with_state(c.clone());
    let admin = Router::new()
        .route(
            "/admin/ui/users/{user}/apikeys",
            get(ui_profile).post(ui_generate),
        )
        .route(
            "/admin/ui/users/{user}/apikeys/{id}",
            axum::routing::delete(ui_delete),
        )
        .route("/admin/ui/users/{user}/apikeys/{id}/secret", get(ui_view))
        .route("/admin/ui/audit/apikeys", get(ui_audit))
        .with_state(c.clone());
    let h = launch(
        System::Constellix,
        &ctx,
        c.clone(),
        Arc::new(ConstellixStyle),
        api,
        admin,
        shutdown,
        tasks,
    )
    .await?;
    Ok((h, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_token_matches_the_vendors_md_test_vector() {
        assert_eq!(
            security_token("test-api-key", "test-secret-key", 1_700_000_000_000),
            "test-api-key:OIgRNxR1O5qkbnG4eqUUDL95YwA=:1700000000000"
        );
    }
}
