//! Progress on stderr: live bars on a terminal, one plain line per event otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shows the progress of a run's steps.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Live bars when stderr is a terminal and `quiet` is off; plain lines otherwise.
    pub fn new(quiet: bool) -> Progress {
        let live = !quiet && std::io::stderr().is_terminal();
        Progress { multi: live.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
    }

    /// Starts a step of `length` units (0 for a spinner).
    pub fn step(&self, label: &str, length: u64) -> Step {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = if length == 0 { ProgressBar::new_spinner() } else { ProgressBar::new(length) };
            let template = if length == 0 {
                "{spinner} {prefix:>12} {elapsed:>4} {msg}"
            } else {
                "{prefix:>12} [{bar:24}] {pos}/{len} {elapsed:>4} {msg}"
            };
            let style = ProgressStyle::with_template(template)
                .expect("the progress template is a valid constant")
                .progress_chars("=> ");
            let bar = multi.add(bar.with_style(style).with_prefix(label.to_string()));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Step { bar, label: label.to_string() }
    }
}

/// One step of a run.
pub struct Step {
    bar: Option<ProgressBar>,
    label: String,
}

impl Step {
    pub fn message(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None => eprintln!("deploybench: [{}] {message}", self.label),
        }
    }

    pub fn advance(&self, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(message.to_string());
            }
            None => eprintln!("deploybench: [{}] {message}", self.label),
        }
    }

    pub fn finish(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(message.to_string()),
            None => eprintln!("deploybench: [{}] {message}", self.label),
        }
    }
}
