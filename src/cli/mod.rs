//! The command line: one module per subcommand, the argument groups they share, and the mapping
//! of errors to exit codes (0 success, 1 error, 2 usage, 141 broken pipe). The work is in the
//! library; `thin_send`/`thin_recv` (by program name) go to the drop-in in `thinsend::compat`.

mod args;
mod check;
mod diff;
mod dump;
mod inspect;
mod ls;
mod recv;
mod send;
pub(crate) mod size;
mod sync;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use thinsend::lvm::LvmError;
use thinsend::text::escape_controls;
use thinsend::Error;

#[derive(Parser, Debug)]
#[command(
    name = "thinsend-native",
    version,
    about = "Send and receive LVM thin volumes and their differences, reading dm-thin metadata natively"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the pool's devices and mappings, as thin_dump's XML (byte-identical to
    /// thin-provisioning-tools 0.9.0) or as JSON.
    Dump(dump::DumpArgs),
    /// List thin devices with mapped, exclusive and shared sizes (thin_ls's fields and layout).
    Ls(ls::LsArgs),
    /// What changed between two thin devices: thin_delta's XML (byte-identical to 0.9.0), JSON, or one
    /// line per range. Both trees are walked together; subtrees they share are read once (or, with
    /// --changed-only, not at all).
    Diff(diff::DiffArgs),
    /// Strictly check a metadata image: exact reference counts of every metadata and data block,
    /// leaks, nr_allocated, mapped_blocks, node fill, details against mapping keys, the held
    /// metadata snapshot. Prints the findings; exits 1 if there are any.
    Check(check::CheckArgs),
    /// Write a thin volume (full) or only what changed since a base snapshot (incremental) as a
    /// stream on stdout. LVM form: `send [VG/BASE] VG/SNAP` (holds a metadata snapshot of the pool
    /// only while planning). Metadata form: `--metadata META --thin-id N [--base-id B]` with data from
    /// the pool's data device (--data) or the thin device itself (--source).
    Send(send::SendArgs),
    /// Apply a stream from stdin to a thin LV (`recv VG/LV`), a file or a block device (`--to PATH`).
    /// LVs and files are replaced atomically; an incremental stream is refused unless the target
    /// records its base, and an LV changed since the last receive is refused unless --rollback.
    Recv(recv::RecvArgs),
    /// List a stream from stdin record by record, verifying every checksum and count; applies
    /// nothing.
    Inspect(inspect::InspectArgs),
    /// Replicate thin LVs to or from another host: snapshot SRC, send the incremental from the
    /// newest snapshot both sides hold (by identity) through ssh, keep the received state as a
    /// snapshot on DST, prune (--keep). -r for every thin LV of a VG or pool.
    Sync(sync::SyncArgs),
    /// Internal: what sync runs on each side (state, snapshot, mark, prune, rewind, list).
    #[command(hide = true, name = "sync-agent")]
    SyncAgent(sync::AgentArgs),
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.cmd {
        Cmd::Dump(a) => dump::run(a),
        Cmd::Ls(a) => ls::run(a),
        Cmd::Diff(a) => diff::run(a),
        Cmd::Check(a) => check::run(a),
        Cmd::Send(a) => send::run(a),
        Cmd::Recv(a) => recv::run(a),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Sync(a) => sync::run(a),
        Cmd::SyncAgent(a) => sync::run_agent(a),
    }
}

/// The exit status for an error: 141 when stdout's reader went away, 2 for usage, else 1.
fn exit_code(e: &Error) -> ExitCode {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(141),
        Error::Usage(_) => ExitCode::from(2),
        Error::Lvm(LvmError::Unchanged { source, .. }) => exit_code(source),
        Error::Apply { source, .. } => exit_code(source),
        _ => ExitCode::FAILURE,
    }
}

pub fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(thinsend::cleanup::DEFERRED) {
        return ExitCode::from(thinsend::cleanup::deferred_main(&argv[2..]));
    }
    if argv.first().is_some_and(|a| thinsend::compat::is_compat_name(a)) {
        return ExitCode::from(thinsend::compat::main(argv));
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code(&e);
            if !matches!(e, Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe) {
                eprintln!("thinsend-native: {}", escape_controls(&e.to_string()));
            }
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn undocumented(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() && sub.get_name() != "help" {
                missing.push(format!("{path} {}", sub.get_name()));
            }
            undocumented(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_argument_and_subcommand_has_help() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "thinsend-native", &mut missing);
        assert!(missing.is_empty(), "arguments without a help text: {missing:?}");
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn stats_is_for_the_lvm_form_only_and_rollback_for_both() {
        let e = Cli::try_parse_from(["thinsend-native", "recv", "--stats", "--to", "x"]).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(Cli::try_parse_from(["thinsend-native", "recv", "--stats", "vg/lv"]).is_ok());
        for target in [&["vg/lv"][..], &["--to", "x"][..]] {
            let argv = [&["thinsend-native", "recv", "--rollback"][..], target].concat();
            assert!(Cli::try_parse_from(argv).is_ok(), "--rollback {target:?}");
        }
    }

    #[test]
    fn escape_makes_control_characters_inert() {
        let s = escape_controls("lv\nthinsend-native: received OK\x1b[2J\tx\u{9b}");
        assert_eq!(s, "lv\\nthinsend-native: received OK\\x1b[2J\\tx\\u{9b}");
        assert!(!s.chars().any(char::is_control));
        assert_eq!(escape_controls("vg/lv: ünïcode stays"), "vg/lv: ünïcode stays");
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(exit_code(&Error::Usage("x".into())), ExitCode::from(2));
        assert_eq!(exit_code(&Error::Other("x".into())), ExitCode::FAILURE);
        let pipe = Error::io("<stdout>", std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(exit_code(&pipe), ExitCode::from(141));
    }
}
