//! rota-host integration tests: one binary, a module per area. Real HTTP on
//! loopback servers; real wasm plugins built by build.rs.

mod basics;
mod capture;
mod hostile;
mod http;
mod packaging;
mod support;
