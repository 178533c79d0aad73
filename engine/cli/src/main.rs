//! The `rota` binary: clap parses, one call runs, the error chain is printed once.
fn main() {
    println!("rota");
}
