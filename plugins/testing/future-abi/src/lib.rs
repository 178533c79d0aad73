//! A test plugin that claims to be built for ABI 9.0.0.

use rota_plugin_sdk::{Context, Error, Value};

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    abi: "9.0.0",
    actions: { "noop" => noop },
}

fn noop(_ctx: &Context, input: Value) -> Result<Value, Error> {
    Ok(input)
}
