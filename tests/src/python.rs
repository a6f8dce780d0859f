//! Runs the scripts of `tests/python/` (the official Pulsar Python client,
//! `pulsar-client`, which wraps the Apache C++ client) for
//! `tests/tests/pulsar_python.rs`.
//!
//! A script's stdout and stderr go, interleaved, to one temporary file, so
//! a failure shows them in the order they happened. Every run is bounded:
//! a script still running at its limit is killed (and the scripts' own
//! watchdog, `--timeout`, dumps their stacks a little before that). A
//! dropped [`PythonScript`] kills its process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;
use tokio::process::{Child, Command};

/// Overrides the Python interpreter (default `python3` from `PATH`).
pub const PYTHON_ENV: &str = "STRATA_PYTHON";

/// The interpreter: `$STRATA_PYTHON`, else `python3`.
pub fn python() -> OsString {
    std::env::var_os(PYTHON_ENV).unwrap_or_else(|| "python3".into())
}

/// `tests/python/<name>`; panics if it does not exist.
pub fn script_path(name: &str) -> PathBuf {
    let p = crate::manifest_dir().join("python").join(name);
    assert!(p.is_file(), "no such script: {}", p.display());
    p
}

/// A running script.
pub struct PythonScript {
    name: String,
    child: Child,
    output: NamedTempFile,
}

/// How a script ended.
pub struct ScriptRun {
    pub name: String,
    /// `None` if it was killed at its time limit.
    pub status: Option<ExitStatus>,
    /// stdout and stderr, interleaved.
    pub output: String,
}

impl ScriptRun {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// A description for failure messages: how it ended and its output.
    pub fn report(&self) -> String {
        let ended = match self.status {
            Some(s) => format!("exited with {s}"),
            None => "was killed at its time limit".to_string(),
        };
        format!("--- {} {ended}; its output ---\n{}", self.name, self.output)
    }
}

impl PythonScript {
    /// Starts `python3 -u tests/python/<script> <args>`. Panics if the
    /// interpreter cannot be started.
    pub fn spawn<S: AsRef<str>>(script: &str, args: &[S]) -> PythonScript {
        let output = NamedTempFile::new().expect("create a script output file");
        let out = output.reopen().expect("reopen the script output file");
        let err = out.try_clone().expect("clone the script output file");
        let mut cmd = Command::new(python());
        cmd.arg("-u")
            .arg(script_path(script))
            .args(args.iter().map(AsRef::as_ref))
            .current_dir(script_path(script).parent().expect("scripts directory"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {:?} for {script}: {e} (install Python 3 and \
                 `pip install pulsar-client==3.13.0`, or run scripts/test.sh; \
                 {PYTHON_ENV} overrides the interpreter)",
                python()
            )
        });
        PythonScript {
            name: script.to_string(),
            child,
            output,
        }
    }

    /// What the script printed so far.
    pub fn output(&self) -> String {
        std::fs::read(self.output.path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The exit status if the script has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the script to end, killing it after `limit`.
    pub async fn wait(mut self, limit: Duration) -> ScriptRun {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => panic!("wait for {}: {e}", self.name),
            Err(_) => {
                let _ = self.child.kill().await;
                None
            }
        };
        ScriptRun {
            output: self.output(),
            name: self.name.clone(),
            status,
        }
    }
}

/// Runs a script to its end (or kills it after `limit`).
pub async fn run<S: AsRef<str>>(script: &str, args: &[S], limit: Duration) -> ScriptRun {
    let started = Instant::now();
    let run = PythonScript::spawn(script, args).wait(limit).await;
    eprintln!(
        "{script}: {} in {:.1?}",
        if run.success() { "passed" } else { "failed" },
        started.elapsed()
    );
    run
}
