//! Forwarding one request from the gateway to a sandbox over reused HTTP/1.1 connections.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use hyper::http::request::Parts;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Connection-specific headers that a proxy must not forward, besides `Connection`,
/// `Transfer-Encoding` and `Upgrade` (RFC 9110, section 7.6.1).
const HOP_BY_HOP: [&str; 3] = ["keep-alive", "proxy-connection", "te"];

type Sender = SendRequest<Full<Bytes>>;

/// The keep-alive connections from the gateway to one sandbox.
pub struct Upstream {
    address: SocketAddr,
    idle: Mutex<Vec<Sender>>,
    /// Maximum idle connections kept, the instance's concurrency.
    max_idle: usize,
}

impl Upstream {
    pub fn new(address: SocketAddr, max_idle: usize) -> Upstream {
        Upstream { address, idle: Mutex::new(Vec::new()), max_idle }
    }

    /// Closes the idle connections, so that a stopping sandbox has no open client
    /// connection to wait for.
    pub fn close_idle(&self) {
        self.idle.lock().expect("no code panics while holding the lock").clear();
    }

    /// Sends the request to the sandbox and returns its whole response, within `limit`.
    /// A reused connection that the sandbox closed while idle is replaced by a new one
    /// once, because hyper reports it before any byte of the request is sent.
    pub async fn send(&self, parts: &Parts, body: Bytes, limit: Duration) -> Result<Response<Full<Bytes>>, String> {
        let exchange = async {
            if let Some(sender) = self.take_idle() {
                match self.exchange(sender, upstream_request(parts, body.clone(), self.address)?).await {
                    Ok(response) => return Ok(response),
                    Err(Failure::NotSent(error)) => tracing::debug!(%error, "reused connection was closed, reconnecting"),
                    Err(Failure::Failed(error)) => return Err(error),
                }
            }
            let sender = self.connect().await?;
            match self.exchange(sender, upstream_request(parts, body, self.address)?).await {
                Ok(response) => Ok(response),
                Err(Failure::NotSent(error) | Failure::Failed(error)) => Err(error),
            }
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("the sandbox at {} did not answer within {limit:?}", self.address)),
        }
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().expect("no code panics while holding the lock");
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: Sender) {
        let mut idle = self.idle.lock().expect("no code panics while holding the lock");
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<Sender, String> {
        let stream = TcpStream::connect(self.address)
            .await
            .map_err(|error| format!("cannot connect to the sandbox at {}: {error}", self.address))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("HTTP handshake with the sandbox at {} failed: {error}", self.address))?;
        tokio::spawn(async move {
            // The connection ends when the sandbox closes it or every sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }

    async fn exchange(&self, mut sender: Sender, request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Failure> {
        if let Err(error) = sender.ready().await {
            return Err(Failure::NotSent(error.to_string()));
        }
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(error) if error.is_canceled() => return Err(Failure::NotSent(error.to_string())),
            Err(error) => return Err(Failure::Failed(format!("request to the sandbox at {} failed: {error}", self.address))),
        };
        let (mut parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|error| Failure::Failed(format!("response body from the sandbox at {} failed: {error}", self.address)))?
            .to_bytes();
        strip_connection_headers(&mut parts.headers);
        parts.headers.remove(CONTENT_LENGTH);
        self.put_idle(sender);
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}

enum Failure {
    /// The request never left, so it is safe to send it again.
    NotSent(String),
    Failed(String),
}

/// Copies the client's request for the sandbox: same method, path, query, headers and
/// body, with `Host` naming the sandbox and no connection-specific headers.
fn upstream_request(parts: &Parts, body: Bytes, address: SocketAddr) -> Result<Request<Full<Bytes>>, String> {
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(path)
        .body(Full::new(body))
        .map_err(|error| format!("cannot build the request for the sandbox: {error}"))?;
    let headers = request.headers_mut();
    for (name, value) in &parts.headers {
        headers.append(name.clone(), value.clone());
    }
    strip_connection_headers(headers);
    headers.remove(CONTENT_LENGTH);
    headers.insert(
        HOST,
        address.to_string().parse().map_err(|_| format!("{address} is not a valid Host header"))?,
    );
    Ok(request)
}

/// Removes hop-by-hop headers, including those that the `Connection` header names.
fn strip_connection_headers(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, "keep-alive, x-trace".parse().unwrap());
        headers.insert("x-trace", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("accept", "*/*".parse().unwrap());
        strip_connection_headers(&mut headers);
        assert!(headers.get("x-trace").is_none(), "named by Connection");
        assert!(headers.get(CONNECTION).is_none());
        assert!(headers.get("keep-alive").is_none());
        assert_eq!(headers.get("accept").unwrap(), "*/*");
    }

    #[test]
    fn upstream_request_keeps_path_and_query() {
        let (parts, ()) = Request::get("http://gateway/work?n=5").header(HOST, "gateway").body(()).unwrap().into_parts();
        let address: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let request = upstream_request(&parts, Bytes::new(), address).unwrap();
        assert_eq!(request.uri(), "/work?n=5");
        assert_eq!(request.headers().get(HOST).unwrap(), "127.0.0.1:4000");
    }
}
