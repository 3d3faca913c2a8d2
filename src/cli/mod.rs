//! The command line: one module per subcommand, the argument groups they share, and the mapping
//! of errors to exit codes (0 success, 1 error, 2 usage, 141 broken pipe). The work is in the
//! library; `thin_send`/`thin_recv` (by program name) go to the drop-in in `thinsend::compat`.

mod args;
mod check;
mod completions;
mod diff;
mod dump;
mod heal;
mod inspect;
mod ls;
mod recv;
mod send;
pub(crate) mod size;
mod sync;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use thinsend::lvm::LvmError;
use thinsend::text::escape_controls;
use thinsend::Error;

const EXAMPLES: &str = "\
Examples:
  thinsend-native send vg/snap1 | ssh backup thinsend-native recv --pool vg/pool vg/replica
  thinsend-native send vg/snap1 vg/snap2 | ssh backup thinsend-native recv vg/replica
  thinsend-native send -n --format json vg/snap1 vg/snap2      # what would be sent
  thinsend-native diff --changed-only vg/snap1 vg/snap2
  thinsend-native ls -m /dev/mapper/vg-pool_tmeta
  thinsend-native help send                                    # examples for each command

Exit status: 0 success, 1 error (check: findings), 2 usage, 141 stdout's reader went away,
128+N killed by signal N. Manual pages: thinsend-native(1), thinsend-native-send(1), ...";

#[derive(Parser, Debug)]
#[command(
    name = "thinsend-native",
    version,
    propagate_version = true,
    about = "Send and receive LVM thin volumes and their differences, reading dm-thin metadata natively",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print a pool's devices and mappings (thin_dump's XML, or JSON).
    ///
    /// The XML is byte-identical to thin-provisioning-tools 0.9.0's thin_dump, so thin_restore
    /// accepts it; JSON carries the same facts for programs.
    #[command(after_help = dump::EXAMPLES)]
    Dump(dump::DumpArgs),
    /// List thin devices with mapped, exclusive and shared sizes (thin_ls's fields).
    ///
    /// The fields and the table layout are thin_ls's; JSON carries every field.
    #[command(after_help = ls::EXAMPLES)]
    Ls(ls::LsArgs),
    /// Show what changed between two thin devices (thin_delta's XML, JSON or ranges).
    ///
    /// The XML is byte-identical to thin_delta 0.9.0's. Both trees are walked together; subtrees
    /// they share are read once (or, with --changed-only, not at all).
    #[command(after_help = diff::EXAMPLES)]
    Diff(diff::DiffArgs),
    /// Strictly check dm-thin metadata; exit 1 on any finding.
    ///
    /// Checks the exact reference counts of every metadata and data block, leaks, nr_allocated,
    /// mapped_blocks, node fill, details against mapping keys and the held metadata snapshot, and
    /// prints the findings.
    #[command(after_help = check::EXAMPLES)]
    Check(check::CheckArgs),
    /// Write a thin volume, or what changed since a base snapshot, as a stream on stdout.
    ///
    /// LVM form: `send [VG/BASE] VG/SNAP` (full without a base, incremental with one; holds a
    /// metadata snapshot of the pool only while planning). Metadata form: `--metadata META
    /// --thin-id N [--base-id B]` with data from the pool's data device (--data) or the thin device
    /// itself (--source).
    #[command(after_help = send::EXAMPLES)]
    Send(send::SendArgs),
    /// Apply a stream from stdin to a thin LV, a file or a block device.
    ///
    /// `recv VG/LV` or `recv --to PATH`. LVs and files are replaced atomically; an incremental
    /// stream is refused unless the target records its base, and an LV changed since the last
    /// receive is refused unless --rollback.
    #[command(after_help = recv::EXAMPLES)]
    Recv(recv::RecvArgs),
    /// List and verify a stream from stdin, record by record; applies nothing.
    ///
    /// Every checksum and count is verified by the receiver's own reader, so what inspect accepts
    /// is what recv would apply.
    #[command(after_help = inspect::EXAMPLES)]
    Inspect(inspect::InspectArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    #[command(after_help = completions::EXAMPLES)]
    Completions(completions::CompletionsArgs),
    /// Write the manual pages, one per subcommand, into a directory.
    #[command(after_help = completions::MANPAGES_EXAMPLES)]
    Manpages(completions::ManArgs),
    /// Whether a replica (an LV, here or `[USER@]HOST:VG/LV`, or a file or block device with --to)
    /// equals a source snapshot: each side reads only what it maps and hashes it per block
    /// (xxh3-128, or BLAKE3); region digests first, block digests only where a region differs.
    /// Prints `equal` or the differing byte ranges. Exit 0 equal, 1 different, 2 usage, 3 other errors.
    #[command(after_help = verify::EXAMPLES)]
    Verify(verify::VerifyArgs),
    /// Compare as `verify` does, then send exactly the differing blocks (and unmap what the source
    /// does not map) as one atomic receive that records the source as the replica's new base, so
    /// an incremental `send` from it is accepted next. No common base needed.
    #[command(after_help = heal::EXAMPLES)]
    Heal(heal::HealArgs),
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
        Cmd::Completions(a) => completions::completions(a, command()),
        Cmd::Manpages(a) => completions::man(a, command()),
        Cmd::Verify(a) => verify::run(a),
        Cmd::Heal(a) => heal::run(a),
        Cmd::Sync(a) => sync::run(a),
        Cmd::SyncAgent(a) => sync::run_agent(a),
    }
}

/// The whole command-line definition (for completions, manual pages and the help tests).
pub fn command() -> clap::Command {
    Cli::command()
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
    match run(Cli::parse_from(args::getopt_compat(argv))) {
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
    fn metadata_snap_takes_its_block_as_getopt_does() {
        let v = |a: &[&str]| args::getopt_compat(a.iter().map(|s| s.to_string()).collect());
        assert_eq!(v(&["t", "dump", "-m200", "img"]), ["t", "dump", "-m=200", "img"]);
        assert_eq!(v(&["t", "diff", "-m", "200", "img"]), ["t", "diff", "-m", "200", "img"]);
        assert_eq!(v(&["t", "dump", "--", "-m200"]), ["t", "dump", "--", "-m200"]);
        assert_eq!(v(&["t", "recv", "-m200"]), ["t", "recv", "-m200"]);
        assert_eq!(v(&["t", "ls", "-mx"]), ["t", "ls", "-mx"]);
        let parsed = Cli::try_parse_from(v(&["t", "dump", "-m200", "img"])).unwrap();
        let Cmd::Dump(d) = parsed.cmd else { panic!("not dump") };
        assert!(format!("{d:?}").contains("metadata_snap: Some(200)"), "{d:?}");
        // `-m 200 img`: -m without a block, and two devices: refused, as thin_dump fails on it.
        assert!(Cli::try_parse_from(v(&["t", "dump", "-m", "200", "img"])).is_err());
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(exit_code(&Error::Usage("x".into())), ExitCode::from(2));
        assert_eq!(exit_code(&Error::Other("x".into())), ExitCode::FAILURE);
        let pipe = Error::io("<stdout>", std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(exit_code(&pipe), ExitCode::from(141));
    }
}
