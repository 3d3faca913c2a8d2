//! The `mkmeta` command line: argument parsing only; the work is in the mkmeta library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mkmeta",
    version,
    about = "Make dm-thin pool metadata images (and pool data) for tests and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build an image from thin_dump XML (0.9.0 dialect, or 1.x with <def>/<ref> shared leaves),
    /// like thin_restore. The output file is created (or replaced) only when complete.
    Restore {
        /// thin_dump XML.
        #[arg(short = 'i', long = "input")]
        input: PathBuf,
        /// Image file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Metadata device size in 4 KiB blocks (default: what the pool needs plus 25%, at least 1024).
        #[arg(long, value_name = "N")]
        metadata_blocks: Option<u64>,
    },
    /// Play a scenario of kernel operations (create, write, discard, snap, delete, metadata
    /// snapshot, ...) and write the resulting image; see tools/mkmeta/README.md for the format.
    Generate {
        /// Scenario file.
        spec: PathBuf,
        /// Image file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Also write the pool data device (sparse file, nr_data_blocks * data block size); each
        /// written block holds lines naming its data block, write, device and virtual block.
        #[arg(long, value_name = "DATAFILE")]
        data: Option<PathBuf>,
        /// Seed of the random writes and discards (default: the spec's seed=, else 0).
        #[arg(long)]
        seed: Option<u64>,
        /// Metadata device size in 4 KiB blocks (default: the spec's metadata_blocks=, else what
        /// the pool needs plus 25%, at least 1024).
        #[arg(long, value_name = "N")]
        metadata_blocks: Option<u64>,
    },
}

fn run(cli: Cli) -> mkmeta::Result<()> {
    match cli.cmd {
        Cmd::Restore { input, output, metadata_blocks } => {
            let o = mkmeta::restore::restore_file(&input, &output, metadata_blocks)?;
            for w in &o.warnings {
                eprintln!("mkmeta: warning: {w}");
            }
            println!(
                "{}: {} metadata blocks ({} in use), {} devices, {} mappings, {} shared leaves",
                output.display(),
                o.image.nr_blocks,
                o.image.metadata_blocks_in_use,
                o.devices,
                o.mappings,
                o.shared_leaves
            );
        }
        Cmd::Generate { spec, output, data, seed, metadata_blocks } => {
            let opts = mkmeta::generate::Options { seed, metadata_blocks, data, record_fills: false };
            let o = mkmeta::generate::generate(&spec, &output, &opts)?;
            println!(
                "{}: {} metadata blocks ({} in use), {} devices, {} mappings, {} data blocks in use, seed {}",
                output.display(),
                o.image.nr_blocks,
                o.image.metadata_blocks_in_use,
                o.devices,
                o.mappings,
                o.image.data_blocks_in_use,
                o.seed
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkmeta: {e}");
            ExitCode::FAILURE
        }
    }
}
