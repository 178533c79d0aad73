//! The Constellix v4 API as this plugin uses it: signed requests, the
//! vendor's error bodies mapped to typed errors, paged lists, and the key
//! records they return.
//!
//! Design decision: the security token is computed by the host
//! (`signed_header`: HMAC-SHA1 of the millisecond timestamp, base64), with
//! the API key, the public half the portal shows, written into the value in
//! clear; the secret key only ever travels as a handle, so the plugin never
//! holds a value Constellix would log as viewed.

use rota_plugin_sdk::http::{self, HmacAlgorithm, SignatureEncoding};
use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, json};

/// Most pages a list may have before the answer is treated as broken.
const MAX_PAGES: u64 = 50;

/// Who a request signs as: the key's public half and a handle to its secret.
pub(crate) struct Signer<'a> {
    api_key: &'a str,
    secret_key: &'a Handle,
}

impl<'a> Signer<'a> {
    pub(crate) fn new(api_key: &'a str, secret_key: &'a Handle) -> Self {
        Self { api_key, secret_key }
    }

    /// `Authorization: Bearer apiKey:base64(HMAC-SHA1(secretKey, ts)):ts`
    /// (the v4 form; v1 takes the same token in `x-cns-security-token`).
    pub(crate) fn sign(&self, req: http::Request) -> Result<http::Request, Error> {
        // The value is a template of the host's; an API key with a brace
        // could smuggle a placeholder into it.
        if self.api_key.is_empty()
            || !self
                .api_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::InvalidInput(format!(
                "{:?} is not a Constellix API key (letters, digits and dashes)",
                self.api_key
            )));
        }
        Ok(req.header("accept", "application/json").signed_header(
            "authorization",
            HmacAlgorithm::Sha1,
            self.secret_key,
            "{timestamp-ms}",
            SignatureEncoding::Base64,
            &format!("Bearer {}:{{signature}}:{{timestamp-ms}}", self.api_key),
            &[],
        ))
    }
}

/// The vendor's message: `{"message": "...", "errors": {"field": ["..."]}}`
/// (v4) or `{"errors": ["..."]}` (v1), flattened into one line.
fn message(body: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = body.get("message").and_then(Value::as_str) {
        parts.push(m.to_owned());
    }
    match body.get("errors") {
        Some(Value::Object(fields)) => {
            for (field, msgs) in fields {
                let text: Vec<&str> = match msgs {
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    Value::String(s) => vec![s.as_str()],
                    _ => Vec::new(),
                };
                parts.push(format!("{field}: {}", text.join("; ")));
            }
        }
        Some(Value::Array(list)) => parts.extend(list.iter().filter_map(Value::as_str).map(str::to_owned)),
        _ => {}
    }
    parts.join(": ")
}

/// Passes a 2xx answer through; anything else becomes the typed error, with
/// `what` saying which call it was.
pub(crate) fn check(resp: http::Response, what: &str) -> Result<http::Response, Error> {
    let status = resp.status();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let body: Value = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    let said = message(&body);
    let said = if said.is_empty() {
        format!("HTTP {status}")
    } else {
        said
    };
    Err(match status {
        401 => Error::Unauthorized(format!(
            "{what}: Constellix refused the security token ({said}): the API key is unknown or expired, or the secret key is not its own"
        )),
        403 => Error::Forbidden(format!("{what}: {said}")),
        404 => Error::NotFound(format!("{what}: {said}")),
        422 if body.pointer("/errors/apikeys").is_some() => Error::Conflict(format!(
            "{what}: {said} (a Constellix user may hold at most two API keys)"
        )),
        429 => {
            let secs = |h: &str| resp.header(h).and_then(|v| v.trim().parse::<u64>().ok());
            Error::RateLimited {
                retry_after_ms: secs("retry-after")
                    .or_else(|| secs("x-ratelimit-reset"))
                    .map(|s| s.saturating_mul(1000)),
            }
        }
        _ => match Error::from_status(status, None, resp.body()) {
            Error::InvalidInput(_) => {
                Error::InvalidInput(format!("{what}: Constellix answered {status}: {said}"))
            }
            other => other,
        },
    })
}

/// Every item of a paged v4 list (`page`, `perPage`; `meta.pagination`).
pub(crate) fn all_pages(
    ctx: &Context,
    signer: &Signer,
    path: &str,
    query: &str,
    what: &str,
) -> Result<Vec<Value>, Error> {
    let mut items = Vec::new();
    let mut page = 1;
    loop {
        let sep = if query.is_empty() { "" } else { "&" };
        let url = ctx.url(&format!("{path}?{query}{sep}page={page}&perPage=100"))?;
        let resp = check(signer.sign(http::get(&url))?.send()?, what)?;
        let body: Value = resp.json()?;
        let data = body.get("data").and_then(Value::as_array).ok_or_else(|| {
            Error::Internal(format!(
                "{what}: Constellix answered without a data list: {}",
                excerpt(&body)
            ))
        })?;
        items.extend(data.iter().cloned());
        let pages = body
            .pointer("/meta/pagination/totalPages")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if page >= pages {
            return Ok(items);
        }
        if page >= MAX_PAGES {
            return Err(Error::Internal(format!(
                "{what}: Constellix reports {pages} pages; more than {MAX_PAGES} is not a key list"
            )));
        }
        page += 1;
    }
}

pub(crate) fn excerpt(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// An ID as Constellix sends it (a number), as text.
pub(crate) fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(s.clone()),
        _ => None,
    }
}

/// One API key as the list shows it (the secret key hidden).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) id: String,
    pub(crate) api_key: String,
    pub(crate) created: String,
    /// None: never expires.
    pub(crate) expires: Option<String>,
}

impl Key {
    pub(crate) fn parse(v: &Value) -> Result<Self, Error> {
        let bad = |what: &str| Error::Internal(format!("Constellix listed a key {what}: {}", excerpt(v)));
        let text = |f: &str| v.get(f).and_then(Value::as_str).map(str::to_owned);
        Ok(Key {
            id: id_text(v.get("id")).ok_or_else(|| bad("without a numeric id"))?,
            api_key: text("apiKey").ok_or_else(|| bad("without its apiKey"))?,
            created: text("createdAt").ok_or_else(|| bad("without createdAt"))?,
            expires: match v.get("expiresAt") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(bad("whose expiresAt is neither a date nor null")),
            },
        })
    }

    /// The expiry as the playbook's scalar outputs carry it.
    pub(crate) fn expires_text(&self) -> String {
        self.expires.clone().unwrap_or_else(|| "never".to_owned())
    }

    pub(crate) fn json(&self) -> Value {
        json!({"id": self.id, "api_key": self.api_key, "created": self.created, "expires": self.expires})
    }

    /// The inventory report for this key (`expires: null` is never).
    pub(crate) fn inventory(&self, account: &str, status: &str) -> Value {
        json!({"account": account, "key_id": self.id, "created": self.created,
               "expires": self.expires, "status": status})
    }
}

/// The signed-in user's keys (`GET /v4/users/me/apikeys`, every page).
pub(crate) fn list_keys(ctx: &Context, signer: &Signer) -> Result<Vec<Key>, Error> {
    all_pages(
        ctx,
        signer,
        "/v4/users/me/apikeys",
        "",
        "listing the user's API keys",
    )?
    .iter()
    .map(Key::parse)
    .collect()
}

/// `DELETE /v4/users/me/apikeys/{id}`; Ok(false) if Constellix has no such key.
pub(crate) fn delete_key(ctx: &Context, signer: &Signer, key_id: &str) -> Result<bool, Error> {
    let url = ctx.url(&format!("/v4/users/me/apikeys/{key_id}"))?;
    let resp = signer.sign(http::delete(&url))?.send()?;
    if resp.status() == 404 {
        return Ok(false);
    }
    check(resp, &format!("deleting API key {key_id}"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_flatten_both_error_envelopes() {
        assert_eq!(
            message(
                &json!({"message": "Validation failed", "errors": {"apikeys": ["A user may have at most 2 API keys"]}})
            ),
            "Validation failed: apikeys: A user may have at most 2 API keys"
        );
        assert_eq!(
            message(&json!({"errors": ["Requested record was not found"]})),
            "Requested record was not found"
        );
        assert_eq!(message(&json!({"message": "Unauthorized"})), "Unauthorized");
    }

    #[test]
    fn keys_parse_with_never_and_refuse_broken_records() {
        let k = Key::parse(
            &json!({"id": 1003, "apiKey": "b6f1-aa", "createdAt": "2025-01-01T00:00:00Z", "expiresAt": null, "hidden": true}),
        );
        assert_eq!(
            k,
            Ok(Key {
                id: "1003".into(),
                api_key: "b6f1-aa".into(),
                created: "2025-01-01T00:00:00Z".into(),
                expires: None
            })
        );
        assert_eq!(k.map(|k| k.expires_text()), Ok("never".to_owned()));
        assert!(Key::parse(&json!({"id": "x1", "apiKey": "a", "createdAt": "c"})).is_err());
        assert!(Key::parse(&json!({"id": 1, "apiKey": "a", "createdAt": "c", "expiresAt": 5})).is_err());
    }

    #[test]
    fn ids_are_numbers_or_digit_strings() {
        assert_eq!(id_text(Some(&json!(1004))), Some("1004".to_owned()));
        assert_eq!(id_text(Some(&json!("1004"))), Some("1004".to_owned()));
        assert_eq!(id_text(Some(&json!("10a"))), None);
        assert_eq!(id_text(Some(&json!(-1))), None);
    }
}
