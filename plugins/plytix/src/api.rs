//! Talking to Plytix: the documented token exchange, the account endpoints
//! (modeled, VENDORS.md 2.4), the vendor's error envelopes and ID formats.
//!
//! Design decision: every action signs in afresh with the documented
//! `POST /auth/api/get-token` and keeps the 15-minute access token as an
//! ephemeral handle the host holds for this plugin alone. No token outlives
//! the call, so a long confirmation or a resume never meets an expired one,
//! and the plugin never sees a token or a password.

use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, http, json};
use serde::{Deserialize, Serialize};

/// The credentials rota signs in with, an Owner or Admin key: flattened
/// into every action's input as `admin_key` and `admin_password`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Login {
    /// The API key, an identifier (the API tab shows it in clear).
    pub admin_key: String,
    /// The API password, as a handle the host injects.
    pub admin_password: Handle,
}

/// An API key as the API tab shows it. `key_id` is the vendor's 24-hex ID,
/// used only on the wire; `api_key` is how people and integrations know it.
#[derive(Clone, Debug, Serialize)]
pub struct Key {
    pub key_id: String,
    pub api_key: String,
    pub name: String,
    pub role: String,
    pub role_type: String,
    pub created: String,
}

/// A role a key can be given: a System role or a custom Team role.
#[derive(Clone, Debug, Serialize)]
pub struct Role {
    pub role_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub manages_keys: bool,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: Vec<T>,
}

#[derive(Deserialize)]
struct RoleRef {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct RawKey {
    id: String,
    api_key: String,
    name: String,
    role: Option<RoleRef>,
    created: String,
}

#[derive(Deserialize)]
struct RawRole {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    permissions: Value,
}

/// Plytix's IDs are 24-hex Mongo ObjectIds; anything else never goes into a path.
fn is_object_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl RawKey {
    fn into_key(self) -> Result<Key, Error> {
        if !is_object_id(&self.id) {
            return Err(Error::Internal(format!(
                "Plytix listed API key {:?} with ID {:?}, not a 24-hex ID",
                self.name, self.id
            )));
        }
        let role = self.role.ok_or_else(|| {
            Error::Internal(format!("Plytix listed API key {:?} without a role", self.name))
        })?;
        Ok(Key {
            key_id: self.id,
            api_key: self.api_key,
            name: self.name,
            role: role.name,
            role_type: role.kind,
            created: self.created,
        })
    }
}

/// The origin of the token exchange: `auth.<env>.plytix.com` beside the
/// `pim.<env>.plytix.com` the target names; any other base URL (a
/// simulator, a proxy) serves both.
fn auth_url(ctx: &Context, path: &str) -> Result<String, Error> {
    let url = ctx.url(path)?;
    if let Some(rest) = url.strip_prefix("https://pim.") {
        let host = rest.split('/').next().unwrap_or_default();
        if host == "plytix.com" || host.ends_with(".plytix.com") {
            return Ok(format!("https://auth.{rest}"));
        }
    }
    Ok(url)
}

/// A name for this call's token among the run's ephemeral secrets (path
/// segments of letters, digits, `.`, `_`, `-`), unique per step item and
/// attempt so concurrent calls never read each other's token.
fn token_label(ctx: &Context) -> String {
    let clean: Vec<String> = ctx
        .idempotency_key
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .collect();
    format!("{}/access-token-{}", clean.join("/"), ctx.attempt)
}

/// The vendor's words from an error body: the v3 envelope
/// `{"errors":[{"name","description"}]}`, the auth/rate-limit shape
/// `{"error":{"msg"}}`, the documented `{"msg"}`, or the first 200 bytes.
fn message(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
    if let Some(d) = text("/errors/0/description") {
        return match text("/errors/0/name") {
            Some(n) => format!("{n}: {d}"),
            None => d,
        };
    }
    if let Some(m) = text("/error/msg")
        .or_else(|| text("/msg"))
        .or_else(|| text("/detail/0/msg"))
    {
        return m;
    }
    let raw = String::from_utf8_lossy(body);
    let mut end = raw.len().min(200);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    raw[..end].trim().to_owned()
}

/// Maps a Plytix error answer to the typed error the executor acts on: a
/// 429 keeps the vendor's wait (`Retry-After`, else the body's
/// `retry_after`, both seconds) so `retry:` waits exactly as told.
pub fn vendor_error(resp: &http::Response, what: &str) -> Error {
    let status = resp.status();
    let msg = message(resp.body());
    match status {
        400 | 422 => Error::InvalidInput(format!("Plytix rejected {what} ({status}): {msg}")),
        401 => Error::Unauthorized(format!("Plytix refused the credentials for {what}: {msg}")),
        403 => Error::Forbidden(format!("Plytix refused {what}: {msg}")),
        404 => Error::NotFound(format!("Plytix found nothing for {what}: {msg}")),
        409 => Error::Conflict(format!("Plytix refused {what}: {msg}")),
        429 => {
            let header = resp
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = serde_json::from_slice::<Value>(resp.body())
                .ok()
                .and_then(|v| v.pointer("/error/retry_after").and_then(Value::as_u64));
            Error::RateLimited {
                retry_after_ms: header.or(body).map(|s| s.saturating_mul(1000)),
            }
        }
        _ => Error::Upstream {
            status,
            body_excerpt: format!("{what}: {msg}"),
        },
    }
}

/// A request that is safe to send again (a read, the
/// token exchange, a role change to a given role): a lost answer (dropped
/// connection, timeout) is upstream trouble the executor may retry.
fn send(req: http::Request, what: &str) -> Result<http::Response, Error> {
    let resp = req.send().map_err(|e| unanswered(e, what))?;
    if (200..300).contains(&resp.status()) {
        Ok(resp)
    } else {
        Err(vendor_error(&resp, what))
    }
}

/// The SDK reports a request that got no usable answer as internal; for a
/// request safe to repeat that is a transient upstream failure.
fn unanswered(e: Error, what: &str) -> Error {
    match e {
        Error::Internal(m) => Error::Upstream {
            status: 502,
            body_excerpt: format!("{what}: no answer from Plytix ({m})"),
        },
        other => other,
    }
}

/// The documented token exchange; the access token comes back as an
/// ephemeral handle (the rest of the answer, an undocumented refresh token,
/// is never read).
pub fn sign_in(ctx: &Context, api_key: &str, password: &Handle) -> Result<Handle, Error> {
    let label = token_label(ctx);
    let req = http::post(&auth_url(ctx, "/auth/api/get-token")?)
        .json(&json!({"api_key": api_key, "api_password": password}))?
        .json_secret(password)
        .capture_ephemeral("/data/0/access_token", &label);
    let resp = send(req, &format!("the token exchange of API key {api_key}"))?;
    resp.captured(&label).ok_or_else(|| {
        Error::Internal("Plytix answered the token exchange without an access token".to_owned())
    })
}

/// A signed-in caller.
pub struct Session<'a> {
    ctx: &'a Context,
    token: Handle,
}

impl<'a> Session<'a> {
    pub fn open(ctx: &'a Context, login: &Login) -> Result<Self, Error> {
        let token = sign_in(ctx, &login.admin_key, &login.admin_password)?;
        Ok(Self { ctx, token })
    }

    fn url(&self, path: &str) -> Result<String, Error> {
        self.ctx.url(path)
    }

    pub fn keys(&self) -> Result<Vec<Key>, Error> {
        let req = http::get(&self.url("/accounts/v1/api-keys")?).bearer(&self.token);
        let page: Envelope<RawKey> = send(req, "the list of API keys")?.json()?;
        page.data.into_iter().map(RawKey::into_key).collect()
    }

    pub fn roles(&self) -> Result<Vec<Role>, Error> {
        let req = http::get(&self.url("/accounts/v1/roles")?).bearer(&self.token);
        let page: Envelope<RawRole> = send(req, "the list of roles")?.json()?;
        Ok(page
            .data
            .into_iter()
            .map(|r| Role {
                manages_keys: r.permissions.get("account_management") == Some(&Value::Bool(true)),
                role_id: r.id,
                name: r.name,
                kind: r.kind,
            })
            .collect())
    }

    /// Creates a key; its password is captured as `capture` and only the
    /// handle comes back.
    ///
    /// A create whose answer is lost (dropped, cut short, a 5xx) may still
    /// have happened. Plytix keeps API passwords revealable (the eye icon),
    /// so a key of that name that was not there before is adopted and its
    /// password captured from the reveal; otherwise the error stands and
    /// the executor may retry.
    pub fn create_key(&self, name: &str, role: &Role, capture: &str) -> Result<(Key, Handle), Error> {
        let what = format!("creating API key {name:?}");
        let before: Vec<String> = self.keys()?.into_iter().map(|k| k.key_id).collect();
        let req = http::post(&self.url("/accounts/v1/api-keys")?)
            .bearer(&self.token)
            .json(&json!({"name": name, "role_id": role.role_id}))?
            .capture_json("/data/0/api_password", capture);
        let failure = match req.send() {
            Ok(resp) if (200..300).contains(&resp.status()) => {
                let password = resp.captured(capture).ok_or_else(|| {
                    Error::Internal(format!(
                        "Plytix created API key {name:?} but showed no API password"
                    ))
                })?;
                let key = first(resp.json::<Envelope<RawKey>>()?, "the created API key")?;
                return Ok((key, password));
            }
            Ok(resp) if resp.status() < 500 => return Err(vendor_error(&resp, &what)),
            Ok(resp) => vendor_error(&resp, &what),
            Err(e) => unanswered(e, &what),
        };
        let made = self
            .keys()?
            .into_iter()
            .find(|k| k.name == name && !before.contains(&k.key_id));
        match made {
            Some(key) => {
                let password = self.reveal(&key, capture)?;
                Ok((key, password))
            }
            None => Err(failure),
        }
    }

    /// The eye icon: a key's API password, captured as `capture`.
    fn reveal(&self, key: &Key, capture: &str) -> Result<Handle, Error> {
        let req = http::get(&self.url(&format!("/accounts/v1/api-keys/{}/password", key.key_id))?)
            .bearer(&self.token)
            .capture_json("/data/0/api_password", capture);
        let what = format!("the API password of {:?}", key.name);
        let resp = req.send()?;
        if !(200..300).contains(&resp.status()) {
            return Err(vendor_error(&resp, &what));
        }
        resp.captured(capture)
            .ok_or_else(|| Error::Internal(format!("Plytix showed no password for {what}")))
    }

    /// Gives `key` the role `role`; Plytix answers 200 with the key or,
    /// since 2026-10, 204 with no body.
    pub fn set_role(&self, key: &Key, role: &Role) -> Result<Key, Error> {
        let req = http::patch(&self.url(&format!("/accounts/v1/api-keys/{}", key.key_id))?)
            .bearer(&self.token)
            .json(&json!({"role_id": role.role_id}))?;
        let resp = send(req, &format!("the role of API key {:?}", key.name))?;
        if resp.body().iter().all(u8::is_ascii_whitespace) {
            return Ok(Key {
                role: role.name.clone(),
                role_type: role.kind.clone(),
                ..key.clone()
            });
        }
        first(resp.json::<Envelope<RawKey>>()?, "the updated API key")
    }

    /// Deletes a key by its vendor ID; `false` if Plytix no longer has it.
    pub fn delete(&self, key_id: &str) -> Result<bool, Error> {
        if !is_object_id(key_id) {
            return Err(Error::InvalidInput(format!(
                "{key_id:?} is not a Plytix key ID (24 hex characters)"
            )));
        }
        let what = format!("deleting API key {key_id}");
        let resp = http::delete(&self.url(&format!("/accounts/v1/api-keys/{key_id}"))?)
            .bearer(&self.token)
            .send()
            .map_err(|e| unanswered(e, &what))?;
        match resp.status() {
            404 => Ok(false),
            200..=299 => Ok(true),
            _ => Err(vendor_error(&resp, &what)),
        }
    }

    /// Reads one page of products with the token: whether this key's role
    /// lets it see products (a 403 is an answer here, not a failure).
    pub fn can_read_products(&self) -> Result<bool, Error> {
        let req = http::post(&self.url("/api/v1/products/search")?)
            .bearer(&self.token)
            .json(
                &json!({"filters": [], "attributes": ["sku"], "pagination": {"page": 1, "page_size": 1}}),
            )?;
        let resp = req.send().map_err(|e| unanswered(e, "a product search"))?;
        match resp.status() {
            200..=299 => Ok(true),
            403 => Ok(false),
            _ => Err(vendor_error(&resp, "a product search")),
        }
    }
}

fn first(page: Envelope<RawKey>, what: &str) -> Result<Key, Error> {
    page.data
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal(format!("Plytix answered with no data for {what}")))?
        .into_key()
}

/// One role by name: exact, else the only case-insensitive match. Not
/// found names every System and Team role the account has.
pub fn pick_role(roles: Vec<Role>, name: &str) -> Result<Role, Error> {
    let folded: Vec<&Role> = roles
        .iter()
        .filter(|r| r.name.eq_ignore_ascii_case(name))
        .collect();
    if let Some(r) = roles.iter().find(|r| r.name == name) {
        return Ok(r.clone());
    }
    if let [only] = folded.as_slice() {
        return Ok((*only).clone());
    }
    let of = |kind: &str| {
        let names: Vec<&str> = roles
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.name.as_str())
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    Err(Error::NotFound(format!(
        "Plytix has no role named {name:?}; System roles: {}; Team roles: {}",
        of("system"),
        of("team")
    )))
}

/// The key named `name`; not found lists the names there are.
pub fn pick_key_named(keys: Vec<Key>, name: &str) -> Result<Key, Error> {
    let names: Vec<String> = keys.iter().map(|k| format!("{:?}", k.name)).collect();
    keys.into_iter().find(|k| k.name == name).ok_or_else(|| {
        Error::NotFound(format!(
            "Plytix has no API key named {name:?}; the API tab lists: {}",
            if names.is_empty() {
                "no keys".to_owned()
            } else {
                names.join(", ")
            }
        ))
    })
}

/// The key whose API key is `api_key`.
pub fn pick_key(keys: Vec<Key>, api_key: &str) -> Result<Key, Error> {
    keys.into_iter()
        .find(|k| k.api_key == api_key)
        .ok_or_else(|| Error::NotFound(format!("Plytix has no API key {api_key}")))
}

/// The inventory entry for a key: Plytix keys never expire, the API key is
/// the ID people and integrations know, the name says who uses it.
pub fn inventory(key: &Key, status: &str, secret: Option<&Handle>) -> Value {
    let mut v = json!({
        "account": key.name, "key_id": key.api_key, "created": key.created,
        "expires": null, "status": status,
    });
    if let (Some(h), Some(map)) = (secret, v.as_object_mut()) {
        let name = h.as_str().rsplit_once('@').map_or(h.as_str(), |(n, _)| n);
        map.insert("secret".to_owned(), json!(name));
    }
    v
}
