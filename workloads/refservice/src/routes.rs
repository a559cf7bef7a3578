//! Request routing and the deterministic CPU work of `/work`.

use std::time::Instant;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

/// The version string; deploy-cycle measurements change it to ship a new release.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Largest `n` accepted by `/work`, so one request cannot pin a core for minutes.
pub const MAX_WORK_ROUNDS: u64 = 10_000_000;

pub struct State {
    ready_at: Instant,
}

impl State {
    pub fn new(ready_at: Instant) -> State {
        State { ready_at }
    }
}

pub fn handle<B>(state: &State, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET is served\n".into());
    }
    match request.uri().path() {
        "/health" if Instant::now() >= state.ready_at => {
            reply(StatusCode::OK, "text/plain", "ok\n".into())
        }
        "/health" => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n".into()),
        "/" => reply(
            StatusCode::OK,
            "application/json",
            format!("{{\"service\":\"refservice\",\"version\":\"{VERSION}\"}}\n"),
        ),
        "/alloc" => match query_number(request.uri().query(), "mib", MAX_ALLOC_MIB) {
            Ok(mib) => reply(StatusCode::OK, "application/json", format!("{{\"allocated_mib\":{mib},\"sum\":{}}}\n", touch_memory(mib))),
            Err(message) => reply(StatusCode::BAD_REQUEST, "text/plain", message),
        },
        "/work" => match work_rounds(request.uri().query()) {
            Ok(rounds) => reply(
                StatusCode::OK,
                "application/json",
                format!("{{\"rounds\":{rounds},\"checksum\":\"{}\"}}\n", checksum(rounds)),
            ),
            Err(message) => reply(StatusCode::BAD_REQUEST, "text/plain", message),
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Largest allocation `/alloc` accepts, in MiB.
pub const MAX_ALLOC_MIB: u64 = 4096;

/// Reads the whole number `key` from the query string, at most `max`.
fn query_number(query: Option<&str>, key: &str, max: u64) -> Result<u64, String> {
    let prefix = format!("{key}=");
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix(prefix.as_str()))
        .ok_or_else(|| format!("missing {key}: expected {key}=N\n"))?;
    match value.parse::<u64>() {
        Ok(number) if number <= max => Ok(number),
        _ => Err(format!("invalid {key} {value:?}: expected a whole number from 0 to {max}\n")),
    }
}

/// Allocates and writes `mib` MiB, then frees it: lets fault tests push an instance
/// past its memory limit. Returns a sum so the writes cannot be optimized away.
fn touch_memory(mib: u64) -> u64 {
    let bytes = vec![1u8; (mib as usize) << 20];
    bytes.iter().step_by(4096).map(|&byte| u64::from(byte)).sum()
}

/// Reads `n` from the query string; a missing `n` means one round.
fn work_rounds(query: Option<&str>) -> Result<u64, String> {
    let Some(value) = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("n="))
    else {
        return Ok(1);
    };
    match value.parse::<u64>() {
        Ok(rounds) if rounds <= MAX_WORK_ROUNDS => Ok(rounds),
        _ => Err(format!("invalid n {value:?}: expected a whole number from 0 to {MAX_WORK_ROUNDS}\n")),
    }
}

/// Hashes a 32-byte state `rounds` times with SHA-256, starting from zeros.
pub fn checksum(rounds: u64) -> String {
    let mut digest = [0u8; 32];
    for _ in 0..rounds {
        digest = Sha256::digest(digest).into();
    }
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::time::Duration;

    fn get(state: &State, uri: &str) -> (StatusCode, String) {
        let request = Request::get(uri).body(()).unwrap();
        let response = handle(state, &request);
        let status = response.status();
        let body = block_on(response.into_body().collect()).expect("a Full body cannot fail").to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// `Full` bodies are ready at once, so polling once completes them.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
    }

    #[test]
    fn checksum_matches_sha256_chain() {
        // Zero rounds leave the all-zero state; one round is SHA-256 of 32 zero bytes.
        assert_eq!(checksum(0), "0".repeat(64));
        assert_eq!(
            checksum(1),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn health_waits_for_ready_time() {
        let later = State::new(Instant::now() + Duration::from_secs(3600));
        assert_eq!(get(&later, "/health").0, StatusCode::SERVICE_UNAVAILABLE);
        let ready = State::new(Instant::now());
        assert_eq!(get(&ready, "/health"), (StatusCode::OK, "ok\n".to_string()));
    }

    #[test]
    fn work_returns_checksum() {
        let state = State::new(Instant::now());
        let (status, body) = get(&state, "/work?n=1");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains(&checksum(1)), "body: {body}");
        assert!(body.contains("\"rounds\":1"));
    }

    #[test]
    fn work_rejects_bad_n() {
        let state = State::new(Instant::now());
        assert_eq!(get(&state, "/work?n=abc").0, StatusCode::BAD_REQUEST);
        assert_eq!(get(&state, "/work?n=99999999999").0, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn alloc_touches_memory() {
        let state = State::new(Instant::now());
        let (status, body) = get(&state, "/alloc?mib=2");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"allocated_mib\":2"), "{body}");
        assert!(body.contains("\"sum\":512"), "{body}");
        assert_eq!(get(&state, "/alloc").0, StatusCode::BAD_REQUEST);
        assert_eq!(get(&state, "/alloc?mib=99999").0, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn unknown_path_and_method() {
        let state = State::new(Instant::now());
        assert_eq!(get(&state, "/nope").0, StatusCode::NOT_FOUND);
        let request = Request::post("/").body(()).unwrap();
        assert_eq!(handle(&state, &request).status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
