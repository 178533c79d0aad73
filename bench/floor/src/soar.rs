//! soar-regenerate-api-key.

use serde_json::{Map, Value};

use crate::Ctx;

pub async fn regenerate(_ctx: &Ctx, _inputs: &Map<String, Value>) -> anyhow::Result<()> {
    anyhow::bail!("soar-regenerate-api-key is not in the floor yet")
}
