//! End-to-end tests: the real `rota` binary in a temp dir.
