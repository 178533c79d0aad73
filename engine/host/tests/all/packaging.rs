//! Packaging: manifests, ABI versions, broken files, the compile cache,
//! and the `rota plugins` renderers.

use std::path::PathBuf;

use rota_core::ActionError;
use rota_host::{Config, HostOptions, PluginHost};
use serde_json::json;

use crate::support::*;

fn host_with(files: Vec<PathBuf>, state: &std::path::Path) -> PluginHost {
    let mut opts = HostOptions::new(state);
    opts.extra_plugins = files;
    PluginHost::new(&Config::default(), opts).expect("host")
}

#[tokio::test]
async fn broken_files_are_refused_with_clear_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module (func (export \"invoke\")))")?)?;
    let corrupt = dir.path().join("corrupt.wasm");
    let mut bytes = std::fs::read(rota_host::test_plugins::ECHO)?;
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, &bytes)?;
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm at all")?;
    let state = state_dir();
    let host = host_with(
        vec![
            core.clone(),
            corrupt.clone(),
            garbage.clone(),
            PathBuf::from(rota_host::test_plugins::FUTURE_ABI),
            PathBuf::from(rota_host::test_plugins::ECHO),
        ],
        state.path(),
    );
    let err = |p: &PathBuf| {
        host.broken()
            .iter()
            .find(|b| &b.path == p)
            .map(|b| b.error.clone())
            .unwrap_or_default()
    };
    assert!(
        err(&core).contains("plain core WebAssembly module, not a component"),
        "{}",
        err(&core)
    );
    assert!(err(&corrupt).contains("cannot be parsed"), "{}", err(&corrupt));
    assert!(
        err(&garbage).contains("not a WebAssembly file"),
        "{}",
        err(&garbage)
    );
    let future = err(&PathBuf::from(rota_host::test_plugins::FUTURE_ABI));
    assert!(
        future.contains("\"future-abi\"")
            && future.contains("ABI 9.0.0")
            && future.contains("supported: 1.0.0"),
        "{future}"
    );
    // The good plugin next to them works.
    assert_eq!(
        rota_core::ActionRunner::invoke(&host, fixture_call("echo", "noop")).await?,
        json!({})
    );
    Ok(())
}

fn fixture_call(plugin: &str, action: &str) -> rota_core::ActionCall {
    let scope = std::sync::Arc::new(rota_core::SecretScope::new(
        std::sync::Arc::new(rota_core::MemoryStore::new()),
        "r",
    ));
    rota_core::ActionCall {
        run_id: "r".into(),
        step_id: "s".into(),
        attempt: 1,
        idempotency_key: "k".into(),
        plugin: plugin.into(),
        action: action.into(),
        input: json!({}),
        captures: Default::default(),
        secrets: scope,
    }
}

#[tokio::test]
async fn a_component_importing_an_unknown_interface_is_refused() -> TestResult {
    let state = state_dir();
    let path = PathBuf::from(rota_host::test_plugins::MISSING_IMPORT);
    let host = host_with(
        vec![path.clone(), PathBuf::from(rota_host::test_plugins::ECHO)],
        state.path(),
    );
    // Refused at discovery, from the component's import section, without
    // compiling or running it.
    let err = host
        .broken()
        .iter()
        .find(|b| b.path == path)
        .map(|b| b.error.clone())
        .unwrap_or_default();
    assert!(
        err.contains("\"missing-import\"")
            && err.contains("rota:evil/backdoor")
            && err.contains("does not provide"),
        "{err}"
    );
    assert!(
        rota_host::render::list_text(&host).contains("BROKEN"),
        "{}",
        rota_host::render::list_text(&host)
    );
    let e = rota_core::ActionRunner::invoke(&host, fixture_call("missing-import", "noop"))
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Internal(m)) if m.contains("no plugin named")),
        "{e:?}"
    );
    assert_eq!(
        rota_core::ActionRunner::invoke(&host, fixture_call("echo", "noop")).await?,
        json!({})
    );
    Ok(())
}

#[tokio::test]
async fn compiled_plugins_are_cached_and_corrupt_entries_recompiled() -> TestResult {
    let state = state_dir();
    let host = host_with(vec![], state.path());
    let bytes = std::fs::read(rota_host::test_plugins::ECHO)?;
    let (_, how) = host.load_cached(&bytes)?;
    assert_eq!(how, rota_host::Loaded::Compiled);
    let (_, how) = host.load_cached(&bytes)?;
    assert_eq!(how, rota_host::Loaded::Cached);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(host.cache_dir())?.permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    // Corrupt every entry: it is recompiled, never trusted.
    for entry in std::fs::read_dir(host.cache_dir())? {
        let p = entry?.path();
        let mut data = std::fs::read(&p)?;
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(&p, data)?;
    }
    let (_, how) = host.load_cached(&bytes)?;
    assert_eq!(how, rota_host::Loaded::Compiled);
    let (_, how) = host.load_cached(&bytes)?;
    assert_eq!(how, rota_host::Loaded::Cached);
    Ok(())
}

#[tokio::test]
async fn inspect_shows_declared_versus_granted() -> TestResult {
    let (addr, _s) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let text = rota_host::render::inspect_text(&f.host, "echo").ok_or("no echo")?;
    assert!(text.contains("abi:     rota:plugin@1.0.0"), "{text}");
    assert!(
        text.contains("https://*.echo.test ") && text.contains("NOT GRANTED"),
        "{text}"
    );
    assert!(text.contains(&format!("granted: {}", origin(addr))), "{text}");
    assert!(text.contains("signed  [modeled, read-only, disabled]"), "{text}");
    assert!(text.contains("secret inputs: /admin"), "{text}");
    let j = rota_host::render::inspect_json(&f.host, "echo").ok_or("no echo")?;
    assert_eq!(j["capabilities"]["http"]["granted"], json!([origin(addr)]));
    assert_eq!(j["digest"].as_str().map(str::len), Some(64));
    let list = rota_host::render::list_json(&f.host);
    assert_eq!(list["plugins"].as_array().map(Vec::len), Some(2));
    assert!(rota_host::render::list_text(&f.host).contains("echo 0.1.0  abi 1.0.0"));
    assert!(rota_host::render::inspect_text(&f.host, "nope").is_none());
    Ok(())
}
