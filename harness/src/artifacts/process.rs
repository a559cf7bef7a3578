//! Running the external tools that artifacts need: cargo, apt-get, dpkg-deb, debootstrap.

use std::io;
use std::process::{Command, Output};

use super::error::ArtifactError;

/// How many trailing output lines an error message quotes.
const OUTPUT_TAIL_LINES: usize = 30;

/// Runs `command` to completion with its output captured. `task` completes the error
/// message "cannot {task}", and `hint` names what to install when the program is missing.
pub(crate) fn run(task: &str, command: &mut Command, hint: &'static str) -> Result<Output, ArtifactError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let line = command_line(command);
    tracing::debug!(task, command = %line, "running");

    let output = command.output().map_err(|source| match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
            ArtifactError::ToolMissing { program: program.clone(), hint, source }
        }
        _ => ArtifactError::Io { action: "start", path: program.clone().into(), source },
    })?;
    if !output.status.success() {
        return Err(ArtifactError::CommandFailed {
            task: task.to_string(),
            command: line,
            status: output.status,
            output: output_tail(&output),
        });
    }
    Ok(output)
}

fn command_line(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|argument| argument.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Returns the last lines of stderr and stdout, where tools put the reason they failed.
fn output_tail(output: &Output) -> String {
    let mut lines: Vec<&str> = Vec::new();
    for stream in [&output.stdout, &output.stderr] {
        lines.extend(std::str::from_utf8(stream).unwrap_or("(output is not UTF-8)").lines());
    }
    let start = lines.len().saturating_sub(OUTPUT_TAIL_LINES);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_names_hint() {
        let error = run("test", &mut Command::new("/nonexistent/deploybench-tool"), "install it").unwrap_err();
        assert!(matches!(error, ArtifactError::ToolMissing { .. }), "{error:?}");
        assert!(error.to_string().ends_with("; install it"), "{error}");
    }

    #[test]
    fn failing_command_quotes_output() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo first; echo reason >&2; exit 3"]);
        let error = run("do the thing", &mut command, "").unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("cannot do the thing: `sh -c echo first; echo reason >&2; exit 3` failed"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.ends_with("first\nreason"), "{message}");
    }
}
