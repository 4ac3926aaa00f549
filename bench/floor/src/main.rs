#![forbid(unsafe_code)]
//! The framework's floor for the benchmark: a Pingora 0.9 proxy that sends
//! every request unchanged to one upstream and does nothing else (no site
//! lookup, no key decoding, no signing, no header filtering). The bench
//! runs it with the same worker layout and listener buffers as origin-pull,
//! so the gap between the two rows is what origin-pull itself adds.
//!
//! ```sh
//! cp Cargo.lock bench/floor/ && CARGO_TARGET_DIR=target \
//!   cargo build --release --manifest-path bench/floor/Cargo.toml
//! target/release/bare-pingora --listen 127.0.0.1:8081 --upstream 127.0.0.1:8080
//! ```

use async_trait::async_trait;
use clap::Parser;
use origin_pull::config::limits;
use pingora::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::process::ExitCode;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    /// Where to listen.
    #[arg(long)]
    listen: String,
    /// The upstream every request goes to (plain HTTP).
    #[arg(long)]
    upstream: SocketAddr,
    /// Workers (single-threaded services, a socket each, as origin-pull).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Client connections' write buffer in bytes (default: origin-pull's
    /// `limits.downstream_write_buffer_bytes`; Pingora's own is 1460).
    #[arg(long, default_value_t = limits::DEFAULT_DOWNSTREAM_WRITE_BUFFER_BYTES)]
    write_buffer: usize,
    /// Client connections' read buffer in bytes (default: origin-pull's).
    #[arg(long, default_value_t = limits::DEFAULT_DOWNSTREAM_READ_BUFFER_BYTES)]
    read_buffer: usize,
}

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let conf = ServerConf {
        // As origin-pull's workers (src/server.rs).
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let buffers = L4BufferSettings::new(cli.read_buffer, cli.write_buffer);
    for i in 0..cli.workers.max(1) {
        let mut service = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            Bare {
                upstream: cli.upstream,
            },
            &format!("bare worker {i}"),
        );
        service.threads = Some(1);
        let mut opt = TcpSocketOptions::default();
        opt.so_reuseport = Some(true);
        let addr = origin_pull::server::worker_address(&cli.listen, i);
        service.add_listener(
            ListenerConfig::tcp(addr)
                .tcp_socket_options(opt)
                .l4_buffer(buffers),
        );
        server.add_service(service);
    }
    server.run_forever()
}
