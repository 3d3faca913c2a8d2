//! Things that must be undone however the process ends: a held metadata snapshot (only one can exist
//! per pool; a leaked one blocks every other backup tool), a temporary LV or file. Normal paths undo
//! them through RAII guards (which also run on panic); a signal thread undoes whatever is still
//! registered on SIGINT, SIGTERM or SIGHUP and then exits with 128+signal. SIGPIPE is left ignored
//! (Rust's default), so a vanished reader is an EPIPE error on the normal path.
//!
//! A target written in place under an undo journal is rolled back by a signal [`Hook`] before the
//! process exits. The main thread changes such a target only while holding [`writing`]; the signal
//! thread takes that lock first and never releases it, so no write lands after (or during) the
//! rollback.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `dmsetup message <tpool> 0 release_metadata_snap`
    ReleaseMetadataSnap {
        tpool: String,
    },
    /// `lvremove -f vg/lv`
    RemoveLv {
        lv: String,
    },
    /// `lvchange -an vg/lv` (undoing an activation made to read it)
    DeactivateLv {
        lv: String,
    },
    RemoveFile {
        path: PathBuf,
    },
}

type Undo = Box<dyn FnOnce() -> Result<(), String> + Send>;

static REGISTRY: Mutex<Vec<(u64, Action)>> = Mutex::new(Vec::new());
static HOOKS: Mutex<Vec<(u64, Undo)>> = Mutex::new(Vec::new());
static WRITES: Mutex<()> = Mutex::new(());
static NEXT: AtomicU64 = AtomicU64::new(1);
static SIGNALS: Once = Once::new();

impl Action {
    pub fn run(&self) -> Result<(), String> {
        let status = match self {
            Action::ReleaseMetadataSnap { tpool } => {
                Command::new("dmsetup").args(["message", tpool, "0", "release_metadata_snap"]).status()
            }
            Action::RemoveLv { lv } => Command::new("lvremove").args(["-q", "-f", lv]).status(),
            Action::DeactivateLv { lv } => Command::new("lvchange").args(["-q", "-an", lv]).status(),
            Action::RemoveFile { path } => return std::fs::remove_file(path).map_err(|e| e.to_string()),
        };
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("{self:?} exited with {s}")),
            Err(e) => Err(format!("{self:?}: {e}")),
        }
    }
}

/// Undoes `action` when dropped (or when a signal ends the process first), unless `disarm`ed.
pub struct Guard {
    id: u64,
}

impl Guard {
    pub fn new(action: Action) -> Guard {
        install_signal_thread();
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).push((id, action));
        Guard { id }
    }

    fn take(&self) -> Option<Action> {
        let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        let i = r.iter().position(|(id, _)| *id == self.id)?;
        Some(r.remove(i).1)
    }

    /// Runs the action now, reporting failure.
    pub fn run(self) -> Result<(), String> {
        let res = self.take().map_or(Ok(()), |a| a.run());
        std::mem::forget(self);
        res
    }

    /// Keeps what the action would undo (e.g. a temporary that became the result).
    pub fn disarm(self) {
        self.take();
        std::mem::forget(self);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(a) = self.take() {
            if let Err(e) = a.run() {
                eprintln!("thinsend-native: cleanup failed: {e}");
            }
        }
    }
}

/// Held by the main thread around every change to a target a [`Hook`] would restore (and never
/// across a wait for input): a signal then waits for the change to end, and no change starts after.
pub fn writing() -> MutexGuard<'static, ()> {
    WRITES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `undo` if a signal ends the process while this is alive; dropping it forgets `undo`.
pub struct Hook {
    id: u64,
}

impl Hook {
    pub fn new(undo: impl FnOnce() -> Result<(), String> + Send + 'static) -> Hook {
        install_signal_thread();
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        HOOKS.lock().unwrap_or_else(|e| e.into_inner()).push((id, Box::new(undo)));
        Hook { id }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        HOOKS.lock().unwrap_or_else(|e| e.into_inner()).retain(|(id, _)| *id != self.id);
    }
}

/// What the signal thread does before exiting: waits for a target change in progress to end, runs
/// the hooks (newest first), then the registered actions. Every lock stays held: the process ends.
fn undo_all(sig: i32) {
    std::mem::forget(writing());
    let mut hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    for (_, undo) in hooks.drain(..).rev() {
        if let Err(e) = undo() {
            eprintln!("thinsend-native: rollback after signal {sig} failed: {e}");
        }
    }
    std::mem::forget(hooks);
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    for (_, a) in r.drain(..).rev() {
        // If this process still holds the LV open (a transfer in progress), undo once the process
        // is gone, from a helper in its own process group.
        let deferrable = matches!(a, Action::RemoveLv { .. } | Action::DeactivateLv { .. });
        if let Err(e) = a.run() {
            if deferrable && defer(&a).is_ok() {
                continue;
            }
            eprintln!("thinsend-native: cleanup after signal {sig} failed: {e}");
        }
    }
    std::mem::forget(r);
}

fn install_signal_thread() {
    SIGNALS.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                undo_all(sig);
                eprintln!("thinsend-native: interrupted by signal {sig}; cleaned up");
                std::process::exit(128 + sig);
            }
        });
    });
}

/// The hidden subcommand a deferred undo runs: `thinsend-native __undo-after PID remove|deactivate VG/LV`.
pub const DEFERRED: &str = "__undo-after";

fn defer(a: &Action) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let (what, lv) = match a {
        Action::RemoveLv { lv } => ("remove", lv),
        Action::DeactivateLv { lv } => ("deactivate", lv),
        _ => return Err(std::io::Error::other("not deferrable")),
    };
    let exe = std::env::current_exe()?;
    Command::new(exe)
        .args([DEFERRED, &std::process::id().to_string(), what, lv])
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
}

/// Body of a deferred undo: wait (up to a minute) for process `pid` to exit, then remove or
/// deactivate the LV, retrying while the kernel still sees it open. Returns the exit code.
pub fn deferred_main(args: &[String]) -> u8 {
    let (Some(pid), Some(what), Some(lv)) =
        (args.first().and_then(|p| p.parse::<i32>().ok()), args.get(1), args.get(2))
    else {
        return 2;
    };
    let action = match what.as_str() {
        "remove" => Action::RemoveLv { lv: lv.clone() },
        "deactivate" => Action::DeactivateLv { lv: lv.clone() },
        _ => return 2,
    };
    let gone = || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
    for _ in 0..600 {
        if gone() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for _ in 0..20 {
        if action.run().is_ok() {
            return 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    eprintln!("thinsend-native: after an interrupted run, could not {what} {lv}; do it with lvremove/lvchange -an");
    1
}
