//! Raw YAML → validated model. Each check names the field it is about so
//! the error can point at its `line:column` (see `locate`).

use super::locate::{locate, FieldPath};
use super::raw::*;
use super::*;
use crate::rules::{
    Action, Condition, HeaderCondition, HeaderPolicy, HeaderTest, KeyRewrite, Mirror, OriginUrl,
    Redirect,
};
use regex::Regex;
use std::collections::HashMap;
use std::time::Duration;

struct Ctx<'a> {
    src: &'a str,
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file's folder: relative paths in it resolve here.
    base: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, path: &FieldPath, msg: impl std::fmt::Display) -> ConfigError {
        let (line, column) = locate(self.src, path).unwrap_or((1, 1));
        ConfigError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            message: format!("{path}: {msg}"),
        }
    }

    fn warning(&self, path: &FieldPath, msg: impl std::fmt::Display) -> String {
        let (line, column) = locate(self.src, path).unwrap_or((1, 1));
        format!("{}:{line}:{column}: warning: {path}: {msg}", self.file)
    }
}

pub(super) fn parse(
    src: &str,
    file: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_yaml::from_str(src).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        // serde_yaml appends " at line N column M"; we lead with it instead.
        let msg = e.to_string();
        let message = match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        ConfigError::Invalid {
            file: file.to_string(),
            line,
            column,
            message,
        }
    })?;
    let cx = Ctx {
        src,
        file,
        env,
        base,
    };
    let root = FieldPath::default();

    let (listen, mut warnings) = super::listen::validate(&raw.listen, &root.key("listen"), base)
        .map_err(|(at, why)| cx.err(&at, why))?;
    let admin = super::ops::admin(raw.admin.as_ref(), &root.key("admin"))
        .map_err(|(at, why)| cx.err(&at, why))?;
    let access_log = super::ops::access_log(raw.access_log.as_ref(), &root.key("access_log"), base)
        .map_err(|(at, why)| cx.err(&at, why))?;
    let shutdown_timeout = super::ops::shutdown_timeout(
        raw.shutdown_timeout_seconds,
        &root.key("shutdown_timeout_seconds"),
    )
    .map_err(|(at, why)| cx.err(&at, why))?;
    if raw.threads == Some(0) {
        return Err(cx.err(&root.key("threads"), "must be at least 1"));
    }
    let limits = super::limits::validate(raw.limits.as_ref(), &root.key("limits"))
        .map_err(|(at, why)| cx.err(&at, why))?;
    if raw.sites.is_empty() {
        return Err(cx.err(&root.key("sites"), "needs at least one site"));
    }

    let mut sites = Vec::with_capacity(raw.sites.len());
    // Who claimed each host first (the empty string is the default site).
    let mut claimed: HashMap<String, String> = HashMap::new();
    for (i, rs) in raw.sites.iter().enumerate() {
        let path = root.key("sites").index(i);
        let site = site(&cx, &path, rs, base)?;
        let names: Vec<String> = if site.hosts.is_empty() {
            vec![String::new()]
        } else {
            site.hosts
                .iter()
                .map(|h| match h {
                    HostPattern::Exact(s) => s.clone(),
                    HostPattern::Suffix(s) => format!("*{s}"),
                })
                .collect()
        };
        for (j, name) in names.into_iter().enumerate() {
            if let Some(other) = claimed.insert(name.clone(), site.name.clone()) {
                let (at, what) = if name.is_empty() {
                    (
                        path.clone(),
                        "is a second default site (no `hosts`)".to_string(),
                    )
                } else {
                    (
                        path.key("hosts").index(j),
                        format!("host `{name}` is already claimed"),
                    )
                };
                return Err(cx.err(&at, format!("{what}; site `{other}` has it")));
            }
        }
        sites.push(site);
    }
    warnings.extend(super::listen::coverage(&listen, &sites, &root.key("sites")));
    let fill = super::fill::validate(&root.key("fill"), raw.fill.as_ref(), base)
        .map_err(|(path, msg)| cx.err(&path, msg))?;
    Ok(Config {
        listen,
        threads: raw.threads,
        admin,
        access_log,
        shutdown_timeout,
        fill,
        limits,
        sites,
        warnings: warnings
            .iter()
            .map(|(at, why)| cx.warning(at, why))
            .collect(),
    })
}

fn site(cx: &Ctx, path: &FieldPath, rs: &RawSite, base: &Path) -> Result<SiteConfig, ConfigError> {
    if rs.name.trim().is_empty() {
        return Err(cx.err(&path.key("name"), "must not be empty"));
    }
    let mut hosts = Vec::new();
    for (i, h) in rs.hosts.iter().flatten().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        let bad = |m: &str| cx.err(&path.key("hosts").index(i), m.to_string());
        let pattern = match h.strip_prefix("*.") {
            Some(rest) => HostPattern::Suffix(format!(".{rest}")),
            None => HostPattern::Exact(h.clone()),
        };
        let name = match &pattern {
            HostPattern::Exact(s) => s.as_str(),
            HostPattern::Suffix(s) => &s[1..],
        };
        if name.is_empty() || name.contains(['*', '/', ':', ' ', '@']) {
            return Err(bad(
                "expected a host name (`example.com`) or `*.suffix` wildcard",
            ));
        }
        hosts.push(pattern);
    }
    if rs.hosts.as_ref().is_some_and(|h| h.is_empty()) {
        return Err(cx.err(
            &path.key("hosts"),
            "is empty; omit `hosts` for the default site",
        ));
    }
    let bucket = bucket(cx, &path.key("bucket"), &rs.bucket, base)?;
    if rs.rules.len() > MAX_RULES {
        return Err(cx.err(
            &path.key("rules"),
            format!(
                "has {} rules; at most {MAX_RULES} are allowed",
                rs.rules.len()
            ),
        ));
    }
    let mut rules = Vec::with_capacity(rs.rules.len());
    for (i, r) in rs.rules.iter().enumerate() {
        rules.push(rule(cx, &path.key("rules").index(i), r)?);
    }
    Ok(SiteConfig {
        name: rs.name.clone(),
        hosts,
        bucket,
        rules,
    })
}

fn bucket(
    cx: &Ctx,
    path: &FieldPath,
    rb: &RawBucket,
    base: &Path,
) -> Result<BucketSource, ConfigError> {
    if let Some(local) = &rb.local {
        let remote_fields = [
            ("endpoint", rb.endpoint.is_some()),
            ("name", rb.name.is_some()),
            ("region", rb.region.is_some()),
            ("addressing", rb.addressing.is_some()),
            ("access_key_id_env", rb.access_key_id_env.is_some()),
            ("secret_access_key_env", rb.secret_access_key_env.is_some()),
            ("tls", rb.tls.is_some()),
        ];
        if let Some((f, _)) = remote_fields.iter().find(|(_, set)| *set) {
            return Err(cx.err(
                &path.key(f),
                "does not go with `local` (the embedded bucket)",
            ));
        }
        let dir = base.join(local);
        let ok_name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(crate::local::valid_bucket_name);
        if !ok_name {
            return Err(cx.err(
                &path.key("local"),
                "the folder's own name must be a valid bucket name (3-63 of a-z, 0-9, `-`, `.`)",
            ));
        }
        return Ok(BucketSource::Local(dir));
    }
    let Some(endpoint_s) = &rb.endpoint else {
        return Err(cx.err(
            path,
            "needs `endpoint` and `name` (or `local` for the embedded bucket)",
        ));
    };
    let url = parse_http_url(endpoint_s).map_err(|m| cx.err(&path.key("endpoint"), m))?;
    if url.base_path != "/" {
        return Err(cx.err(
            &path.key("endpoint"),
            "must not carry a path; the bucket goes in `name`",
        ));
    }
    let Some(name) = &rb.name else {
        return Err(cx.err(path, "needs `name`"));
    };
    if rb.tls.is_some() && !url.tls {
        return Err(cx.err(&path.key("tls"), "needs an https:// `endpoint`"));
    }
    let tls = super::tls::trust_roots(rb.tls.as_ref(), cx.base)
        .map_err(|m| cx.err(&path.key("tls").key("ca_file"), m))?;
    if name.is_empty() || name.contains(['/', ' ']) {
        return Err(cx.err(&path.key("name"), "is not a bucket name"));
    }
    let cred = |field: &str, given: &Option<String>, default: &str| {
        let var = given.as_deref().unwrap_or(default);
        (cx.env)(var).filter(|v| !v.is_empty()).ok_or_else(|| {
            cx.err(
                &path.key(field),
                format!("environment variable `{var}` is not set"),
            )
        })
    };
    let access_key_id = cred(
        "access_key_id_env",
        &rb.access_key_id_env,
        "AWS_ACCESS_KEY_ID",
    )?;
    let secret_access_key = cred(
        "secret_access_key_env",
        &rb.secret_access_key_env,
        "AWS_SECRET_ACCESS_KEY",
    )?;
    Ok(BucketSource::Remote(RemoteBucket {
        endpoint: Endpoint {
            tls: url.tls,
            host: url.host,
            port: url.port,
        },
        name: name.clone(),
        region: rb.region.clone().unwrap_or_else(|| "us-east-1".to_string()),
        addressing: rb.addressing.unwrap_or(Addressing::Path),
        credentials: Credentials {
            access_key_id,
            secret_access_key,
        },
        tls,
    }))
}

fn rule(cx: &Ctx, path: &FieldPath, rr: &RawRule) -> Result<crate::rules::Rule, ConfigError> {
    let mut condition = condition(cx, &path.key("condition"), &rr.condition)?;
    let action = match (&rr.mirror, &rr.redirect) {
        (Some(_), Some(_)) => {
            return Err(cx.err(path, "has both `mirror` and `redirect`; a rule takes one"))
        }
        (None, None) => return Err(cx.err(path, "needs `mirror` or `redirect`")),
        (Some(m), None) => {
            let code = path.key("condition").key("http_error_code");
            match condition.http_error_code {
                None => condition.http_error_code = Some(404),
                Some(404) => {}
                Some(c) => {
                    return Err(cx.err(&code, format!("is {c}; mirror rules only act on 404")))
                }
            }
            Action::Mirror(Box::new(mirror(cx, &path.key("mirror"), m, &condition)?))
        }
        (None, Some(r)) => Action::Redirect(redirect(cx, &path.key("redirect"), r, &condition)?),
    };
    Ok(crate::rules::Rule { condition, action })
}

fn condition(cx: &Ctx, path: &FieldPath, rc: &RawCondition) -> Result<Condition, ConfigError> {
    let key_regex = match &rc.key_regex {
        None => None,
        Some(s) => Some(
            Regex::new(s)
                .map_err(|e| cx.err(&path.key("key_regex"), format!("invalid regex: {e}")))?,
        ),
    };
    if let Some(c) = rc.http_error_code {
        if !(400..=599).contains(&c) {
            return Err(cx.err(
                &path.key("http_error_code"),
                format!("{c} is not a 4xx or 5xx status"),
            ));
        }
    }
    let mut include_headers = Vec::new();
    for (i, h) in rc.include_headers.iter().enumerate() {
        let hp = path.key("include_headers").index(i);
        if http::HeaderName::from_bytes(h.key.as_bytes()).is_err() {
            return Err(cx.err(&hp.key("key"), format!("`{}` is not a header name", h.key)));
        }
        let tests: Vec<HeaderTest> = [
            h.equals.clone().map(HeaderTest::Equals),
            h.starts_with.clone().map(HeaderTest::StartsWith),
            h.ends_with.clone().map(HeaderTest::EndsWith),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [test] = <[HeaderTest; 1]>::try_from(tests).map_err(|_| {
            cx.err(
                &hp,
                "needs exactly one of `equals`, `starts_with`, `ends_with`",
            )
        })?;
        include_headers.push(HeaderCondition {
            name: h.key.to_ascii_lowercase(),
            test,
        });
    }
    Ok(Condition {
        key_prefix: rc.key_prefix.clone(),
        key_suffix: rc.key_suffix.clone(),
        key_regex,
        http_error_code: rc.http_error_code,
        include_headers,
    })
}

fn rewrite(
    cx: &Ctx,
    path: &FieldPath,
    prefix_with: &Option<String>,
    key_with: &Option<String>,
    cond: &Condition,
) -> Result<KeyRewrite, ConfigError> {
    match (prefix_with, key_with) {
        (Some(_), Some(_)) => Err(cx.err(
            &path.key("replace_key_with"),
            "does not go with `replace_key_prefix_with`; pick one",
        )),
        (Some(to), None) => match &cond.key_prefix {
            Some(from) => Ok(KeyRewrite::Prefix {
                from: from.clone(),
                to: to.clone(),
            }),
            None => Err(cx.err(
                &path.key("replace_key_prefix_with"),
                "needs `condition.key_prefix` (the prefix it replaces)",
            )),
        },
        (None, Some(t)) => Ok(KeyRewrite::Template(t.clone())),
        (None, None) => Ok(KeyRewrite::Keep),
    }
}

fn mirror(
    cx: &Ctx,
    path: &FieldPath,
    m: &RawMirror,
    cond: &Condition,
) -> Result<Mirror, ConfigError> {
    let origin = |field: &str, s: &str| {
        let u = parse_http_url(s).map_err(|e| cx.err(&path.key(field), e))?;
        if !u.base_path.ends_with('/') {
            return Err(cx.err(&path.key(field), format!("`{s}` must end with `/`")));
        }
        Ok(u)
    };
    // The rule's roots go with its URLs, so every peer built from them
    // (redirect hops included) trusts the same CAs.
    let trust = super::tls::trust_roots(m.tls.as_ref(), cx.base)
        .map_err(|e| cx.err(&path.key("tls").key("ca_file"), e))?;
    let mut url = origin("url", &m.url)?;
    url.trust = trust.clone();
    let secondary_url = m
        .secondary_url
        .as_deref()
        .map(|s| origin("secondary_url", s))
        .transpose()?
        .map(|u| OriginUrl { trust, ..u });
    let (primary_auth, secondary_auth) =
        super::auth::mirror(m, path, cx.env).map_err(|(at, why)| cx.err(&at, why))?;
    let timeout_seconds = m.timeout_seconds.unwrap_or(10);
    if timeout_seconds == 0 {
        return Err(cx.err(&path.key("timeout_seconds"), "must be at least 1"));
    }
    let hp = path.key("headers");
    let names = |field: &str, list: &[String]| -> Result<Vec<String>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, n)| {
                http::HeaderName::from_bytes(n.as_bytes())
                    .map(|h| h.as_str().to_string())
                    .map_err(|_| {
                        cx.err(
                            &hp.key(field).index(i),
                            format!("`{n}` is not a header name"),
                        )
                    })
            })
            .collect()
    };
    let mut set = Vec::new();
    for (k, v) in &m.headers.set {
        let bad = http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(v).is_err();
        if bad {
            return Err(cx.err(
                &hp.key("set").key(k),
                "is not a valid header name and value",
            ));
        }
        set.push((k.to_ascii_lowercase(), v.clone()));
    }
    Ok(Mirror {
        url,
        secondary_url,
        pass_query_string: m.pass_query_string,
        follow_redirect: m.follow_redirect,
        check_md5: m.check_md5,
        allow_head: m.allow_head,
        mirror_on_bucket_error: m.mirror_on_bucket_error,
        rewrite: rewrite(
            cx,
            path,
            &m.replace_key_prefix_with,
            &m.replace_key_with,
            cond,
        )?,
        headers: HeaderPolicy {
            pass_all: m.headers.pass_all,
            pass: names("pass", &m.headers.pass)?,
            remove: names("remove", &m.headers.remove)?,
            set,
        },
        timeout: Duration::from_secs(timeout_seconds),
        mode: m.mode,
        auth: primary_auth,
        secondary_auth,
    })
}

fn redirect(
    cx: &Ctx,
    path: &FieldPath,
    r: &RawRedirect,
    cond: &Condition,
) -> Result<Redirect, ConfigError> {
    let code = r.code.unwrap_or(302);
    if ![301, 302, 307].contains(&code) {
        return Err(cx.err(
            &path.key("code"),
            format!("{code} is not one of 301, 302, 307"),
        ));
    }
    if let Some(p) = &r.protocol {
        if p != "http" && p != "https" {
            return Err(cx.err(&path.key("protocol"), "must be `http` or `https`"));
        }
    }
    if let Some(h) = &r.host {
        // Parsed as an authority so nothing but a host[:port] gets in.
        let ok = !h.is_empty()
            && !h.contains(['/', '\\', '@', '?', '#', ' '])
            && h.parse::<http::uri::Authority>().is_ok();
        if !ok {
            return Err(cx.err(&path.key("host"), format!("`{h}` is not a host name")));
        }
    }
    Ok(Redirect {
        code,
        protocol: r.protocol.clone(),
        host: r.host.clone(),
        rewrite: rewrite(
            cx,
            path,
            &r.replace_key_prefix_with,
            &r.replace_key_with,
            cond,
        )?,
        pass_query_string: r.pass_query_string,
    })
}

/// An absolute `http://` or `https://` URL without query or fragment.
pub fn parse_http_url(s: &str) -> Result<OriginUrl, String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("`{s}` is not a URL"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("`{s}` is not an absolute http:// or https:// URL")),
    };
    let auth = uri
        .authority()
        .ok_or_else(|| format!("`{s}` has no host"))?;
    if auth.as_str().contains('@') || auth.host().is_empty() {
        return Err(format!("`{s}` must name a host, without user info"));
    }
    if uri.query().is_some() || s.contains('#') {
        return Err(format!("`{s}` must not carry a query or fragment"));
    }
    let port = auth.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let path = uri.path();
    let base_path = if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    };
    Ok(OriginUrl {
        raw: s.to_string(),
        tls,
        host,
        port,
        authority: auth.as_str().to_string(),
        base_path,
        trust: crate::tls::TrustRoots::platform(),
    })
}
