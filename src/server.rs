//! Builds the Pingora server for a validated configuration.
//!
//! Workers: one single-threaded Pingora service per worker, each with its
//! own upstream connection pool. Caution: they were meant to be
//! `SO_REUSEPORT` siblings (the kernel spreading connections), but inside
//! one Pingora `Server` a second service on the same address string reuses
//! the first one's listening fd (pingora-core 0.9 listeners/l4.rs): `ss
//! -ltn` shows one socket per port, shared by all workers (issue 14).
//! Kept over one service with N threads because, measured (bench/,
//! stand-in bucket, 4 KiB hits), that layout lost 8% of upstream
//! reuses to a race in Pingora 0.9's pool (an idle-watch task on another
//! thread still holds the connection when it is taken: "failed to acquire
//! reusable stream", a new connection and an ERROR line each time) and
//! paid cross-thread wake-ups on every request.

use crate::config::Config;
use crate::proxy::{OriginPull, StartError};
use pingora::listeners::TcpSocketOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

/// A server ready for `run_forever`.
pub fn build(config: &Config) -> Result<Server, StartError> {
    // Like nginx's `worker_processes auto`: one worker per core unless
    // the config says otherwise.
    let workers = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut server = Server::new_with_opt_and_conf(None, ServerConf::default());
    server.bootstrap();
    let proxy = OriginPull::new(config)?;
    for i in 0..workers {
        let name = format!("origin-pull worker {i}");
        let mut service = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            proxy.clone(),
            &name,
        );
        service.threads = Some(1);
        for addr in &config.listen {
            let mut opt = TcpSocketOptions::default();
            opt.so_reuseport = Some(true);
            service.add_tcp_with_settings(addr, opt);
        }
        server.add_service(service);
    }
    Ok(server)
}
