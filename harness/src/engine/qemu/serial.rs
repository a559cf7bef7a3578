//! The guest's serial console, which QEMU writes to its stdout: boot phases read from
//! it, its last lines for error messages, and a log file.
//!
//! The console must be read for as long as QEMU runs. A full pipe would block QEMU's
//! serial output and, with it, the guest.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Console lines kept for error messages.
const TAIL_LINES: usize = 40;

/// A boot event recognised on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// The kernel's banner, `Linux version ...`, its first line on the console.
    KernelStarted,
    /// The first line from systemd as PID 1 (`systemd[1]: ...` from the kernel log, or
    /// `Welcome to ...` from its status output): the real init runs, after the initramfs.
    InitReached,
}

/// Recognises the boot event in one console line, if it contains one.
pub fn classify(line: &str) -> Option<ConsoleEvent> {
    if line.contains("Linux version ") {
        Some(ConsoleEvent::KernelStarted)
    } else if line.contains("systemd[1]: ") || line.contains("Welcome to ") {
        Some(ConsoleEvent::InitReached)
    } else {
        None
    }
}

/// Times from the boot's origin to the console events seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsolePhases {
    pub kernel: Option<Duration>,
    pub init: Option<Duration>,
}

impl ConsolePhases {
    /// Records the first occurrence of the event in `line` and returns true when it was new.
    pub fn record(&mut self, line: &str, elapsed: Duration) -> bool {
        let slot = match classify(line) {
            Some(ConsoleEvent::KernelStarted) => &mut self.kernel,
            Some(ConsoleEvent::InitReached) => &mut self.init,
            None => return false,
        };
        if slot.is_some() {
            return false;
        }
        *slot = Some(elapsed);
        true
    }
}

/// The state of the console reader as its watchers see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ConsoleState {
    phases: ConsolePhases,
    /// The stream ended: QEMU exited or closed its stdout.
    closed: bool,
}

/// A task that reads the console until it ends.
#[derive(Debug)]
pub struct SerialConsole {
    state: watch::Receiver<ConsoleState>,
    tail: Arc<Mutex<VecDeque<String>>>,
    task: JoinHandle<()>,
}

impl SerialConsole {
    /// Starts reading `stream`, timing events from `origin`, and appending every line
    /// to the file `log` when given.
    pub fn spawn(stream: impl AsyncRead + Unpin + Send + 'static, origin: Instant, log: Option<PathBuf>) -> SerialConsole {
        let (sender, state) = watch::channel(ConsoleState::default());
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let task = tokio::spawn(read_console(stream, origin, log, sender, Arc::clone(&tail)));
        SerialConsole { state, tail, task }
    }

    pub fn phases(&self) -> ConsolePhases {
        self.state.borrow().phases
    }

    /// Waits until systemd's first line appears and returns its time, or `None` when the
    /// console ends first.
    pub async fn init_reached(&mut self) -> Option<Duration> {
        let state = self.state.wait_for(|state| state.phases.init.is_some() || state.closed).await.ok()?;
        state.phases.init
    }

    /// Returns the last console lines, oldest first, joined by newlines.
    pub fn tail(&self) -> String {
        let lines = self.tail.lock().expect("no code panics while holding the console tail");
        if lines.is_empty() {
            return "(no console output)".to_string();
        }
        lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_console(
    stream: impl AsyncRead + Unpin,
    origin: Instant,
    log: Option<PathBuf>,
    sender: watch::Sender<ConsoleState>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut log_file = match &log {
        Some(path) => match tokio::fs::File::create(path).await {
            Ok(file) => Some(file),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot create the serial console log");
                None
            }
        },
        None => None,
    };
    let mut reader = BufReader::new(stream);
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        match reader.read_until(b'\n', &mut bytes).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read the serial console");
                break;
            }
        }
        let elapsed = origin.elapsed();
        if let Some(file) = &mut log_file {
            if let Err(error) = file.write_all(&bytes).await {
                tracing::warn!(%error, "cannot write the serial console log; later lines are not logged");
                log_file = None;
            }
        }
        let line = clean_line(&bytes);
        sender.send_if_modified(|state| state.phases.record(&line, elapsed));
        let mut lines = tail.lock().expect("no code panics while holding the console tail");
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
    sender.send_modify(|state| state.closed = true);
}

/// Decodes a console line, dropping the line ending, carriage returns and ANSI escape
/// sequences (systemd colours its status output).
fn clean_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut line = String::with_capacity(text.len());
    let mut characters = text.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '\u{1b}' => {
                // CSI sequences: ESC [ parameters, ending in a byte from @ to ~.
                if characters.peek() == Some(&'[') {
                    characters.next();
                    for next in characters.by_ref() {
                        if ('@'..='~').contains(&next) {
                            break;
                        }
                    }
                }
            }
            '\r' | '\n' => {}
            other => line.push(other),
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL_BANNER: &str = "[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)";

    #[test]
    fn classify_boot_lines() {
        let cases = [
            (KERNEL_BANNER, Some(ConsoleEvent::KernelStarted)),
            ("[    2.911853] systemd[1]: systemd 252.31-1~deb12u1 running in system mode (+PAM +AUDIT)", Some(ConsoleEvent::InitReached)),
            ("Welcome to Debian GNU/Linux 12 (bookworm)!", Some(ConsoleEvent::InitReached)),
            ("[    0.000000] Command line: root=/dev/vda rw console=ttyS0", None),
            ("Begin: Loading essential drivers ... done.", None),
            ("[    1.234567] Run /init as init process", None),
            ("[  OK  ] Started refservice.service - deploybench reference service.", None),
            ("", None),
        ];
        for (line, expected) in cases {
            assert_eq!(classify(line), expected, "{line:?}");
        }
    }

    #[test]
    fn phases_keep_first_occurrence() {
        let mut phases = ConsolePhases::default();
        assert!(phases.record(KERNEL_BANNER, Duration::from_millis(300)));
        assert!(!phases.record(KERNEL_BANNER, Duration::from_millis(400)));
        assert!(!phases.record("random output", Duration::from_millis(500)));
        assert!(phases.record("[    3.1] systemd[1]: Detected virtualization qemu.", Duration::from_secs(9)));
        assert!(!phases.record("Welcome to Debian GNU/Linux 12 (bookworm)!", Duration::from_secs(10)));
        assert_eq!(phases, ConsolePhases { kernel: Some(Duration::from_millis(300)), init: Some(Duration::from_secs(9)) });
    }

    #[test]
    fn clean_line_strips_escapes() {
        let raw = b"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m.\r\n";
        assert_eq!(clean_line(raw), "[  OK  ] Reached target multi-user.target.");
        assert_eq!(clean_line(b"\xffbyte\n"), "\u{fffd}byte");
    }

    #[tokio::test]
    async fn console_records_phases_and_tail() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("serial.log");
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut console = SerialConsole::spawn(reader, Instant::now(), Some(log.clone()));
        let output = format!("SeaBIOS\r\n{KERNEL_BANNER}\r\n\x1b[0;1;39mWelcome to Debian GNU/Linux 12 (bookworm)!\x1b[0m\r\nlast");
        writer.write_all(output.as_bytes()).await.unwrap();

        let init = console.init_reached().await.expect("init is on the console");
        let phases = console.phases();
        assert_eq!(phases.init, Some(init));
        let kernel = phases.kernel.expect("the banner is on the console");
        assert!(kernel <= init, "{phases:?}");

        drop(writer);
        assert_eq!(console.init_reached().await, Some(init));
        // The reader has seen the end of the stream once it has logged the last line.
        for _ in 0..100 {
            if console.tail().ends_with("last") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(console.tail(), format!("SeaBIOS\n{KERNEL_BANNER}\nWelcome to Debian GNU/Linux 12 (bookworm)!\nlast"));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), output);
    }

    #[tokio::test]
    async fn console_end_without_init() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut console = SerialConsole::spawn(reader, Instant::now(), None);
        writer.write_all(b"Kernel panic - not syncing: VFS: Unable to mount root fs\r\n").await.unwrap();
        drop(writer);
        assert_eq!(console.init_reached().await, None);
        assert!(console.tail().contains("Kernel panic"), "{}", console.tail());
    }

    #[tokio::test]
    async fn tail_keeps_last_lines() {
        let (mut writer, reader) = tokio::io::duplex(1024);
        let mut console = SerialConsole::spawn(reader, Instant::now(), None);
        for index in 0..TAIL_LINES + 5 {
            writer.write_all(format!("line {index}\n").as_bytes()).await.unwrap();
        }
        drop(writer);
        assert_eq!(console.init_reached().await, None);
        let tail = console.tail();
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.starts_with("line 5\n"), "{tail}");
        assert!(tail.ends_with(&format!("line {}", TAIL_LINES + 4)), "{tail}");
    }
}
