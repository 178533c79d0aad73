//! Guest stdout/stderr: kept in memory per call (up to a cap, the rest is
//! dropped, never an error the guest sees) and sent to tracing, redacted,
//! under the plugin's name when the call ends.
//!
//! Design decision: a chatty plugin must not trap because it printed too
//! much, and must not be able to fill the host's memory either.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Clone)]
pub(crate) struct GuestOutput {
    buf: Arc<Mutex<(Vec<u8>, bool)>>,
    cap: usize,
}

impl GuestOutput {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            buf: Arc::new(Mutex::new((Vec::new(), false))),
            cap,
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut g = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.cap.saturating_sub(g.0.len());
        if bytes.len() > room {
            g.1 = true;
        }
        g.0.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// What the guest wrote, and whether some was dropped.
    pub(crate) fn contents(&self) -> (String, bool) {
        let g = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        (String::from_utf8_lossy(&g.0).into_owned(), g.1)
    }
}

struct Stream(GuestOutput);

impl OutputStream for Stream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl Pollable for Stream {
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async {})
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(Stream(self.clone()))
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
