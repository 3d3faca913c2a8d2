//! The `thinsend-native` binary: the command line lives in [`cli`], the work in the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
