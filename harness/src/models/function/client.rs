//! A minimal HTTP/1.1 client for the load patterns and the function measurements: one
//! `GET` on a new connection, or a series of `GET`s on one kept-alive connection.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::gateway::START_HEADER;

/// Whether the gateway served a request from a new or a warm instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Cold,
    Warm,
}

/// A complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientResponse {
    pub status: u16,
    /// From the gateway's start header; `None` when the server is not a gateway.
    pub start: Option<Start>,
    /// From the send to the last response byte.
    pub elapsed: Duration,
}

/// Failure of a request that got no complete response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {address} failed: {message}")]
    Connect { address: SocketAddr, message: String },
    #[error("no complete response from {address} within {limit:?}")]
    Timeout { address: SocketAddr, limit: Duration },
    #[error("request to {address} failed: {message}")]
    Io { address: SocketAddr, message: String },
}

impl ClientError {
    /// Short name of the error kind, as used in sample phases.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Connect { .. } => "connect",
            ClientError::Timeout { .. } => "timeout",
            ClientError::Io { .. } => "io",
        }
    }
}

/// Sends `GET path` on a new connection and reads the whole response within `limit`,
/// connect included.
pub async fn get_once(address: SocketAddr, path: &str, limit: Duration) -> Result<ClientResponse, ClientError> {
    let started = Instant::now();
    match tokio::time::timeout(limit, async {
        let mut sender = connect(address).await?;
        send(&mut sender, address, path).await
    })
    .await
    {
        Ok(Ok((status, start))) => Ok(ClientResponse { status, start, elapsed: started.elapsed() }),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ClientError::Timeout { address, limit }),
    }
}

/// One kept-alive connection for sequential requests. It reconnects when the server
/// closed the connection.
pub struct KeepAlive {
    address: SocketAddr,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl KeepAlive {
    pub fn new(address: SocketAddr) -> KeepAlive {
        KeepAlive { address, sender: None }
    }

    /// Sends `GET path` and reads the whole response within `limit`. The time counts from
    /// the send, so it excludes the connect when the connection is reused.
    pub async fn get(&mut self, path: &str, limit: Duration) -> Result<ClientResponse, ClientError> {
        let address = self.address;
        let reusable = self.sender.take().filter(|sender| !sender.is_closed());
        let mut sender = match reusable {
            Some(sender) => sender,
            None => tokio::time::timeout(limit, connect(address))
                .await
                .map_err(|_| ClientError::Timeout { address, limit })??,
        };
        let started = Instant::now();
        let (status, start) = tokio::time::timeout(limit, send(&mut sender, address, path))
            .await
            .map_err(|_| ClientError::Timeout { address, limit })??;
        let elapsed = started.elapsed();
        self.sender = Some(sender);
        Ok(ClientResponse { status, start, elapsed })
    }
}

async fn connect(address: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, ClientError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|error| ClientError::Connect { address, message: error.to_string() })?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ClientError::Connect { address, message: format!("handshake: {error}") })?;
    tokio::spawn(async move {
        // Ends when the server closes the connection or the sender is dropped.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut SendRequest<Empty<Bytes>>,
    address: SocketAddr,
    path: &str,
) -> Result<(u16, Option<Start>), ClientError> {
    let io = |message: String| ClientError::Io { address, message };
    sender.ready().await.map_err(|error| io(error.to_string()))?;
    let request = hyper::Request::get(path)
        .header(HOST, address.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|error| io(format!("invalid request for {path}: {error}")))?;
    let response = sender.send_request(request).await.map_err(|error| io(error.to_string()))?;
    let status = response.status().as_u16();
    let start = match response.headers().get(START_HEADER).and_then(|value| value.to_str().ok()) {
        Some("cold") => Some(Start::Cold),
        Some("warm") => Some(Start::Warm),
        _ => None,
    };
    response
        .into_body()
        .collect()
        .await
        .map_err(|error| io(format!("body: {error}")))?;
    Ok((status, start))
}
