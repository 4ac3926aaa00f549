#![forbid(unsafe_code)]
//! The `origin-pull` binary: one YAML file in, a running edge proxy out.

use clap::Parser;
use origin_pull::Config;
use std::path::PathBuf;
use std::process::ExitCode;

// The binary's allocator, not the library's: an embedder picks its own.
// Measured on a 4 KiB hit (bench/perreq.py): fewer instructions than
// glibc's malloc, see README "Where the time goes".
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Back-to-origin edge proxy for S3-compatible buckets")]
struct Cli {
    /// The YAML configuration file (the container image's path by default).
    #[arg(short, long, default_value = "/etc/origin-pull/origin-pull.yaml")]
    config: PathBuf,
    /// Validate the configuration and exit (like `nginx -t`).
    #[arg(short, long)]
    test: bool,
    /// Listen beside an origin-pull already running on the same `listen`
    /// addresses (a binary upgrade: start the new one, wait for it, then
    /// SIGTERM the old). Without it, a taken address stops the start.
    #[arg(long)]
    share_port: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// GET the URL (e.g. http://127.0.0.1:9090/readyz): exit 0 on a 2xx,
    /// 1 otherwise. For container health checks in an image without curl.
    Healthcheck {
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { url, timeout }) = &cli.command {
        return healthcheck(url, std::time::Duration::from_secs(*timeout));
    }
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
    if let Err(e) = origin_pull::server::check_addresses_free(&config, cli.share_port) {
        eprintln!("origin-pull: {e}");
        return ExitCode::from(1);
    }
    let (server, proxy, edge) = match origin_pull::server::build(&config) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("origin-pull: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = origin_pull::control::start(&cli.config, config, proxy, edge) {
        eprintln!("origin-pull: {e}");
        return ExitCode::from(1);
    }
    server.run_forever()
}

fn healthcheck(url: &str, timeout: std::time::Duration) -> ExitCode {
    let check = async {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        client.get(url).send().await
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match rt.map(|rt| rt.block_on(check)) {
        Ok(Ok(r)) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(Ok(r)) => {
            eprintln!("origin-pull healthcheck: {url} answered {}", r.status());
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprintln!("origin-pull healthcheck: {url}: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("origin-pull healthcheck: {e}");
            ExitCode::from(1)
        }
    }
}
