//! The benchmark's floor: each seed procedure as the shortest careful
//! script would do it, plain reqwest on tokio and no engine, making the
//! same HTTP calls in the same order as rota (the bench checks that against
//! the simulators' request logs), and writing a shown-once secret to a file
//! with fsync before it goes on.
//!
//! Design decision: nothing here is journaled, sandboxed, templated or
//! validated beyond what the calls need; what rota costs above this is the
//! price of those guarantees, which is what the bench measures.
//!
//! `rota-bench-floor JOB.json`: the job names the procedure, the
//! simulators' origins, the inputs (as rota's `--inputs` file has them; a
//! secret input names a stored secret), the 0600 file holding the secret
//! values by name, and the directory for captured secrets. With `targets`
//! (a list of inputs) it runs the procedure once per target, `concurrency`
//! at a time.

mod constellix;
mod plex;
mod plytix;
mod soar;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
struct Job {
    procedure: String,
    origins: BTreeMap<String, String>,
    #[serde(default)]
    inputs: Map<String, Value>,
    #[serde(default)]
    targets: Vec<Map<String, Value>>,
    #[serde(default)]
    concurrency: Option<usize>,
    secrets_file: PathBuf,
    out_dir: PathBuf,
}

#[derive(Deserialize)]
struct SecretsFile {
    secrets: BTreeMap<String, String>,
}

/// What one run of a procedure works with.
pub struct Ctx {
    pub http: reqwest::Client,
    origins: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    out_dir: PathBuf,
}

impl Ctx {
    /// The vendor API origin of a system.
    pub fn origin(&self, system: &str) -> anyhow::Result<&str> {
        self.origins
            .get(system)
            .map(String::as_str)
            .with_context(|| format!("the job has no {system} origin"))
    }

    /// The ids of the registered integrations of `vendor` that hold
    /// `api_key` (the consumers registry, as rota's `consumers` plugin reads it).
    pub async fn consumers_holding(&self, vendor: &str, api_key: &str) -> anyhow::Result<Vec<String>> {
        let consumers = self.origin("consumers")?;
        let registry = expect(
            self.http
                .get(format!("{consumers}/v1/consumers"))
                .header("accept", "application/json")
                .send()
                .await?,
            200,
            "listing consumers",
        )
        .await?;
        Ok(registry
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["vendor"] == vendor && c["credential"]["api_key"] == api_key)
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect())
    }

    /// A stored secret's value, by name.
    pub fn secret(&self, name: &str) -> anyhow::Result<&str> {
        self.secrets
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("the secrets file has no {name}"))
    }

    /// Writes a shown-once secret durably (file and directory fsynced,
    /// 0600) before the caller goes on.
    pub async fn keep(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let dir = self.out_dir.clone();
        let file = dir.join(name.replace('/', "__"));
        let value = value.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&file)
                .with_context(|| format!("creating {}", file.display()))?;
            f.write_all(value.as_bytes())?;
            f.sync_all()?;
            std::fs::File::open(&dir)?.sync_all()?;
            Ok(())
        })
        .await?
    }
}

/// A string input, or its default.
pub fn text(inputs: &Map<String, Value>, name: &str, default: Option<&str>) -> anyhow::Result<String> {
    match (inputs.get(name), default) {
        (Some(Value::String(s)), _) => Ok(s.clone()),
        (Some(Value::Number(n)), _) => Ok(n.to_string()),
        (None | Some(Value::Null), Some(d)) => Ok(d.to_owned()),
        (other, _) => bail!("input {name}: expected text, got {other:?}"),
    }
}

/// An integer input, or its default.
pub fn int(inputs: &Map<String, Value>, name: &str, default: Option<i64>) -> anyhow::Result<i64> {
    match (inputs.get(name), default) {
        (Some(Value::Number(n)), _) => n
            .as_i64()
            .with_context(|| format!("input {name}: not an integer")),
        (Some(Value::String(s)), _) => s.parse().with_context(|| format!("input {name}: not an integer")),
        (None | Some(Value::Null), Some(d)) => Ok(d),
        (other, _) => bail!("input {name}: expected an integer, got {other:?}"),
    }
}

/// The JSON body of an answer with the expected status, or an error that
/// says which call failed (never the body: it may hold a secret).
pub async fn expect(resp: reqwest::Response, status: u16, what: &str) -> anyhow::Result<Value> {
    let got = resp.status().as_u16();
    if got != status {
        bail!("{what}: answered {got}, expected {status}");
    }
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("{what}: reading the answer"))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{what}: the answer is not JSON"))
}

async fn run_one(ctx: &Ctx, procedure: &str, inputs: &Map<String, Value>) -> anyhow::Result<()> {
    match procedure {
        "plex-api-key-reset" => plex::reset(ctx, inputs).await,
        "plytix-api-key" => plytix::create(ctx, inputs).await,
        "plytix-api-key-role" => plytix::change_role(ctx, inputs).await,
        "soar-regenerate-api-key" => soar::regenerate(ctx, inputs).await,
        "constellix-api-key-rollover" => constellix::rollover(ctx, inputs).await,
        other => bail!("unknown procedure {other}"),
    }
}

fn read_job(path: &Path) -> anyhow::Result<(Job, Ctx)> {
    let job: Job =
        serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("parsing {}", path.display()))?;
    let secrets: SecretsFile = serde_json::from_slice(
        &std::fs::read(&job.secrets_file)
            .with_context(|| format!("reading {}", job.secrets_file.display()))?,
    )
    .with_context(|| format!("parsing {}", job.secrets_file.display()))?;
    std::fs::create_dir_all(&job.out_dir)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let ctx = Ctx {
        http,
        origins: job.origins.clone(),
        secrets: secrets.secrets,
        out_dir: job.out_dir.clone(),
    };
    Ok((job, ctx))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: rota-bench-floor JOB.json")?;
    let (job, ctx) = read_job(&path)?;
    if job.targets.is_empty() {
        return run_one(&ctx, &job.procedure, &job.inputs)
            .await
            .with_context(|| job.procedure.clone());
    }
    let c = job.concurrency.unwrap_or(8).max(1);
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(job.targets.iter().enumerate())
        .map(|(i, t)| {
            let ctx = &ctx;
            let procedure = &job.procedure;
            async move {
                run_one(ctx, procedure, t)
                    .await
                    .with_context(|| format!("{procedure}: target {}", i + 1))
            }
        })
        .buffer_unordered(c)
        .collect()
        .await;
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} targets failed: {}",
            failed.len(),
            job.targets.len(),
            failed.join("; ")
        );
    }
    Ok(())
}
