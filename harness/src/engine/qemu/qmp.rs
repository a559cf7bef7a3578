//! A client of QMP, the QEMU Machine Protocol: one JSON object per line over QEMU's
//! unix socket. QEMU sends a greeting, the client leaves capabilities negotiation with
//! `qmp_capabilities`, then each command gets one reply carrying the command's `id`.
//! Asynchronous events (`{"event": ...}`) may arrive between a command and its reply.
//!
//! Protocol reference: docs/interop/qmp-spec.txt in the QEMU 7.2 sources.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to the QMP socket {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("QMP connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("QEMU closed the QMP connection before it replied to {command}")]
    Closed { command: String },
    #[error("invalid QMP message {line:?}: {detail}")]
    Protocol { line: String, detail: String },
    #[error("QMP command {command} failed: {class}: {description}")]
    Command { command: String, class: String, description: String },
}

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The first message on a new connection, with QEMU's version and capabilities.
    Greeting(Value),
    /// A successful reply with its `id`, if the command had one.
    Return { id: Option<Value>, value: Value },
    /// A failed reply with the error class and QEMU's description.
    Error { id: Option<Value>, class: String, description: String },
    /// An asynchronous event such as `POWERDOWN` or `SHUTDOWN`.
    Event { name: String, data: Value },
}

/// Parses one line from the QMP socket.
pub fn parse_message(line: &str) -> Result<Message, QmpError> {
    let invalid = |detail: &str| QmpError::Protocol { line: line.to_string(), detail: detail.to_string() };
    let value: Value = serde_json::from_str(line).map_err(|error| invalid(&error.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(invalid("expected a JSON object"));
    };
    let id = object.remove("id");
    if let Some(greeting) = object.remove("QMP") {
        return Ok(Message::Greeting(greeting));
    }
    if let Some(value) = object.remove("return") {
        return Ok(Message::Return { id, value });
    }
    if let Some(error) = object.remove("error") {
        let field = |name: &str| error.get(name).and_then(Value::as_str).unwrap_or("(missing)").to_string();
        return Ok(Message::Error { id, class: field("class"), description: field("desc") });
    }
    if let Some(Value::String(name)) = object.remove("event") {
        let data = object.remove("data").unwrap_or(Value::Null);
        return Ok(Message::Event { name, data });
    }
    Err(invalid("expected one of the keys QMP, return, error or event"))
}

/// A QMP connection in command mode.
pub struct QmpClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    events: Vec<String>,
}

impl QmpClient {
    /// Connects to the socket at `path`, reads the greeting and sends `qmp_capabilities`.
    pub async fn connect(path: &Path) -> Result<QmpClient, QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect { path: path.to_path_buf(), source })?;
        let (reader, writer) = stream.into_split();
        let mut client = QmpClient { reader: BufReader::new(reader), writer, next_id: 1, events: Vec::new() };
        match client.read_message("the greeting").await? {
            Message::Greeting(_) => {}
            other => {
                return Err(QmpError::Protocol {
                    line: format!("{other:?}"),
                    detail: "expected the QMP greeting as the first message".to_string(),
                })
            }
        }
        client.execute("qmp_capabilities", None).await?;
        Ok(client)
    }

    /// Sends a command and returns the value of its reply, collecting any events that
    /// arrive before it.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await?;

        loop {
            match self.read_message(command).await? {
                Message::Event { name, .. } => self.events.push(name),
                Message::Return { id: reply_id, value } if reply_id == Some(json!(id)) => return Ok(value),
                Message::Error { id: reply_id, class, description } if reply_id == Some(json!(id)) => {
                    return Err(QmpError::Command { command: command.to_string(), class, description });
                }
                other => {
                    return Err(QmpError::Protocol {
                        line: format!("{other:?}"),
                        detail: format!("expected the reply to {command} with id {id}"),
                    })
                }
            }
        }
    }

    /// Names of the events received so far, oldest first.
    pub fn events(&self) -> &[String] {
        &self.events
    }

    async fn read_message(&mut self, awaited: &str) -> Result<Message, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(QmpError::Closed { command: awaited.to_string() });
        }
        parse_message(line.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#;

    #[test]
    fn message_kinds_parsed() {
        assert!(matches!(parse_message(GREETING).unwrap(), Message::Greeting(_)));
        assert_eq!(
            parse_message(r#"{"return": {}, "id": 3}"#).unwrap(),
            Message::Return { id: Some(json!(3)), value: json!({}) }
        );
        assert_eq!(
            parse_message(r#"{"error": {"class": "CommandNotFound", "desc": "The command foo has not been found"}}"#).unwrap(),
            Message::Error {
                id: None,
                class: "CommandNotFound".to_string(),
                description: "The command foo has not been found".to_string()
            }
        );
        let event = r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": true}}"#;
        assert_eq!(
            parse_message(event).unwrap(),
            Message::Event { name: "SHUTDOWN".to_string(), data: json!({"guest": true}) }
        );
    }

    #[test]
    fn invalid_messages_rejected() {
        for line in ["not json", "[1, 2]", r#"{"unknown": 1}"#] {
            let error = parse_message(line).unwrap_err();
            assert!(matches!(error, QmpError::Protocol { .. }), "{line}: {error:?}");
        }
    }

    /// Runs a fake QMP server on a socket in `directory` that sends the greeting, then
    /// replies to each request line with the next scripted lines in `replies`, with `{id}`
    /// replaced by the request's id. Returns the socket path and the requests it read.
    fn fake_server(directory: &Path, replies: Vec<Vec<&'static str>>) -> (PathBuf, tokio::task::JoinHandle<Vec<Value>>) {
        let path = directory.join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (reader, mut writer) = stream.into_split();
            let mut lines = BufReader::new(reader).lines();
            writer.write_all(format!("{GREETING}\r\n").as_bytes()).await.unwrap();
            let mut requests = Vec::new();
            for script in replies {
                let Some(line) = lines.next_line().await.unwrap() else { break };
                let request: Value = serde_json::from_str(&line).unwrap();
                let id = request["id"].to_string();
                requests.push(request);
                for reply in script {
                    writer.write_all(format!("{}\r\n", reply.replace("{id}", &id)).as_bytes()).await.unwrap();
                }
            }
            requests
        });
        (path, task)
    }

    #[tokio::test]
    async fn powerdown_skips_events() {
        let directory = tempfile::tempdir().unwrap();
        let (path, server) = fake_server(
            directory.path(),
            vec![
                vec![r#"{"return": {}, "id": {id}}"#],
                vec![
                    r#"{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "POWERDOWN"}"#,
                    r#"{"return": {}, "id": {id}}"#,
                ],
            ],
        );
        let mut client = QmpClient::connect(&path).await.unwrap();
        let value = client.execute("system_powerdown", None).await.unwrap();
        assert_eq!(value, json!({}));
        assert_eq!(client.events(), ["POWERDOWN"]);

        let requests = server.await.unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0]["execute"], "qmp_capabilities");
        assert_eq!(requests[1]["execute"], "system_powerdown");
        assert_ne!(requests[0]["id"], requests[1]["id"]);
    }

    #[tokio::test]
    async fn arguments_sent_and_value_returned() {
        let directory = tempfile::tempdir().unwrap();
        let (path, server) = fake_server(
            directory.path(),
            vec![
                vec![r#"{"return": {}, "id": {id}}"#],
                vec![r#"{"return": {"stats": {"stat-total-memory": 1024}}, "id": {id}}"#],
            ],
        );
        let mut client = QmpClient::connect(&path).await.unwrap();
        let arguments = json!({"path": "/machine/peripheral/balloon0", "property": "guest-stats"});
        let value = client.execute("qom-get", Some(arguments.clone())).await.unwrap();
        assert_eq!(value["stats"]["stat-total-memory"], 1024);
        let requests = server.await.unwrap();
        assert_eq!(requests[1]["arguments"], arguments);
    }

    #[tokio::test]
    async fn error_reply_names_command() {
        let directory = tempfile::tempdir().unwrap();
        let (path, _server) = fake_server(
            directory.path(),
            vec![
                vec![r#"{"return": {}, "id": {id}}"#],
                vec![r#"{"error": {"class": "GenericError", "desc": "no balloon"}, "id": {id}}"#],
            ],
        );
        let mut client = QmpClient::connect(&path).await.unwrap();
        let error = client.execute("qom-get", None).await.unwrap_err();
        assert_eq!(error.to_string(), "QMP command qom-get failed: GenericError: no balloon");
    }

    #[tokio::test]
    async fn closed_connection_reported() {
        let directory = tempfile::tempdir().unwrap();
        let (path, _server) = fake_server(directory.path(), vec![vec![r#"{"return": {}, "id": {id}}"#], vec![]]);
        let mut client = QmpClient::connect(&path).await.unwrap();
        let error = client.execute("quit", None).await.unwrap_err();
        assert!(matches!(error, QmpError::Closed { ref command } if command == "quit"), "{error:?}");
    }

    #[tokio::test]
    async fn reply_with_other_id_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let (path, _server) =
            fake_server(directory.path(), vec![vec![r#"{"return": {}, "id": 999}"#]]);
        let error = QmpClient::connect(&path).await.err().expect("a reply with a foreign id is rejected");
        assert!(matches!(error, QmpError::Protocol { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn missing_socket_names_path() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("absent.sock");
        let error = QmpClient::connect(&path).await.err().expect("no server listens");
        assert!(error.to_string().contains("absent.sock"), "{error}");
    }
}
