//! Reading a secret value for `rota secrets put`: from stdin or a no-echo
//! prompt, never from argv or the environment.
//!
//! Design decision: exactly one trailing newline is stripped (what `echo` and
//! a terminal add); anything else is the value, byte for byte.

use std::io::Read;

use rota_core::Secret;
use zeroize::Zeroizing;

use crate::StateError;

/// Reads the whole of `input` (e.g. stdin) as the value.
pub fn read_secret_value(input: &mut dyn Read) -> Result<Secret, StateError> {
    let mut raw = Zeroizing::new(Vec::new());
    input
        .read_to_end(&mut raw)
        .map_err(|e| StateError::io("cannot read the secret value from", "stdin", e))?;
    let mut text = Zeroizing::new(
        String::from_utf8(raw.to_vec())
            .map_err(|_| StateError::Invalid("the secret value is not UTF-8 text".to_owned()))?,
    );
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(StateError::Invalid("the secret value is empty".to_owned()));
    }
    Ok(Secret::new(text.as_str()))
}

/// Asks on the terminal without echo.
pub fn prompt_secret_value(name: &str) -> Result<Secret, StateError> {
    let typed = Zeroizing::new(
        rpassword::prompt_password(format!("Value for {name}: "))
            .map_err(|e| StateError::io("cannot read the secret value from", "the terminal", e))?,
    );
    if typed.is_empty() {
        return Err(StateError::Invalid("the secret value is empty".to_owned()));
    }
    Ok(Secret::new(typed.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_stripped() -> Result<(), StateError> {
        let v = read_secret_value(&mut "a b\n\n".as_bytes())?;
        assert_eq!(v.expose(), "a b\n");
        let v = read_secret_value(&mut "x\r\n".as_bytes())?;
        assert_eq!(v.expose(), "x");
        assert!(read_secret_value(&mut "\n".as_bytes()).is_err());
        Ok(())
    }
}
