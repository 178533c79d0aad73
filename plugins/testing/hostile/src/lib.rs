//! A test plugin that misbehaves on purpose.

use rota_plugin_sdk::http;
use rota_plugin_sdk::secrets::{self, Handle};
use rota_plugin_sdk::{Context, Error, Value, json};
use serde::Deserialize;

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    actions: {
        "echo" => echo,
        "spin" => spin,
        "memory-bomb" => memory_bomb,
        "recurse" => recurse,
        "panic" => panic,
        "fetch" => fetch,
        "log-secret" => log_secret,
        "capture-undeclared" => capture_undeclared,
        "flood" => flood,
        "chatty" => chatty,
        "bad-output" => bad_output,
    },
}

fn echo(_ctx: &Context, input: Value) -> Result<Value, Error> {
    Ok(input)
}

fn spin(_ctx: &Context, _input: Value) -> Result<Value, Error> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn memory_bomb(_ctx: &Context, _input: Value) -> Result<Value, Error> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

#[allow(unconditional_recursion, reason = "the point of this action")]
fn depth(n: u64, pad: [u64; 16]) -> u64 {
    let pad = std::hint::black_box(pad);
    depth(n + 1, pad).wrapping_add(pad[(n % 16) as usize])
}

fn recurse(_ctx: &Context, _input: Value) -> Result<Value, Error> {
    Ok(json!({"depth": depth(0, [7; 16])}))
}

fn panic(_ctx: &Context, _input: Value) -> Result<Value, Error> {
    panic!("hostile plugin panics on purpose")
}

#[derive(Deserialize)]
struct FetchIn {
    url: String,
    token: Option<Handle>,
}

fn fetch(_ctx: &Context, input: FetchIn) -> Result<Value, Error> {
    let mut req = http::get(&input.url);
    if let Some(token) = &input.token {
        req = req.bearer(token);
    }
    let resp = req.send()?;
    Ok(json!({"status": resp.status(), "len": resp.body().len()}))
}

#[derive(Deserialize)]
struct LogIn {
    handle: Handle,
    text: String,
}

fn log_secret(_ctx: &Context, input: LogIn) -> Result<Value, Error> {
    let revealed = secrets::reveal(&input.handle);
    if let Ok(value) = &revealed {
        rota_plugin_sdk::log::warn("revealed", &[("value", value)]);
    }
    rota_plugin_sdk::log::warn(&format!("leaking {}", input.text), &[("text", &input.text)]);
    println!("stdout leak {}", input.text);
    eprintln!("stderr leak {}", input.text);
    Ok(json!({"revealed": revealed.is_ok()}))
}

#[derive(Deserialize)]
struct UrlIn {
    url: String,
}

fn capture_undeclared(_ctx: &Context, input: UrlIn) -> Result<Value, Error> {
    let resp = http::post(&input.url)
        .capture_json("/secret", "somewhere-else")
        .send()?;
    Ok(json!({"status": resp.status()}))
}

fn flood(_ctx: &Context, input: UrlIn) -> Result<Value, Error> {
    let mut sent = 0u32;
    loop {
        let _ = http::get(&input.url).send();
        sent += 1;
        if sent > 100_000 {
            return Ok(json!({"sent": sent}));
        }
    }
}

fn chatty(_ctx: &Context, _input: Value) -> Result<Value, Error> {
    let line = "x".repeat(16 * 1024 - 1);
    for _ in 0..64 {
        println!("{line}");
    }
    Ok(json!({"printed": 64 * 16 * 1024}))
}

fn bad_output(_ctx: &Context, _input: Value) -> Result<Value, Error> {
    Ok(json!({"ok": "not a boolean"}))
}
