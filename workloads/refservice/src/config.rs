//! Command-line and environment configuration of refservice.

use std::net::IpAddr;
use std::time::Duration;

pub const USAGE: &str = "\
usage: refservice [serve] [--port PORT] [--bind ADDRESS] [--ready-delay-ms MS]
       refservice healthcheck [--port PORT]
       refservice selfcheck
       refservice --version | --help

  --port PORT          TCP port to listen on (environment PORT; default 8080)
  --bind ADDRESS       address to listen on (environment BIND; default 0.0.0.0)
  --ready-delay-ms MS  answer /health with 503 for MS milliseconds after start
                       (environment READY_DELAY_MS; default 0), to simulate a slow boot";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Serve,
    Healthcheck,
    /// Print uid, capabilities and writable paths as seen from inside the sandbox.
    Selfcheck,
    Help,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub command: Command,
    pub port: u16,
    pub bind: IpAddr,
    pub ready_delay: Duration,
}

impl Config {
    /// Parses arguments (without the program name); flags override the environment.
    pub fn from_args(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let mut config = Config {
            command: Command::Serve,
            port: 8080,
            bind: IpAddr::from([0, 0, 0, 0]),
            ready_delay: Duration::ZERO,
        };
        if let Some(port) = env("PORT") {
            config.port = parse_port(&port, "PORT")?;
        }
        if let Some(bind) = env("BIND") {
            config.bind = parse_bind(&bind, "BIND")?;
        }
        if let Some(delay) = env("READY_DELAY_MS") {
            config.ready_delay = parse_delay(&delay, "READY_DELAY_MS")?;
        }

        let mut args = args.into_iter();
        let mut first = true;
        while let Some(arg) = args.next() {
            let mut value_of = |flag: &str| {
                args.next().ok_or_else(|| format!("{flag} needs a value"))
            };
            match arg.as_str() {
                "serve" if first => config.command = Command::Serve,
                "healthcheck" if first => config.command = Command::Healthcheck,
                "selfcheck" if first => config.command = Command::Selfcheck,
                "-h" | "--help" => config.command = Command::Help,
                "-V" | "--version" => config.command = Command::Version,
                "--port" => config.port = parse_port(&value_of("--port")?, "--port")?,
                "--bind" => config.bind = parse_bind(&value_of("--bind")?, "--bind")?,
                "--ready-delay-ms" => {
                    config.ready_delay =
                        parse_delay(&value_of("--ready-delay-ms")?, "--ready-delay-ms")?;
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
            first = false;
        }
        Ok(config)
    }
}

fn parse_port(value: &str, source: &str) -> Result<u16, String> {
    value
        .parse()
        .map_err(|_| format!("invalid {source} {value:?}: expected a port number from 0 to 65535"))
}

fn parse_bind(value: &str, source: &str) -> Result<IpAddr, String> {
    value
        .parse()
        .map_err(|_| format!("invalid {source} {value:?}: expected an IP address"))
}

fn parse_delay(value: &str, source: &str) -> Result<Duration, String> {
    value
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("invalid {source} {value:?}: expected milliseconds as a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_args(args.iter().map(|s| s.to_string()), |key| {
            env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_serve_on_8080() {
        let config = parse(&[], &[]).unwrap();
        assert_eq!(config.command, Command::Serve);
        assert_eq!(config.port, 8080);
        assert_eq!(config.bind, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(config.ready_delay, Duration::ZERO);
    }

    #[test]
    fn flag_overrides_environment() {
        let config = parse(&["--port", "9000"], &[("PORT", "7000")]).unwrap();
        assert_eq!(config.port, 9000);
        let config = parse(&[], &[("PORT", "7000"), ("READY_DELAY_MS", "250")]).unwrap();
        assert_eq!(config.port, 7000);
        assert_eq!(config.ready_delay, Duration::from_millis(250));
    }

    #[test]
    fn healthcheck_subcommand() {
        let config = parse(&["healthcheck", "--port", "81"], &[]).unwrap();
        assert_eq!(config.command, Command::Healthcheck);
        assert_eq!(config.port, 81);
    }

    #[test]
    fn bad_values_rejected() {
        assert!(parse(&["--port", "70000"], &[]).unwrap_err().contains("--port"));
        assert!(parse(&["--port"], &[]).unwrap_err().contains("needs a value"));
        assert!(parse(&["--bind", "localhost"], &[]).unwrap_err().contains("IP address"));
        assert!(parse(&["--frobnicate"], &[]).unwrap_err().contains("unknown argument"));
        assert!(parse(&[], &[("PORT", "x")]).unwrap_err().contains("PORT"));
    }
}
