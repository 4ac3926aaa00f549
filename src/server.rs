//! Builds the Pingora server for a validated configuration.

use crate::config::Config;
use crate::proxy::{OriginPull, StartError};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

/// A server ready for `run_forever`.
pub fn build(config: &Config) -> Result<Server, StartError> {
    let conf = ServerConf {
        threads: config.threads.unwrap_or(1),
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
