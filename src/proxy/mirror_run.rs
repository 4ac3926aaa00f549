//! One plain-path mirror attempt's state ([`MirrorRun`]): the origin
//! tried, redirect hops, the secondary, the addresses, the tee and the
//! MD5 check of the body as it passes.

use super::*;
use std::time::Duration;

/// State of one mirror attempt.
pub struct MirrorRun {
    /// Index of the rule in the site's rules.
    pub rule: usize,
    /// Key as sent to the origin (after rewriting).
    pub origin_key: String,
    /// The client's query string, when the rule passes it.
    pub query: Option<String>,
    /// The origin being tried (the rule's `url` or `secondary_url`).
    pub configured: OriginTarget,
    /// Where this attempt goes: `configured`, or a redirect hop from it.
    pub target: OriginTarget,
    /// URL for `x-oss-tag`: the configured origin's URL of the object.
    pub tag_url: String,
    pub hops: u8,
    pub on_secondary: bool,
    pub write_back: bool,
    pub tee: Option<Tee>,
    /// With `check_md5` and a `Content-MD5` from the origin: the body's
    /// hash so far and the one it must come to. Boxed: most runs have none.
    pub md5: Option<Box<(Md5, [u8; 16])>>,
    pub status: u16,
    pub bytes: u64,
    pub started: Instant,
    /// `target`'s addresses, resolved once per target (a name whose
    /// answer rotates would otherwise give the failed address again),
    /// and the one this attempt connects to.
    addrs: Vec<std::net::SocketAddr>,
    addr_index: usize,
    /// Connects moved on to a further address, this request.
    pub addr_fallbacks: u8,
}

impl MirrorRun {
    pub fn new(
        rule_idx: usize,
        m: &Mirror,
        origin_key: String,
        query: Option<String>,
        write_back: bool,
    ) -> MirrorRun {
        let target = configured_target(&m.url, m.auth.as_ref(), &origin_key, query.as_deref());
        MirrorRun {
            rule: rule_idx,
            tag_url: target.url.clone(),
            configured: target.clone(),
            target,
            origin_key,
            query,
            hops: 0,
            on_secondary: false,
            write_back,
            tee: None,
            md5: None,
            status: 0,
            bytes: 0,
            started: Instant::now(),
            addrs: Vec::new(),
            addr_index: 0,
            addr_fallbacks: 0,
        }
    }

    /// The next attempt goes to `target` (a redirect hop, the secondary):
    /// its addresses are looked up afresh.
    pub fn move_to(&mut self, target: OriginTarget) {
        self.target = target;
        self.addrs.clear();
        self.addr_index = 0;
    }

    /// After a failed connect: moves to the target's next address, if
    /// its name has one more.
    pub fn next_addr(&mut self) -> bool {
        if self.addr_index + 1 >= self.addrs.len() {
            return false;
        }
        self.addr_index += 1;
        true
    }

    /// Moves to the secondary origin if there is one not yet tried.
    pub fn switch_to_secondary(&mut self, m: &Mirror) -> bool {
        match (&m.secondary_url, self.on_secondary) {
            (Some(url), false) => {
                self.on_secondary = true;
                self.hops = 0;
                let target = configured_target(
                    url,
                    m.secondary_auth.as_ref(),
                    &self.origin_key,
                    self.query.as_deref(),
                );
                self.configured = target.clone();
                self.move_to(target);
                self.tag_url = self.target.url.clone();
                true
            }
            _ => false,
        }
    }

    /// The credentials for this attempt: the tried origin's, none on a hop
    /// to another origin.
    pub fn auth<'m>(&self, m: &'m Mirror) -> Option<&'m OriginAuth> {
        let auth = if self.on_secondary {
            m.secondary_auth.as_ref()
        } else {
            m.auth.as_ref()
        };
        origin_auth::for_target(auth, &self.configured, &self.target)
    }

    /// A piece of the origin's body on the plain path: counted, teed to
    /// the write-back and, with `check_md5`, hashed. An end whose MD5 is
    /// not the origin's `Content-MD5` is an error: the client's response
    /// ends without a valid end, as on the fill path (nothing is stored).
    /// One chunk of the origin's body (`header_out`: the client has the
    /// response header); Some: pause before the next, for the tee.
    pub fn body(
        &mut self,
        body: Option<&Bytes>,
        end: bool,
        header_out: bool,
    ) -> Result<Option<std::time::Duration>> {
        let mut pause = None;
        if let Some(b) = body {
            self.bytes += b.len() as u64;
            if let Some(tee) = self.tee.as_mut() {
                pause = tee.push(b, header_out);
            }
            if let Some(m) = self.md5.as_mut() {
                m.0.update(b);
            }
        }
        if !end {
            return Ok(pause);
        }
        if let Some(tee) = self.tee.as_mut() {
            tee.finish();
        }
        let Some(m) = self.md5.take() else {
            return Ok(None);
        };
        let (hasher, want) = *m;
        if hasher.finalize().as_slice() == want {
            return Ok(None);
        }
        Err(Error::create(
            ErrorType::Custom("md5_mismatch"),
            ErrorSource::Upstream,
            Some("the origin's body does not match its Content-MD5".into()),
            None,
        ))
    }
}

/// The origin peer of this plain-path attempt: the target's addresses
/// resolved once per target, the next one after a failed connect
/// (`connect_failed`), a redirect hop checked against the hop policy.
pub async fn peer(ctx: &mut RequestCtx, site: &Arc<Site>) -> Result<HttpPeer> {
    let Some(run) = ctx.mirror.as_ref() else {
        return Err(Error::new(InternalError));
    };
    let timeout = rule(site, run.rule)
        .map(|m| m.timeout)
        .unwrap_or(Duration::from_secs(10));
    let resolved = if run.addrs.is_empty() {
        match crate::mirror::resolve(&run.target).await {
            Ok(addrs) => Some(addrs),
            Err(e) => {
                let why = format!("cannot resolve the origin: {e}");
                return Err(origin_failed(ctx, why));
            }
        }
    } else {
        None
    };
    let addrs = resolved.as_deref().unwrap_or(&run.addrs);
    // After a failed connect, the name's next address (`connect_failed`).
    let i = run.addr_index.min(addrs.len() - 1);
    let addr = addrs[i];
    // A redirect hop may not lead into the internal network unless the
    // configured origin is there too (the fill path checks the same),
    // judged on the address the peer connects to.
    if run.hops > 0 {
        let (configured, target) = (&run.configured, &run.target);
        let allowed = crate::fill::policy::check_hop_addr(configured, target, addr.ip());
        if let Err(why) = allowed.await {
            // As the fill path counts a refused hop.
            count(site, run.rule, crate::metrics::OriginResult::BadStatus);
            return Err(origin_failed(ctx, why));
        }
    }
    let peer = crate::mirror::peer_at(&run.target, addr, timeout);
    if let Some(run) = ctx.mirror.as_mut() {
        if let Some(addrs) = resolved {
            run.addrs = addrs;
        }
    }
    Ok(peer)
}
