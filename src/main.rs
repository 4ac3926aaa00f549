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

/// The process's logger: env_logger (`RUST_LOG`, default `info`), except
/// that what a client does to its own connection is logged at debug, not
/// ERROR ([`client_noise`]), as nginx logs it at info. At ERROR, a load
/// balancer's TCP health check on a TLS port, a scanner, or a client that
/// refuses the certificate or hangs up mid-request made an ERROR line
/// each, which buried real errors and tripped error-rate alerts.
struct Logger(env_logger::Logger);

/// Pingora's ERROR lines about a client's own connection: a failed TLS
/// handshake, a request header the client never finished.
fn client_noise(r: &log::Record) -> bool {
    if r.level() != log::Level::Error {
        return false;
    }
    let msg = || r.args().to_string();
    match r.target() {
        "pingora_core::services::listening" => msg().starts_with("Downstream handshake"),
        "pingora_proxy" => {
            let m = msg();
            m.starts_with("Fail to proxy:") && m.contains("downstream session type")
        }
        _ => false,
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        self.0.enabled(m)
    }

    fn log(&self, r: &log::Record) {
        if !client_noise(r) {
            return self.0.log(r);
        }
        // Counted, so a listener whose every handshake fails (a bad
        // certificate, a cipher mismatch) still shows without the line.
        if r.target() == "pingora_core::services::listening" {
            origin_pull::metrics::METRICS.tls_handshake_failures.inc();
        }
        let demoted = log::Metadata::builder()
            .level(log::Level::Debug)
            .target(r.target())
            .build();
        if self.0.enabled(&demoted) {
            self.0.log(
                &log::Record::builder()
                    .metadata(demoted)
                    .args(*r.args())
                    .module_path(r.module_path())
                    .file(r.file())
                    .line(r.line())
                    .build(),
            );
        }
    }

    fn flush(&self) {
        self.0.flush()
    }
}

fn main() -> ExitCode {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Logger(logger))).is_ok() {
        log::set_max_level(max);
    }
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
        for (at, why) in config.unresolved_endpoints(&cli.config) {
            eprintln!("origin-pull: warning: {at}: {why} (a start on this machine would fail)");
        }
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
            // An endpoint that did not resolve is named at its line (the
            // build names only the site); resolved again only now, so a
            // start that succeeds asks DNS once per bucket.
            let e = e.to_string();
            let located = config
                .unresolved_endpoints(&cli.config)
                .into_iter()
                .find(|(_, why)| e.ends_with(why.as_str()));
            match located {
                Some((at, why)) => eprintln!("origin-pull: {at}: {why}"),
                None => eprintln!("origin-pull: {e}"),
            }
            return ExitCode::from(1);
        }
    };
    let fills = proxy.fills().clone();
    if let Err(e) = origin_pull::control::start(&cli.config, config, proxy, edge) {
        eprintln!("origin-pull: {e}");
        fills.remove_socket();
        return ExitCode::from(1);
    }
    // SIGTERM and SIGQUIT start Pingora's graceful stop, which the control
    // thread ends as soon as nothing is in flight; SIGINT is the control
    // thread's alone (`control::PingoraSignals`).
    server.run(pingora::server::RunArgs {
        shutdown_signal: Box::new(origin_pull::control::PingoraSignals),
    });
    // Pingora's grace period ran out before the control thread exited.
    origin_pull::access_log::flush();
    fills.remove_socket();
    ExitCode::SUCCESS
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
            // The whole chain: reqwest's own text ("error sending request")
            // does not tell a refused connection from a timeout.
            let why = if e.is_timeout() {
                format!("no answer within {timeout:?}")
            } else {
                origin_pull::errors::chain(&e)
            };
            eprintln!("origin-pull healthcheck: {url}: {why}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("origin-pull healthcheck: {e}");
            ExitCode::from(1)
        }
    }
}
