//! Probing a service behind QEMU's user-mode (slirp) host forward.
//!
//! The forward accepts every host connection at once, even before the guest has a
//! network, then keeps it open while its SYNs to the guest go unanswered, retransmitting
//! them with a growing backoff. One attempt at a time, each waiting for its reply, would
//! see the service seconds after it starts listening. So attempts overlap, each gets
//! [`ATTEMPT_TIMEOUT`], and the first 200 wins.
//!
//! While no attempt is pending, which means the guest replied to the last one at once
//! (a reset, or the reply), a new attempt starts every [`ATTEMPT_SPACING`]. While some
//! are pending, as they are while the guest has no network, one starts every
//! `ATTEMPT_TIMEOUT / MAX_ATTEMPTS_IN_FLIGHT` (62.5 ms), so the pending attempts stay
//! evenly spread and one of them is always new. QEMU's own I/O thread runs the user-mode
//! network, so every attempt is CPU time charged to the VM being measured, which is why
//! the rate stays this low.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::{sleep_until, timeout, Instant};

use crate::measure::boot::{health_status, Probe};

/// Minimum time between two attempts. Every attempt is a new connection that QEMU's
/// user-mode network and the guest both handle, so the scenario's 1 ms poll interval
/// would load the VM being measured with a thousand connections a second.
/// NOTE: so the first 200 is found to within about 10 ms once the guest has its network,
/// and 62.5 ms while its network comes up, not to the scenario's interval.
pub const ATTEMPT_SPACING: Duration = Duration::from_millis(10);
/// Time one attempt gets for its whole exchange. It is generous because an emulated guest
/// that is busy booting replies slowly.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Maximum number of attempts waiting at once.
pub const MAX_ATTEMPTS_IN_FLIGHT: usize = 16;

/// Polls `GET /health` on `address` until it returns 200 and returns the time since
/// `probe.origin`. Fails with the last error when `probe.deadline` passes.
pub async fn first_200(address: SocketAddr, probe: &Probe) -> Result<Duration, String> {
    let quick_spacing = probe.interval.max(ATTEMPT_SPACING);
    let pending_spacing = quick_spacing.max(ATTEMPT_TIMEOUT / MAX_ATTEMPTS_IN_FLIGHT as u32);
    let mut attempts = FuturesUnordered::new();
    let mut last_start: Option<Instant> = None;
    let mut last_error = String::from("none");
    loop {
        let spacing = if attempts.is_empty() { quick_spacing } else { pending_spacing };
        let next_start = last_start.map_or_else(Instant::now, |started| started + spacing);
        tokio::select! {
            _ = sleep_until(next_start), if attempts.len() < MAX_ATTEMPTS_IN_FLIGHT => {
                attempts.push(timeout(ATTEMPT_TIMEOUT, health_status(address)));
                last_start = Some(Instant::now());
            }
            Some(outcome) = attempts.next() => match outcome {
                Ok(Ok(200)) => return Ok(probe.origin.elapsed()),
                Ok(Ok(status)) => last_error = format!("status {status}"),
                Ok(Err(error)) => last_error = error,
                Err(_) => last_error = format!("no reply within {ATTEMPT_TIMEOUT:?}"),
            },
            _ = sleep_until(probe.deadline) => {
                let limit = probe.deadline - probe.origin;
                return Err(format!(
                    "first 200 from GET /health at {address} did not happen within {limit:?} (last error: {last_error})"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn probe(limit: Duration) -> Probe {
        let origin = Instant::now();
        Probe { origin, interval: Duration::from_millis(1), deadline: origin + limit }
    }

    /// Accepts every connection. Before `ready_after` it keeps each open without a reply,
    /// as the forward does while the guest has no network, and after it replies 200.
    async fn forward_like_server(ready_after: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let ready_at = Instant::now() + ready_after;
        tokio::spawn(async move {
            let mut held_open = Vec::new();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                if Instant::now() < ready_at {
                    held_open.push(stream);
                    continue;
                }
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request).await;
                    let response = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn held_connections_do_not_delay_200() {
        let ready_after = Duration::from_millis(300);
        let address = forward_like_server(ready_after).await;
        let elapsed = first_200(address, &probe(Duration::from_secs(5))).await.unwrap();
        assert!(elapsed >= ready_after, "{elapsed:?}");
        // One attempt at a time would wait ATTEMPT_TIMEOUT for the held connection first.
        assert!(elapsed < ready_after + Duration::from_millis(200), "{elapsed:?}");
    }

    #[tokio::test]
    async fn full_cap_still_finds_200() {
        // Long enough for the held attempts to fill the cap and start timing out.
        let ready_after = ATTEMPT_TIMEOUT + Duration::from_millis(500);
        let address = forward_like_server(ready_after).await;
        let elapsed = first_200(address, &probe(Duration::from_secs(10))).await.unwrap();
        assert!(elapsed >= ready_after, "{elapsed:?}");
        // While attempts are held, a new one starts every ATTEMPT_TIMEOUT / MAX_ATTEMPTS_IN_FLIGHT.
        let slot = ATTEMPT_TIMEOUT / MAX_ATTEMPTS_IN_FLIGHT as u32;
        assert!(elapsed < ready_after + slot + Duration::from_millis(200), "{elapsed:?}");
    }

    #[tokio::test]
    async fn reset_connections_polled_often() {
        // Until `ready_after`, every connection is closed at once, as the forward does when
        // the guest resets it, and the server counts them.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let ready_after = Duration::from_millis(500);
        let ready_at = Instant::now() + ready_after;
        let (count_sender, count) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                if Instant::now() < ready_at {
                    count_sender.send_modify(|count| *count += 1);
                    continue;
                }
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        first_200(address, &probe(Duration::from_secs(5))).await.unwrap();
        let attempts = *count.borrow();
        // 500 ms at ATTEMPT_SPACING is 50 attempts, and at the pending spacing it would be 8.
        assert!(attempts >= 20, "only {attempts} attempts before the service was ready");
    }

    #[tokio::test]
    async fn silent_forward_times_out() {
        let address = forward_like_server(Duration::from_secs(3600)).await;
        let error = first_200(address, &probe(Duration::from_millis(1500))).await.unwrap_err();
        assert!(error.contains("did not happen within"), "{error}");
        assert!(error.contains("no reply within"), "{error}");
    }

    #[tokio::test]
    async fn refused_connections_name_last_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let error = first_200(address, &probe(Duration::from_millis(100))).await.unwrap_err();
        assert!(error.contains("connect"), "{error}");
    }
}
