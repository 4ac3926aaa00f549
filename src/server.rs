//! Builds the Pingora server for a validated configuration.
//!
//! Workers: one single-threaded Pingora service per worker, each with its
//! own upstream connection pool and its own `SO_REUSEPORT` listening
//! socket, so the kernel spreads connections like nginx's `reuseport`.
//! Inside one Pingora `Server` a second service on the same address
//! *string* reuses the first one's fd (pingora-core 0.9 listeners/l4.rs,
//! the fd table is keyed by the string): with plain copies of the address
//! all workers shared one socket (`ss -ltn` showed one). So each worker
//! gets another spelling of the same address ([`worker_address`]), which
//! binds its own socket. One service per worker was chosen over one
//! service with N threads because, measured (bench/,
//! stand-in bucket, 4 KiB hits), that layout lost 8% of upstream
//! reuses to a race in Pingora 0.9's pool (an idle-watch task on another
//! thread still holds the connection when it is taken: "failed to acquire
//! reusable stream", a new connection and an ERROR line each time) and
//! paid cross-thread wake-ups on every request.
//!
//! TLS listeners follow the same layout: each worker gets its own socket
//! (same spelled address trick) with its own Pingora acceptor, and all of
//! them resolve certificates through the listener's one shared
//! `CertStore` (`crate::edge_tls`), so a reload reaches every worker.

use crate::config::Config;
use crate::edge_tls::EdgeTls;
use crate::proxy::{OriginPull, StartError};
use pingora::listeners::{ListenerConfig, TcpSocketOptions};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

/// A server ready for `run_forever`, the proxy it serves and the
/// certificate stores of its TLS listeners (for the control plane:
/// reloads, readiness).
pub fn build(config: &Config) -> Result<(Server, OriginPull, EdgeTls), StartError> {
    // Like nginx's `worker_processes auto`: one worker per core unless
    // the config says otherwise.
    let workers = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Pingora sleeps its grace period in full after SIGTERM; `control`
    // exits as soon as the work in flight is done, at the latest after
    // `shutdown_timeout`, so Pingora's own bound only backs it up.
    let conf = ServerConf {
        grace_period_seconds: Some(config.shutdown_timeout.as_secs() + 5),
        graceful_shutdown_timeout_seconds: Some(1),
        // Each worker is one thread (below), so there is nothing to steal
        // from: Pingora's no-steal flavour runs it on tokio's
        // current-thread scheduler, which skips the multi-thread one's
        // bookkeeping (searching state, inject queue, sibling wake-ups).
        // Measured (4 KiB hits, stand-in bucket, 5 interleaved runs):
        // +17 % req/s under full load, -5 % CPU per request at a fixed rate.
        work_stealing: false,
        // Pingora's read timeouts (the bucket's, per upstream read) on
        // tokio's timer instead of Pingora's shared timer thread: on a
        // current-thread runtime the wheel is the worker's own, and
        // registering costs less (callgrind, 4 KiB hit: 103.3k -> 102.0k
        // instructions).
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        max_retries: crate::proxy::MAX_TRIES,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = OriginPull::new(config)?;
    let edge = EdgeTls::new(&config.listen);
    for i in 0..workers {
        let name = format!("origin-pull worker {i}");
        let mut service = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            proxy.clone(),
            &name,
        );
        service.threads = Some(1);
        if let Some(app) = service.app_logic_mut() {
            // HTTP/2 clients' idle bound (`limits.client_idle_timeout_seconds`;
            // HTTP/1.1's is set per request, `Limits::bound_client`).
            // `HttpServerOptions` is non-exhaustive: set on a default.
            let mut options = pingora::apps::HttpServerOptions::default();
            options.h2_idle_timeout = Some(std::time::Duration::from_secs(
                config.limits.client_idle_timeout_seconds,
            ));
            app.server_options = Some(options);
        }
        for l in &config.listen {
            let mut opt = TcpSocketOptions::default();
            opt.so_reuseport = Some(true);
            let addr = worker_address(&l.addr, i);
            // Client connections' buffers: see `config::limits`.
            let mut listener = ListenerConfig::tcp(addr)
                .tcp_socket_options(opt)
                .l4_buffer(config.limits.l4_buffers());
            if let Some(tls) = edge.settings(l) {
                listener = listener.tls(tls);
            }
            service.add_listener(listener);
        }
        server.add_service(service);
    }
    Ok((server, proxy, edge))
}

/// Refuses to start on an address another process listens on. Every
/// worker binds with `SO_REUSEPORT`, so a second origin-pull of the same
/// user (a stale one, or systemd's and a hand-started one) used to join
/// the port without a word and the kernel split connections between two
/// configurations; a holder without `SO_REUSEPORT` (nginx) made Pingora
/// retry for 30 s, then end the worker while the process stayed up and
/// ready. A socket without `SO_REUSEPORT` binds beside neither, so
/// binding one for a moment tells (with `SO_REUSEADDR`, so closed
/// connections in TIME_WAIT don't count). It is bound, never listening:
/// a client that connects in that moment (a readiness poll) must not land
/// in a backlog that is about to be closed, which resets it. `share_port` (the CLI's
/// `--share-port`, for a binary upgrade) skips the `listen` addresses;
/// the admin listener is always checked: it can't be shared.
pub fn check_addresses_free(config: &Config, share_port: bool) -> Result<(), StartError> {
    let listen = config.listen.iter().filter(|_| !share_port);
    let admin = config.admin.iter().map(|a| (a.listen.to_string(), true));
    for (addr, is_admin) in listen.map(|l| (l.addr.clone(), false)).chain(admin) {
        if let Err(e) = bind_only(&addr) {
            let why = match e.kind() {
                // `--share-port` shares the `listen` ports only.
                std::io::ErrorKind::AddrInUse if is_admin => {
                    "admin.listen: another process listens there (is an origin-pull already \
                     running? The admin port can't be shared: give this one another \
                     admin.listen, or none)"
                        .into()
                }
                std::io::ErrorKind::AddrInUse => {
                    "another process listens there (is an origin-pull already running? \
                     `--share-port` starts beside it, for a binary upgrade)"
                        .into()
                }
                _ => e.to_string(),
            };
            return Err(StartError::Listen(addr, why));
        }
    }
    Ok(())
}

/// Binds a socket to `addr` (no `listen`) and closes it.
fn bind_only(addr: &str) -> std::io::Result<()> {
    let sa: std::net::SocketAddr = addr
        .parse()
        .map_err(|_| std::io::Error::other("not an ip:port address"))?;
    let socket = match sa {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(sa)
}

/// Worker `n`'s spelling of listen address `addr`: the same socket address
/// written differently, so Pingora binds a socket of its own for it
/// (see the module comment). Worker 0 keeps `addr`. IPv4 uses the
/// hexadecimal form the system resolver reads (`0x7f000001`, with `n - 1`
/// leading zeros); IPv6 the uncompressed form with some groups zero-padded.
/// When the system can't read a spelling back to the same address, the
/// worker shares `addr`'s socket (correct, only less balanced).
pub fn worker_address(addr: &str, n: usize) -> String {
    use std::net::{SocketAddr, ToSocketAddrs};
    let Ok(sa) = addr.parse::<SocketAddr>() else {
        return addr.to_string();
    };
    if n == 0 {
        return addr.to_string();
    }
    let spelled = match sa {
        SocketAddr::V4(v4) => format!(
            "0x{}{:08x}:{}",
            "0".repeat(n - 1),
            u32::from(*v4.ip()),
            v4.port()
        ),
        SocketAddr::V6(v6) => {
            let groups: Vec<String> = v6
                .ip()
                .segments()
                .iter()
                .enumerate()
                .map(|(j, g)| {
                    if (n >> j) & 1 == 1 {
                        format!("{g:04x}")
                    } else {
                        format!("{g:x}")
                    }
                })
                .collect();
            format!("[{}]:{}", groups.join(":"), v6.port())
        }
    };
    let same = spelled
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|back| back == sa);
    if same && spelled != addr {
        spelled
    } else {
        addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::worker_address;
    use std::collections::HashSet;
    use std::net::{SocketAddr, ToSocketAddrs};

    #[test]
    fn every_worker_spells_the_same_address_differently() {
        for addr in ["127.0.0.1:8080", "0.0.0.0:80", "[::1]:8443", "[::]:8080"] {
            let want: SocketAddr = addr.parse().unwrap();
            let spelled: Vec<String> = (0..8).map(|n| worker_address(addr, n)).collect();
            assert_eq!(spelled[0], addr);
            let distinct: HashSet<&String> = spelled.iter().collect();
            assert_eq!(distinct.len(), 8, "{spelled:?}");
            for s in &spelled {
                let back = s.to_socket_addrs().unwrap().next().unwrap();
                assert_eq!(back, want, "{s}");
            }
        }
    }
}
