//! Rehearsal: a playbook run end to end against the bundled vendor
//! simulators, on loopback, with nothing real touched.
//!
//! Design decisions:
//! - The simulators run in this process, on the run's own runtime; each
//!   bundled plugin whose name is a simulated system gets one `rehearsal`
//!   target granted exactly that simulator's loopback origin, with modeled
//!   actions enabled (unless `--guided`). No other grant exists during a
//!   rehearsal, whatever the operator's config says.
//! - A rehearsal keeps its records (secrets, journal, audit, inventory) in
//!   its own state, `<state dir>/rehearsal`, so simulated keys never mix with
//!   real ones (a scheduler acting on `rota inventory --due` must not try to
//!   rotate a simulator's key); `rota --rehearsal <command>` reads it.
//! - A profile beside the playbook (`<name>.rehearse.yaml`) supplies what a
//!   person would: inputs for the fixtures, the operator's own credentials
//!   (read from each simulator's operator view into the store), and for each
//!   manual step the admin call that stands for the documented clicks plus
//!   the values the operator would then type.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use rota_core::inputs::Supplied;
use rota_core::load::Loaded;
use rota_core::operator::{Performed, StandIn};
use rota_core::template::{Templates, system_clock, type_name};
use rota_core::yaml::{Source, parse};
use rota_core::{Provenance, Secret, SecretStore};
use rota_host::{Config, PluginConfig, TargetConfig};
use rota_sims::{Sims, SimsConfig, System};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::exit;

/// `<playbook>.rehearse.yaml`: what a rehearsal of the playbook needs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Simulator settings (seed, faults, time scale, ...), as `rota sims
    /// serve --settings` takes them.
    #[serde(default)]
    pub sims: Option<SimsConfig>,
    /// Secrets stored (as `current`) before the run, read from a
    /// simulator's operator view (`GET /admin/operator`): the credentials an
    /// operator's store would hold.
    #[serde(default)]
    pub operator_secrets: BTreeMap<String, OperatorValue>,
    /// Playbook inputs; `-i` and `--inputs` override them.
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// Playbook inputs read from a simulator's operator view, for values the
    /// fixtures generate from the seed (the public half of the operator's
    /// credential, e.g. the API key paired with an operator secret). Like
    /// `inputs`, `-i` and `--inputs` override them.
    #[serde(default)]
    pub operator_inputs: BTreeMap<String, OperatorValue>,
    /// Manual step id -> what the operator's hands do there.
    #[serde(default)]
    pub manual: BTreeMap<String, Hands>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorValue {
    pub system: System,
    /// RFC 6901 pointer into the operator view, e.g. `/apiKey/api_password`.
    pub pointer: String,
}

/// One manual step, rehearsed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hands {
    /// The simulator admin call standing for the documented clicks.
    #[serde(default)]
    pub call: Option<AdminCall>,
    /// Output name -> value typed at the prompt: templates over the run
    /// (`inputs`, `steps`, `item`) and the admin call's `response`.
    #[serde(default)]
    pub answers: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminCall {
    pub system: System,
    #[serde(default = "default_method")]
    pub method: String,
    /// A template, e.g. `/admin/ui/client-applications/{{steps.app.outputs.client_id}}/secrets`.
    pub path: String,
    /// A JSON body; every string in it is a template.
    #[serde(default)]
    pub body: Option<Value>,
}

fn default_method() -> String {
    "POST".to_owned()
}

/// The profile beside a playbook file: `x.yaml` -> `x.rehearse.yaml`.
pub fn profile_path(playbook: &Path) -> PathBuf {
    let stem = playbook
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    playbook.with_file_name(format!("{stem}.rehearse.yaml"))
}

/// Reads a profile; a missing default profile is an empty one.
pub fn load_profile(explicit: Option<&Path>, playbook: &Path) -> anyhow::Result<(Profile, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = profile_path(playbook);
            if !p.is_file() {
                return Ok((Profile::default(), None));
            }
            p
        }
    };
    let source = Source::read(&path).map_err(|d| exit::usage(format!("error: {}", d.render(None))))?;
    let (profile, _) = parse::<Profile>(&source).map_err(|d| {
        exit::usage(format!(
            "error: rehearsal profile: {}",
            d.render(Some(&source.text))
        ))
    })?;
    Ok((profile, Some(path)))
}

/// The plugin a simulated system stands behind (same name).
fn system_of(plugin: &str) -> Option<System> {
    System::ALL.into_iter().find(|s| s.name() == plugin)
}

/// The operator's config with every grant replaced by the rehearsal's:
/// plugin directories and playbook paths stay, targets go.
pub fn config(mut base: Config, sims: &Sims, guided: bool) -> Config {
    base.plugins = sims
        .origins()
        .into_iter()
        .map(|(system, origin)| {
            let mut target = TargetConfig::rehearsal(vec![origin]);
            if guided {
                target.modeled = rota_host::Modeled::Disabled;
            }
            (
                system.name().to_owned(),
                PluginConfig {
                    targets: vec![target],
                },
            )
        })
        .collect();
    base
}

/// The simulated systems a rehearsal touches: those behind the playbook's
/// plugins, and those the profile's manual steps call.
pub fn systems_used(loaded: &Loaded, profile: &Profile) -> BTreeSet<System> {
    rota_core::validate::sections(&loaded.playbook)
        .into_iter()
        .flat_map(|(_, steps)| steps.iter())
        .filter_map(|s| s.uses.as_deref())
        .filter_map(|u| u.split_once('.').and_then(|(plugin, _)| system_of(plugin)))
        .chain(
            profile
                .manual
                .values()
                .filter_map(|h| h.call.as_ref().map(|c| c.system)),
        )
        .collect()
}

/// The text at `from` in a simulator's operator view; `field` names the
/// profile entry for errors.
fn operator_value(sims: &Sims, field: &str, from: &OperatorValue) -> anyhow::Result<String> {
    let view = sims.get(from.system).operator();
    match view.pointer(&from.pointer) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(exit::usage(format!(
            "error: rehearsal profile: {field}: {} {} is a {}, not a string",
            from.system.name(),
            from.pointer,
            type_name(other)
        ))),
        None => Err(exit::usage(format!(
            "error: rehearsal profile: {field}: the {} simulator's operator view has nothing at {}",
            from.system.name(),
            from.pointer
        ))),
    }
}

/// Adds the profile's operator inputs to what was supplied, unless given.
pub fn seed_inputs(profile: &Profile, sims: &Sims, supplied: &mut Supplied) -> anyhow::Result<()> {
    for (name, from) in &profile.operator_inputs {
        if supplied.values.contains_key(name) {
            continue;
        }
        let value = operator_value(sims, &format!("operator_inputs.{name}"), from)?;
        supplied.values.insert(name.clone(), Value::String(value));
        // Text read from a view is typed like `-i name=value`.
        supplied.from_cli.push(name.clone());
    }
    Ok(())
}

/// Stores the profile's operator secrets as current versions.
pub fn seed_secrets(profile: &Profile, sims: &Sims, store: &dyn SecretStore) -> anyhow::Result<()> {
    for (name, from) in &profile.operator_secrets {
        let value = operator_value(sims, &format!("operator_secrets.{name}"), from)?;
        let provenance = Provenance {
            source: Some("rehearsal".to_owned()),
            ..Provenance::default()
        };
        let handle = store
            .put(name, &Secret::new(value), &provenance)
            .and_then(|h| store.promote(&h).map(|()| h))
            .map_err(|e| exit::usage(format!("error: rehearsal: cannot store {name}: {e}")))?;
        tracing::debug!(secret = %handle, "rehearsal operator secret stored");
    }
    Ok(())
}

/// The operator's hands during a rehearsal: the profile's admin calls.
pub struct RehearsalHands {
    manual: BTreeMap<String, Hands>,
    admin: BTreeMap<System, String>,
    http: reqwest::Client,
    templates: Arc<Templates>,
}

impl fmt::Debug for RehearsalHands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RehearsalHands")
            .field("steps", &self.manual.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl RehearsalHands {
    pub fn new(manual: BTreeMap<String, Hands>, sims: &Sims) -> anyhow::Result<Self> {
        Ok(Self {
            manual,
            admin: sims.admin_origins(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| anyhow::anyhow!("cannot build the rehearsal HTTP client: {e}"))?,
            templates: Arc::new(Templates::new(system_clock())),
        })
    }
}

impl StandIn for RehearsalHands {
    fn perform(&self, step: &str, context: &Value) -> BoxFuture<'static, Result<Option<Performed>, String>> {
        let Some(hands) = self.manual.get(step) else {
            return Box::pin(async { Ok(None) });
        };
        let templates = self.templates.clone();
        let http = self.http.clone();
        let context = context.clone();
        let answers = hands.answers.clone();
        let call = match &hands.call {
            None => None,
            Some(c) => {
                let Some(origin) = self.admin.get(&c.system).cloned() else {
                    let system = c.system.name();
                    return Box::pin(async move { Err(format!("no {system} simulator is running")) });
                };
                Some((
                    origin,
                    c.system.name(),
                    c.method.to_ascii_uppercase(),
                    c.path.clone(),
                    c.body.clone(),
                ))
            }
        };
        let step = step.to_owned();
        Box::pin(async move {
            let mut ctx = context;
            let mut note = format!("rehearsal: step {step} done by the profile");
            if let Some((origin, system, method, path, body)) = call {
                let path = templates
                    .render_text(&path, &ctx)
                    .map_err(|e| format!("rehearsal profile manual.{step}.call.path: {e}"))?;
                let body =
                    match body {
                        Some(b) => Some(templates.render_tree(&b, &ctx).map_err(|(f, e)| {
                            format!("rehearsal profile manual.{step}.call.body.{f}: {e}")
                        })?),
                        None => None,
                    };
                let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| {
                    format!("rehearsal profile manual.{step}.call.method: {method:?} is not an HTTP method")
                })?;
                let mut req = http.request(m, format!("{origin}{path}"));
                if let Some(b) = &body {
                    req = req.json(b);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| format!("rehearsal: {method} {path} at the {system} simulator: {e}"))?;
                let status = resp.status();
                let text = resp
                    .text()
                    .await
                    .map_err(|e| format!("rehearsal: {method} {path}: {e}"))?;
                if !status.is_success() {
                    // The body may hold a once-shown value: say only the status.
                    return Err(format!(
                        "rehearsal: {method} {path} at the {system} simulator answered {status}"
                    ));
                }
                let response: Value = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text)
                        .map_err(|e| format!("rehearsal: {method} {path}: the answer is not JSON: {e}"))?
                };
                if let Some(map) = ctx.as_object_mut() {
                    map.insert("response".to_owned(), response);
                }
                note = format!(
                    "rehearsal: the {system} simulator did what the instructions say ({method} {path})"
                );
            }
            let mut typed = Map::new();
            for (name, template) in answers {
                let value = match &template {
                    Value::String(s) => templates
                        .render_value(s, &ctx)
                        .map_err(|e| format!("rehearsal profile manual.{step}.answers.{name}: {e}"))?,
                    other => other.clone(),
                };
                typed.insert(name, value);
            }
            Ok(Some(Performed { answers: typed, note }))
        })
    }
}

/// The simulated vendors' state after the run, for the systems the
/// playbook's plugins talk to: a few lines each, secrets as short
/// fingerprints.
pub fn summary(sims: &Sims, systems: &BTreeSet<System>, planned: bool) -> String {
    let mut out = String::from(if planned {
        "\nvendor state (a plan changes nothing):\n"
    } else {
        "\nvendor state after the rehearsal:\n"
    });
    for &system in systems {
        let state = sims.get(system).state();
        let state = state.get("state").cloned().unwrap_or(Value::Null);
        out.push_str(&format!("  {}:\n", system.name()));
        for line in describe(system, &state) {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

/// Full admin state of the systems used, for `--output json`.
pub fn state_json(sims: &Sims, systems: &BTreeSet<System>) -> Value {
    let mut vendors = Map::new();
    for &system in systems {
        vendors.insert(system.name().to_owned(), sims.get(system).state());
    }
    json!({"event": "rehearsal", "vendors": vendors})
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn short_fp(v: &Value, key: &str) -> String {
    let fp = text(v, key);
    fp.get(..19).unwrap_or(&fp).to_owned()
}

fn each<'a>(state: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    state.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn describe(system: System, s: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    match system {
        System::Plex => {
            for app in each(s, "clientApplications") {
                lines.push(format!(
                    "client app {:?} {} (PCN {})",
                    text(app, "name"),
                    text(app, "clientId"),
                    text(app, "customerId")
                ));
                for sec in each(app, "secrets") {
                    lines.push(format!(
                        "  secret {} created {} valid until {}{} {}",
                        text(sec, "id"),
                        text(sec, "createdDate"),
                        text(sec, "validUntil"),
                        if sec.get("expired") == Some(&Value::Bool(true)) {
                            " (expired)"
                        } else {
                            ""
                        },
                        short_fp(sec, "fingerprint")
                    ));
                }
            }
        }
        System::DemandCaster => {
            for pcn in each(s, "pcns") {
                let test = pcn.get("lastTest").cloned().unwrap_or(Value::Null);
                lines.push(format!(
                    "PCN connection {} (PCN {}) client {} secret {} last test {}",
                    text(pcn, "id"),
                    text(pcn, "pcn"),
                    text(pcn, "clientId"),
                    short_fp(pcn, "clientSecretFingerprint"),
                    match &test {
                        Value::Null => "never".to_owned(),
                        t => format!(
                            "{} at {}",
                            if t.get("ok") == Some(&Value::Bool(true)) {
                                "passed"
                            } else {
                                "FAILED"
                            },
                            text(t, "testedAt")
                        ),
                    }
                ));
            }
        }
        System::Plytix => {
            for key in each(s, "apiKeys") {
                lines.push(format!(
                    "API key {} {:?} role {} created {}",
                    text(key, "id"),
                    text(key, "name"),
                    key.get("role").map(|r| text(r, "name")).unwrap_or_default(),
                    text(key, "created")
                ));
            }
        }
        System::Soar => {
            for key in each(s, "apiKeys") {
                lines.push(format!(
                    "API key account {} {} locked {} failed logins {} secret {}",
                    text(key, "id"),
                    text(key, "display_name"),
                    text(key, "locked"),
                    text(key, "failed_login_count"),
                    short_fp(key, "secretFingerprint")
                ));
            }
            for app in each(s, "apps") {
                let inst = app.get("current_installation").cloned().unwrap_or(Value::Null);
                let secrets: Vec<String> = each(&inst, "secrets")
                    .map(|x| format!("{}={}", text(x, "name"), short_fp(x, "fingerprint")))
                    .collect();
                lines.push(format!(
                    "app {} installation {} {} secrets {}",
                    text(app, "name"),
                    text(&inst, "id"),
                    text(&inst, "status"),
                    secrets.join(", ")
                ));
            }
        }
        System::Constellix => {
            for key in each(s, "apiKeys") {
                lines.push(format!(
                    "API key {} of user {} created {} expires {}{}",
                    text(key, "id"),
                    text(key, "userId"),
                    text(key, "createdAt"),
                    match key.get("expiresAt") {
                        Some(Value::Null) | None => "never".to_owned(),
                        _ => text(key, "expiresAt"),
                    },
                    if key.get("expired") == Some(&Value::Bool(true)) {
                        " (expired)"
                    } else {
                        ""
                    }
                ));
            }
        }
        System::Consumers => {
            for c in each(s, "consumers") {
                let cred = c.get("credential").cloned().unwrap_or(Value::Null);
                let key = ["api_key", "api_key_id", "client_id"]
                    .iter()
                    .map(|k| text(&cred, k))
                    .find(|k| k != "-")
                    .unwrap_or_default();
                lines.push(format!(
                    "consumer {} ({}) holds key {} calls {} failed {}",
                    text(c, "id"),
                    text(c, "vendor"),
                    key,
                    text(c, "calls"),
                    text(c, "failedCalls")
                ));
            }
        }
    }
    if lines.is_empty() {
        lines.push("(nothing)".to_owned());
    }
    lines
}

/// Starts the simulators for a rehearsal.
pub async fn start(profile: &Profile) -> anyhow::Result<Sims> {
    let config = profile.sims.clone().unwrap_or_default();
    Sims::start(config)
        .await
        .map_err(|e| exit::environment(format!("error: cannot start the simulators: {e}")))
}
