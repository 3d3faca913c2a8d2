//! The other side of a replication: a volume spec `vg/lv` or `[user@]host:vg/lv`, and the `ssh`
//! command that runs thinsend-native there. The system's OpenSSH is the transport (no protocol or
//! daemon of our own); every word of the remote command is quoted for the remote shell.

use std::ffi::OsString;
use std::fmt;
use std::process::Command;

/// Where a volume lives: here, or on a host reached through ssh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// `user@host` or `host`; `None` for a local volume.
    pub host: Option<String>,
    /// What follows the host: `vg/lv` (or a path, for commands that take one).
    pub path: String,
}

/// Why a spec was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{0:?}: empty volume name")]
    Empty(String),
    #[error("{0:?}: the host name may not be empty, start with '-' or contain spaces or control characters")]
    BadHost(String),
}

impl Spec {
    /// `[user@]host:rest` is remote when the part before the first ':' holds no '/' (so local paths
    /// with a ':' further on stay local); anything else is local.
    pub fn parse(s: &str) -> Result<Spec, SpecError> {
        let (host, path) = match s.split_once(':') {
            Some((h, p)) if !h.contains('/') => (Some(h), p),
            _ => (None, s),
        };
        if let Some(h) = host {
            let bad = h.is_empty()
                || h.starts_with('-')
                || h.ends_with('@')
                || h.chars().any(|c| c.is_whitespace() || c.is_control());
            if bad {
                return Err(SpecError::BadHost(s.to_string()));
            }
        }
        if path.is_empty() {
            return Err(SpecError::Empty(s.to_string()));
        }
        Ok(Spec { host: host.map(str::to_string), path: path.to_string() })
    }

    pub fn is_remote(&self) -> bool {
        self.host.is_some()
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(h) => write!(f, "{h}:{}", self.path),
            None => f.write_str(&self.path),
        }
    }
}

/// How to reach a host: the ssh program (and its own leading arguments), extra `-o` options, and
/// the thinsend-native binary to run there.
#[derive(Clone, Debug)]
pub struct Ssh {
    /// `--ssh-cmd`, split into words (default `ssh`).
    pub program: Vec<String>,
    /// `--ssh-option K=V`, each passed as `-o K=V`.
    pub options: Vec<String>,
    /// The binary on the remote side (default `thinsend-native`, found on its PATH).
    pub remote_bin: String,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh { program: vec!["ssh".into()], options: Vec::new(), remote_bin: "thinsend-native".into() }
    }
}

impl Ssh {
    /// `--ssh-cmd "ssh -p 2222 -i key"`: split like a shell would (quotes honoured).
    pub fn with_program(mut self, cmd: &str) -> Result<Ssh, String> {
        match shlex::split(cmd) {
            Some(words) if !words.is_empty() => {
                self.program = words;
                Ok(self)
            }
            _ => Err(format!("--ssh-cmd {cmd:?}: not a command (empty, or unbalanced quotes)")),
        }
    }

    /// A command that runs `remote_bin ARGS...` on `host`, each word quoted for the remote shell.
    /// stdin, stdout and stderr are left to the caller.
    pub fn command(&self, host: &str, args: &[&str]) -> Result<Command, String> {
        let mut words = vec![quote(&self.remote_bin)?];
        for a in args {
            words.push(quote(a)?);
        }
        let mut cmd = Command::new(&self.program[0]);
        cmd.args(&self.program[1..]);
        for o in &self.options {
            cmd.arg("-o").arg(o);
        }
        // `--` ends ssh's options: a host can never be read as one (it is also checked by Spec).
        cmd.arg("--").arg(host).arg(words.join(" "));
        Ok(cmd)
    }

    /// The argv [`Ssh::command`] builds, for messages and `--dry-run`.
    pub fn argv(&self, host: &str, args: &[&str]) -> Result<Vec<OsString>, String> {
        let cmd = self.command(host, args)?;
        let mut v = vec![cmd.get_program().to_os_string()];
        v.extend(cmd.get_args().map(|a| a.to_os_string()));
        Ok(v)
    }
}

/// One word for a POSIX shell on the remote side. A NUL byte cannot be passed and is refused.
pub fn quote(word: &str) -> Result<String, String> {
    shlex::try_quote(word).map(|q| q.into_owned()).map_err(|_| format!("{word:?}: contains a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_remote_specs() {
        assert_eq!(Spec::parse("vg/lv").unwrap(), Spec { host: None, path: "vg/lv".into() });
        let r = Spec::parse("root@backup:vg0/data").unwrap();
        assert_eq!(r.host.as_deref(), Some("root@backup"));
        assert_eq!(r.path, "vg0/data");
        assert_eq!(r.to_string(), "root@backup:vg0/data");
        // a ':' after a '/' belongs to a local path
        assert!(!Spec::parse("/dev/disk/by-id/a:b").unwrap().is_remote());
    }

    #[test]
    fn hostile_hosts_are_refused() {
        for bad in [":vg/lv", "-oProxyCommand=x:vg/lv", "a b:vg/lv", "user@:vg/lv", "h\n:vg/lv", "host:"] {
            assert!(Spec::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn remote_words_are_quoted() {
        let ssh = Ssh::default();
        let argv = ssh.argv("h", &["recv", "vg/a b; rm -rf /", "$(x)"]).unwrap();
        let last = argv.last().unwrap().to_str().unwrap();
        assert_eq!(shlex::split(last).unwrap(), vec!["thinsend-native", "recv", "vg/a b; rm -rf /", "$(x)"]);
        assert_eq!(argv[1], "--");
        assert!(quote("a\0b").is_err());
    }

    #[test]
    fn ssh_cmd_and_options() {
        let mut ssh = Ssh::default().with_program("ssh -p 2222 -i '/k e y'").unwrap();
        ssh.options.push("BatchMode=yes".into());
        let argv = ssh.argv("h", &["ls"]).unwrap();
        let words: Vec<_> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(&words[..7], &["ssh", "-p", "2222", "-i", "/k e y", "-o", "BatchMode=yes"]);
        assert!(Ssh::default().with_program("'").is_err());
    }
}
