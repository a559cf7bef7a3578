//! The boot probe: polls an instance until it accepts TCP and until `GET /health`
//! returns 200, timing both from the harness's first start call.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{what} at {address} did not happen within {limit:?} (last error: {last_error})")]
    TimedOut { what: &'static str, address: SocketAddr, limit: Duration, last_error: String },
}

/// Where and how often to probe, and when to give up.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// The harness's first start call, the zero of every phase.
    pub origin: Instant,
    pub interval: Duration,
    pub deadline: Instant,
}

impl Probe {
    /// Polls `address` with TCP connects until one succeeds; returns the time since origin.
    pub async fn first_accept(&self, address: SocketAddr) -> Result<Duration, ProbeError> {
        let mut last_error = String::from("none");
        loop {
            let attempt = Instant::now();
            match timeout_at(self.deadline, TcpStream::connect(address)).await {
                Ok(Ok(_)) => return Ok(Instant::now() - self.origin),
                Ok(Err(error)) => last_error = error.to_string(),
                Err(_) => return Err(self.timed_out("first TCP accept", address, last_error)),
            }
            self.pause(attempt, "first TCP accept", address, &last_error).await?;
        }
    }

    /// Polls `GET /health` on `address` until it returns 200; returns the time since origin.
    pub async fn first_200(&self, address: SocketAddr) -> Result<Duration, ProbeError> {
        let mut last_error = String::from("none");
        loop {
            let attempt = Instant::now();
            match timeout_at(self.deadline, health_status(address)).await {
                Ok(Ok(200)) => return Ok(Instant::now() - self.origin),
                Ok(Ok(status)) => last_error = format!("status {status}"),
                Ok(Err(error)) => last_error = error,
                Err(_) => return Err(self.timed_out("first 200 from GET /health", address, last_error)),
            }
            self.pause(attempt, "first 200 from GET /health", address, &last_error).await?;
        }
    }

    /// Sleeps out the rest of the interval that began at `attempt`.
    async fn pause(
        &self,
        attempt: Instant,
        what: &'static str,
        address: SocketAddr,
        last_error: &str,
    ) -> Result<(), ProbeError> {
        let next = attempt + self.interval;
        if next >= self.deadline {
            return Err(self.timed_out(what, address, last_error.to_string()));
        }
        tokio::time::sleep_until(next).await;
        Ok(())
    }

    fn timed_out(&self, what: &'static str, address: SocketAddr, last_error: String) -> ProbeError {
        ProbeError::TimedOut { what, address, limit: self.deadline - self.origin, last_error }
    }
}

/// Sends one `GET /health` on a new connection and returns the status code.
pub async fn health_status(address: SocketAddr) -> Result<u16, String> {
    let stream = TcpStream::connect(address).await.map_err(|error| format!("connect: {error}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/health")
        .header(hyper::header::HOST, address.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|error| error.to_string())?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|error| format!("request: {error}"))?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(|error| format!("body: {error}"))?;
        Ok(status)
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(limit: Duration) -> Probe {
        let origin = Instant::now();
        Probe { origin, interval: Duration::from_millis(1), deadline: origin + limit }
    }

    #[tokio::test]
    async fn no_listener_times_out_with_last_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let error = probe(Duration::from_millis(50)).first_200(address).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("GET /health"), "{message}");
        assert!(message.contains("connect"), "{message}");
    }

    #[tokio::test]
    async fn accept_found_once_listening() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let elapsed = probe(Duration::from_secs(5)).first_accept(address).await.unwrap();
        assert!(elapsed < Duration::from_secs(5));
    }
}
