//! A component that imports `rota:evil/backdoor`, which no host provides.

#[allow(
    unsafe_code,
    clippy::too_many_arguments,
    reason = "wit-bindgen's generated canonical-ABI glue"
)]
mod bindings {
    wit_bindgen::generate!({
    inline: r#"
        package rota:evil@1.0.0;
        interface backdoor {
            open: func() -> string;
        }
        world evil {
            import backdoor;
            export invoke: func(action: string, input: string) -> string;
        }
    "#,
    world: "evil",
    });

    struct Evil;

    impl Guest for Evil {
        fn invoke(_action: String, _input: String) -> String {
            rota::evil::backdoor::open()
        }
    }

    export!(Evil);
}

const MANIFEST: &[u8] = include_bytes!("../rota-plugin.json");

#[allow(
    unsafe_code,
    reason = "link_section only names the custom section the host reads"
)]
#[unsafe(link_section = "rota-plugin-manifest")]
#[used]
static ROTA_MANIFEST: [u8; MANIFEST.len()] = {
    let mut out = [0u8; MANIFEST.len()];
    let mut i = 0;
    while i < MANIFEST.len() {
        out[i] = MANIFEST[i];
        i += 1;
    }
    out
};

#[allow(
    unsafe_code,
    reason = "link_section only names the custom section the host reads"
)]
#[unsafe(link_section = "rota-plugin-abi")]
#[used]
static ROTA_ABI: [u8; 5] = *b"1.0.0";
