//! The Plex UX client-application API (`[INVENTED]` in VENDORS.md §1.5,
//! with Plex's real conventions): every call carries the operator's portal
//! key in `X-Plex-Connect-Api-Key`, errors come as
//! `{"code": "...", "message": "..."}`.
//!
//! Design decision: this module only speaks HTTP and reads answers; what a
//! playbook may do with a secret (delete only by an ID the grid lists,
//! clean up after a lost answer) is decided by the actions in `lib.rs`.

use rota_plugin_sdk::http::{self, Request, Response};
use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value};
use serde::Deserialize;

/// One row of the Client Applications screen.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub client_id: String,
    pub name: String,
    pub customer_id: String,
    #[serde(default)]
    pub secret_count: u64,
}

/// One row of a client's secrets grid.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRow {
    pub id: String,
    pub created_date: String,
    pub valid_until: String,
}

/// A secret just added; its value went to the store.
#[derive(Debug)]
pub struct Created {
    pub row: SecretRow,
    pub secret: Handle,
}

/// What a delete found.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// Plex answered 404: the secret is not (or no longer) there.
    Gone,
}

/// Ids end up in URL paths: only what Plex ids are made of passes.
pub fn check_id(what: &str, id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{what} {id:?} is not a Plex id (letters, digits and dashes)"
        )))
    }
}

/// The typed error for a Plex answer outside 2xx, with Plex's own code and
/// message (`doing` says what rota was doing).
pub fn plex_error(doing: &str, resp: &Response) -> Error {
    let status = resp.status();
    let body: Value = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let text = match (field("code"), field("message")) {
        (Some(code), Some(message)) => format!("{doing}: Plex answered {status} {code}: {message}"),
        _ => format!(
            "{doing}: Plex answered {status}: {}",
            String::from_utf8_lossy(resp.body())
                .chars()
                .take(200)
                .collect::<String>()
        ),
    };
    resp.error_with(&text)
}

fn ok_or_plex_error(doing: &str, resp: Response) -> Result<Response, Error> {
    if (200..300).contains(&resp.status()) {
        Ok(resp)
    } else {
        Err(plex_error(doing, &resp))
    }
}

pub struct Portal<'a> {
    ctx: &'a Context,
    key: &'a Handle,
}

impl<'a> Portal<'a> {
    pub fn new(ctx: &'a Context, key: &'a Handle) -> Self {
        Self { ctx, key }
    }

    fn signed(&self, req: Request) -> Request {
        req.secret_header("X-Plex-Connect-Api-Key", "", self.key)
            .header("accept", "application/json")
    }

    fn secrets_path(client_id: &str) -> Result<String, Error> {
        check_id("client id", client_id)?;
        Ok(format!("/platform/v1/client-applications/{client_id}/secrets"))
    }

    /// The client applications of a PCN.
    pub fn applications(&self, customer: &str) -> Result<Vec<App>, Error> {
        if customer.is_empty() || !customer.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidInput(format!(
                "customer {customer:?} is not a PCN (digits only)"
            )));
        }
        let url = self
            .ctx
            .url(&format!("/platform/v1/client-applications?customerId={customer}"))?;
        let doing = format!("listing the client applications of PCN {customer}");
        let resp = ok_or_plex_error(&doing, self.signed(http::get(&url)).send()?)?;
        resp.json()
    }

    /// A client's secrets grid.
    pub fn secrets(&self, client_id: &str) -> Result<Vec<SecretRow>, Error> {
        let url = self.ctx.url(&Self::secrets_path(client_id)?)?;
        let doing = format!("reading the secrets of client {client_id}");
        let resp = ok_or_plex_error(&doing, self.signed(http::get(&url)).send()?)?;
        resp.json()
    }

    /// Adds a secret; its value is captured into the step's `secret`.
    pub fn create(&self, client_id: &str, valid_days: u32) -> Result<Created, Error> {
        let url = self.ctx.url(&Self::secrets_path(client_id)?)?;
        let resp = self
            .signed(http::post(&url))
            .json(&serde_json::json!({ "validDays": valid_days }))?
            .capture_json("/secret", "secret")
            .send()?;
        let resp = ok_or_plex_error(&format!("adding a secret to client {client_id}"), resp)?;
        let row: SecretRow = resp.json()?;
        let secret = resp.captured("secret").ok_or_else(|| {
            Error::Internal(format!(
                "Plex added secret {} to client {client_id} but its answer held no secret value",
                row.id
            ))
        })?;
        Ok(Created { row, secret })
    }

    /// Deletes one secret by ID.
    pub fn delete(&self, client_id: &str, secret_id: &str) -> Result<Deleted, Error> {
        check_id("secret id", secret_id)?;
        let url = self
            .ctx
            .url(&format!("{}/{secret_id}", Self::secrets_path(client_id)?))?;
        let resp = self.signed(http::delete(&url)).send()?;
        if resp.status() == 404 {
            return Ok(Deleted::Gone);
        }
        ok_or_plex_error(
            &format!("deleting secret {secret_id} of client {client_id}"),
            resp,
        )?;
        Ok(Deleted::Deleted)
    }
}
