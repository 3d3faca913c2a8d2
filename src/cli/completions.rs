//! `completions SHELL` and `manpages DIR`: shell completion scripts and one manual page per
//! subcommand, both generated from the clap definitions (what the Debian package ships, so the
//! documentation cannot drift from the flags; `cargo install` users make their own the same way).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Command};
use clap_complete::Shell;
use thinsend::Error;

use super::args::{flush, stdout};

pub const EXAMPLES: &str = "\
Examples:
  thinsend-native completions bash > /etc/bash_completion.d/thinsend-native
  thinsend-native completions zsh > /usr/local/share/zsh/site-functions/_thinsend-native
  thinsend-native completions fish > ~/.config/fish/completions/thinsend-native.fish
  source <(thinsend-native completions bash)     # this shell only";

pub const MANPAGES_EXAMPLES: &str = "\
Examples:
  thinsend-native manpages /usr/local/share/man/man1 && mandb -q
  thinsend-native manpages /tmp/pages && man -l /tmp/pages/thinsend-native-send.1";

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum, value_name = "SHELL")]
    shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory to write thinsend-native.1 and thinsend-native-SUBCOMMAND.1 into (created if
    /// missing; an existing page is an error, never overwritten).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// Prints the completion script for `a.shell` on stdout.
pub fn completions(a: CompletionsArgs, mut cmd: Command) -> Result<ExitCode, Error> {
    // Generated into memory first: clap_complete panics on a failed write, a closed pipe must not.
    let mut script = Vec::new();
    cmd = visible(cmd);
    clap_complete::generate(a.shell, &mut cmd, BIN, &mut script);
    if a.shell == Shell::Bash {
        script = fix_bash_arms(&String::from_utf8_lossy(&script), BIN).into_bytes();
    }
    let mut out = stdout();
    out.write_all(&script).map_err(|e| Error::io("<stdout>", e))?;
    flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

const BIN: &str = "thinsend-native";

/// `cmd` without its hidden subcommands (the internal `sync-agent`): clap_complete offers hidden
/// subcommands in zsh and fish, and clap cannot remove a subcommand, so the top level is rebuilt
/// from its parts (what a completion script uses: name, version, about, arguments, subcommands).
fn visible(cmd: Command) -> Command {
    let mut top = Command::new(BIN);
    if let Some(about) = cmd.get_about() {
        top = top.about(about.clone());
    }
    if cmd.get_version().is_some() {
        top = top.version(env!("CARGO_PKG_VERSION"));
    }
    top = top.args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned());
    top.subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// clap_complete's bash script spells a subcommand's state `thinsend__native__subcmd__send` in its
/// dispatch loop but `thinsend__subcmd__native__subcmd__send` in the case arms when the program
/// name has a hyphen (clap-rs/clap#6421, open in clap_complete 4.6.12), so no option of a
/// subcommand ever completed. Spell the arms as the loop does.
fn fix_bash_arms(script: &str, bin: &str) -> String {
    if !bin.contains('-') {
        return script.to_string();
    }
    script.replace(&bin.replace('-', "__subcmd__"), &bin.replace('-', "__"))
}

/// The manual pages of `cmd` and of each visible subcommand, as (file name, roff text).
pub fn pages(cmd: Command) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let subs: Vec<Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
    let mut pages = Vec::new();
    let top = cmd.get_name().to_string();
    let names: Vec<String> = subs.iter().map(|s| format!("{top}-{}", s.get_name())).collect();
    for c in std::iter::once(cmd).chain(subs) {
        let see_also = match c.get_name() == top {
            true => names.iter().map(|n| format!("{n}(1)")).collect::<Vec<_>>().join(", "),
            false => format!("{top}(1)"),
        };
        let name = c.get_display_name().unwrap_or(c.get_name()).to_string();
        let text = page(c, &see_also).map_err(|e| Error::Other(format!("rendering {name}.1: {e}")))?;
        pages.push((format!("{name}.1"), text));
    }
    Ok(pages)
}

/// One page: clap_mangen's sections, then the command's `after_help` as EXAMPLES (the example
/// lines kept as they are, unfilled; the paragraphs after them filled) and SEE ALSO.
fn page(cmd: Command, see_also: &str) -> std::io::Result<Vec<u8>> {
    use clap_mangen::roff::{roman, Roff};
    let after = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
    let (has_subs, has_version) = (cmd.has_subcommands(), cmd.get_version().is_some());
    let man = clap_mangen::Man::new(cmd).manual("thinsend-native manual");
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    man.render_options_section(&mut w)?;
    if has_subs {
        man.render_subcommands_section(&mut w)?;
    }
    let mut roff = Roff::new();
    let mut parts = after.split("\n\n").filter(|p| !p.trim().is_empty()).peekable();
    if let Some(examples) = parts.peek().copied().and_then(|p| p.strip_prefix("Examples:\n")) {
        parts.next();
        roff.control("SH", ["EXAMPLES"]).control("nf", []);
        for line in examples.lines() {
            roff.text([roman(line.strip_prefix("  ").unwrap_or(line))]);
        }
        roff.control("fi", []);
    }
    for para in parts {
        roff.control("PP", []).text([roman(para.replace('\n', " "))]);
    }
    roff.control("SH", ["SEE ALSO"]).control("nh", []).text([roman(see_also)]);
    roff.to_writer(&mut w)?;
    if has_version {
        man.render_version_section(&mut w)?;
    }
    Ok(w)
}

/// Writes every page into `a.dir`, each file created exclusively and never through a symlink.
pub fn man(a: ManArgs, cmd: Command) -> Result<ExitCode, Error> {
    std::fs::create_dir_all(&a.dir).map_err(|e| Error::io(&a.dir, e))?;
    for (name, text) in pages(cmd)? {
        let path = a.dir.join(name);
        write_new(&path, &text).map_err(|e| Error::io(&path, e))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_new(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let mut f =
        OpenOptions::new().write(true).create_new(true).mode(0o644).custom_flags(libc::O_NOFOLLOW).open(path)?;
    f.write_all(text)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Command {
        Command::new("tool")
            .version("1.2.3")
            .after_help("Examples:\n  tool one\n  tool two -x\n\nSome prose\nover two lines.")
            .subcommand(Command::new("one").about("First").after_help("Examples:\n  tool one --all"))
            .subcommand(Command::new("two").about("Second"))
            .subcommand(Command::new("secret").hide(true))
    }

    /// Every state the bash script's dispatch loop can reach (`cmd="..."`) has a case arm.
    #[test]
    fn bash_completion_has_an_arm_for_every_subcommand_state() {
        let mut cmd = super::super::command();
        let mut raw = Vec::new();
        clap_complete::generate(Shell::Bash, &mut cmd, BIN, &mut raw);
        let script = fix_bash_arms(&String::from_utf8(raw).unwrap(), BIN);
        let states: Vec<&str> =
            script.lines().filter_map(|l| l.trim().strip_prefix("cmd=\"")?.strip_suffix('"')).collect();
        assert!(states.contains(&"thinsend__native__subcmd__send"), "{states:?}");
        for state in states.iter().filter(|s| !s.is_empty()) {
            assert!(script.contains(&format!("        {state})\n")), "no case arm for {state}");
        }
    }

    /// No shell is offered a hidden subcommand; every visible one is there.
    #[test]
    fn completions_leave_out_hidden_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut c = visible(cmd());
            let mut raw = Vec::new();
            clap_complete::generate(shell, &mut c, "tool", &mut raw);
            let script = String::from_utf8(raw).unwrap();
            assert!(!script.contains("secret"), "{shell}: {script}");
            assert!(script.contains("one") && script.contains("two"), "{shell}: {script}");
        }
    }

    #[test]
    fn one_page_per_visible_subcommand_named_as_man_expects() {
        let names: Vec<String> = pages(cmd()).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["tool.1", "tool-one.1", "tool-two.1"]);
    }

    #[test]
    fn an_existing_page_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        man(ManArgs { dir: dir.path().into() }, cmd()).unwrap();
        let page = std::fs::read_to_string(dir.path().join("tool-one.1")).unwrap();
        assert!(page.contains(".TH tool-one 1"), "{page}");
        assert!(page.contains(".SH EXAMPLES\n.nf\ntool one \\-\\-all\n.fi\n"), "{page}");
        assert!(page.contains(".SH \"SEE ALSO\"\n.nh\ntool(1)\n"), "{page}");
        let top = std::fs::read_to_string(dir.path().join("tool.1")).unwrap();
        assert!(top.contains("tool one\ntool two \\-x\n.fi\n.PP\nSome prose over two lines.\n"), "{top}");
        assert!(top.contains("tool\\-one(1), tool\\-two(1)"), "{top}");
        let again = man(ManArgs { dir: dir.path().into() }, cmd()).unwrap_err();
        assert!(again.to_string().contains("tool.1"), "{again}");
    }
}
