//! Vendor simulators for rehearsal and tests.
//!
//! One stateful HTTP server per system, each modelling the vendor API that
//! `shared/design/VENDORS.md` describes (the documented shapes where public,
//! the `[INVENTED]` ones for key management) and the rules of the seed
//! procedures:
//!
//! | system | vendor API (full list) |
//! |---|---|
//! | `plex` | `GET /platform/v1/client-applications?customerId=` · `GET`/`POST /platform/v1/client-applications/{clientId}/secrets` · `DELETE …/secrets/{secretId}` (all with `X-Plex-Connect-Api-Key: <portal consumer key>`) · `POST /oauth2/token` (form or Basic, `client_credentials`) · `GET /mdm/v1/parts[?number=]` (Bearer, or `X-Plex-Connect-Api-Key`+`-Api-Secret`; optional `X-Plex-Connect-Customer-Id`/`-Tenant-Id`) |
//! | `demandcaster` | `POST /api/session` (sets cookie `DCSESSION`), `DELETE /api/session` (signs out) · `GET /api/business-nodes` · `POST /api/business-nodes/{id}/enter` `{"confirm":true}` (428 without) · `GET /api/datahub/plex/pcns` · `GET`/`PUT /api/datahub/plex/pcns/{id}` `{"clientId","clientSecret"}` · `POST /api/datahub/plex/pcns/{id}/test` (calls Plex) |
//! | `plytix` | `POST /auth/api/get-token` `{"api_key","api_password"}` · `POST /auth/user/get-token` `{"email","password"}` · `GET`/`POST /accounts/v1/api-keys` · `PATCH`/`DELETE /accounts/v1/api-keys/{id}` · `GET /accounts/v1/api-keys/{id}/password` · `GET /accounts/v1/roles` · `GET /accounts/v1/users` · `POST /api/v1/products/search` (View) · `POST /api/v1/products` (Edit) · `GET /api/v1/products/{id}` (View); per-credential 10 s / 1 h windows → 429 + `Retry-After` |
//! | `soar` | `GET /rest/session` (Basic `api_key_id:secret`) · `GET`/`POST /rest/orgs/{org}/api_keys` · `GET`/`DELETE /rest/orgs/{org}/api_keys/{id}` · `POST /rest/orgs/{org}/api_keys/{id}/regenerate_secret` · `GET /rest/orgs/{org}/apps[/{app}]` · `PUT /rest/orgs/{org}/apps/{app}/installations/{inst}` `{"status":"undeploying"\|"deploying"}` · `GET …/installations/{inst}/secrets` · `PUT …/installations/{inst}/secrets/{name}` `{"value","protected"}` |
//! | `constellix` | token `apiKey:base64(HMAC-SHA1(secret, ts_ms)):ts_ms` ([`constellix_token`]) as `Authorization: Bearer` or `x-cns-security-token` · `GET`/`POST /v4/users/me/apikeys` `{"expiresInMonths":n\|null}` · `DELETE /v4/users/me/apikeys/{id}` · `GET /v4/users/me/apikeys/{id}/secret` · `GET /v4/audit/apikeys?from=&to=&page=&perPage=` · `GET /v4/audit/apikeys/export` (CSV) · `GET /v4/domains` · `GET /v1/domains` |
//! | `consumers` | `GET /v1/consumers[/{id}]` · `PUT /v1/consumers/{id}/credential` (the vendor's credential fields, e.g. `{"api_key","api_password"}`) · `POST /v1/consumers/{id}/check` |
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), rota_sims::SimsError> {
//! let sims = rota_sims::Sims::start(rota_sims::SimsConfig::default()).await?;
//! let plex = sims.get(rota_sims::System::Plex);
//! println!("{} (admin {})", plex.origin(), plex.admin_origin());
//! let _state: serde_json::Value = plex.state();
//! sims.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! [`Sims::start`] starts every system on the current tokio runtime, each on
//! two loopback listeners with ephemeral ports: the vendor API
//! ([`SimHandle::origin`]) and the admin API ([`SimHandle::admin_origin`]).
//! [`serve`] does the same standalone and prints one line per system,
//! `<system> api=<origin> admin=<origin>`, then runs until Ctrl-C.
//!
//! # Admin API (every system, on its own listener)
//!
//! - `GET /admin/state`: `{"system","now","clock_offset_secs","state":{…}}`,
//!   every secret shown as a `sha256:<hex>` fingerprint only.
//! - `GET|PUT /admin/clock` `{"offset_secs":N}`: moves the system's "now".
//! - `GET|PUT /admin/faults` `{"seed":N,"rules":[FaultRule…]}`; GET adds the
//!   `log` of injected faults. A rule is
//!   `{"method":"GET","path":"/v4/domains","rate":0.5,"kind":"status","status":503}`
//!   (kinds: `status`+`status`, `rate_limit`+`retry_after_secs`,
//!   `latency`+`ms`, `drop`, `truncate`; path segments `*`/`{x}`, final
//!   `**`). Faults never apply to the admin API.
//! - `POST /admin/reset` `{"seed":N}?`: fixtures again (optionally re-seeded);
//!   the request log is kept.
//! - `GET /admin/requests`: `{"system","requests":[{"seq","method","path",
//!   "query":[[k,v]…],"body":"sha256:<16 hex>"|null,"status"}…]}`, every
//!   vendor-API request served since the last `DELETE /admin/requests`, in
//!   order; `seq` orders requests across all systems. Headers are never
//!   logged and a body only as a digest of its canonical form (JSON keys
//!   sorted, form pairs sorted), so two clients making the same calls log
//!   the same entries whatever their serializer (the newest 100,000 to
//!   200,000 are kept).
//! - `POST /admin/tick`: one round of background work now: SOAR App Host
//!   logins, DemandCaster's sync with Plex, every consumer's call; a no-op
//!   for the others.
//! - `GET /admin/operator`: the credentials the operator drives the vendor
//!   API with in rehearsal (what rota's config or secret store would hold).
//! - UI actions that show a value once, as the vendor's screen does:
//!   Plex `POST /admin/ui/client-applications/{clientId}/secrets` (*Add*),
//!   `GET /admin/ui/client-applications?customerId=&name=` (the app's row
//!   after *Search*), `GET …/{clientId}/secrets` (the secrets grid, with the
//!   first expired and first-to-expire valid row picked out) and `DELETE
//!   …/{clientId}/secrets/{secretId}` (select the row, *Delete*, OK);
//!   DemandCaster `GET /admin/ui/business-nodes/{id}`, `PUT
//!   /admin/ui/business-nodes/{node}/pcns/{pcn}` (edit, *Save*; `pasteFromPlex:
//!   {clientId, secretId}` pastes the value Plex showed for that secret) and
//!   `POST …/pcns/{pcn}/test`,
//!   SOAR `POST /admin/ui/api_keys/{id}/regenerate` (*Regenerate API Key
//!   Secret*, then *Copy to Clipboard*), `POST /admin/ui/apps/{app}/undeploy`
//!   and `.../deploy` (`{app}` an id or name), `PUT
//!   /admin/ui/apps/{app}/secrets/{name}` (*Update*: `{"value"}` typed, or
//!   without it the clipboard pasted), `PUT /admin/ui/apps/{app}/config`
//!   (app.config edited on the Configuration tab), Plytix `POST /admin/ui/api-keys`
//!   (*Create API Key*, role by name or id), `GET
//!   /admin/ui/api-keys/{key}/password` (eye icon), `PATCH
//!   /admin/ui/api-keys/{key}` (pencil, *Save API Key*) and `DELETE
//!   /admin/ui/api-keys/{key}` (bin icon), a row addressed by id or API
//!   key; Constellix `GET /admin/ui/users/{userId}/apikeys` (the profile's
//!   key list), `POST /admin/ui/users/{userId}/apikeys`
//!   `{"expiration":"10"|"never"}` (*Generate*), `DELETE
//!   /admin/ui/users/{userId}/apikeys/{id}` (delete, logged), `GET
//!   /admin/ui/users/{userId}/apikeys/{id}/secret` (view, logged) and `GET
//!   /admin/ui/audit/apikeys?apiKeyIds=1,2` (the administrator's export,
//!   with counts per action).
//! - Consumers only: `POST /admin/consumers` `{"id","origin","credential"}`,
//!   `POST /admin/consumers/{id}/tick`, and `POST /admin/ui/consumers/switch`
//!   `{"vendor","from_key","to_key_id"}` (an operator pasting a vendor key,
//!   looked up by ID, into every integration that held `from_key`; Constellix
//!   keys only).
//!
//! # Fixtures (ids and values deterministic for a seed; dates relative to now)
//!
//! - Plex: customers PCN `123456` (Acme Manufacturing), `234567`, `345678`;
//!   client app `DemandCaster` (PCN 123456) with a secret expired 30 days
//!   ago and the one DemandCaster holds (valid 14 more days); apps
//!   `Shop Floor Dashboard`, `EDI Gateway`; portal key `rota automation`
//!   (header `X-Plex-Connect-Api-Key`) for the client-application API.
//! - DemandCaster: user `planner@acme.example`; business nodes `1042`
//!   (Acme Manufacturing, PCN connection id `1` → PCN 123456), `1043`
//!   (connection `2` → PCN 234567), `1044`.
//! - Plytix: system roles Owner, Admin, Editor, Viewer; team roles
//!   Catalog Import, Assets Only; users `owner@`, `admin@`, `editor@`,
//!   `viewer@acme-home.example`; keys `rota automation` (Admin, the
//!   operator's), `ERP integration` (Editor, held by consumer
//!   `plytix-erp-sync`), `Shopify feed` (Viewer), `Legacy importer`.
//! - SOAR: org `201`; key accounts `3` rota_automation (operator, permissions
//!   `api_keys` + `apps`), `12` fn_soar_utils (used by deployed apps `7`
//!   inst `9` and `8` inst `11`), `14` fn_qradar_integration (app `9` inst
//!   `13`), `15` fn_splunk_integration (locked; app `10` inst `16` holds a
//!   stale secret). App Secrets are named after their account, except
//!   fn_misp's `soar_api_key_secret` (only its app.config's `api_key_id`
//!   ties it to account 12). Apps log in from App Host IP 10.0.0.5.
//! - Constellix (with [`SimsConfig::constellix_bench_users`] N, also N users
//!   `bench-0001@…` each with one never-expiring key, for the scale
//!   benchmark): users `101` alice (account admin, two keys `1001` never
//!   expires and `1002` 10 months), `102` bob (one key `1003` expiring in 20
//!   days, held by consumer `constellix-dns-sync`), `103` carol (no key).
//!
//! Fixtures are dated relative to the simulator's clock. Retry-After values
//! and SOAR's one-hour IP ban are multiplied by [`SimsConfig::time_scale`].
//!
//! # Modeled, not documented
//!
//! Everything marked `[INVENTED]` in VENDORS.md is implemented exactly as
//! given there; beyond it, invented here: DemandCaster's and the consumer
//! service's `{"error":{"code","message"}}` envelope and DemandCaster's 428
//! for an unconfirmed *Enter*; Plytix's `POST /auth/user/get-token`
//! (models a signed-in UI user) and its PIM permission checks; SOAR's
//! permission handles `api_keys`/`apps`, `failed_login_count` and App
//! Secrets' `last_modified_date`; the
//! Constellix audit CSV export. Plytix errors use the v3 envelope
//! `{"data":[],"errors":[{"name","description"}]}` (documented for PIM,
//! assumed for account endpoints).

#![allow(
    clippy::result_large_err,
    reason = "handlers return the vendor's error Response as Err; error paths are cold"
)]

mod clock;
mod constellix;
mod consumers;
mod demandcaster;
mod fault;
mod plex;
mod plytix;
mod requests;
mod server;
mod sim;
mod soar;
mod util;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use constellix::security_token as constellix_token;
pub use consumers::Credential;
pub use fault::{FaultEvent, FaultKind, FaultRule, FaultSettings};
pub use requests::LoggedRequest;
pub use sim::SimHandle;

/// The simulated systems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Plex,
    DemandCaster,
    Plytix,
    Soar,
    Constellix,
    /// The generic consumer service (integrations holding a vendor credential).
    Consumers,
}

impl System {
    pub const ALL: [System; 6] = [
        System::Plex,
        System::DemandCaster,
        System::Plytix,
        System::Soar,
        System::Constellix,
        System::Consumers,
    ];

    /// The name used in `serve` output and admin state.
    pub fn name(self) -> &'static str {
        match self {
            System::Plex => "plex",
            System::DemandCaster => "demandcaster",
            System::Plytix => "plytix",
            System::Soar => "soar",
            System::Constellix => "constellix",
            System::Consumers => "consumers",
        }
    }
}

/// How the simulators start.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SimsConfig {
    /// Seeds fixtures, generated ids and secret values.
    pub seed: u64,
    /// Seed of the fault rolls; defaults to `seed`.
    pub fault_seed: Option<u64>,
    /// Fault rules per system, active from the start.
    pub faults: BTreeMap<System, Vec<FaultRule>>,
    /// Multiplies vendor waiting times (Retry-After, SOAR's 1 h IP ban).
    /// Default `1/3600`: an hour becomes a second.
    pub time_scale: f64,
    /// Consecutive failed logins after which a SOAR API key account locks.
    pub soar_lockout_threshold: u32,
    /// Failed logins from one IP within the (scaled) hour before SOAR bans it.
    pub soar_ip_ban_threshold: u32,
    /// Whether Plytix tokens keep working after their key is deleted
    /// (unknown for the real vendor).
    pub plytix_tokens_survive_key_delete: bool,
    /// Plytix calls allowed per key (or user) in 10 s and in an hour (free
    /// plan: 20 and 2,000); both windows are scaled by `time_scale`.
    pub plytix_requests_per_10s: u32,
    pub plytix_requests_per_hour: u32,
    /// If set, background work (SOAR app host, DemandCaster sync, consumers)
    /// runs every this many milliseconds; otherwise only on `POST /admin/tick`.
    pub background_interval_ms: Option<u64>,
    /// Extra Constellix users for the scale benchmark, each an independent
    /// target with one never-expiring key: `bench-0001@acme-dns.example`, …
    /// (user ids 200001…). Default 0.
    pub constellix_bench_users: u32,
}

impl Default for SimsConfig {
    fn default() -> Self {
        Self {
            seed: 0x5EED,
            fault_seed: None,
            faults: BTreeMap::new(),
            time_scale: 1.0 / 3600.0,
            soar_lockout_threshold: 5,
            soar_ip_ban_threshold: 100,
            plytix_tokens_survive_key_delete: false,
            plytix_requests_per_10s: 20,
            plytix_requests_per_hour: 2000,
            background_interval_ms: None,
            constellix_bench_users: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimsError {
    #[error("binding a simulator listener on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    #[error("writing the simulator origins")]
    Output(#[source] std::io::Error),
    #[error("waiting for Ctrl-C")]
    Signal(#[source] std::io::Error),
}

/// All simulators, running in-process.
#[derive(Debug)]
pub struct Sims {
    handles: Vec<SimHandle>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sims {
    /// Starts every system on the current tokio runtime.
    pub async fn start(config: SimsConfig) -> Result<Sims, SimsError> {
        let config = Arc::new(config);
        let requests_seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let ctx = || sim::Ctx {
            clock: clock::Clock::default(),
            scale: clock::TimeScale(config.time_scale),
            seed: Arc::new(std::sync::atomic::AtomicU64::new(config.seed)),
            config: config.clone(),
            requests_seq: requests_seq.clone(),
        };
        let (plex, plex_sim) = plex::start(ctx(), &rx, &mut tasks)
            .await
            .map_err(SimsError::Bind)?;
        let dc = demandcaster::start(ctx(), plex_sim, plex.origin(), &rx, &mut tasks)
            .await
            .map_err(SimsError::Bind)?;
        let (plytix, plytix_sim) = plytix::start(ctx(), &rx, &mut tasks)
            .await
            .map_err(SimsError::Bind)?;
        let soar = soar::start(ctx(), &rx, &mut tasks)
            .await
            .map_err(SimsError::Bind)?;
        let (constellix, constellix_sim) = constellix::start(ctx(), &rx, &mut tasks)
            .await
            .map_err(SimsError::Bind)?;
        let fixtures = vec![
            consumers::Consumer::new(
                "plytix-erp-sync",
                System::Plytix,
                plytix.origin(),
                plytix_sim.consumer_credential(),
            ),
            consumers::Consumer::new(
                "constellix-dns-sync",
                System::Constellix,
                constellix.origin(),
                constellix_sim.consumer_credential(),
            ),
        ];
        let sources = BTreeMap::from([(System::Constellix, constellix_sim.key_source())]);
        let consumers = consumers::start(ctx(), fixtures, sources, &rx, &mut tasks)
            .await
            .map_err(SimsError::Bind)?;
        let handles = vec![plex, dc, plytix, soar, constellix, consumers];
        if let Some(ms) = config.background_interval_ms {
            let bg: Vec<SimHandle> = handles.clone();
            let mut stop = rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_millis(ms.max(1)));
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = every.tick() => {
                            for h in &bg {
                                h.tick().await;
                            }
                        }
                    }
                }
            }));
        }
        Ok(Sims {
            handles,
            shutdown: tx,
            tasks,
        })
    }

    /// The handle of one system.
    pub fn get(&self, system: System) -> &SimHandle {
        let i = System::ALL
            .iter()
            .position(|s| *s == system)
            .unwrap_or(usize::MAX);
        self.handles
            .get(i)
            .expect("Sims::start starts every system in System::ALL order")
    }

    /// Every system, in [`System::ALL`] order.
    pub fn handles(&self) -> &[SimHandle] {
        &self.handles
    }

    /// The vendor API origins (what rehearsal grants plugins), by system.
    pub fn origins(&self) -> BTreeMap<System, String> {
        self.handles
            .iter()
            .map(|h| (h.system(), h.origin().to_owned()))
            .collect()
    }

    /// The admin API origins, by system; never grant these to a plugin.
    pub fn admin_origins(&self) -> BTreeMap<System, String> {
        self.handles
            .iter()
            .map(|h| (h.system(), h.admin_origin().to_owned()))
            .collect()
    }

    /// Stops every listener and background task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Standalone mode: starts every system, writes one line per system,
/// `<system> api=<origin> admin=<origin>`, and runs until Ctrl-C.
pub async fn serve(config: SimsConfig, out: impl Write) -> Result<(), SimsError> {
    let ctrl_c = async { tokio::signal::ctrl_c().await.map_err(SimsError::Signal) };
    serve_until(config, out, ctrl_c).await
}

/// [`serve`], stopping when `stop` completes instead of on Ctrl-C.
pub async fn serve_until<F>(config: SimsConfig, mut out: impl Write, stop: F) -> Result<(), SimsError>
where
    F: std::future::Future<Output = Result<(), SimsError>>,
{
    let sims = Sims::start(config).await?;
    for h in sims.handles() {
        let line = format!(
            "{} api={} admin={}
",
            h.system().name(),
            h.origin(),
            h.admin_origin()
        );
        out.write_all(line.as_bytes()).map_err(SimsError::Output)?;
    }
    out.flush().map_err(SimsError::Output)?;
    let result = stop.await;
    sims.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_from_json_with_fault_rules_per_system() -> Result<(), serde_json::Error> {
        let c: SimsConfig = serde_json::from_str(
            r#"{"seed": 3, "faults": {"plex": [{"method": "POST", "path": "/oauth2/token", "rate": 0.5,
                 "kind": "rate_limit", "retry_after_secs": 60}]}}"#,
        )?;
        assert_eq!(c.seed, 3);
        assert_eq!(c.soar_lockout_threshold, 5, "defaults fill the rest");
        let rules = c.faults.get(&System::Plex).cloned().unwrap_or_default();
        assert_eq!(
            rules,
            vec![FaultRule::new(
                Some("POST"),
                "/oauth2/token",
                0.5,
                FaultKind::RateLimit { retry_after_secs: 60 }
            )]
        );
        Ok(())
    }
}
