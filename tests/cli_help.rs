//! The command line as documentation: every argument and possible value of every subcommand has a
//! help text, every subcommand has examples and `-V`, the short flags zfs users reach for mean what
//! they expect, and the completion scripts and manual pages come out of the binary.

use std::process::Command;

/// The binary's own clap definition, compiled into this test (it lives in the binary crate).
#[allow(dead_code)]
#[path = "../src/cli/mod.rs"]
mod cli;

const BIN: &str = env!("CARGO_BIN_EXE_thinsend-native");

/// The subcommands users see (hidden internal ones, e.g. `sync-agent`, get no examples or pages).
fn subcommands() -> Vec<String> {
    cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .filter(|n| n != "help")
        .collect()
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn undocumented(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            missing.push(format!("{path} {id}"));
        }
        // Flags' true/false are not values to document; the shell names are clap_complete's and
        // name themselves.
        let values = if arg.get_action().takes_values() && id != "shell" { arg.get_possible_values() } else { vec![] };
        for value in values {
            if value.get_help().is_none() && !value.is_hide_set() {
                missing.push(format!("{path} {id}={}", value.get_name()));
            }
        }
    }
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        if sub.get_about().is_none() {
            missing.push(format!("{path} {} (no about)", sub.get_name()));
        }
        undocumented(sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

#[test]
fn every_argument_and_possible_value_of_every_subcommand_has_a_help_text() {
    let mut missing = Vec::new();
    undocumented(&cli::command(), "thinsend-native", &mut missing);
    assert!(missing.is_empty(), "without a help text: {missing:?}");
}

#[test]
fn every_subcommand_has_examples_and_a_version() {
    let version = env!("CARGO_PKG_VERSION");
    let subs = subcommands();
    assert!(subs.len() >= 9, "{subs:?}");
    for sub in &subs {
        let (ok, help, _) = run(&[sub, "--help"]);
        assert!(ok, "{sub} --help failed");
        let examples = help.split("\nExamples:\n").nth(1).unwrap_or_else(|| panic!("{sub} --help has no examples"));
        assert!(examples.contains(&format!("thinsend-native {sub} ")), "{sub}: no example runs {sub}");
        for flag in ["-V", "--version"] {
            let (ok, out, _) = run(&[sub, flag]);
            assert!(ok && out == format!("thinsend-native-{sub} {version}\n"), "{sub} {flag}: {out:?}");
        }
    }
    let (ok, help, _) = run(&["--help"]);
    assert!(ok && help.contains("\nExamples:\n") && help.contains("Exit status: 0 success"), "{help}");
}

/// Whether `id` was given on the command line (for a flag or an option alike).
fn given(m: &clap::ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
}

#[test]
fn short_flags_zfs_users_expect() {
    let parse = |argv: &[&str]| cli::command().try_get_matches_from([&["thinsend-native"][..], argv].concat());
    let m = parse(&["send", "-n", "-v", "vg/a", "vg/b"]).unwrap();
    let send = m.subcommand_matches("send").unwrap();
    assert!(given(send, "dry_run") && given(send, "progress"), "-n is --dry-run, -v is --progress");
    let m = parse(&["recv", "-q", "--to", "x"]).unwrap();
    assert!(given(m.subcommand_matches("recv").unwrap(), "quiet"), "-q is --quiet");
    let m = parse(&["recv", "--verbose", "vg/lv"]).unwrap();
    assert!(given(m.subcommand_matches("recv").unwrap(), "progress"), "--verbose is --progress");
    let e = parse(&["send", "-v", "-q", "vg/a"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
}

#[test]
fn completion_scripts_name_every_subcommand() {
    for (shell, marker) in [
        ("bash", "complete -F _thinsend__native"),
        ("zsh", "#compdef thinsend-native"),
        ("fish", "complete -c thinsend-native"),
    ] {
        let (ok, script, err) = run(&["completions", shell]);
        assert!(ok, "completions {shell}: {err}");
        assert!(script.contains(marker), "completions {shell} lacks {marker:?}");
        for sub in subcommands() {
            assert!(script.contains(&sub), "completions {shell} lacks {sub}");
        }
        assert!(!script.contains("sync-agent"), "completions {shell} offer the internal sync-agent");
    }
    let (ok, _, err) = run(&["completions", "tcsh"]);
    assert!(!ok && err.contains("invalid value 'tcsh'"), "{err}");
}

#[test]
fn manpages_writes_one_page_per_subcommand_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, listed, err) = run(&["manpages", dir.path().to_str().unwrap()]);
    assert!(ok, "{err}");
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let mut want: Vec<String> = subcommands().iter().map(|s| format!("thinsend-native-{s}.1")).collect();
    want.push("thinsend-native.1".into());
    want.sort();
    assert_eq!(names, want);
    assert_eq!(listed.lines().count(), want.len());
    let send = std::fs::read_to_string(dir.path().join("thinsend-native-send.1")).unwrap();
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH EXAMPLES", ".SH \"SEE ALSO\""] {
        assert!(send.contains(section), "send page lacks {section}");
    }
    assert!(send.contains("\\-\\-dry\\-run"), "send page lacks --dry-run");
    let (ok, _, err) = run(&["manpages", dir.path().to_str().unwrap()]);
    assert!(!ok && err.contains("thinsend-native.1") && err.contains("exists"), "{err}");
}
