//! The DemandCaster plugin: signing in, entering a business node with
//! DemandCaster's own confirmation, and the Plex PCN connections of its Data
//! Hub (Client Id, Client Secret, connection test).
//!
//! Design decision: a PCN connection is addressed by its PCN within the
//! entered business node, looked up on every call, so no step depends on a
//! connection id another step read; and the Client Secret only ever travels
//! as a handle the host injects into the request body (DemandCaster never
//! shows it back, and neither does this plugin).

mod session;

use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, http, json};
use serde::Deserialize;

use crate::session::{Session, dc_error, enter_request, in_own_session, ok_or_dc_error, sign_in};

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    actions: {
        "sign-in" => sign_in_action,
        "list-business-nodes" => list_business_nodes,
        "enter-business-node" => enter_business_node,
        "get-pcn-connection" => get_pcn_connection,
        "update-pcn-connection" => update_pcn_connection,
        "test-pcn-connection" => test_pcn_connection,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInIn {
    username: String,
    password: Handle,
}

fn sign_in_action(ctx: &Context, input: SignInIn) -> Result<Value, Error> {
    let session = sign_in(ctx, &input.username, &input.password)?;
    Ok(json!({"username": input.username, "session": session}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesIn {
    username: String,
    password: Handle,
    business_node: u64,
}

#[derive(Deserialize)]
struct Node {
    id: u64,
    name: String,
}

fn list_business_nodes(ctx: &Context, input: NodesIn) -> Result<Value, Error> {
    let nodes: Vec<Node> = in_own_session(ctx, &input.username, &input.password, None, |s| {
        let resp = s.send(&|| Ok(http::get(&ctx.url("/api/business-nodes")?)))?;
        ok_or_dc_error("listing the business nodes", resp)?.json()
    })?;
    let node = nodes
        .iter()
        .find(|n| n.id == input.business_node)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "{} cannot enter business node {} (the nodes listed: {})",
                input.username,
                input.business_node,
                nodes
                    .iter()
                    .map(|n| format!("{} {}", n.id, n.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    Ok(json!({
        "business_node": node.id,
        "name": node.name,
        "nodes": nodes.iter().map(|n| json!({"id": n.id, "name": n.name})).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnterIn {
    username: String,
    password: Handle,
    business_node: u64,
    confirmed: bool,
}

fn enter_business_node(ctx: &Context, input: EnterIn) -> Result<Value, Error> {
    if !input.confirmed {
        return Err(Error::InvalidInput(
            "entering a business node needs the operator's confirmation (confirmed: true)".to_owned(),
        ));
    }
    let node = input.business_node;
    let session = sign_in(ctx, &input.username, &input.password)?;
    let mut s = Session::new(ctx, session.clone(), &input.username, &input.password, None);
    let resp = s.send(&|| enter_request(ctx, node))?;
    let entered: Value = ok_or_dc_error(&format!("entering business node {node}"), resp)?.json()?;
    Ok(json!({
        "session": session,
        "business_node": node,
        "name": entered.get("name").cloned().unwrap_or(Value::Null),
        "landing": entered.get("landing").cloned().unwrap_or(Value::Null),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PcnIn {
    session: Handle,
    username: String,
    password: Handle,
    business_node: u64,
    pcn: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadPcnIn {
    username: String,
    password: Handle,
    business_node: u64,
    pcn: String,
}

/// A PCN connection as DemandCaster lists it (never with its secret).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Connection {
    id: u64,
    pcn: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    tenant_id: String,
    client_id: String,
    has_secret: bool,
    #[serde(default)]
    updated_at: String,
    #[serde(default)]
    last_test: Option<Value>,
}

impl Connection {
    fn view(&self) -> Value {
        json!({
            "connection_id": self.id,
            "pcn": self.pcn,
            "name": self.name,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "has_secret": self.has_secret,
            "updated_at": self.updated_at,
            "last_test": self.last_test,
        })
    }
}

fn check_pcn(pcn: &str) -> Result<(), Error> {
    if !pcn.is_empty() && pcn.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "PCN {pcn:?} is not a PCN (digits only)"
        )))
    }
}

/// Data > Data Hub > Plex > PCNs, in the entered node: the row of `pcn`.
fn find_connection(ctx: &Context, s: &mut Session<'_>, node: u64, pcn: &str) -> Result<Connection, Error> {
    check_pcn(pcn)?;
    let resp = s.send(&|| Ok(http::get(&ctx.url("/api/datahub/plex/pcns")?)))?;
    let all: Vec<Connection> =
        ok_or_dc_error(&format!("listing the Plex PCNs of business node {node}"), resp)?.json()?;
    let mut found = all.iter().filter(|c| c.pcn == pcn);
    match (found.next(), found.next()) {
        (Some(c), None) => Ok(c.clone()),
        (None, _) => Err(Error::NotFound(format!(
            "business node {node} has no Plex connection for PCN {pcn} (its PCNs: {})",
            all.iter().map(|c| c.pcn.as_str()).collect::<Vec<_>>().join(", ")
        ))),
        (Some(_), Some(_)) => Err(Error::Conflict(format!(
            "business node {node} has several Plex connections for PCN {pcn}; rota will not guess which one"
        ))),
    }
}

fn get_pcn_connection(ctx: &Context, input: ReadPcnIn) -> Result<Value, Error> {
    let node = input.business_node;
    in_own_session(ctx, &input.username, &input.password, Some(node), |s| {
        Ok(find_connection(ctx, s, node, &input.pcn)?.view())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateIn {
    session: Handle,
    username: String,
    password: Handle,
    business_node: u64,
    pcn: String,
    client_id: String,
    client_secret: Handle,
}

fn update_pcn_connection(ctx: &Context, input: UpdateIn) -> Result<Value, Error> {
    let node = input.business_node;
    let mut s = Session::new(ctx, input.session, &input.username, &input.password, Some(node));
    let before = find_connection(ctx, &mut s, node, &input.pcn)?;
    let id = before.id;
    let body = json!({"clientId": input.client_id, "clientSecret": input.client_secret});
    let secret = input.client_secret.clone();
    let resp = s.send(&|| {
        http::put(&ctx.url(&format!("/api/datahub/plex/pcns/{id}"))?)
            .json(&body)
            .map(|r| r.json_secret(&secret))
    })?;
    let after: Connection =
        ok_or_dc_error(&format!("saving the Plex connection of PCN {}", input.pcn), resp)?.json()?;
    if after.client_id != input.client_id || !after.has_secret {
        return Err(Error::Internal(format!(
            "DemandCaster saved PCN {} but shows client id {} (secret set: {}), not {} with a secret",
            input.pcn, after.client_id, after.has_secret, input.client_id
        )));
    }
    let mut view = after.view();
    if let Some(map) = view.as_object_mut() {
        map.insert("previous_client_id".into(), json!(before.client_id));
        map.insert(
            "client_id_changed".into(),
            json!(before.client_id != after.client_id),
        );
    }
    Ok(view)
}

fn test_pcn_connection(ctx: &Context, input: PcnIn) -> Result<Value, Error> {
    let node = input.business_node;
    let mut s = Session::new(ctx, input.session, &input.username, &input.password, Some(node));
    let conn = find_connection(ctx, &mut s, node, &input.pcn)?;
    let id = conn.id;
    let resp = s.send(&|| {
        Ok(http::post(
            &ctx.url(&format!("/api/datahub/plex/pcns/{id}/test"))?,
        ))
    })?;
    if !(200..300).contains(&resp.status()) {
        return Err(dc_error(
            &format!("testing the Plex connection of PCN {}", input.pcn),
            &resp,
        ));
    }
    let result: Value = resp.json()?;
    let message = result
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let tested_at = result.get("testedAt").cloned().unwrap_or(Value::Null);
    if result.get("ok") == Some(&Value::Bool(true)) {
        return Ok(json!({
            "connection_id": id, "pcn": input.pcn, "ok": true, "message": message, "tested_at": tested_at,
        }));
    }
    // DemandCaster's own call to Plex failed: a Plex outage is worth a
    // retry, a refused client id or secret is not.
    let failed = format!(
        "DemandCaster's test of PCN {} against Plex failed: {message}",
        input.pcn
    );
    match result.get("plexStatus").and_then(Value::as_u64) {
        Some(401 | 403) => Err(Error::Unauthorized(failed)),
        Some(429) => Err(Error::RateLimited { retry_after_ms: None }),
        Some(status @ 400..=599) => Err(Error::Upstream {
            status: u16::try_from(status).unwrap_or(502),
            body_excerpt: failed,
        }),
        // No answer from Plex, or one that did not arrive whole.
        _ => Err(Error::Upstream {
            status: 502,
            body_excerpt: failed,
        }),
    }
}
