//! Builds the plugins workspace (SDK, first-party vendor plugins, test
//! plugins) for wasm32-wasip2 in ONE cargo invocation into `plugins/target`
//! (never this build's target directory: cargo would deadlock on its own
//! lock), exports the paths of the test plugins as `ROTA_TEST_PLUGIN_*` for
//! `rota_host::test_plugins`, and writes `bundled.rs` into `OUT_DIR`: the
//! vendor plugins embedded in the binary (`rota_host::bundled`).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PLUGINS: &[(&str, &str)] = &[
    ("ECHO", "rota_test_echo"),
    ("HOSTILE", "rota_test_hostile"),
    ("FUTURE_ABI", "rota_test_future_abi"),
    ("MISSING_IMPORT", "rota_test_missing_import"),
    ("KEYS", "rota_test_keys"),
];

/// First-party vendor plugins (`plugins/<dir>`, crate `rota-plugin-<dir>`),
/// embedded in the `rota` binary. A directory that does not exist yet is
/// skipped.
const VENDOR_PLUGINS: &[&str] = &[
    "plex",
    "demandcaster",
    "plytix",
    "soar",
    "constellix",
    "consumers",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let root = manifest_dir.join("../..");
    let plugins = root.join("plugins");
    for p in [
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/sdk",
        "plugins/testing",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let vendors: Vec<&str> = VENDOR_PLUGINS
        .iter()
        .copied()
        .filter(|v| plugins.join(v).join("Cargo.toml").is_file())
        .collect();
    for v in VENDOR_PLUGINS {
        println!("cargo:rerun-if-changed={}", plugins.join(v).display());
    }
    let bundled_rs =
        PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("bundled.rs");
    let target_dir = plugins.join("target");
    let out = target_dir.join(TARGET).join("release");
    for (key, file) in PLUGINS {
        println!(
            "cargo:rustc-env=ROTA_TEST_PLUGIN_{key}={}",
            out.join(format!("{file}.wasm")).display()
        );
    }
    // Packagers building only the CLI can skip the test plugins; the
    // constants then point at files that do not exist.
    println!("cargo:rerun-if-env-changed=ROTA_SKIP_PLUGIN_BUILD");
    if std::env::var_os("ROTA_SKIP_PLUGIN_BUILD").is_some_and(|v| v == "1") {
        println!("cargo:warning=ROTA_SKIP_PLUGIN_BUILD=1: plugins not built, none bundled");
        write_bundled(&bundled_rs, &[]);
        return;
    }
    ensure_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // Nothing from this (host) build may leak into the wasm build.
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_MAKEFLAGS"
            || k == "RUSTFLAGS"
            || k == "RUSTC"
            || k == "RUSTC_WRAPPER"
            || k == "RUSTC_WORKSPACE_WRAPPER"
            || k == "RUSTDOC"
        {
            cmd.env_remove(k);
        }
    }
    let status = cmd.status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            panic!("building the plugins workspace (plugins/) for {TARGET} failed: {s}; see the output above")
        }
        Err(e) => panic!("cannot run cargo to build the plugins workspace: {e}"),
    }
    for (_, file) in PLUGINS {
        let p = out.join(format!("{file}.wasm"));
        assert!(
            Path::new(&p).is_file(),
            "the plugins build did not produce {}",
            p.display()
        );
    }
    let files: Vec<PathBuf> = vendors
        .iter()
        .map(|v| out.join(format!("rota_plugin_{v}.wasm")))
        .collect();
    for f in &files {
        assert!(f.is_file(), "the plugins build did not produce {}", f.display());
    }
    let named: Vec<(String, PathBuf)> = vendors
        .iter()
        .zip(files)
        .map(|(v, f)| (plugin_name(&plugins.join(v).join("rota-plugin.json")), f))
        .collect();
    write_bundled(&bundled_rs, &named);
}

/// The plugin name a manifest declares: its first `"name"` member, which is
/// the top-level one (a test checks it against the parsed manifest).
fn plugin_name(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let after = text
        .split_once("\"name\"")
        .and_then(|(_, rest)| rest.trim_start().strip_prefix(':'))
        .and_then(|rest| rest.trim_start().strip_prefix('"'))
        .and_then(|rest| rest.split_once('"'))
        .map(|(name, _)| name.to_owned());
    after.unwrap_or_else(|| panic!("{} declares no \"name\"", manifest.display()))
}

/// `pub static BUNDLED: &[Bundled]`: plugin name, file name, bytes and SHA-256 of each
/// vendor plugin (hashed here, once, instead of at every start of `rota`).
fn write_bundled(path: &Path, files: &[(String, PathBuf)]) {
    use sha2::Digest;
    let mut code = String::from("pub static BUNDLED: &[Bundled] = &[\n");
    for (plugin, f) in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        code.push_str(&format!(
            "    Bundled {{ name: {plugin:?}, file: {name:?}, bytes: include_bytes!({:?}), digest: {digest:?} }},\n",
            f.display().to_string()
        ));
    }
    code.push_str("];\n");
    if let Err(e) = std::fs::write(path, code) {
        panic!("cannot write {}: {e}", path.display());
    }
}

/// Installs the wasm target with rustup when it is missing.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let installed = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| dir.is_dir());
    if installed {
        return;
    }
    println!("cargo:warning=installing the {TARGET} Rust target with rustup");
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the {TARGET} Rust target is missing and `rustup target add {TARGET}` failed; install it and rebuild"
    );
}
