//! A minimal HTTP/1.1 client connection for the load generator's hot path.
//!
//! The generator sends one fixed `GET` request over and over, so it writes bytes built
//! once per run and parses responses in place with `httparse`, the parser hyper uses.
//! All socket I/O happens in the worker's own task. A hyper client connection instead
//! runs a second task per connection and passes every request and response between the
//! two tasks, so each request costs two task wake-ups instead of one. The client sends
//! no request body and never pipelines, so it supports only what responses to such
//! requests need: `Content-Length`, chunked and close-delimited bodies, interim 1xx
//! responses, and `Connection: close`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::{StatusCode, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Initial read buffer per connection. A response head larger than this grows it.
const BUFFER_CAPACITY: usize = 8 * 1024;
/// Maximum size of a response head, as hyper's default limit.
const MAX_HEAD_BYTES: usize = 400 * 1024;
/// Maximum number of header fields in a response head.
const MAX_HEADERS: usize = 100;

/// The serialized `GET` request that every worker sends.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    bytes: Bytes,
}

impl RequestTemplate {
    /// Builds `GET <path and query of uri> HTTP/1.1` with a `Host` header naming
    /// `target`, and `Connection: close` if `close` is set, so that the server closes
    /// the connection after its response.
    pub fn new(uri: &Uri, target: SocketAddr, close: bool) -> Self {
        let path = uri.path_and_query().map_or("/", |path| path.as_str());
        let connection = if close { "Connection: close\r\n" } else { "" };
        let text = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\n{connection}\r\n");
        Self {
            bytes: Bytes::from(text),
        }
    }

    /// Returns the request as sent on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reason why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// A connection that had already carried a response failed or was closed before
    /// any byte of the next response arrived. This is how a server's close of an idle
    /// keep-alive connection shows, so the request can be sent again on a new one.
    Stale(io::Error),
    /// The connection failed, or the response is not valid HTTP/1.1.
    Io(io::Error),
}

impl std::error::Error for ExchangeError {}

impl fmt::Display for ExchangeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stale(error) => write!(formatter, "reused connection closed before the response: {error}"),
            Self::Io(error) => error.fmt(formatter),
        }
    }
}

/// One TCP connection to the target and its read buffer.
pub struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    /// Whether another request may be sent: false after `Connection: close`, an HTTP/1.0
    /// response without keep-alive, a close-delimited body, or a failed exchange.
    reusable: bool,
    /// Whether a response has arrived on this connection.
    used: bool,
}

impl Connection {
    /// Opens a TCP connection with `TCP_NODELAY` within `timeout`.
    pub async fn open(target: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TCP connect timed out after {timeout:?}"),
                ))
            }
        };
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: BytesMut::with_capacity(BUFFER_CAPACITY),
            reusable: true,
            used: false,
        })
    }

    /// Returns whether the connection can carry another request.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Sends `request` and reads the whole response, discarding its body. Returns the
    /// final status after the last body byte arrived.
    pub async fn exchange(&mut self, request: &RequestTemplate) -> Result<StatusCode, ExchangeError> {
        // Until the exchange completes, the connection's state is unknown.
        self.reusable = false;
        let stale_possible = self.used;
        if let Err(error) = self.stream.write_all(request.as_bytes()).await {
            return Err(if stale_possible {
                ExchangeError::Stale(error)
            } else {
                ExchangeError::Io(error)
            });
        }

        let head = match self.read_head().await {
            Ok(head) => head,
            Err(error) if stale_possible && self.buffer.is_empty() => return Err(ExchangeError::Stale(error)),
            Err(error) => return Err(ExchangeError::Io(error)),
        };
        self.read_body(head.body).await.map_err(ExchangeError::Io)?;

        self.used = true;
        // Left-over bytes would be an unrequested response, so the connection is done.
        self.reusable = head.keep_alive && head.body != Body::UntilClose && self.buffer.is_empty();
        Ok(head.status)
    }

    /// Reads response heads until a final one (not 1xx) arrives and consumes it from
    /// the buffer.
    async fn read_head(&mut self) -> io::Result<Head> {
        loop {
            match parse_head(&self.buffer)? {
                Some((length, head)) => {
                    self.buffer.advance(length);
                    if head.status.is_informational() {
                        continue;
                    }
                    return Ok(head);
                }
                None if self.buffer.len() >= MAX_HEAD_BYTES => {
                    return Err(invalid(format!("response head exceeds {MAX_HEAD_BYTES} bytes")))
                }
                None => self.fill("the response head was complete").await?,
            }
        }
    }

    /// Reads and discards a body framed as `body`.
    async fn read_body(&mut self, body: Body) -> io::Result<()> {
        match body {
            Body::Empty => Ok(()),
            Body::Length(length) => self.skip(length).await,
            Body::Chunked => self.skip_chunks().await,
            Body::UntilClose => loop {
                self.buffer.clear();
                if self.stream.read_buf(&mut self.buffer).await? == 0 {
                    self.buffer.clear();
                    return Ok(());
                }
            },
        }
    }

    /// Discards `length` bytes of the stream, buffered ones first.
    async fn skip(&mut self, mut length: u64) -> io::Result<()> {
        loop {
            let buffered = usize::try_from(length).map_or(self.buffer.len(), |length| length.min(self.buffer.len()));
            self.buffer.advance(buffered);
            length -= buffered as u64;
            if length == 0 {
                return Ok(());
            }
            self.fill("the response body was complete").await?;
        }
    }

    /// Discards a chunked body, its trailer fields included.
    async fn skip_chunks(&mut self) -> io::Result<()> {
        loop {
            let (consumed, size) = loop {
                match httparse::parse_chunk_size(&self.buffer) {
                    Ok(httparse::Status::Complete(parsed)) => break parsed,
                    Ok(httparse::Status::Partial) => self.fill("the chunk size was complete").await?,
                    Err(httparse::InvalidChunkSize) => return Err(invalid("invalid chunk size line".to_owned())),
                }
            };
            self.buffer.advance(consumed);
            if size == 0 {
                return self.skip_trailers().await;
            }
            self.skip(size).await?;
            // Each chunk's data ends with CRLF.
            while self.buffer.len() < 2 {
                self.fill("the chunk was complete").await?;
            }
            if &self.buffer[..2] != b"\r\n" {
                return Err(invalid("chunk data not followed by CRLF".to_owned()));
            }
            self.buffer.advance(2);
        }
    }

    async fn skip_trailers(&mut self) -> io::Result<()> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(&self.buffer, &mut headers) {
                Ok(httparse::Status::Complete((length, _))) => {
                    self.buffer.advance(length);
                    return Ok(());
                }
                Ok(httparse::Status::Partial) => self.fill("the trailer fields were complete").await?,
                Err(error) => return Err(invalid(format!("invalid trailer fields: {error}"))),
            }
        }
    }

    /// Reads more bytes into the buffer. Fails if the peer closed the connection before
    /// `expected` happened.
    async fn fill(&mut self, expected: &str) -> io::Result<()> {
        if self.buffer.is_empty() {
            // Reuses the whole allocation instead of growing behind consumed bytes.
            self.buffer.clear();
        }
        self.buffer.reserve(BUFFER_CAPACITY / 2);
        if self.stream.read_buf(&mut self.buffer).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed before {expected}"),
            ));
        }
        Ok(())
    }
}

/// Framing of a response body (RFC 9112, section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The parts of a response head that the client needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: StatusCode,
    body: Body,
    keep_alive: bool,
}

/// Parses a response head at the start of `buffer`. Returns its length and content, or
/// `None` if more bytes are needed.
fn parse_head(buffer: &[u8]) -> io::Result<Option<(usize, Head)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(invalid(format!("invalid response head: {error}"))),
    };
    let code = response.code.expect("a complete response head has a status code");
    let status = StatusCode::from_u16(code).map_err(|_| invalid(format!("invalid response status {code}")))?;
    // HTTP/1.1 keeps the connection open by default, HTTP/1.0 closes it.
    let mut keep_alive = response.version == Some(1);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;

    for header in response.headers.iter() {
        let value =
            std::str::from_utf8(header.value).map_err(|_| invalid(format!("header {} is not UTF-8", header.name)))?;
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed: u64 = value
                .trim()
                .parse()
                .map_err(|_| invalid(format!("invalid Content-Length {value:?}")))?;
            if content_length.is_some_and(|earlier| earlier != parsed) {
                return Err(invalid("conflicting Content-Length headers".to_owned()));
            }
            content_length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a final `chunked` coding delimits the body; any other coding makes
            // the body last until the connection closes.
            let last = value.rsplit(',').next().unwrap_or("").trim();
            chunked = last.eq_ignore_ascii_case("chunked");
            other_coding = !chunked;
        } else if header.name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") && response.version == Some(0) {
                    keep_alive = true;
                }
            }
        }
    }

    let body = if status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Body::Empty
    } else if chunked {
        Body::Chunked
    } else if other_coding {
        Body::UntilClose
    } else {
        match content_length {
            Some(0) => Body::Empty,
            Some(length) => Body::Length(length),
            None => Body::UntilClose,
        }
    };
    Ok(Some((
        length,
        Head {
            status,
            body,
            keep_alive,
        },
    )))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        let (length, head) = parse_head(text.as_bytes()).expect("valid head").expect("complete head");
        assert_eq!(length, text.len(), "{text:?}");
        head
    }

    #[test]
    fn head_framing_follows_rfc_9112() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                StatusCode::OK,
                Body::Length(12),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                StatusCode::OK,
                Body::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                StatusCode::OK,
                Body::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                StatusCode::OK,
                Body::UntilClose,
                true,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", StatusCode::OK, Body::UntilClose, true),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                StatusCode::NO_CONTENT,
                Body::Empty,
                true,
            ),
            (
                "HTTP/1.1 503 Unavailable\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
                StatusCode::SERVICE_UNAVAILABLE,
                Body::Length(3),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
                StatusCode::OK,
                Body::Length(3),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n",
                StatusCode::OK,
                Body::Length(3),
                true,
            ),
            ("HTTP/1.1 100 Continue\r\n\r\n", StatusCode::CONTINUE, Body::Empty, true),
        ];
        for (text, status, body, keep_alive) in cases {
            let parsed = head(text);
            assert_eq!(parsed.status, status, "{text:?}");
            assert_eq!(parsed.body, body, "{text:?}");
            assert_eq!(parsed.keep_alive, keep_alive, "{text:?}");
        }
    }

    #[test]
    fn partial_head_needs_more_bytes() {
        let parsed = parse_head(b"HTTP/1.1 200 OK\r\nContent-Len").expect("valid so far");
        assert_eq!(parsed, None);
    }

    #[test]
    fn conflicting_lengths_are_invalid() {
        let error = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            .expect_err("two different lengths");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn request_bytes_name_path_and_host() {
        let uri: Uri = "/work?n=3".parse().expect("path and query");
        let target: SocketAddr = "127.0.0.1:8080".parse().expect("socket address");

        let keep_alive = RequestTemplate::new(&uri, target, false);
        let close = RequestTemplate::new(&uri, target, true);

        assert_eq!(
            keep_alive.as_bytes(),
            b"GET /work?n=3 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        assert_eq!(
            close.as_bytes(),
            b"GET /work?n=3 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
        );
    }

    /// Serves `responses` as raw bytes, one per request, on a fresh 127.0.0.1 port, then
    /// closes the connection.
    async fn serve_raw(responses: Vec<&'static [u8]>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = vec![0u8; 1024];
            for response in responses {
                // The client's requests are small and sent in one write.
                let _ = stream.read(&mut request).await;
                stream.write_all(response).await.expect("write response");
            }
        });
        address
    }

    #[tokio::test]
    async fn exchange_reads_each_body_framing() {
        let target = serve_raw(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        ])
        .await;
        let uri: Uri = "/".parse().expect("path");
        let request = RequestTemplate::new(&uri, target, false);
        let mut connection = Connection::open(target, Duration::from_secs(5)).await.expect("connect");

        let first = connection.exchange(&request).await.expect("first exchange");
        assert_eq!(first, StatusCode::OK);
        assert!(connection.is_reusable());

        let second = connection.exchange(&request).await.expect("second exchange");
        assert_eq!(second, StatusCode::NOT_FOUND);
        assert!(connection.is_reusable());

        let third = connection.exchange(&request).await.expect("third exchange");
        assert_eq!(third, StatusCode::OK);
        assert!(!connection.is_reusable(), "Connection: close must end reuse");
    }

    #[tokio::test]
    async fn closed_reused_connection_is_stale() {
        let target = serve_raw(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]).await;
        let uri: Uri = "/".parse().expect("path");
        let request = RequestTemplate::new(&uri, target, false);
        let mut connection = Connection::open(target, Duration::from_secs(5)).await.expect("connect");
        connection.exchange(&request).await.expect("first exchange");

        let second = connection.exchange(&request).await;

        assert!(matches!(second, Err(ExchangeError::Stale(_))), "{second:?}");
    }

    #[tokio::test]
    async fn truncated_body_is_an_error() {
        let target = serve_raw(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]).await;
        let uri: Uri = "/".parse().expect("path");
        let request = RequestTemplate::new(&uri, target, false);
        let mut connection = Connection::open(target, Duration::from_secs(5)).await.expect("connect");

        let result = connection.exchange(&request).await;

        let Err(ExchangeError::Io(error)) = result else {
            panic!("expected an I/O error, got {result:?}");
        };
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
