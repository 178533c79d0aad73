//! plytix-api-key and plytix-api-key-role.

use serde_json::{Map, Value};

use crate::Ctx;

pub async fn create(_ctx: &Ctx, _inputs: &Map<String, Value>) -> anyhow::Result<()> {
    anyhow::bail!("plytix-api-key is not in the floor yet")
}

pub async fn change_role(_ctx: &Ctx, _inputs: &Map<String, Value>) -> anyhow::Result<()> {
    anyhow::bail!("plytix-api-key-role is not in the floor yet")
}
