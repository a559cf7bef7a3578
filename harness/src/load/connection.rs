//! One HTTP/1.1 keep-alive client connection.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONNECTION, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The `GET` request that every worker sends.
#[derive(Debug, Clone)]
pub(super) struct RequestTemplate {
    uri: Uri,
    host: HeaderValue,
    /// Whether to send `Connection: close`, so the server closes after the response.
    close: bool,
}

impl RequestTemplate {
    pub fn new(uri: Uri, target: SocketAddr, close: bool) -> Self {
        let host = HeaderValue::try_from(target.to_string())
            .expect("a socket address contains only visible ASCII characters");
        Self { uri, host, close }
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.uri.clone();
        request.headers_mut().insert(HOST, self.host.clone());
        if self.close {
            request
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        request
    }
}

/// A handshaken HTTP/1.1 connection and the task that drives its socket.
///
/// Dropping it aborts the task, which closes the socket.
pub(super) struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
}

impl Connection {
    /// Opens a TCP connection with `TCP_NODELAY` and runs the HTTP/1 handshake, both
    /// within `timeout`.
    pub async fn open(target: SocketAddr, timeout: Duration) -> io::Result<Self> {
        match tokio::time::timeout(timeout, Self::handshake(target)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TCP connect and HTTP/1 handshake timed out after {timeout:?}"),
            )),
        }
    }

    async fn handshake(target: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        let driver = tokio::spawn(async move {
            // The worker gets the same failure from its request and counts it there.
            if let Err(error) = connection.await {
                tracing::debug!(%error, target_addr = %target, "load connection closed with an error");
            }
        });
        Ok(Self { sender, driver })
    }

    /// Waits until the connection accepts a new request. Fails once the peer or a
    /// previous error has closed it.
    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        self.sender.ready().await
    }

    /// Sends `request` and reads the whole response body, discarding it, and returns
    /// the status after the last body byte arrived.
    pub async fn exchange(&mut self, template: &RequestTemplate) -> Result<StatusCode, hyper::Error> {
        let response = self.sender.send_request(template.request()).await?;
        let status = response.status();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame?;
        }
        Ok(status)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
