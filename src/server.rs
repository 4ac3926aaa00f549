//! Builds the Pingora server for a validated configuration.

use crate::config::Config;
use crate::proxy::{OriginPull, StartError};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

/// A server ready for `run_forever`.
pub fn build(config: &Config) -> Result<Server, StartError> {
    let conf = ServerConf {
        // Like nginx's `worker_processes auto`: one thread per core unless
        // the config says otherwise (Pingora's own default is 1).
        threads: config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        // One single-threaded runtime per thread: a request's downstream
        // and upstream tasks stay on one core, which saves the cross-core
        // wake-ups the work-stealing scheduler pays for every body chunk.
        work_stealing: false,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = OriginPull::new(config)?;
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, proxy);
    for addr in &config.listen {
        service.add_tcp(addr);
    }
    server.add_service(service);
    Ok(server)
}
