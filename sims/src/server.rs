//! Listeners: one accept loop per router, serving HTTP/1 with hyper.
//!
//! Design decision: we run our own accept loop instead of `axum::serve` so a
//! fault can close a connection without any response: every request carries
//! a [`ConnKill`] for its connection, and the loop drops the connection when
//! it fires. The peer address is passed the same way ([`PeerAddr`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// Closes the connection a request came on.
#[derive(Clone, Debug)]
pub(crate) struct ConnKill(Arc<Notify>);

impl ConnKill {
    pub(crate) fn kill(&self) {
        self.0.notify_one();
    }
}

/// The TCP peer of a request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

/// Binds 127.0.0.1 on an ephemeral port.
pub(crate) async fn bind() -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

pub(crate) fn spawn(
    listener: TcpListener,
    router: Router,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shutdown.clone();
        loop {
            let accepted = tokio::select! {
                _ = stop.changed() => break,
                a = listener.accept() => a,
            };
            let Ok((stream, peer)) = accepted else {
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let router = router.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let kill = ConnKill(Arc::new(Notify::new()));
                let k = kill.clone();
                let svc =
                    hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(k.clone());
                        req.extensions_mut().insert(PeerAddr(peer));
                        router.clone().oneshot(req.map(axum::body::Body::new))
                    });
                let conn =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    () = kill.0.notified() => {}
                    _ = stop.changed() => {}
                }
            });
        }
    })
}
