//! The plugin host: discovery, the shared engine, per-call stores and
//! limits, and the [`ActionCatalog`]/[`ActionRunner`] the executor uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rota_core::{ActionCall, ActionCatalog, ActionError, ActionRunner, ActionSpec, Basis, SecretRef};
use serde_json::Value;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::{SUPPORTED_ABIS, v1};
use crate::bundled::Bundled;
use crate::cache::{ArtifactCache, Loaded};
use crate::capability::clock::{self, ClockState};
use crate::capability::http::{self, HttpState};
use crate::capability::log::{self, LogState};
use crate::capability::secrets::{self, SecretsState};
use crate::caps::{HttpPolicy, OriginPattern};
use crate::config::{Config, Limits, Modeled, TargetConfig};
use crate::manifest::{self, Manifest, PackageError};
use crate::net::{PolicyResolver, Resolver, SystemResolver};
use rota_core::schema::Schema;

/// How often the engine's epoch advances; the CPU budget's resolution.
const TICK: Duration = Duration::from_millis(1);
/// Guest output kept per call and stream.
const OUTPUT_CAP: usize = 64 * 1024;
/// Per pooled linear memory: the dirty pages below this are reset in place
/// instead of decommitted. Covers a Rust guest's 1 MiB stack plus its data
/// and first heap pages.
const KEEP_RESIDENT: usize = 2 << 20;

/// Options the CLI passes besides the config.
#[derive(Clone)]
pub struct HostOptions {
    /// rota's state directory; the compiled-plugin cache lives in
    /// `<state_dir>/plugin-cache` (0700).
    pub state_dir: PathBuf,
    /// Which of each plugin's targets to use (`--target`); `None` picks a
    /// plugin's only target.
    pub target: Option<String>,
    /// Name resolution for plugin HTTP; `None` is the system resolver.
    pub resolver: Option<Arc<dyn Resolver>>,
    /// Plugin files loaded besides those found in `plugin_dirs`.
    pub extra_plugins: Vec<PathBuf>,
    /// Also load the first-party plugins embedded in this build
    /// ([`crate::bundled`]); a plugin of the same name found in
    /// `plugin_dirs` takes precedence.
    pub bundled: bool,
}

impl HostOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            target: None,
            resolver: None,
            extra_plugins: Vec::new(),
            bundled: false,
        }
    }
}

impl std::fmt::Debug for HostOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOptions")
            .field("state_dir", &self.state_dir)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot set up the plugin engine: {0}")]
    Engine(String),
    #[error("cannot use the plugin cache directory {path}: {source}")]
    Cache { path: String, source: std::io::Error },
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error("plugin {plugin:?} ({path}): {reason}")]
    Load {
        plugin: String,
        path: String,
        reason: String,
    },
    #[error("no plugin named {0:?}")]
    NoSuchPlugin(String),
}

/// A plugin file found on disk: its manifest (read without running it) or
/// why it cannot be used.
pub struct PluginEntry {
    /// The file, or `bundled:<file name>` for a plugin embedded in the binary.
    pub path: PathBuf,
    /// The embedded plugin, for a bundled one.
    bundled: Option<&'static Bundled>,
    /// SHA-256 of the component (hex): known from the build for a bundled
    /// plugin, computed on first need for a file (only the plugins a run
    /// uses are hashed, not every plugin in the directories).
    digest: OnceLock<String>,
    pub manifest: Manifest,
    pub abi: String,
    pub target: Option<TargetConfig>,
    pub policy: HttpPolicy,
    validators: BTreeMap<String, OnceLock<Result<Validators, String>>>,
    secret_fields: BTreeMap<String, Vec<String>>,
    ready: tokio::sync::OnceCell<Arc<Ready>>,
    bytes: Mutex<Option<Arc<Vec<u8>>>>,
}

/// One action's compiled input and output schemas.
struct Validators {
    input: Schema,
    output: Schema,
}

/// A compiled plugin, linked and ready to instantiate.
struct Ready {
    pre: v1::PluginPre<State>,
    client: reqwest::Client,
}

/// A file in a plugin directory that could not be loaded.
#[derive(Debug, Clone)]
pub struct BrokenPlugin {
    pub path: PathBuf,
    pub error: String,
}

struct Inner {
    engine: Engine,
    /// Built by the first plugin to link (a `rota list` or `validate`
    /// never needs it; a run builds it beside its other plugins' loads).
    linker: OnceLock<Result<Linker<State>, String>>,
    cache: ArtifactCache,
    plugins: BTreeMap<String, Slot>,
    broken: Vec<BrokenPlugin>,
    resolver: Arc<dyn Resolver>,
    target_name: Option<String>,
}

/// A discovered plugin. A file's entry is read at discovery (so a broken
/// file is reported at once); a bundled plugin's manifest is parsed on first
/// use, so a run pays for the plugins it uses, not for every one this build
/// carries (its name and digest come from the build, and a test parses every
/// bundled manifest in full).
struct Slot {
    entry: OnceLock<Option<Arc<PluginEntry>>>,
    lazy: Option<LazyBundled>,
}

struct LazyBundled {
    path: PathBuf,
    bundled: &'static Bundled,
    target: Option<TargetConfig>,
}

impl Slot {
    fn read(entry: PluginEntry) -> Self {
        Self {
            entry: OnceLock::from(Some(Arc::new(entry))),
            lazy: None,
        }
    }

    fn get(&self) -> Option<&Arc<PluginEntry>> {
        self.entry
            .get_or_init(|| {
                let lazy = self.lazy.as_ref()?;
                match bundled_entry(&lazy.path, lazy.bundled, lazy.target.clone()) {
                    Ok(e) => Some(Arc::new(e)),
                    Err(e) => {
                        tracing::error!(path = %lazy.path.display(), error = %e, "bundled plugin not loaded");
                        None
                    }
                }
            })
            .as_ref()
    }
}

impl Inner {
    fn entry(&self, name: &str) -> Option<&Arc<PluginEntry>> {
        self.plugins.get(name)?.get()
    }
}

/// The plugin host. Cheap to clone; implements [`ActionCatalog`] and
/// [`ActionRunner`].
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.inner.plugins.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The process's one engine: async, epoch interruption (ticked every
/// millisecond by a background thread), pooling allocator.
pub fn shared_engine() -> Result<Engine, HostError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut cfg = wasmtime::Config::new();
            cfg.wasm_component_model(true);
            cfg.epoch_interruption(true);
            cfg.max_wasm_stack(512 * 1024);
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(128)
                .total_core_instances(1024)
                .total_memories(256)
                .total_tables(1024)
                .total_stacks(128)
                .max_memory_size(1 << 30);
            // Returning a slot to the pool by madvise (the default) costs a
            // TLB shootdown and a page fault per touched page on the next
            // call, most of a no-op call. With PAGEMAP_SCAN (Linux >= 6.7)
            // wasmtime finds the pages a call dirtied and resets them to the
            // initial image in place, so nothing leaks between calls either
            // way. Without it, keeping memory resident would mean a memset of
            // the whole range per call, so the default stays.
            if PoolingAllocationConfig::is_pagemap_scan_available() {
                pool.pagemap_scan(wasmtime::Enabled::Yes)
                    .linear_memory_keep_resident(KEEP_RESIDENT)
                    .table_keep_resident(64 << 10);
            }
            cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            let engine = Engine::new(&cfg).map_err(|e| e.to_string())?;
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("rota-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(TICK);
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(engine)
        })
        .clone()
        .map_err(HostError::Engine)
}

impl PluginHost {
    /// Discovers the plugins in `config.plugin_dirs` (and
    /// `opts.extra_plugins`), reading their manifests. Nothing is compiled
    /// until an action is first invoked (or [`PluginHost::preload`]).
    pub fn new(config: &Config, opts: HostOptions) -> Result<Self, HostError> {
        let engine = shared_engine()?;
        let cache_dir = opts.state_dir.join("plugin-cache");
        let cache = ArtifactCache::open(&cache_dir).map_err(|source| HostError::Cache {
            path: cache_dir.display().to_string(),
            source,
        })?;

        let mut files = Vec::new();
        for dir in &config.plugin_dirs {
            let Ok(read) = std::fs::read_dir(dir) else {
                tracing::debug!(dir = %dir.display(), "plugin directory not readable, skipped");
                continue;
            };
            let mut found: Vec<PathBuf> = read
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            found.sort();
            files.extend(found);
        }
        files.extend(opts.extra_plugins.iter().cloned());

        let mut plugins = BTreeMap::new();
        let mut broken = Vec::new();
        let embedded = if opts.bundled {
            crate::bundled::BUNDLED
        } else {
            &[]
        };
        for path in files {
            match read_entry(&path, config, opts.target.as_deref()) {
                Ok(entry) => {
                    if plugins.contains_key(&entry.manifest.name) {
                        broken.push(BrokenPlugin {
                            path: path.clone(),
                            error: format!(
                                "plugin {:?} is already loaded from an earlier directory; this copy is ignored",
                                entry.manifest.name
                            ),
                        });
                        continue;
                    }
                    plugins.insert(entry.manifest.name.clone(), Slot::read(entry));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "plugin not loaded");
                    broken.push(BrokenPlugin {
                        path,
                        error: e.to_string(),
                    });
                }
            }
        }
        // An operator's copy of a first-party plugin replaces the bundled one.
        for b in embedded {
            plugins.entry(b.name.to_owned()).or_insert_with(|| Slot {
                entry: OnceLock::new(),
                lazy: Some(LazyBundled {
                    path: PathBuf::from(format!("bundled:{}", b.file)),
                    bundled: b,
                    target: config.target(b.name, opts.target.as_deref()).cloned(),
                }),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker: OnceLock::new(),
                cache,
                plugins,
                broken,
                resolver: opts.resolver.unwrap_or_else(|| Arc::new(SystemResolver)),
                target_name: opts.target,
            }),
        })
    }

    /// The host for a rehearsal: every plugin in `simulators` gets a
    /// `rehearsal` target granted exactly those loopback origins, with
    /// modeled actions enabled.
    pub fn rehearsal(
        plugin_dirs: Vec<PathBuf>,
        simulators: BTreeMap<String, Vec<String>>,
        state_dir: &Path,
    ) -> Result<Self, HostError> {
        let config = Config::rehearsal(plugin_dirs, simulators);
        let mut opts = HostOptions::new(state_dir);
        opts.target = Some("rehearsal".to_owned());
        Self::new(&config, opts)
    }

    pub fn plugin(&self, name: &str) -> Option<&PluginEntry> {
        self.inner.entry(name).map(|p| &**p)
    }

    pub fn entries(&self) -> impl Iterator<Item = &PluginEntry> {
        self.inner.plugins.values().filter_map(|s| s.get()).map(|p| &**p)
    }

    pub fn broken(&self) -> &[BrokenPlugin] {
        &self.inner.broken
    }

    pub fn target_name(&self) -> Option<&str> {
        self.inner.target_name.as_deref()
    }

    pub fn cache_dir(&self) -> &Path {
        self.inner.cache.dir()
    }

    /// Compiles (or loads from the cache) and links a plugin now.
    pub async fn preload(&self, name: &str) -> Result<(), HostError> {
        let entry = self
            .inner
            .entry(name)
            .cloned()
            .ok_or_else(|| HostError::NoSuchPlugin(name.to_owned()))?;
        self.ready(&entry).await.map(|_| ())
    }

    /// Preloads every named plugin at once (each links on a blocking thread
    /// of its own): what a run starts with, so its plugins load in parallel
    /// and beside the rest of its start instead of at their first calls.
    pub async fn preload_all<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), HostError> {
        futures::future::try_join_all(names.into_iter().map(|n| self.preload(n)))
            .await
            .map(|_| ())
    }

    async fn ready(&self, entry: &Arc<PluginEntry>) -> Result<Arc<Ready>, HostError> {
        let inner = self.inner.clone();
        let e2 = entry.clone();
        entry
            .ready
            .get_or_try_init(|| async move {
                let task = tokio::task::spawn_blocking(move || link(&inner, &e2));
                task.await.map_err(|e| HostError::Engine(e.to_string()))?
            })
            .await
            .cloned()
    }

    /// Instantiates a plugin in a fresh store without calling it, for
    /// benchmarks.
    #[doc(hidden)]
    pub async fn instantiate_only(&self, name: &str) -> Result<(), HostError> {
        let entry = self
            .inner
            .entry(name)
            .cloned()
            .ok_or_else(|| HostError::NoSuchPlugin(name.to_owned()))?;
        let ready = self.ready(&entry).await?;
        let mut store = Store::new(&self.inner.engine, bench_state(&entry, ready.client.clone()));
        store.set_epoch_deadline(u64::MAX / 2);
        ready
            .pre
            .instantiate_async(&mut store)
            .await
            .map(|_| ())
            .map_err(|e| HostError::Engine(e.to_string()))
    }

    /// Compiles a plugin file without the cache, for benchmarks.
    pub fn compile_uncached(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        Component::new(&self.inner.engine, bytes)
    }

    /// Loads a plugin file through the cache, for benchmarks.
    pub fn load_cached(&self, bytes: &[u8]) -> wasmtime::Result<(Component, Loaded)> {
        let digest = crate::cache::digest(bytes);
        self.inner.cache.load(&self.inner.engine, &digest, bytes)
    }
}

/// WASI p2 (no files, env, args or sockets: see the per-call `WasiCtx`) and
/// every `rota:plugin@1.0.0` interface, each projected to its own state.
fn link_capabilities(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    crate::capability::add_types_to_linker(linker)?;
    http::add_to_linker(linker, |s| &mut s.http)?;
    secrets::add_to_linker(linker, |s| &mut s.secrets)?;
    log::add_to_linker(linker, |s| &mut s.log)?;
    clock::add_to_linker(linker, |s| &mut s.clock)
}

fn read_entry(path: &Path, config: &Config, target: Option<&str>) -> Result<PluginEntry, HostError> {
    let bytes = std::fs::read(path).map_err(|e| HostError::Load {
        plugin: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let (manifest, abi) = manifest::parse(&path.display().to_string(), &bytes)?;
    let target = config.target(&manifest.name, target).cloned();
    Ok(entry_from(path, manifest, abi, Some(bytes), None, target))
}

/// A bundled plugin: its digest comes from the build, and its schemas are
/// not compiled here (a test compiles every bundled manifest in full; an
/// action's schemas are compiled on its first call either way).
fn bundled_entry(
    path: &Path,
    bundled: &'static Bundled,
    target: Option<TargetConfig>,
) -> Result<PluginEntry, HostError> {
    let (manifest, abi) = manifest::parse_bundled(&path.display().to_string(), bundled.bytes)?;
    let entry = entry_from(path, manifest, abi, None, Some(bundled), target);
    let _ = entry.digest.set(bundled.digest.to_owned());
    Ok(entry)
}

fn entry_from(
    path: &Path,
    manifest: Manifest,
    abi: String,
    bytes: Option<Vec<u8>>,
    bundled: Option<&'static Bundled>,
    target: Option<TargetConfig>,
) -> PluginEntry {
    let mut validators = BTreeMap::new();
    let mut secret_fields = BTreeMap::new();
    for a in &manifest.actions {
        validators.insert(a.name.clone(), OnceLock::new());
        secret_fields.insert(a.name.clone(), manifest::secret_fields(&a.input));
    }
    let declared = manifest
        .origins
        .iter()
        .filter_map(|o| OriginPattern::parse(o).ok())
        .collect();
    let granted = target
        .as_ref()
        .map(|t| {
            t.origins
                .iter()
                .filter_map(|o| OriginPattern::parse(o).ok())
                .collect()
        })
        .unwrap_or_default();
    let policy = HttpPolicy {
        plugin: manifest.name.clone(),
        declared,
        granted,
        rehearsal: target.as_ref().is_some_and(|t| t.rehearsal),
    };
    PluginEntry {
        path: path.to_owned(),
        bundled,
        digest: OnceLock::new(),
        manifest,
        abi,
        target,
        policy,
        validators,
        secret_fields,
        ready: tokio::sync::OnceCell::new(),
        bytes: Mutex::new(bytes.map(Arc::new)),
    }
}

fn link(inner: &Inner, entry: &PluginEntry) -> Result<Arc<Ready>, HostError> {
    let err = |reason: String| HostError::Load {
        plugin: entry.manifest.name.clone(),
        path: entry.path.display().to_string(),
        reason,
    };
    // The bytes read at discovery are hashed (once) and used once; a retry
    // after a failed link re-reads the file and checks it did not change.
    let digest = entry.digest().map_err(err)?;
    let kept = entry.bytes.lock().unwrap_or_else(|e| e.into_inner()).take();
    let read;
    let bytes: &[u8] = match (&kept, entry.bundled) {
        (Some(b), _) => b.as_slice(),
        (None, Some(b)) => b.bytes,
        (None, None) => {
            read = std::fs::read(&entry.path).map_err(|e| err(e.to_string()))?;
            if crate::cache::digest(&read) != digest {
                return Err(err("the file changed since its manifest was read".to_owned()));
            }
            &read
        }
    };
    let (component, how) = inner
        .cache
        .load(&inner.engine, digest, bytes)
        .map_err(|e| err(format!("cannot compile: {e}")))?;
    tracing::debug!(plugin = %entry.manifest.name, ?how, "plugin loaded");
    let ty = component.component_type();
    for (name, _) in ty.imports(&inner.engine) {
        if !manifest::import_provided(name) {
            return Err(err(format!(
                "it imports `{name}`, which this host does not provide (it provides rota:plugin@{} \
                 and WASI p2 without files, environment or network)",
                SUPPORTED_ABIS.join(", ")
            )));
        }
    }
    let linker = inner
        .linker
        .get_or_init(|| {
            let mut linker: Linker<State> = Linker::new(&inner.engine);
            link_capabilities(&mut linker).map_err(|e| e.to_string())?;
            Ok(linker)
        })
        .as_ref()
        .map_err(|e| err(format!("cannot build the host's linker: {e}")))?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| err(format!("cannot link: {e}")))?;
    let pre =
        v1::PluginPre::new(pre).map_err(|e| err(format!("does not export rota:plugin's invoke: {e}")))?;
    let limits = entry.limits();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(PolicyResolver {
            inner: inner.resolver.clone(),
            policy: entry.policy.clone(),
        }))
        .connect_timeout(Duration::from_millis(limits.connect_timeout_ms))
        .read_timeout(Duration::from_millis(limits.read_timeout_ms))
        .build()
        .map_err(|e| err(format!("cannot build its HTTP client: {e}")))?;
    Ok(Arc::new(Ready { pre, client }))
}

impl PluginEntry {
    /// SHA-256 of the component (hex): the plugin's identity, shown by
    /// `rota plugins inspect` and recorded in a run's journal.
    pub fn digest(&self) -> Result<&str, String> {
        if let Some(d) = self.digest.get() {
            return Ok(d);
        }
        let kept = self.bytes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let computed = match kept {
            Some(b) => crate::cache::digest(&b),
            // Linked already (which hashes first) or failed to: read again.
            None => crate::cache::digest(&std::fs::read(&self.path).map_err(|e| e.to_string())?),
        };
        Ok(self.digest.get_or_init(|| computed))
    }

    /// The action's compiled schemas, built on its first call and kept:
    /// discovery reads every plugin in the directories while a run calls a
    /// few of their actions, and `manifest::parse` has already refused any
    /// schema that does not compile.
    fn validators(&self, action: &str) -> Result<&Validators, String> {
        let (Some(cell), Some(am)) = (self.validators.get(action), self.manifest.action(action)) else {
            return Err(format!("no action {action:?}"));
        };
        let compile = |schema: &Value, what: &str| {
            Schema::compile(schema).map_err(|e| format!("the {what} schema does not compile: {e}"))
        };
        cell.get_or_init(|| {
            Ok(Validators {
                input: compile(&am.input, "input")?,
                output: compile(&am.output, "output")?,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    pub fn limits(&self) -> Limits {
        self.target
            .as_ref()
            .map(|t| t.limits.clamped())
            .unwrap_or_default()
    }

    pub fn modeled_enabled(&self) -> bool {
        self.target
            .as_ref()
            .is_some_and(|t| t.modeled == Modeled::Enabled)
    }

    pub fn reveal_granted(&self) -> bool {
        self.target.as_ref().is_some_and(|t| t.reveal)
    }
}

impl ActionCatalog for PluginHost {
    fn plugins(&self) -> Vec<String> {
        self.inner.plugins.keys().cloned().collect()
    }

    fn lookup(&self, plugin: &str, action: &str) -> Option<ActionSpec> {
        let entry = self.inner.entry(plugin)?;
        entry.manifest.action(action).map(|a| entry.manifest.spec(a))
    }

    fn is_enabled(&self, spec: &ActionSpec) -> bool {
        match spec.basis {
            Basis::Documented => true,
            Basis::Modeled => self
                .inner
                .entry(&spec.plugin)
                .is_some_and(|e| e.modeled_enabled()),
        }
    }
}

impl ActionRunner for PluginHost {
    fn invoke(&self, call: ActionCall) -> BoxFuture<'static, Result<Value, ActionError>> {
        let host = self.clone();
        Box::pin(async move { host.invoke_inner(call).await })
    }
}

/// Everything one call's host functions need.
pub(crate) struct CallCtx {
    pub plugin: String,
    pub action: String,
    pub call: ActionCall,
    pub policy: HttpPolicy,
    pub client: reqwest::Client,
    pub limits: Limits,
    pub declared_captures: Vec<String>,
    pub reveal: bool,
    pub target: String,
    /// The action's `key_id` pointer into the answer a capture is taken from.
    pub key_id: Option<String>,
    /// Set when a captured secret could not be stored: the call then fails
    /// with [`ActionError::CaptureFailed`] whatever the plugin returns.
    pub capture_failure: Mutex<Option<CaptureFailure>>,
}

/// A captured secret the store could not commit: the key it belongs to is
/// live at the vendor, and rota does not hold its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CaptureFailure {
    /// Names plugin, action, secret and key ID.
    pub message: String,
    pub key_id: Option<String>,
}

impl CallCtx {
    /// Remembers the first failed capture of the call.
    pub(crate) fn capture_failed(&self, failure: CaptureFailure) {
        let mut slot = self.capture_failure.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(failure);
    }

    fn failed_capture(&self) -> Option<ActionError> {
        let slot = self.capture_failure.lock().unwrap_or_else(|e| e.into_inner());
        slot.clone().map(|f| ActionError::CaptureFailed {
            message: f.message,
            key_id: f.key_id,
        })
    }
}

/// The store's data: one per call, composed of each capability's state
/// plus what the host itself needs (WASI, the memory limiter, the CPU clock).
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    started: Instant,
    cpu_exhausted: bool,
    http: HttpState,
    secrets: SecretsState,
    log: LogState,
    clock: ClockState,
}

impl State {
    fn new(ctx: Arc<CallCtx>, wasi: WasiCtx) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                max_memory: ctx.limits.memory_bytes(),
                hit: false,
            },
            started: Instant::now(),
            cpu_exhausted: false,
            http: HttpState::new(ctx.clone()),
            secrets: SecretsState::new(ctx.clone()),
            log: LogState::new(ctx.clone()),
            clock: ClockState::new(ctx),
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Memory limit that remembers being hit.
pub(crate) struct Limiter {
    max_memory: usize,
    hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn mib(bytes: usize) -> String {
    format!("{} MiB", bytes >> 20)
}

impl PluginHost {
    async fn invoke_inner(&self, call: ActionCall) -> Result<Value, ActionError> {
        let Some(entry) = self.inner.entry(&call.plugin).cloned() else {
            let known = self.inner.plugins.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(ActionError::Internal(format!(
                "no plugin named {:?} is installed (installed: {})",
                call.plugin,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known
                }
            )));
        };
        let plugin = call.plugin.clone();
        let action = call.action.clone();
        let what = format!("{plugin}.{action}");
        // Borrowed, not cloned: the manifest holds both JSON Schemas.
        let Some(am) = entry.manifest.action(&action) else {
            return Err(ActionError::InvalidInput(format!(
                "plugin {plugin:?} has no action {action:?}"
            )));
        };
        if am.basis == manifest::BasisName::Modeled && !entry.modeled_enabled() {
            return Err(ActionError::Denied(format!(
                "{what} is a modeled action (its API is not documented by the vendor) and modeled actions \
                 are not enabled for target {}; set `modeled: enabled` on the target to allow it",
                entry
                    .target
                    .as_ref()
                    .map(|t| t.name.as_str())
                    .unwrap_or("(none configured)")
            )));
        }
        let validators = entry
            .validators(&action)
            .map_err(|e| ActionError::Internal(format!("{what}: {e}")))?;
        check_input(&entry, &validators.input, &action, &call.input)
            .map_err(|e| ActionError::InvalidInput(format!("{what}: {e}")))?;
        let ready = self
            .ready(&entry)
            .await
            .map_err(|e| ActionError::Internal(e.to_string()))?;
        let limits = entry.limits();
        let input_text = call.input.to_string();
        let wit_ctx = v1::rota::plugin::types::Context {
            run_id: call.run_id.clone(),
            step_id: call.step_id.clone(),
            idempotency_key: call.idempotency_key.clone(),
            attempt: call.attempt,
            base_url: entry.target.as_ref().and_then(|t| t.base_url.clone()),
        };
        let scope = call.secrets.clone();
        let ctx = Arc::new(CallCtx {
            plugin: plugin.clone(),
            action: action.clone(),
            call,
            policy: entry.policy.clone(),
            client: ready.client.clone(),
            limits: limits.clone(),
            declared_captures: am.captures.clone(),
            reveal: entry.reveal_granted(),
            target: entry.target.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
            key_id: am.key_id.clone(),
            capture_failure: Mutex::new(None),
        });
        let call_ctx = ctx.clone();
        let stdout = crate::output::GuestOutput::new(OUTPUT_CAP);
        let stderr = crate::output::GuestOutput::new(OUTPUT_CAP);
        // No preopens, env, args or stdin; sockets and name lookups refused
        // explicitly (plugins reach the network only through rota's http).
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut store = Store::new(&self.inner.engine, State::new(ctx, wasi));
        store.limiter(|s| &mut s.limiter);
        let cpu = limits.cpu();
        store.epoch_deadline_callback(move |mut store| {
            let s = store.data();
            let used = s.started.elapsed().saturating_sub(s.http.host_time());
            if used > cpu {
                store.data_mut().cpu_exhausted = true;
                return Err(wasmtime::Error::msg("CPU budget exhausted"));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);

        let span = tracing::info_span!("plugin.invoke", plugin = %plugin, action = %action);
        let run = async {
            let instance = ready.pre.instantiate_async(&mut store).await?;
            instance
                .call_invoke(&mut store, &action, &input_text, &wit_ctx)
                .await
        };
        let outcome = tokio::time::timeout(limits.wall(), tracing::Instrument::instrument(run, span)).await;
        let emit = |stream: &str, pipe: &crate::output::GuestOutput| -> Option<String> {
            let (raw, truncated) = pipe.contents();
            let text = scope.redact(&raw);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!(target: "rota::plugin", plugin = %plugin, action = %action, stream, "{line}");
            }
            if truncated {
                tracing::warn!(target: "rota::plugin", plugin = %plugin, action = %action, stream,
                    "output beyond {} KiB was dropped", OUTPUT_CAP / 1024);
            }
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            match lines.iter().position(|l| l.contains("panicked")) {
                Some(i) => Some(lines[i..(i + 2).min(lines.len())].join(" ")),
                None => lines.last().map(|l| (*l).to_owned()),
            }
        };
        emit("stdout", &stdout);
        let last_err = emit("stderr", &stderr);
        if let Some(e) = call_ctx.failed_capture() {
            return Err(e);
        }
        let state = store.data();
        let result = match outcome {
            Err(_) => {
                return Err(ActionError::Limit(format!(
                    "{what} exceeded its wall-clock limit of {} ms and was stopped",
                    limits.wall_ms
                )));
            }
            Ok(Err(e)) => {
                return Err(trap_error(&what, &limits, state, &e, last_err));
            }
            Ok(Ok(r)) => r,
        };
        let out_text = match result {
            Ok(s) => s,
            Err(e) => return Err(map_error(&what, e, &scope)),
        };
        let output: Value = serde_json::from_str(&out_text)
            .map_err(|e| ActionError::BadOutput(format!("{what} returned invalid JSON: {e}")))?;
        if scope.redact(&out_text) != out_text {
            return Err(ActionError::BadOutput(format!(
                "{what} returned a secret value in its output; plugins must return handles"
            )));
        }
        // `is_valid` stops at the first failure without building errors;
        // the error walk runs only to explain a failure.
        if let Some(failure) = validators.output.check(&output) {
            return Err(ActionError::BadOutput(format!(
                "{what}: at {}: {}",
                pointer_or_root(&failure.at),
                failure.message
            )));
        }
        Ok(output)
    }
}

fn bench_state(entry: &PluginEntry, client: reqwest::Client) -> State {
    let scope = Arc::new(rota_core::SecretScope::new(
        Arc::new(rota_core::MemoryStore::new()),
        "bench",
    ));
    let call = ActionCall {
        run_id: String::new(),
        step_id: String::new(),
        attempt: 1,
        idempotency_key: String::new(),
        plugin: entry.manifest.name.clone(),
        action: String::new(),
        input: Value::Null,
        captures: BTreeMap::new(),
        secrets: scope,
    };
    State::new(
        Arc::new(CallCtx {
            plugin: entry.manifest.name.clone(),
            action: String::new(),
            call,
            policy: entry.policy.clone(),
            client,
            limits: entry.limits(),
            declared_captures: Vec::new(),
            reveal: false,
            target: String::new(),
            key_id: None,
            capture_failure: Mutex::new(None),
        }),
        WasiCtxBuilder::new().build(),
    )
}

fn pointer_or_root(p: &str) -> String {
    if p.is_empty() {
        "/".to_owned()
    } else {
        p.to_owned()
    }
}

fn check_input(entry: &PluginEntry, schema: &Schema, action: &str, input: &Value) -> Result<(), String> {
    if let Some(failure) = schema.check(input) {
        return Err(format!(
            "input at {}: {}",
            pointer_or_root(&failure.at),
            failure.message
        ));
    }
    for ptr in entry.secret_fields.get(action).into_iter().flatten() {
        for (at, v) in select(input, ptr) {
            if SecretRef::from_json(v).is_none() {
                return Err(format!(
                    "input field {at} takes a secret handle {{\"$secret\": \"name@version\"}}, not a literal value"
                ));
            }
        }
    }
    Ok(())
}

/// The values at a pointer whose `*` segments match every array item.
fn select<'a>(value: &'a Value, ptr: &str) -> Vec<(String, &'a Value)> {
    let mut out = vec![(String::new(), value)];
    for seg in ptr.split('/').skip(1).filter(|s| !s.is_empty()) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let mut next = Vec::new();
        for (at, v) in out {
            match (seg.as_str(), v) {
                ("*", Value::Array(items)) => {
                    next.extend(items.iter().enumerate().map(|(i, x)| (format!("{at}/{i}"), x)))
                }
                (key, Value::Object(m)) => {
                    if let Some(x) = m.get(key) {
                        next.push((format!("{at}/{key}"), x));
                    }
                }
                _ => {}
            }
        }
        out = next;
    }
    out
}

fn trap_error(
    what: &str,
    limits: &Limits,
    state: &State,
    e: &wasmtime::Error,
    stderr: Option<String>,
) -> ActionError {
    if state.cpu_exhausted {
        return ActionError::Limit(format!(
            "{what} exceeded its CPU limit of {} ms and was stopped",
            limits.cpu_ms
        ));
    }
    if state.http.request_limit_hit() {
        return ActionError::Limit(format!(
            "{what} exceeded its limit of {} HTTP requests per call and was stopped",
            limits.requests
        ));
    }
    if state.limiter.hit {
        return ActionError::Limit(format!(
            "{what} exceeded its memory limit of {} and was stopped",
            mib(limits.memory_bytes())
        ));
    }
    let trap = e.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::StackOverflow) {
        return ActionError::Limit(format!(
            "{what} exhausted its call stack (deep recursion) and was stopped"
        ));
    }
    let detail = match trap {
        Some(t) => t.to_string(),
        None => format!("{e:#}"),
    };
    let stderr = stderr.map(|l| format!("; stderr: {l}")).unwrap_or_default();
    if trap == Some(Trap::MemoryOutOfBounds) {
        return ActionError::Internal(format!(
            "{what} trapped: {detail} (often a stack overflow in the plugin){stderr}"
        ));
    }
    ActionError::Internal(format!("{what} trapped: {detail}{stderr}"))
}

fn map_error(what: &str, e: v1::rota::plugin::types::Error, scope: &rota_core::SecretScope) -> ActionError {
    use v1::rota::plugin::types::Error as E;
    let r = |m: String| scope.redact(&format!("{what}: {m}"));
    match e {
        E::InvalidInput(m) => ActionError::InvalidInput(r(m)),
        E::Unauthorized(m) => ActionError::Unauthorized(r(m)),
        E::Forbidden(m) => ActionError::Forbidden(r(m)),
        E::NotFound(m) => ActionError::NotFound(r(m)),
        E::Conflict(m) => ActionError::Conflict(r(m)),
        E::RateLimited(ms) => ActionError::RateLimited {
            retry_after: ms.map(Duration::from_millis),
        },
        E::Upstream(u) => ActionError::Upstream {
            status: u.status,
            body: scope.redact(&u.body_excerpt.chars().take(500).collect::<String>()),
        },
        E::Denied(m) => ActionError::Denied(r(m)),
        E::Internal(m) => ActionError::Internal(r(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_abi_and_wasi_imports_are_provided() {
        use crate::manifest::import_provided;
        assert!(import_provided("rota:plugin/http@1.0.0"));
        assert!(import_provided("wasi:cli/environment@0.2.6"));
        assert!(!import_provided("rota:plugin/http@2.0.0"));
        assert!(!import_provided("rota:plugin/backdoor@1.0.0"));
        assert!(!import_provided("rota:evil/backdoor@1.0.0"));
        assert!(!import_provided("wasi:http/outgoing-handler@0.2.6"));
    }

    #[test]
    fn select_expands_array_wildcards() {
        let v = serde_json::json!({"keys": [{"s": 1}, {"s": 2}], "a": {"b": 3}});
        let got: Vec<String> = select(&v, "/keys/*/s").into_iter().map(|(p, _)| p).collect();
        assert_eq!(got, vec!["/keys/0/s".to_owned(), "/keys/1/s".to_owned()]);
        assert_eq!(select(&v, "/a/b").len(), 1);
        assert!(select(&v, "/missing").is_empty());
    }
}
