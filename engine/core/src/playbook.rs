//! The playbook format: the typed document a YAML file deserializes into.
//!
//! Design decision: these types ARE the format. serde reads them with
//! `deny_unknown_fields` everywhere, schemars derives `rota schema` from them,
//! and `docs/playbooks.md` describes them; so the three never drift. Fields
//! whose meaning depends on other parts of the document (templates, step
//! references, action names) are checked by `validate`, not here.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::duration::DurationSpec;

/// A playbook: one documented procedure.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Identifier used by `rota run <name>`: lowercase letters, digits and dashes.
    pub name: String,
    /// One or two sentences shown by `rota list` and `rota show`.
    pub description: String,
    /// The seed file or document this playbook encodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Typed inputs, in the order they are asked for.
    #[serde(default, skip_serializing_if = "NamedMap::is_empty")]
    pub inputs: NamedMap<Input>,
    /// Secrets this run creates or uses, by playbook-local id.
    #[serde(default, skip_serializing_if = "NamedMap::is_empty")]
    pub secrets: NamedMap<SecretDecl>,
    /// Credential names (templated from inputs) locked for the run's duration:
    /// one rotation at a time per credential.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
    /// The procedure, in order.
    pub steps: Vec<Step>,
    /// Compensation, run in order when the run fails; the run still fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Step>,
    /// Always run last, whether the run succeeded or failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finally: Vec<Step>,
}

/// The type of an input or of a manual step's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Integer,
    Boolean,
    /// One of `values`.
    Enum,
    /// The NAME of a secret in the store; the run sees a handle to its current
    /// version, never the value.
    Secret,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Boolean => "boolean",
            InputType::Enum => "enum",
            InputType::Secret => "secret",
        }
    }
}

/// A typed input.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(rename = "type")]
    pub kind: InputType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Defaults to true when there is no `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// A literal of the input's type, or a template over other inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A regular expression a string input must match (anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The allowed values of an `enum` input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Bounds of an `integer` input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<i64>,
    /// For `secret` inputs: the plugins the secret may be injected into.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub send_to: Vec<String>,
}

impl Input {
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(self.default.is_none())
    }
}

/// A secret the run creates (captures) or uses.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretDecl {
    /// The store name, templated from inputs: `plex/{{inputs.customer}}/client-secret`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Plugins the secret may be injected into, besides the one that captures it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub send_to: Vec<String>,
    /// Lives only for the run (e.g. a 15-minute token); never stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}

/// One step of a procedure.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the playbook; outputs are `steps.<id>.outputs.<field>`.
    pub id: String,
    /// What the operator sees. Defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `<plugin>.<action>` or a built-in `core.<action>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// The action's input; every string is a template.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schemars(with = "Map<String, Value>")]
    pub with: Map<String, Value>,
    /// Run the step only when this is true: a boolean or a template that
    /// yields one (anything else is an error, not "truthy").
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<BoolOrTemplate>")]
    pub condition: Option<Value>,
    /// Run the step once per item (a list, or a template yielding one), with
    /// `item` in scope. Outputs become a list, one entry per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<ListOrTemplate>")]
    pub for_each: Option<Value>,
    /// How many `for_each` items run at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Retry transient errors with exponential backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Limit on each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// A question that must be answered yes (or `--yes`) before the step runs.
    /// It should name exactly what will be done, e.g. which key ID is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    /// What the step does, in words with the real IDs and dates (a template,
    /// per item under `for_each`), e.g. `delete secret {{item.id}} (valid
    /// until {{item.validUntil}})`: a plan prints "would <describe>", a run
    /// shows it as the step acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub describe: Option<String>,
    /// A failure here does not fail the run; the run record says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recoverable: bool,
    /// Documented instructions for a person. Alone, this is a manual step;
    /// beside `uses`, the fallback when the action is not enabled for the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<Manual>,
    /// Secrets this step's action captures: capture name -> `secrets` id.
    #[serde(default, skip_serializing_if = "NamedMap::is_empty")]
    pub captures: NamedMap<String>,
}

impl Step {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// Exponential backoff with jitter; only transient errors are retried.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total attempts, including the first (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt (default 1s).
    #[serde(default = "default_delay")]
    pub delay: DurationSpec,
    /// Each wait is the previous times this (default 2).
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Cap on any single wait (default 30s).
    #[serde(default = "default_max_delay")]
    pub max_delay: DurationSpec,
    /// Randomize each wait within [wait/2, wait] so many runs do not retry in
    /// lockstep (default true).
    #[serde(default = "default_true")]
    pub jitter: bool,
}

fn default_delay() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(1))
}
fn default_max_delay() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(30))
}
fn default_factor() -> f64 {
    2.0
}
fn default_true() -> bool {
    true
}

/// The human path of a step.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manual {
    /// The documented instructions, shown verbatim (templated).
    pub instructions: String,
    /// Values the operator is asked for, which become the step's outputs.
    #[serde(default, skip_serializing_if = "NamedMap::is_empty")]
    pub outputs: NamedMap<ManualOutput>,
}

/// A value a manual step asks for.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualOutput {
    /// The question shown at the prompt.
    pub prompt: String,
    /// `string` (default), `integer`, `boolean` or `secret`.
    #[serde(rename = "type", default = "default_output_type")]
    pub kind: InputType,
    /// A regular expression the answer must match (anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// For `secret` outputs: the `secrets` id the typed value is stored as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn default_output_type() -> InputType {
    InputType::String
}

/// Schema-only helper: `if:` takes a boolean or a template string.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "only describes the JSON Schema of `if`")]
enum BoolOrTemplate {
    Bool(bool),
    Template(String),
}

/// Schema-only helper: `for_each:` takes a list or a template string.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "only describes the JSON Schema of `for_each`")]
enum ListOrTemplate {
    List(Vec<Value>),
    Template(String),
}

/// A YAML mapping that keeps its order (inputs are asked in the order written).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedMap<T>(pub Vec<(String, T)>);

impl<T> Default for NamedMap<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> NamedMap<T> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn get(&self, key: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
}

impl<T: Serialize> Serialize for NamedMap<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedMap<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = NamedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<NamedMap<T>, A::Error> {
                let mut out: Vec<(String, T)> = Vec::new();
                while let Some((k, v)) = access.next_entry::<String, T>()? {
                    if out.iter().any(|(existing, _)| *existing == k) {
                        return Err(serde::de::Error::custom(format!("duplicate entry \"{k}\"")));
                    }
                    out.push((k, v));
                }
                Ok(NamedMap(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for NamedMap<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", T::schema_name()).into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<T>(),
        })
    }
}

/// The JSON Schema of the playbook format (`rota schema`).
pub fn json_schema() -> Value {
    let schema = schemars::schema_for!(Playbook);
    serde_json::to_value(schema).unwrap_or(Value::Null)
}
