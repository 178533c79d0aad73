//! The operator's configuration (`rota.yaml`) as far as the plugin host is
//! concerned: where plugins live, and per plugin the targets with their
//! grants and limits.
//!
//! Design decision: grants (plugin directories, origins, limits, `modeled`,
//! `reveal`) are honoured only from sources the operator controls: the
//! user's config (XDG), `ROTA_CONFIG` or `--config`. A `rota.yaml` in the
//! working directory (e.g. a cloned playbook repo) may set playbook paths and
//! targets' `base_url`, nothing else; whatever else it tries is ignored with
//! a warning naming the key. A base URL grants nothing: requests still go
//! only to granted origins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::caps::OriginPattern;

/// The host's part of `rota.yaml`. Unknown top-level keys belong to other
/// parts of rota and are ignored here.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// Directories searched for `*.wasm` plugins, in order.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// Playbook search paths (the only key besides `base_url` a working
    /// directory `rota.yaml` may set).
    #[serde(default)]
    pub playbooks: Vec<PathBuf>,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Why parts of a working-directory config were ignored.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// e.g. a tenant name, or `rehearsal`.
    pub name: String,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Granted origins (`https://api.vendor.com`, `https://*.vendor.com:443`).
    #[serde(default)]
    pub origins: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    /// Whether `modeled` actions may run against this target.
    #[serde(default)]
    pub modeled: Modeled,
    /// Grant `secrets.reveal` (plugins see secret values). Off by default.
    #[serde(default)]
    pub reveal: bool,
    /// A rehearsal target: simulators stand in for the vendor.
    #[serde(default)]
    pub rehearsal: bool,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Modeled {
    Enabled,
    #[default]
    Disabled,
}

/// Per-call sandbox limits. Every field has a safe default and a hard
/// ceiling the config cannot exceed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory per call.
    pub memory_mib: u64,
    /// CPU time spent in plugin code per call (host calls excluded).
    pub cpu_ms: u64,
    /// Wall-clock time per call, HTTP included.
    pub wall_ms: u64,
    pub connect_timeout_ms: u64,
    /// Per HTTP request, headers and body.
    pub read_timeout_ms: u64,
    /// Largest response body a plugin may receive.
    pub response_kib: u64,
    /// HTTP requests per call.
    pub requests: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            cpu_ms: 2_000,
            wall_ms: 60_000,
            connect_timeout_ms: 10_000,
            read_timeout_ms: 30_000,
            response_kib: 1024,
            requests: 32,
        }
    }
}

impl Limits {
    /// Ceilings: whatever the config says, never more than this.
    pub fn clamped(&self) -> Self {
        Self {
            memory_mib: self.memory_mib.clamp(1, 1024),
            cpu_ms: self.cpu_ms.clamp(10, 60_000),
            wall_ms: self.wall_ms.clamp(10, 600_000),
            connect_timeout_ms: self.connect_timeout_ms.clamp(10, 30_000),
            read_timeout_ms: self.read_timeout_ms.clamp(10, 120_000),
            response_kib: self.response_kib.clamp(1, 64 * 1024),
            requests: self.requests.clamp(1, 1000),
        }
    }

    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
    pub fn cpu(&self) -> Duration {
        Duration::from_millis(self.cpu_ms)
    }
    pub fn wall(&self) -> Duration {
        Duration::from_millis(self.wall_ms)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Where a config text came from.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            text,
        })
    }
}

/// The operator's config files, in order: the XDG user config
/// (`$XDG_CONFIG_HOME/rota/rota.yaml`), then `ROTA_CONFIG`, then `--config`.
/// Missing default files are skipped; a named one that is missing is an error.
pub fn user_sources(cli_config: Option<&Path>) -> Result<Vec<Source>, ConfigError> {
    let mut out = Vec::new();
    if let Some(dir) = dirs::config_dir() {
        let p = dir.join("rota").join("rota.yaml");
        if p.is_file() {
            out.push(Source::read(&p)?);
        }
    }
    if let Some(p) = std::env::var_os("ROTA_CONFIG") {
        out.push(Source::read(Path::new(&p))?);
    }
    if let Some(p) = cli_config {
        out.push(Source::read(p)?);
    }
    Ok(out)
}

/// The CLI's one call: the operator's sources ([`user_sources`]) plus
/// `<cwd>/rota.yaml` as an untrusted layer, unless that same file was named
/// by `ROTA_CONFIG` or `--config` (then it is the operator's).
pub fn load(cli_config: Option<&Path>, cwd: &Path) -> Result<Config, ConfigError> {
    let user = user_sources(cli_config)?;
    let cwd_path = cwd.join("rota.yaml");
    let cwd_file = if cwd_path.is_file() {
        let canon = std::fs::canonicalize(&cwd_path).ok();
        let named = user.iter().any(|s| {
            std::fs::canonicalize(&s.path)
                .ok()
                .is_some_and(|p| Some(p) == canon)
        });
        if named {
            None
        } else {
            Some(Source::read(&cwd_path)?)
        }
    } else {
        None
    };
    load_config(&user, cwd_file.as_ref())
}

/// Merges the operator's sources (later wins per key: `plugin_dirs` and
/// `playbooks` replace, plugins merge by name, targets by name) and then the
/// working directory's `rota.yaml`, which may only set `playbooks` and
/// existing targets' `base_url`.
pub fn load_config(user_sources: &[Source], cwd_file: Option<&Source>) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    for src in user_sources {
        let layer = parse(src)?;
        if !layer.plugin_dirs.is_empty() {
            config.plugin_dirs = layer.plugin_dirs;
        }
        if !layer.playbooks.is_empty() {
            config.playbooks = layer.playbooks;
        }
        for (name, plugin) in layer.plugins {
            let entry = config.plugins.entry(name).or_default();
            for t in plugin.targets {
                match entry.targets.iter_mut().find(|e| e.name == t.name) {
                    Some(existing) => *existing = t,
                    None => entry.targets.push(t),
                }
            }
        }
    }
    if let Some(src) = cwd_file {
        apply_untrusted(&mut config, src)?;
    }
    Ok(config)
}

fn parse(src: &Source) -> Result<Config, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        path: src.path.display().to_string(),
        reason,
    };
    let config: Config = serde_yaml::from_str(&src.text).map_err(|e| invalid(e.to_string()))?;
    for (plugin, p) in &config.plugins {
        for t in &p.targets {
            for o in &t.origins {
                OriginPattern::parse(o)
                    .map_err(|e| invalid(format!("plugins.{plugin}.targets.{}: {e}", t.name)))?;
            }
        }
    }
    Ok(config)
}

fn apply_untrusted(config: &mut Config, src: &Source) -> Result<(), ConfigError> {
    let path = src.path.display().to_string();
    let value: serde_yaml::Value = serde_yaml::from_str(&src.text).map_err(|e| ConfigError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let Some(map) = value.as_mapping() else {
        return Ok(());
    };
    let mut warn = |what: String| {
        config_warning(&mut config.warnings, &path, &what);
    };
    let mut playbooks = None;
    let mut base_urls = Vec::new();
    for (k, v) in map {
        match k.as_str() {
            Some("playbooks") => {
                playbooks = Some(serde_yaml::from_value::<Vec<PathBuf>>(v.clone()).map_err(|e| {
                    ConfigError::Invalid {
                        path: path.clone(),
                        reason: format!("playbooks: {e}"),
                    }
                })?)
            }
            Some("plugins") => {
                let Some(plugins) = v.as_mapping() else { continue };
                for (pname, pv) in plugins {
                    let pname = pname.as_str().unwrap_or_default().to_owned();
                    let targets = pv
                        .get("targets")
                        .and_then(|t| t.as_sequence())
                        .cloned()
                        .unwrap_or_default();
                    if let Some(m) = pv.as_mapping() {
                        for key in m.keys().filter_map(|k| k.as_str()).filter(|k| *k != "targets") {
                            warn(format!("plugins.{pname}.{key}"));
                        }
                    }
                    for t in targets {
                        let Some(tm) = t.as_mapping() else { continue };
                        let tname = tm
                            .get("name")
                            .and_then(|n| n.as_str())
                            .unwrap_or_default()
                            .to_owned();
                        for (tk, tv) in tm {
                            match tk.as_str() {
                                Some("name") => {}
                                Some("base_url") => {
                                    if let Some(url) = tv.as_str() {
                                        base_urls.push((pname.clone(), tname.clone(), url.to_owned()));
                                    }
                                }
                                Some(other) => warn(format!("plugins.{pname}.targets.{tname}.{other}")),
                                None => {}
                            }
                        }
                    }
                }
            }
            Some(other) => warn(other.to_owned()),
            None => {}
        }
    }
    if let Some(p) = playbooks {
        config.playbooks = p;
    }
    for (plugin, target, url) in base_urls {
        match config
            .plugins
            .get_mut(&plugin)
            .and_then(|p| p.targets.iter_mut().find(|t| t.name == target))
        {
            Some(t) => t.base_url = Some(url),
            None => config_warning(
                &mut config.warnings,
                &path,
                &format!(
                    "plugins.{plugin}.targets.{target} (a target must be defined in your own config first)"
                ),
            ),
        }
    }
    Ok(())
}

fn config_warning(warnings: &mut Vec<String>, path: &str, what: &str) {
    let msg = format!(
        "{path}: ignoring `{what}`: a rota.yaml in the working directory may set only `playbooks` and targets' `base_url`; grants come from your own config (XDG, ROTA_CONFIG or --config)"
    );
    tracing::warn!("{msg}");
    warnings.push(msg);
}

impl Config {
    /// A rehearsal: every plugin gets one target named `rehearsal`, granted
    /// exactly the given simulator origins (e.g. `http://127.0.0.1:4101`),
    /// with `base_url` set to the first of them and modeled actions enabled.
    pub fn rehearsal(plugin_dirs: Vec<PathBuf>, simulators: BTreeMap<String, Vec<String>>) -> Self {
        let plugins = simulators
            .into_iter()
            .map(|(plugin, origins)| {
                let target = TargetConfig::rehearsal(origins);
                (
                    plugin,
                    PluginConfig {
                        targets: vec![target],
                    },
                )
            })
            .collect();
        Self {
            plugin_dirs,
            playbooks: Vec::new(),
            plugins,
            warnings: Vec::new(),
        }
    }

    /// The target named `name` for `plugin`, or its only target.
    pub fn target(&self, plugin: &str, name: Option<&str>) -> Option<&TargetConfig> {
        let targets = &self.plugins.get(plugin)?.targets;
        match name {
            Some(n) => targets.iter().find(|t| t.name == n),
            None if targets.len() == 1 => targets.first(),
            None => None,
        }
    }
}

impl TargetConfig {
    pub fn rehearsal(origins: Vec<String>) -> Self {
        Self {
            name: "rehearsal".to_owned(),
            base_url: origins.first().cloned(),
            origins,
            limits: Limits::default(),
            modeled: Modeled::Enabled,
            reveal: false,
            rehearsal: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(path: &str, text: &str) -> Source {
        Source {
            path: PathBuf::from(path),
            text: text.to_owned(),
        }
    }

    const USER: &str = r#"
plugin_dirs: [/opt/rota/plugins]
plugins:
  plex:
    targets:
      - name: acme
        base_url: https://api.plex.com
        origins: [https://api.plex.com]
        limits: { memory_mib: 32 }
"#;

    #[test]
    fn user_config_grants() -> Result<(), ConfigError> {
        let c = load_config(&[src("user.yaml", USER)], None)?;
        let t = c.target("plex", None).ok_or_else(|| ConfigError::Invalid {
            path: String::new(),
            reason: "no target".into(),
        })?;
        assert_eq!(t.origins, vec!["https://api.plex.com".to_owned()]);
        assert_eq!(t.limits.memory_mib, 32);
        assert_eq!(t.limits.cpu_ms, Limits::default().cpu_ms);
        assert_eq!(t.modeled, Modeled::Disabled);
        assert_eq!(c.plugin_dirs, vec![PathBuf::from("/opt/rota/plugins")]);
        Ok(())
    }

    #[test]
    fn working_directory_config_cannot_grant() -> Result<(), ConfigError> {
        let cwd = src(
            "./rota.yaml",
            r#"
playbooks: [playbooks/]
plugin_dirs: [./evil]
plugins:
  plex:
    targets:
      - name: acme
        base_url: https://staging.plex.com
        origins: ["https://*"]
        modeled: enabled
        reveal: true
  other:
    targets:
      - name: x
        origins: [https://evil.example]
"#,
        );
        let c = load_config(&[src("user.yaml", USER)], Some(&cwd))?;
        assert_eq!(c.playbooks, vec![PathBuf::from("playbooks/")]);
        assert_eq!(c.plugin_dirs, vec![PathBuf::from("/opt/rota/plugins")]);
        let t = c.target("plex", Some("acme"));
        assert_eq!(
            t.and_then(|t| t.base_url.as_deref()),
            Some("https://staging.plex.com")
        );
        assert_eq!(
            t.map(|t| t.origins.clone()),
            Some(vec!["https://api.plex.com".to_owned()])
        );
        assert_eq!(t.map(|t| t.modeled), Some(Modeled::Disabled));
        assert_eq!(t.map(|t| t.reveal), Some(false));
        assert!(!c.plugins.contains_key("other"));
        for key in [
            "plugin_dirs",
            "targets.acme.origins",
            "targets.acme.modeled",
            "targets.acme.reveal",
        ] {
            assert!(
                c.warnings.iter().any(|w| w.contains(key)),
                "no warning for {key}: {:?}",
                c.warnings
            );
        }
        Ok(())
    }

    #[test]
    fn later_user_sources_win() -> Result<(), ConfigError> {
        let over = src(
            "--config",
            "plugins:\n  plex:\n    targets:\n      - name: acme\n        origins: [https://eu.plex.com]\n",
        );
        let c = load_config(&[src("user.yaml", USER), over], None)?;
        assert_eq!(
            c.target("plex", Some("acme")).map(|t| t.origins.clone()),
            Some(vec!["https://eu.plex.com".to_owned()])
        );
        Ok(())
    }

    #[test]
    fn bad_origins_are_errors() {
        let bad = src(
            "u.yaml",
            "plugins:\n  p:\n    targets:\n      - name: a\n        origins: [nope]\n",
        );
        assert!(load_config(&[bad], None).is_err());
    }

    #[test]
    fn rehearsal_grants_exactly_its_simulators() {
        let c = Config::rehearsal(
            vec![],
            BTreeMap::from([("plex".to_owned(), vec!["http://127.0.0.1:4101".to_owned()])]),
        );
        let t = c.target("plex", None);
        assert_eq!(t.map(|t| t.modeled), Some(Modeled::Enabled));
        assert_eq!(
            t.and_then(|t| t.base_url.clone()),
            Some("http://127.0.0.1:4101".to_owned())
        );
        assert_eq!(t.map(|t| t.rehearsal), Some(true));
    }

    #[test]
    fn a_cwd_file_named_by_config_is_trusted() -> Result<(), ConfigError> {
        let dir = tempfile::tempdir().map_err(|source| ConfigError::Read {
            path: "tempdir".into(),
            source,
        })?;
        let path = dir.path().join("rota.yaml");
        std::fs::write(&path, USER).map_err(|source| ConfigError::Read {
            path: "rota.yaml".into(),
            source,
        })?;
        let trusted = load(Some(&path), dir.path())?;
        assert_eq!(trusted.plugin_dirs, vec![PathBuf::from("/opt/rota/plugins")]);
        assert!(trusted.warnings.is_empty(), "{:?}", trusted.warnings);
        let untrusted = load_config(&[], Some(&Source::read(&path)?))?;
        assert!(untrusted.plugin_dirs.is_empty());
        assert!(untrusted.plugins.is_empty());
        Ok(())
    }

    #[test]
    fn limits_are_clamped() {
        let l = Limits {
            memory_mib: 1 << 40,
            ..Limits::default()
        }
        .clamped();
        assert_eq!(l.memory_mib, 1024);
    }
}
