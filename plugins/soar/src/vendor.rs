//! SOAR's REST API as this plugin uses it: `/rest/session`, the API key
//! accounts and the apps of one organization, each request with HTTP Basic
//! `api_key_id:api_key_secret`.
//!
//! Design decision: every vendor answer is parsed into a small typed record
//! here, and a reply missing a field the procedure relies on is an error
//! that names it; nothing downstream indexes raw JSON.

use rota_plugin_sdk::http::{self, Request, Response};
use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, json};

use crate::config::AppConfig;

/// An API key's credentials, the secret as a handle.
pub struct Login<'a> {
    pub id: &'a str,
    pub secret: &'a Handle,
}

/// The calls into one organization.
pub struct Soar<'a> {
    ctx: &'a Context,
    login: Login<'a>,
    org: u64,
}

/// An API key account (`GET /rest/orgs/{org}/api_keys`).
#[derive(Clone, Debug)]
pub struct KeyAccount {
    pub id: u64,
    pub api_key_id: String,
    pub display_name: String,
    pub locked: bool,
    pub enabled: bool,
    pub failed_login_count: u64,
    pub create_date: i64,
    pub last_modified_date: i64,
}

/// An app and its current installation on an App Host.
#[derive(Clone, Debug)]
pub struct App {
    pub id: u64,
    pub name: String,
    pub display_name: String,
    pub inst_id: u64,
    pub status: String,
    pub host_name: String,
    pub host_status: String,
    config_string: String,
}

impl App {
    pub fn config(&self) -> AppConfig {
        AppConfig::parse(&self.config_string)
    }
}

/// An App Secret's name and date (SOAR never returns its value).
#[derive(Clone, Debug)]
pub struct AppSecretMeta {
    pub name: String,
    pub last_modified_date: i64,
}

fn field<'v>(v: &'v Value, what: &str, key: &str) -> Result<&'v Value, Error> {
    v.get(key)
        .ok_or_else(|| Error::Internal(format!("SOAR answered {what} without \"{key}\": {}", short(v))))
}

fn u64_of(v: &Value, what: &str, key: &str) -> Result<u64, Error> {
    field(v, what, key)?
        .as_u64()
        .ok_or_else(|| Error::Internal(format!("SOAR answered {what} with a non-numeric \"{key}\"")))
}

fn i64_of(v: &Value, what: &str, key: &str) -> Result<i64, Error> {
    field(v, what, key)?
        .as_i64()
        .ok_or_else(|| Error::Internal(format!("SOAR answered {what} with a non-numeric \"{key}\"")))
}

fn str_of(v: &Value, what: &str, key: &str) -> Result<String, Error> {
    field(v, what, key)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Internal(format!("SOAR answered {what} with a non-text \"{key}\"")))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 {
        format!("{}...", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

impl KeyAccount {
    fn parse(v: &Value) -> Result<Self, Error> {
        let what = "an API key account";
        Ok(KeyAccount {
            id: u64_of(v, what, "id")?,
            api_key_id: str_of(v, what, "api_key_id")?,
            display_name: str_of(v, what, "display_name")?,
            locked: field(v, what, "locked")?.as_bool().unwrap_or(false),
            enabled: v.get("enabled").and_then(Value::as_bool).unwrap_or(true),
            failed_login_count: v.get("failed_login_count").and_then(Value::as_u64).unwrap_or(0),
            create_date: i64_of(v, what, "create_date")?,
            last_modified_date: i64_of(v, what, "last_modified_date")?,
        })
    }
}

impl App {
    fn parse(v: &Value) -> Result<Self, Error> {
        let what = "an app";
        let inst = field(v, what, "current_installation")?;
        let host = inst.get("app_host").cloned().unwrap_or(Value::Null);
        let config_string = inst
            .get("executables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("config_string").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(App {
            id: u64_of(v, what, "id")?,
            name: str_of(v, what, "name")?,
            display_name: v
                .get("display_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            inst_id: u64_of(inst, "an app installation", "id")?,
            status: str_of(inst, "an app installation", "status")?,
            host_name: host.get("name").and_then(Value::as_str).unwrap_or("-").to_owned(),
            host_status: host
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
            config_string,
        })
    }
}

/// Percent-encodes one path segment.
pub fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// SOAR's error DTO `{"success":false,"title","message",...}` as a typed
/// error carrying SOAR's own message.
fn check(resp: Response, what: &str) -> Result<Response, Error> {
    if (200..300).contains(&resp.status()) {
        return Ok(resp);
    }
    let message = serde_json::from_slice::<Value>(resp.body())
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(resp.body()).chars().take(300).collect());
    let text = format!("{what}: SOAR answered {}: {message}", resp.status());
    let retry_after_ms = resp
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000));
    Err(
        match Error::from_status(resp.status(), retry_after_ms, text.as_bytes()) {
            Error::InvalidInput(_) => Error::InvalidInput(text),
            other => other,
        },
    )
}

/// Sends a request. No answer at all (a dropped connection, a timeout) is
/// worth another attempt here: every call this plugin makes is safe to
/// repeat (reads, PUTs of a value, and a regeneration, which only ever runs
/// while no app uses the account). The SDK reports it as internal, which
/// rota never retries, so it becomes a 502 from the vendor's side.
fn send(req: Request) -> Result<Response, Error> {
    req.send().map_err(|e| match e {
        Error::Internal(m) => Error::Upstream {
            status: 502,
            body_excerpt: format!("no usable answer from SOAR: {m}"),
        },
        other => other,
    })
}

fn authed(req: Request, login: &Login) -> Request {
    req.header("accept", "application/json")
        .basic(login.id, login.secret)
}

fn session_request(ctx: &Context, login: &Login) -> Result<Response, Error> {
    authed(
        http::get(&ctx.url("/rest/session?include_permissions=false")?),
        login,
    )
    .send()
}

/// `GET /rest/session`: who the key is and its organizations.
pub fn session(ctx: &Context, login: &Login) -> Result<Value, Error> {
    let what = format!("signing in with API key {}", login.id);
    check(session_request(ctx, login)?, &what)?.json()
}

/// Whether the credentials sign in (a 401 is an answer here, not an error).
pub fn try_session(ctx: &Context, login: &Login) -> Result<bool, Error> {
    let resp = session_request(ctx, login)?;
    if resp.status() == 401 {
        return Ok(false);
    }
    check(resp, &format!("signing in with API key {}", login.id))?;
    Ok(true)
}

impl<'a> Soar<'a> {
    pub fn new(ctx: &'a Context, login: Login<'a>, org: u64) -> Self {
        Soar { ctx, login, org }
    }

    fn url(&self, path: &str) -> Result<String, Error> {
        self.ctx.url(&format!("/rest/orgs/{}{path}", self.org))
    }

    fn get(&self, path: &str, what: &str) -> Result<Value, Error> {
        check(send(authed(http::get(&self.url(path)?), &self.login))?, what)?.json()
    }

    pub fn api_keys(&self) -> Result<Vec<KeyAccount>, Error> {
        let v = self.get("/api_keys", "listing API key accounts")?;
        v.as_array()
            .ok_or_else(|| {
                Error::Internal("SOAR listed API key accounts as something other than a list".to_owned())
            })?
            .iter()
            .map(KeyAccount::parse)
            .collect()
    }

    pub fn api_key(&self, id: u64) -> Result<KeyAccount, Error> {
        KeyAccount::parse(&self.get(
            &format!("/api_keys/{id}"),
            &format!("reading API key account {id}"),
        )?)
    }

    pub fn apps(&self) -> Result<Vec<App>, Error> {
        let v = self.get("/apps", "listing apps")?;
        v.as_array()
            .ok_or_else(|| Error::Internal("SOAR listed apps as something other than a list".to_owned()))?
            .iter()
            .map(App::parse)
            .collect()
    }

    /// An app by its name, as the Apps tab shows it.
    pub fn app(&self, name: &str) -> Result<App, Error> {
        let apps = self.apps()?;
        let known: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        let known = known.join(", ");
        apps.into_iter().find(|a| a.name == name).ok_or_else(|| {
            Error::NotFound(format!(
                "no app {name:?} in organization {}; there are: {known}",
                self.org
            ))
        })
    }

    pub fn app_secrets(&self, app: &App) -> Result<Vec<AppSecretMeta>, Error> {
        let what = format!("listing the App Secrets of app {}", app.name);
        let v = self.get(
            &format!("/apps/{}/installations/{}/secrets", app.id, app.inst_id),
            &what,
        )?;
        v.as_array()
            .ok_or_else(|| Error::Internal(format!("{what}: SOAR answered something other than a list")))?
            .iter()
            .map(|s| {
                Ok(AppSecretMeta {
                    name: str_of(s, "an App Secret", "name")?,
                    last_modified_date: s.get("last_modified_date").and_then(Value::as_i64).unwrap_or(0),
                })
            })
            .collect()
    }

    pub fn app_secret_names(&self, app: &App) -> Result<Vec<String>, Error> {
        Ok(self.app_secrets(app)?.into_iter().map(|s| s.name).collect())
    }

    /// `PUT .../installations/{inst}` with `undeploying` or `deploying`.
    pub fn set_installation(&self, app: &App, status: &str) -> Result<App, Error> {
        let what = format!(
            "setting app {} (installation {}) to {status}",
            app.name, app.inst_id
        );
        let url = self.url(&format!("/apps/{}/installations/{}", app.id, app.inst_id))?;
        let resp =
            send(authed(http::put(&url), &self.login).json(&json!({"id": app.inst_id, "status": status}))?)?;
        App::parse(&check(resp, &what)?.json::<Value>()?)
    }

    /// `POST .../api_keys/{id}/regenerate_secret`; the new secret goes
    /// straight into the store as capture `secret`.
    pub fn regenerate(&self, id: u64) -> Result<(KeyAccount, Handle), Error> {
        let what = format!("regenerating the secret of API key account {id}");
        let resp = send(
            authed(
                http::post(&self.url(&format!("/api_keys/{id}/regenerate_secret"))?),
                &self.login,
            )
            .capture_json("/api_key_secret", "secret"),
        )?;
        let resp = check(resp, &what)?;
        let secret = resp
            .captured("secret")
            .ok_or_else(|| Error::Internal(format!("{what}: SOAR returned no api_key_secret")))?;
        Ok((KeyAccount::parse(&resp.json::<Value>()?)?, secret))
    }

    /// `PUT .../secrets/{name}` with the value injected by the host; returns
    /// the secret's new `last_modified_date`.
    pub fn put_app_secret(&self, app: &App, name: &str, secret: &Handle) -> Result<i64, Error> {
        let what = format!("updating App Secret {name} of app {}", app.name);
        let url = self.url(&format!(
            "/apps/{}/installations/{}/secrets/{}",
            app.id,
            app.inst_id,
            segment(name)
        ))?;
        let resp = send(
            authed(http::put(&url), &self.login)
                .json(&json!({"value": secret, "protected": true}))?
                .json_secret(secret),
        )?;
        let answer: Value = check(resp, &what)?.json()?;
        Ok(answer
            .get("last_modified_date")
            .and_then(Value::as_i64)
            .unwrap_or(0))
    }
}
