//! rota-state integration tests: one binary, one module per area.

mod audit;
mod backup;
mod common;
mod corruption;
mod export;
mod inventory;
mod journal;
mod locks;
mod store;
