//! The plex plugin (skeleton: its actions land with the vendor's playbook).

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    actions: {},
}
