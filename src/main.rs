#![forbid(unsafe_code)]
//! The `origin-pull` binary: one YAML file in, a running edge proxy out.

use clap::Parser;
use origin_pull::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "Back-to-origin edge proxy for S3-compatible buckets")]
struct Cli {
    /// The YAML configuration file.
    #[arg(short, long, default_value = "conf/origin-pull.yaml")]
    config: PathBuf,
    /// Validate the configuration and exit (like `nginx -t`).
    #[arg(short, long)]
    test: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("origin-pull: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.test {
        println!(
            "origin-pull: configuration {} is valid",
            cli.config.display()
        );
        return ExitCode::SUCCESS;
    }
    match origin_pull::server::build(&config) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("origin-pull: {e}");
            ExitCode::from(1)
        }
    }
}
