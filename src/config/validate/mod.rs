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

mod rules;
pub use rules::parse_http_url;
use rules::rule;

struct Ctx<'a> {
    src: &'a str,
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file's folder: relative paths in it resolve here.
    base: &'a Path,
    /// Warnings found along the way (path, message).
    warned: std::cell::RefCell<Vec<(FieldPath, String)>>,
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

    fn warn(&self, path: &FieldPath, msg: impl Into<String>) {
        self.warned.borrow_mut().push((path.clone(), msg.into()));
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
    // A byte-order mark (Windows editors write one) is not YAML content:
    // left in, the first key would not be recognised. Lines and columns
    // are then counted as an editor shows them, without it.
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let raw: RawConfig = serde_yaml::from_str(src).map_err(|e| {
        // serde_yaml appends " at line N column M"; we lead with it instead.
        let msg = e.to_string();
        let mut message = match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        if let Some(at) = message.find("unknown field `<<`") {
            message.replace_range(
                at..,
                "YAML merge keys (`<<: *anchor`) are not supported: write the fields out \
                 (an alias of a whole value, `key: *anchor`, works)",
            );
        }
        let (line, column) = super::locate::duplicate(src, &message)
            .or_else(|| e.location().map(|l| (l.line(), l.column())))
            .unwrap_or((1, 1));
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
        warned: Default::default(),
    };
    let root = FieldPath::default();

    let (listen, mut warnings) = super::listen::validate(&raw.listen, &root.key("listen"), base)
        .map_err(|(at, why)| cx.err(&at, why))?;
    let admin = super::ops::admin(raw.admin.as_ref(), &root.key("admin"))
        .map_err(|(at, why)| cx.err(&at, why))?;
    if let Some(a) = &admin {
        super::ops::admin_apart(a, &listen)
            .map_err(|why| cx.err(&root.key("admin").key("listen"), why))?;
    }
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
        // The name keys a site's metric series, readiness lines and fills
        // (two same-named sites would share a fill and store it in one
        // bucket only), and a reload matches sites by it.
        if sites.iter().any(|s: &SiteConfig| s.name == site.name) {
            let why = format!("`{}` is already the name of another site", site.name);
            return Err(cx.err(&path.key("name"), why));
        }
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
    warnings.extend(cx.warned.take());
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
    if rs.name == "-" {
        // The `site` label of requests that matched no site.
        return Err(cx.err(
            &path.key("name"),
            "`-` is reserved (requests that match no site)",
        ));
    }
    let mut hosts = Vec::new();
    for (i, h) in rs.hosts.iter().flatten().enumerate() {
        // A fully qualified `a.test.` is `a.test`, as requests are
        // matched (`site::normalize`): kept, it claimed nothing, and a
        // second site claiming `a.test` passed the duplicate check.
        let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
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
        // Clients send an internationalised name in its ASCII form
        // (`xn--bcher-kva.example`): written as Unicode it never matched.
        let pattern = if name.is_ascii() {
            pattern
        } else {
            let ascii = match url::Host::parse(name) {
                Ok(url::Host::Domain(d)) => d,
                _ => return Err(bad("is not a valid internationalised host name")),
            };
            match pattern {
                HostPattern::Exact(_) => HostPattern::Exact(ascii),
                HostPattern::Suffix(_) => HostPattern::Suffix(format!(".{ascii}")),
            }
        };
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
            ("session_token_env", rb.session_token_env.is_some()),
            ("credentials", rb.credentials.is_some()),
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
        // Harmless, and SPEC's own example pairs it with an http endpoint:
        // a warning (the file is still checked), not an error.
        cx.warn(
            &path.key("tls"),
            "has no effect: the endpoint is http://, trust roots are for https://",
        );
    }
    let tls = super::tls::trust_roots(rb.tls.as_ref(), cx.base)
        .map_err(|m| cx.err(&path.key("tls").key("ca_file"), m))?;
    if name.is_empty() || name.contains(['/', ' ']) {
        return Err(cx.err(&path.key("name"), "is not a bucket name"));
    }
    let credentials = credential_source(cx, path, rb)?;
    let addressing = rb.addressing.unwrap_or(Addressing::Path);
    if addressing == Addressing::Virtual {
        let at = path.key("addressing");
        // `<bucket>.<endpoint host>` must be a DNS name.
        if url.host.parse::<std::net::IpAddr>().is_ok() || url.host.starts_with('[') {
            return Err(cx.err(
                &at,
                "`virtual` needs an endpoint host name (the bucket becomes its first label); \
                 an IP endpoint takes `path`",
            ));
        }
        // A certificate's `*.` covers one label: `my.bucket.s3…` fails TLS
        // against a public endpoint's wildcard. A private CA (`ca_file`)
        // may have issued the exact name: then it is the operator's call.
        let private_ca = rb.tls.as_ref().is_some_and(|t| t.ca_file.is_some());
        if url.tls && name.contains('.') && !private_ca {
            return Err(cx.err(
                &at,
                format!(
                    "`virtual` over https with a bucket name containing dots (`{name}`): the \
                     endpoint's wildcard certificate does not cover it; use `path`"
                ),
            ));
        }
    }
    Ok(BucketSource::Remote(RemoteBucket {
        endpoint: Endpoint {
            tls: url.tls,
            host: url.host,
            port: url.port,
        },
        name: name.clone(),
        region: rb.region.clone().unwrap_or_else(|| "us-east-1".to_string()),
        addressing,
        credentials,
        tls,
    }))
}

/// The bucket's keys: from the environment variables it names (read now,
/// and at each reload), or the AWS default chain.
fn credential_source(
    cx: &Ctx,
    path: &FieldPath,
    rb: &RawBucket,
) -> Result<CredentialSource, ConfigError> {
    if rb.credentials == Some(RawCredentials::AwsChain) {
        let env = [
            &rb.access_key_id_env,
            &rb.secret_access_key_env,
            &rb.session_token_env,
        ];
        if let Some((f, why)) = super::auth::env_beside_chain(env) {
            return Err(cx.err(&path.key(f), why));
        }
        return Ok(CredentialSource::AwsChain);
    }
    let cred = |field: &str, given: &Option<String>, default: &str| {
        let var = given.as_deref().unwrap_or(default);
        (cx.env)(var).filter(|v| !v.is_empty()).ok_or_else(|| {
            cx.err(
                &path.key(field),
                format!(
                    "environment variable `{var}` is not set (for an instance profile, IRSA \
                     or another renewing source: `credentials: aws_chain`)"
                ),
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
    // Temporary credentials (STS, `aws configure export-credentials`)
    // come with a token; without it every request is refused. As the AWS
    // SDKs do, the default key names bring the default token name along.
    let session_token = match (&rb.session_token_env, &rb.access_key_id_env) {
        (Some(_), _) => Some(cred("session_token_env", &rb.session_token_env, "")?),
        (None, None) => (cx.env)("AWS_SESSION_TOKEN").filter(|v| !v.is_empty()),
        (None, Some(_)) => None,
    };
    Ok(CredentialSource::Env(Credentials {
        access_key_id,
        secret_access_key,
        session_token,
    }))
}
