//! The WebAssembly plugin host (see issue: plugin host).
