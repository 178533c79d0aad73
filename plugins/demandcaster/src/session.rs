//! A DemandCaster session: the `DCSESSION` cookie, held by the host as a
//! run-only secret of this plugin, and renewed when it no longer works.
//!
//! Design decision: a session is never stored, so it does not outlive the
//! process; a resumed run (or one whose session expired) signs in again
//! with the stored password and re-enters the business node its earlier,
//! confirmed step entered. The renewed cookie is captured under the same
//! name, so later steps holding the old handle use the new session.

use rota_plugin_sdk::http::{self, Request, Response};
use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, json};

/// Capture label of the run's session cookie (`demandcaster/ephemeral/session`).
const SESSION: &str = "session";
/// Capture label of a reading action's own session: never the run's, so
/// signing it out leaves the run's session working.
const READ_SESSION: &str = "read-session";

/// The typed error for a DemandCaster answer outside 2xx, with its own
/// `{"error": {"code", "message"}}` (`doing` says what rota was doing).
pub fn dc_error(doing: &str, resp: &Response) -> Error {
    let status = resp.status();
    let body: Value = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    let field = |k: &str| {
        body.pointer(&format!("/error/{k}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let text = match (field("code"), field("message")) {
        (Some(code), Some(message)) => format!("{doing}: DemandCaster answered {status} {code}: {message}"),
        _ => format!(
            "{doing}: DemandCaster answered {status}: {}",
            String::from_utf8_lossy(resp.body())
                .chars()
                .take(200)
                .collect::<String>()
        ),
    };
    resp.error_with(&text)
}

pub fn ok_or_dc_error(doing: &str, resp: Response) -> Result<Response, Error> {
    if (200..300).contains(&resp.status()) {
        Ok(resp)
    } else {
        Err(dc_error(doing, &resp))
    }
}

/// Signs in; returns the handle of the session cookie.
pub fn sign_in(ctx: &Context, username: &str, password: &Handle) -> Result<Handle, Error> {
    sign_in_as(ctx, username, password, SESSION)
}

/// Signs in; the session cookie is captured under `label`.
fn sign_in_as(ctx: &Context, username: &str, password: &Handle, label: &str) -> Result<Handle, Error> {
    let resp = http::post(&ctx.url("/api/session")?)
        .header("accept", "application/json")
        .json(&json!({"username": username, "password": password}))?
        .json_secret(password)
        .capture_header_ephemeral("set-cookie", label)
        .send()?;
    let resp = ok_or_dc_error(&format!("signing in to DemandCaster as {username}"), resp)?;
    resp.captured(label).ok_or_else(|| {
        Error::Internal(format!(
            "DemandCaster signed {username} in but set no session cookie"
        ))
    })
}

/// Signs out (DemandCaster's log-out link): the session ends at the vendor.
pub fn sign_out(ctx: &Context, session: &Handle) -> Result<(), Error> {
    let resp = with_cookie(http::delete(&ctx.url("/api/session")?), session).send()?;
    ok_or_dc_error("signing out of DemandCaster", resp).map(|_| ())
}

/// Runs `read` in a session of its own, signed in first and signed out
/// after (whatever `read` returned), so a read leaves nothing behind at
/// DemandCaster: that is what makes the reading actions read-only.
pub fn in_own_session<T>(
    ctx: &Context,
    username: &str,
    password: &Handle,
    node: Option<u64>,
    read: impl FnOnce(&mut Session<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let handle = sign_in_as(ctx, username, password, READ_SESSION)?;
    let mut s = Session::new(ctx, handle, username, password, node);
    s.label = READ_SESSION;
    let result = match node {
        Some(n) => enter(ctx, &s.handle, n).and_then(|()| read(&mut s)),
        None => read(&mut s),
    };
    // A renewal inside `read` replaced the cookie: sign out the live one.
    let out = sign_out(ctx, &s.handle);
    let value = result?;
    out?;
    Ok(value)
}

/// *Enter* next to a business node, with DemandCaster's "Are you sure you
/// want to enter this company?" answered OK (without the session cookie).
pub fn enter_request(ctx: &Context, node: u64) -> Result<Request, Error> {
    http::post(&ctx.url(&format!("/api/business-nodes/{node}/enter"))?).json(&json!({"confirm": true}))
}

fn enter(ctx: &Context, session: &Handle, node: u64) -> Result<(), Error> {
    let resp = with_cookie(enter_request(ctx, node)?, session).send()?;
    ok_or_dc_error(&format!("entering business node {node}"), resp).map(|_| ())
}

fn with_cookie(req: Request, session: &Handle) -> Request {
    req.secret_header("cookie", "", session)
        .header("accept", "application/json")
}

/// A session to make calls in, with what it takes to renew it.
pub struct Session<'a> {
    ctx: &'a Context,
    handle: Handle,
    username: &'a str,
    password: &'a Handle,
    /// The business node the calls need entered (already confirmed by the
    /// playbook's enter step), if any.
    node: Option<u64>,
    /// The capture label a renewed cookie is stored under.
    label: &'static str,
}

impl<'a> Session<'a> {
    pub fn new(
        ctx: &'a Context,
        handle: Handle,
        username: &'a str,
        password: &'a Handle,
        node: Option<u64>,
    ) -> Self {
        Self {
            ctx,
            handle,
            username,
            password,
            node,
            label: SESSION,
        }
    }

    /// Sends the request `build` makes, with the session cookie. When the
    /// host no longer holds the session (it never outlives a process), or
    /// DemandCaster says it expired (401) or that no node is entered (403),
    /// signs in again, re-enters the node and sends it once more.
    pub fn send(&mut self, build: &dyn Fn() -> Result<Request, Error>) -> Result<Response, Error> {
        match with_cookie(build()?, &self.handle).send() {
            Ok(r) if r.status() == 401 => self.sign_in_again()?,
            Ok(r) if r.status() == 403 => match self.node {
                Some(node) => {
                    enter(self.ctx, &self.handle, node)?;
                }
                None => return Ok(r),
            },
            Ok(r) => return Ok(r),
            // Raised by the host before anything is sent: it does not know
            // the handle, i.e. the session did not survive an interruption.
            Err(Error::InvalidInput(_)) => self.sign_in_again()?,
            Err(e) => return Err(e),
        }
        with_cookie(build()?, &self.handle).send()
    }

    fn sign_in_again(&mut self) -> Result<(), Error> {
        self.handle = sign_in_as(self.ctx, self.username, self.password, self.label)?;
        if let Some(node) = self.node {
            enter(self.ctx, &self.handle, node)?;
        }
        Ok(())
    }
}
