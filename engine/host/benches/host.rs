//! Plugin host benchmarks: cold compile vs cached load, a run's whole plugin
//! start (one file plugin; the bundled ones a Plex reset uses), instantiate, a no-op call, and one HTTP call through a plugin vs
//! plain reqwest.
//!
//! Run: `cargo bench -p rota-host --bench host`
//!
//! The HTTP overhead is also measured paired (plugin call, then the plain
//! call, in the same iteration): on a shared machine the plain call alone
//! moves by 3x with the load, so two separately measured medians can differ
//! by more than the overhead being measured.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rota_core::{ActionCall, ActionRunner, MemoryStore, SecretScope};
use rota_host::config::PluginConfig;
use rota_host::{Config, HostOptions, PluginHost, TargetConfig};
use serde_json::{Value, json};

fn call(scope: &Arc<SecretScope>, action: &str, input: Value) -> ActionCall {
    ActionCall {
        run_id: "bench".into(),
        step_id: "s".into(),
        attempt: 1,
        idempotency_key: "k".into(),
        plugin: "echo".into(),
        action: action.into(),
        input,
        captures: BTreeMap::new(),
        secrets: scope.clone(),
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/json", get(|| async { axum::Json(json!({"ok": true})) }));
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let url = format!("{origin}/json");

    let state = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.plugins.insert(
        "echo".into(),
        PluginConfig {
            targets: vec![TargetConfig::rehearsal(vec![origin.clone()])],
        },
    );
    let mut opts = HostOptions::new(state.path());
    opts.extra_plugins = vec![PathBuf::from(rota_host::test_plugins::ECHO)];
    let host = PluginHost::new(&config, opts.clone()).expect("host");
    let bytes = std::fs::read(rota_host::test_plugins::ECHO).expect("echo plugin");
    let scope = Arc::new(SecretScope::new(Arc::new(MemoryStore::new()), "bench"));

    let mut g = c.benchmark_group("plugin-load");
    g.sample_size(10);
    g.bench_function("cold compile (echo, 180 KB)", |b| {
        b.iter(|| black_box(host.compile_uncached(&bytes).expect("compile")))
    });
    host.load_cached(&bytes).expect("warm the cache");
    g.bench_function("cached load", |b| {
        b.iter(|| black_box(host.load_cached(&bytes).expect("load")))
    });
    // What a run pays before its first call: discovery (read, SHA-256,
    // manifest, schemas), the linker, the cached load, linking and the
    // plugin's HTTP client. Dropping the host is left out: a run does that
    // at its end, not before its first call.
    g.bench_function("plugin start (discover + cached load + link)", |b| {
        b.iter_with_large_drop(|| {
            let fresh = PluginHost::new(&config, opts.clone()).expect("host");
            rt.block_on(fresh.preload("echo")).expect("preload");
            black_box(fresh)
        })
    });
    // What `rota run plex-api-key-reset` pays: discovery of the six bundled
    // plugins (manifests read, digests known from the build) and the cached
    // load and link of the two the playbook uses.
    if rota_host::bundled::BUNDLED.len() > 1 {
        let mut bopts = HostOptions::new(state.path());
        bopts.bundled = true;
        let warm = PluginHost::new(&config, bopts.clone()).expect("host");
        rt.block_on(warm.preload("plex")).expect("preload plex");
        rt.block_on(warm.preload("demandcaster"))
            .expect("preload demandcaster");
        // What `rota run` does: every plugin the playbook uses at once.
        g.bench_function(
            "plugin start of a run (6 bundled discovered, plex + demandcaster loaded)",
            |b| {
                b.iter_with_large_drop(|| {
                    let fresh = PluginHost::new(&config, bopts.clone()).expect("host");
                    rt.block_on(fresh.preload_all(["plex", "demandcaster"]))
                        .expect("preload");
                    black_box(fresh)
                })
            },
        );
        // The part of it a run adds to its own start: by then validation
        // has discovered the plugins and parsed the manifests of the two it
        // uses (the setup, not timed).
        g.bench_function(
            "plugin start of a run after validation (plex + demandcaster loaded and linked)",
            |b| {
                b.iter_batched(
                    || {
                        let fresh = PluginHost::new(&config, bopts.clone()).expect("host");
                        assert!(fresh.plugin("plex").is_some() && fresh.plugin("demandcaster").is_some());
                        fresh
                    },
                    |fresh| {
                        rt.block_on(fresh.preload_all(["plex", "demandcaster"]))
                            .expect("preload");
                        fresh
                    },
                    BatchSize::PerIteration,
                )
            },
        );
        g.bench_function("plugin start of a run, one plugin after the other", |b| {
            b.iter_with_large_drop(|| {
                let fresh = PluginHost::new(&config, bopts.clone()).expect("host");
                rt.block_on(fresh.preload("plex")).expect("preload");
                rt.block_on(fresh.preload("demandcaster")).expect("preload");
                black_box(fresh)
            })
        });
    }
    g.finish();

    rt.block_on(host.preload("echo")).expect("preload");
    c.bench_function("instantiate", |b| {
        b.iter(|| rt.block_on(host.instantiate_only("echo")).expect("instantiate"))
    });
    c.bench_function("no-op action call (instantiate + validate + call)", |b| {
        b.iter(|| {
            rt.block_on(host.invoke(call(&scope, "noop", json!({}))))
                .expect("noop")
        })
    });

    let mut g = c.benchmark_group("one-http-call");
    g.bench_function("plugin action (echo.get)", |b| {
        b.iter(|| {
            rt.block_on(host.invoke(call(&scope, "get", json!({"url": url}))))
                .expect("get")
        })
    });
    let client = reqwest::Client::new();
    let plain = || {
        rt.block_on(async {
            let r = client.get(&url).send().await.expect("send");
            let v: Value = r.json().await.expect("json");
            black_box(v)
        })
    };
    g.bench_function("plain reqwest", |b| b.iter(plain));
    g.bench_function("host overhead (plugin minus plain, paired)", |b| {
        b.iter_custom(|iters| {
            let (mut through_plugin, mut direct) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..iters {
                let t = Instant::now();
                rt.block_on(host.invoke(call(&scope, "get", json!({"url": url}))))
                    .expect("get");
                through_plugin += t.elapsed();
                let t = Instant::now();
                plain();
                direct += t.elapsed();
            }
            // Clamped: criterion refuses a zero sample, and a noisy one can be
            // negative; the clamp can only overstate the overhead.
            through_plugin.saturating_sub(direct).max(Duration::from_nanos(1))
        })
    });
    g.finish();
}

criterion_group!(host_benches, benches);
criterion_main!(host_benches);
