//! refservice: the one web service that deploybench boots under every deployment model.
//!
//! Routes: `GET /health` (200 once ready, 503 before), `GET /` (a small JSON document),
//! `GET /work?n=N` (N rounds of SHA-256, returns the checksum), `GET /alloc?mib=N`
//! (allocates and writes N MiB once, for memory-limit fault tests). `refservice healthcheck`
//! probes a running instance and exits 0 or 1, so an image without a shell can still
//! carry a HEALTHCHECK, and `refservice selfcheck` prints what the process may do
//! inside its sandbox (uid, capabilities, writable paths). SIGTERM and SIGINT stop
//! the listener and give open connections at most one second to finish.

mod config;
mod routes;
mod selfcheck;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use config::{Command, Config};

/// How long open connections may run on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args().skip(1), |key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("refservice: {message}");
            eprintln!("{}", config::USAGE);
            return ExitCode::from(2);
        }
    };
    match config.command {
        Command::Help => {
            println!("{}", config::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("refservice {}", routes::VERSION);
            ExitCode::SUCCESS
        }
        Command::Healthcheck => healthcheck(config.port),
        Command::Selfcheck => {
            println!("{}", selfcheck::report());
            ExitCode::SUCCESS
        }
        Command::Serve => serve(config),
    }
}

/// Sends `GET /health` to the local instance; exit code 0 if and only if it returned 200.
fn healthcheck(port: u16) -> ExitCode {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(&head[9..12] == b"200")
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("refservice healthcheck: cannot reach {address}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("refservice: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_server(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("refservice: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(config: Config) -> Result<(), String> {
    let address = SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot listen on {address}: {error}"))?;
    let local = listener.local_addr().map_err(|error| error.to_string())?;
    let state = Arc::new(routes::State::new(Instant::now() + config.ready_delay));
    println!("refservice {} listening on {local}", routes::VERSION);

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // EMFILE and similar are transient: keep serving the open connections.
                        eprintln!("refservice: accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let service = service_fn(move |request| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(routes::handle(&state, &request)) }
                });
                let connection = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    // A client that drops its connection is not a server fault.
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            eprintln!("refservice: open connections did not finish within {SHUTDOWN_GRACE:?}, closing them");
        }
    }
    println!("refservice stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        eprintln!("refservice: cannot install signal handlers, SIGTERM will kill without grace");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
