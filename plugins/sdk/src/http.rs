//! HTTP through the host: the only network a plugin has. Secrets go in as
//! handles ([`Request::bearer`], [`Request::basic`], ...) and come out of
//! responses as handles ([`Request::capture_json`], ...).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::rota::plugin::http as wit;
use crate::secrets::Handle;

pub use wit::{HmacAlgorithm, SignatureEncoding};

/// An outgoing request, built up then [`Request::send`]-ed.
#[derive(Debug)]
pub struct Request {
    inner: wit::Request,
}

fn request(method: wit::Method, url: &str) -> Request {
    Request {
        inner: wit::Request {
            method,
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
            inject: Vec::new(),
            capture: Vec::new(),
            timeout_ms: None,
        },
    }
}

pub fn get(url: &str) -> Request {
    request(wit::Method::Get, url)
}
pub fn post(url: &str) -> Request {
    request(wit::Method::Post, url)
}
pub fn put(url: &str) -> Request {
    request(wit::Method::Put, url)
}
pub fn patch(url: &str) -> Request {
    request(wit::Method::Patch, url)
}
pub fn delete(url: &str) -> Request {
    request(wit::Method::Delete, url)
}

impl Request {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.inner.headers.push(wit::Header {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// A JSON body. Secret handles inside it (`{"$secret": ...}`) are sent as
    /// handles unless injected with [`Request::json_secret`].
    pub fn json<T: Serialize>(mut self, body: &T) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Internal(e.to_string()))?;
        self.inner.body = Some(bytes);
        Ok(self.header("content-type", "application/json"))
    }

    pub fn body(mut self, bytes: Vec<u8>) -> Self {
        self.inner.body = Some(bytes);
        self
    }

    /// `Authorization: Bearer <secret>`.
    pub fn bearer(mut self, secret: &Handle) -> Self {
        self.inner
            .inject
            .push(wit::Injection::Bearer(secret.handle.clone()));
        self
    }

    /// HTTP Basic with a literal user id.
    pub fn basic(mut self, id: &str, secret: &Handle) -> Self {
        self.inner.inject.push(wit::Injection::Basic(wit::BasicAuth {
            id: wit::BasicId::Literal(id.to_owned()),
            secret: secret.handle.clone(),
        }));
        self
    }

    /// HTTP Basic where the user id is a secret too.
    pub fn basic_secret_id(mut self, id: &Handle, secret: &Handle) -> Self {
        self.inner.inject.push(wit::Injection::Basic(wit::BasicAuth {
            id: wit::BasicId::Secret(id.handle.clone()),
            secret: secret.handle.clone(),
        }));
        self
    }

    /// A named header carrying `prefix` + the secret.
    pub fn secret_header(mut self, name: &str, prefix: &str, secret: &Handle) -> Self {
        self.inner.inject.push(wit::Injection::Header(wit::NamedHeader {
            name: name.to_owned(),
            prefix: prefix.to_owned(),
            value: secret.handle.clone(),
        }));
        self
    }

    /// Replace `{"$secret": <handle>}` in the JSON body by the value.
    pub fn json_secret(mut self, secret: &Handle) -> Self {
        self.inner
            .inject
            .push(wit::Injection::JsonBody(secret.handle.clone()));
        self
    }

    /// A header the host computes with an HMAC keyed by `key` (see the WIT
    /// `signed-header` for the placeholders).
    #[allow(clippy::too_many_arguments)]
    pub fn signed_header(
        mut self,
        name: &str,
        algorithm: HmacAlgorithm,
        key: &Handle,
        message: &str,
        encoding: SignatureEncoding,
        value: &str,
        secrets: &[&Handle],
    ) -> Self {
        self.inner.inject.push(wit::Injection::Signed(wit::SignedHeader {
            name: name.to_owned(),
            algorithm,
            key: key.handle.clone(),
            message: message.to_owned(),
            encoding,
            value: value.to_owned(),
            secrets: secrets.iter().map(|h| h.handle.clone()).collect(),
        }));
        self
    }

    /// Capture the string at JSON `pointer` of the response body into the
    /// step's declared capture `name`.
    pub fn capture_json(mut self, pointer: &str, name: &str) -> Self {
        self.inner.capture.push(wit::Capture {
            source: wit::CaptureSource::JsonPointer(pointer.to_owned()),
            into: wit::CaptureInto::Step(name.to_owned()),
        });
        self
    }

    /// Capture a response header into the step's declared capture `name`.
    pub fn capture_header(mut self, header: &str, name: &str) -> Self {
        self.inner.capture.push(wit::Capture {
            source: wit::CaptureSource::Header(header.to_owned()),
            into: wit::CaptureInto::Step(name.to_owned()),
        });
        self
    }

    /// Capture a run-only token (never stored, bound to this plugin).
    pub fn capture_ephemeral(mut self, pointer: &str, label: &str) -> Self {
        self.inner.capture.push(wit::Capture {
            source: wit::CaptureSource::JsonPointer(pointer.to_owned()),
            into: wit::CaptureInto::Ephemeral(label.to_owned()),
        });
        self
    }

    /// Capture a response header as a run-only secret (never stored, bound
    /// to this plugin), e.g. a session cookie from `Set-Cookie` (the host
    /// keeps its `name=value` pair, ready to send back as `Cookie`).
    pub fn capture_header_ephemeral(mut self, header: &str, label: &str) -> Self {
        self.inner.capture.push(wit::Capture {
            source: wit::CaptureSource::Header(header.to_owned()),
            into: wit::CaptureInto::Ephemeral(label.to_owned()),
        });
        self
    }

    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.inner.timeout_ms = Some(ms);
        self
    }

    pub fn send(self) -> Result<Response, Error> {
        match wit::send(&self.inner) {
            Ok(r) => Ok(Response { inner: r }),
            Err(wit::HttpError::Denied(m)) => Err(Error::Denied(m)),
            Err(wit::HttpError::Invalid(m)) => Err(Error::InvalidInput(m)),
            // No answer is a passing failure the executor may retry (after
            // reconciling a changing call): reported like a gateway would.
            Err(wit::HttpError::Transport(m)) => Err(Error::Upstream {
                status: 502,
                body_excerpt: format!("no answer: {m}"),
            }),
            Err(wit::HttpError::Timeout(m)) => Err(Error::Upstream {
                status: 504,
                body_excerpt: format!("no answer in time: {m}"),
            }),
            Err(wit::HttpError::TooLarge(m)) | Err(wit::HttpError::CaptureFailed(m)) => {
                Err(Error::Internal(m))
            }
        }
    }
}

/// A response, with captured fields removed.
#[derive(Debug)]
pub struct Response {
    inner: wit::Response,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.inner.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn body(&self) -> &[u8] {
        &self.inner.body
    }

    /// The handle a capture produced.
    pub fn captured(&self, name: &str) -> Option<Handle> {
        self.inner
            .captured
            .iter()
            .find(|c| c.name == name)
            .map(|c| Handle {
                handle: c.handle.clone(),
            })
    }

    /// The vendor's `Retry-After` (in seconds) as milliseconds, if any.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000))
    }

    /// The typed error for this (non-2xx) answer, with `text` (the vendor's
    /// own message, put in context) instead of the raw body.
    pub fn error_with(&self, text: &str) -> Error {
        Error::from_status(self.inner.status, self.retry_after_ms(), text.as_bytes())
    }

    /// Fails with the typed error for any status outside 2xx.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if (200..300).contains(&self.inner.status) {
            return Ok(self);
        }
        Err(Error::from_status(
            self.inner.status,
            self.retry_after_ms(),
            &self.inner.body,
        ))
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.inner.body)
            .map_err(|e| Error::Internal(format!("vendor answered with unexpected JSON: {e}")))
    }
}
