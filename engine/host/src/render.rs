//! `rota plugins list` and `rota plugins inspect <name>`, as text and JSON.
//! The CLI only prints what these return.

use serde_json::{Value, json};

use crate::caps::OriginPattern;
use crate::host::{PluginEntry, PluginHost};
use crate::manifest::{ActionManifest, BasisName, ResumeKeyword, ResumeManifest, secret_fields};

fn basis(b: BasisName) -> &'static str {
    match b {
        BasisName::Documented => "documented",
        BasisName::Modeled => "modeled",
    }
}

fn granted(e: &PluginEntry) -> Vec<String> {
    e.target.as_ref().map(|t| t.origins.clone()).unwrap_or_default()
}

/// Declared origins with whether the target grants something matching.
fn capability_rows(e: &PluginEntry) -> Vec<Value> {
    e.manifest
        .origins
        .iter()
        .map(|o| {
            let granted_by: Vec<String> = match OriginPattern::parse(o) {
                Ok(d) => e
                    .policy
                    .granted
                    .iter()
                    .filter(|g| {
                        // Shown as serving a declaration when a
                        // representative origin of the grant is inside the
                        // declared pattern (the policy decides requests).
                        let probe = crate::caps::Origin {
                            scheme: g.scheme.clone(),
                            host: match &g.host {
                                crate::caps::HostPattern::Exact(h) => h.clone(),
                                crate::caps::HostPattern::Subdomains(a) => format!("x.{a}"),
                            },
                            port: g.port.or(d.port).unwrap_or(1),
                        };
                        d.matches(&probe)
                    })
                    .map(ToString::to_string)
                    .collect(),
                Err(_) => Vec::new(),
            };
            json!({"declared": o, "granted_by": granted_by})
        })
        .collect()
}

/// `rota plugins list` as JSON: one object per plugin, plus broken files.
pub fn list_json(host: &PluginHost) -> Value {
    let plugins: Vec<Value> = host
        .entries()
        .map(|e| {
            json!({
                "name": e.manifest.name,
                "version": e.manifest.version,
                "abi": e.abi,
                "digest": shown_digest(e),
                "path": e.path.display().to_string(),
                "target": e.target.as_ref().map(|t| t.name.clone()),
                "actions": e.manifest.actions.iter().map(|a| json!({
                    "name": a.name,
                    "basis": basis(a.basis),
                    "read_only": a.read_only,
                    "enabled": a.basis == BasisName::Documented || e.modeled_enabled(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let broken: Vec<Value> = host
        .broken()
        .iter()
        .map(|b| json!({"path": b.path.display().to_string(), "error": b.error}))
        .collect();
    json!({"plugins": plugins, "broken": broken})
}

/// `rota plugins list` as text.
pub fn list_text(host: &PluginHost) -> String {
    let mut out = String::new();
    let entries: Vec<&PluginEntry> = host.entries().collect();
    if entries.is_empty() {
        out.push_str("no plugins installed\n");
    }
    for e in entries {
        let modeled = e
            .manifest
            .actions
            .iter()
            .filter(|a| a.basis == BasisName::Modeled)
            .count();
        out.push_str(&format!(
            "{} {}  abi {}  {} actions ({} modeled{})  target {}  sha256:{}\n",
            e.manifest.name,
            e.manifest.version,
            e.abi,
            e.manifest.actions.len(),
            modeled,
            if modeled > 0 && !e.modeled_enabled() {
                ", disabled"
            } else {
                ""
            },
            e.target.as_ref().map(|t| t.name.as_str()).unwrap_or("(none)"),
            short_digest(e),
        ));
    }
    for b in host.broken() {
        // The error starts with the path already.
        out.push_str(&format!("BROKEN {}\n", b.error));
    }
    out
}

/// `rota plugins inspect <name>` as JSON, or `None` for an unknown plugin.
pub fn inspect_json(host: &PluginHost, name: &str) -> Option<Value> {
    let e = host.plugin(name)?;
    let limits = e.limits();
    Some(json!({
        "name": e.manifest.name,
        "version": e.manifest.version,
        "description": e.manifest.description,
        "abi": e.abi,
        "digest": shown_digest(e),
        "path": e.path.display().to_string(),
        "target": e.target.as_ref().map(|t| json!({
            "name": t.name, "base_url": t.base_url, "rehearsal": t.rehearsal,
        })),
        "capabilities": {
            "http": {
                "declared": e.manifest.origins,
                "granted": granted(e),
                "origins": capability_rows(e),
            },
            "reveal": {"granted": e.reveal_granted()},
            "modeled": {"enabled": e.modeled_enabled()},
        },
        "limits": limits,
        "actions": e.manifest.actions.iter().map(|a| json!({
            "name": a.name,
            "description": a.description,
            "basis": basis(a.basis),
            "enabled": a.basis == BasisName::Documented || e.modeled_enabled(),
            "read_only": a.read_only,
            "captures": a.captures,
            "key_id": a.key_id,
            "resume": (!a.read_only).then(|| e.manifest.spec(a).resume),
            "revoke": a.revoke,
            "secret_inputs": secret_fields(&a.input),
            "input_schema": a.input,
            "output_schema": a.output,
        })).collect::<Vec<_>>(),
    }))
}

/// `rota plugins inspect <name>` as text, or `None` for an unknown plugin.
pub fn inspect_text(host: &PluginHost, name: &str) -> Option<String> {
    let e = host.plugin(name)?;
    let mut o = String::new();
    o.push_str(&format!("{} {}\n", e.manifest.name, e.manifest.version));
    if !e.manifest.description.is_empty() {
        o.push_str(&format!("  {}\n", e.manifest.description));
    }
    o.push_str(&format!("  abi:     rota:plugin@{}\n", e.abi));
    o.push_str(&format!("  digest:  sha256:{}\n", shown_digest(e)));
    o.push_str(&format!("  file:    {}\n", e.path.display()));
    match &e.target {
        Some(t) => o.push_str(&format!(
            "  target:  {}{} base_url {}\n",
            t.name,
            if t.rehearsal { " (rehearsal)" } else { "" },
            t.base_url.as_deref().unwrap_or("(none)")
        )),
        None => o.push_str("  target:  (none configured: every request is denied)\n"),
    }
    o.push_str("\ncapabilities (declared by the plugin / granted by you):\n");
    o.push_str("  http:\n");
    for row in capability_rows(e) {
        let declared = row["declared"].as_str().unwrap_or_default();
        let by: Vec<&str> = row["granted_by"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if by.is_empty() {
            o.push_str(&format!("    {declared:<40} NOT GRANTED\n"));
        } else {
            o.push_str(&format!("    {declared:<40} granted: {}\n", by.join(", ")));
        }
    }
    if e.manifest.origins.is_empty() {
        o.push_str("    (declares none)\n");
    }
    if e.policy.rehearsal {
        o.push_str("    (rehearsal: the granted simulator origins stand in for the declared ones)\n");
    }
    let g = granted(e);
    o.push_str(&format!(
        "    granted origins: {}\n",
        if g.is_empty() {
            "none".to_owned()
        } else {
            g.join(", ")
        }
    ));
    o.push_str(&format!(
        "  reveal:  {}\n  modeled actions: {}\n",
        if e.reveal_granted() {
            "granted"
        } else {
            "not granted"
        },
        if e.modeled_enabled() {
            "enabled"
        } else {
            "disabled"
        }
    ));
    let l = e.limits();
    o.push_str(&format!(
        "  limits:  memory {} MiB, cpu {} ms, wall {} ms, response {} KiB, {} requests/call\n",
        l.memory_mib, l.cpu_ms, l.wall_ms, l.response_kib, l.requests
    ));
    o.push_str("\nactions:\n");
    for a in &e.manifest.actions {
        let enabled = a.basis == BasisName::Documented || e.modeled_enabled();
        o.push_str(&format!(
            "  {}  [{}{}{}]\n",
            a.name,
            basis(a.basis),
            if a.read_only { ", read-only" } else { "" },
            if enabled { "" } else { ", disabled" }
        ));
        if !a.description.is_empty() {
            o.push_str(&format!("    {}\n", a.description));
        }
        if !a.captures.is_empty() {
            o.push_str(&format!("    captures: {}\n", a.captures.join(", ")));
        }
        for line in recovery_lines(a) {
            o.push_str(&format!("    {line}\n"));
        }
        let secrets = secret_fields(&a.input);
        if !secrets.is_empty() {
            o.push_str(&format!("    secret inputs: {}\n", secrets.join(", ")));
        }
        o.push_str(&format!("    input:  {}\n", a.input));
        o.push_str(&format!("    output: {}\n", a.output));
    }
    Some(o)
}

/// What `rota runs resume` does with an interrupted call of a changing
/// action, and how a key it creates is found and revoked.
pub fn recovery_lines(a: &ActionManifest) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(k) = &a.key_id {
        out.push(format!(
            "key id:   {k} in the answer, stored with the captured secret"
        ));
    }
    if a.read_only {
        return out;
    }
    out.push(match &a.resume {
        None => "resume:   refuse (declares no policy: an interrupted call stops the resume)".to_owned(),
        Some(ResumeManifest::Keyword(ResumeKeyword::Repeat)) => {
            "resume:   repeat (an interrupted call is made again)".to_owned()
        }
        Some(ResumeManifest::Reconcile(r)) => match &r.snapshot {
            Some(s) => format!(
                "resume:   reconcile with {} (snapshot before each call: {s})",
                r.reconcile
            ),
            None => format!("resume:   reconcile with {}", r.reconcile),
        },
    });
    out.push(match &a.revoke {
        Some(r) => format!("revoke:   {r} (deletes what it creates, by key id)"),
        None => "revoke:   none declared".to_owned(),
    });
    out
}

/// The plugin's SHA-256, or why it cannot be computed (its file became
/// unreadable after discovery).
fn shown_digest(e: &PluginEntry) -> String {
    e.digest()
        .map(str::to_owned)
        .unwrap_or_else(|why| format!("unknown ({why})"))
}

fn short_digest(e: &PluginEntry) -> String {
    let d = shown_digest(e);
    d.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(extra: Value) -> ActionManifest {
        let mut a = json!({
            "name": "create-key", "read_only": false, "basis": "documented",
            "input": {"type": "object"}, "output": {"type": "object"}
        });
        if let (Some(a), Value::Object(extra)) = (a.as_object_mut(), extra) {
            a.extend(extra);
        }
        serde_json::from_value(a).unwrap_or_else(|e| panic!("test manifest: {e}"))
    }

    #[test]
    fn inspect_shows_resume_policy_revoke_and_key_id() {
        let a = action(json!({
            "captures": ["secret"], "key_id": "/id", "revoke": "revoke-key",
            "resume": {"reconcile": "find-key", "snapshot": "key-ids"}
        }));
        assert_eq!(
            recovery_lines(&a),
            vec![
                "key id:   /id in the answer, stored with the captured secret",
                "resume:   reconcile with find-key (snapshot before each call: key-ids)",
                "revoke:   revoke-key (deletes what it creates, by key id)",
            ]
        );
        assert_eq!(
            recovery_lines(&action(json!({"resume": "repeat"}))),
            vec![
                "resume:   repeat (an interrupted call is made again)",
                "revoke:   none declared"
            ]
        );
        assert_eq!(
            recovery_lines(&action(json!({"resume": {"reconcile": "find-key"}}))),
            vec!["resume:   reconcile with find-key", "revoke:   none declared"]
        );
        assert_eq!(
            recovery_lines(&action(json!({}))),
            vec![
                "resume:   refuse (declares no policy: an interrupted call stops the resume)",
                "revoke:   none declared"
            ]
        );
        assert!(recovery_lines(&action(json!({"read_only": true}))).is_empty());
    }
}
