//! One side of a sync: this host (the running binary, `current_exe()`) or a host reached through
//! the system's ssh (`crate::remote::Ssh`). Both run the same subcommands: `send`, `recv`,
//! `--version` and the hidden `sync-agent`.

use std::process::{Command, Stdio};

use super::snapshots::SideState;
use crate::error::{Error, Result};
use crate::remote::{Spec, Ssh};
use crate::text::escape_controls;

#[derive(Debug, Clone)]
pub enum Side {
    Local,
    Remote { host: String, ssh: Ssh },
}

impl Side {
    pub fn of(spec: &Spec, ssh: &Ssh) -> Side {
        match &spec.host {
            Some(h) => Side::Remote { host: h.clone(), ssh: ssh.clone() },
            None => Side::Local,
        }
    }

    /// Where, for messages: `local` or the host.
    pub fn name(&self) -> &str {
        match self {
            Side::Local => "local",
            Side::Remote { host, .. } => host,
        }
    }

    /// `thinsend-native ARGS...` on this side; stdin, stdout and stderr are the caller's.
    pub fn command(&self, args: &[&str]) -> Result<Command> {
        match self {
            Side::Local => {
                let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
                let mut c = Command::new(exe);
                c.args(args);
                Ok(c)
            }
            Side::Remote { host, ssh } => ssh.command(host, args).map_err(Error::Usage),
        }
    }

    /// Runs `thinsend-native ARGS...` to completion; its stdout, or an error with the last line
    /// of its stderr.
    pub fn output(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.command(args)?;
        let out = cmd.stdin(Stdio::null()).output().map_err(|e| {
            Error::Other(format!("{}: cannot run {}: {e}", self.name(), cmd.get_program().to_string_lossy()))
        })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let line = line.strip_prefix("thinsend-native: ").unwrap_or(line);
            return Err(Error::Other(format!(
                "{}: thinsend-native {} failed ({}): {}",
                self.name(),
                args.first().unwrap_or(&""),
                out.status,
                escape_controls(line)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The state of `vg/lv` on this side (`sync-agent state`).
    pub fn state(&self, lv: &str, pool: Option<&str>, dst: bool) -> Result<SideState> {
        let mut args = vec!["sync-agent", "state", lv];
        if let Some(p) = pool {
            args.extend(["--pool", p]);
        }
        if dst {
            args.push("--dst");
        }
        // The first command a run sends to a side: a missing or older binary shows here.
        let out = self.output(&args).map_err(|e| match self {
            Side::Local => e,
            Side::Remote { ssh, .. } => Error::Other(format!(
                "{e} (is thinsend-native {} installed as {:?} there? --remote-bin names it)",
                env!("CARGO_PKG_VERSION"),
                ssh.remote_bin
            )),
        })?;
        serde_json::from_str(&out)
            .map_err(|e| Error::Other(format!("{}: unreadable sync-agent state for {lv}: {e}", self.name())))
    }

    pub fn agent(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["sync-agent"];
        all.extend_from_slice(args);
        self.output(&all).map(|_| ())
    }
}
