//! `mirror.auth` / `mirror.secondary_auth`: credentials for a private
//! origin. The YAML names environment variables only; their values are
//! read here, at load (and at each reload), so a missing one fails
//! `origin-pull -t` with `file:line:column` instead of the first miss.
//! No message printed from here ever contains a value.
//!
//! The raw form is one flat struct rather than a tagged enum so that every
//! mistake (an unknown `type`, a field of the other type, a missing
//! `region`) can point at its own line and column.

use super::locate::FieldPath;
use super::raw::RawCredentials;
use crate::origin_auth::OriginAuth;
use crate::sigv4::Signer;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    /// `env` (the `*_env` variables, the default) or `aws_chain`.
    pub credentials: Option<super::raw::RawCredentials>,
    pub name: Option<String>,
    pub value_env: Option<String>,
}

type Invalid = (FieldPath, String);

/// `auth` and `secondary_auth` of the mirror rule at `path`.
pub(super) fn mirror(
    m: &super::raw::RawMirror,
    path: &FieldPath,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<OriginAuth>, Option<OriginAuth>), Invalid> {
    let one = |field: &str, raw: &Option<RawAuth>| {
        raw.as_ref()
            .map(|a| validate(a, &path.key(field), env))
            .transpose()
    };
    let (primary, secondary) = (
        one("auth", &m.auth)?,
        one("secondary_auth", &m.secondary_auth)?,
    );
    if secondary.is_some() && m.secondary_url.is_none() {
        return Err((path.key("secondary_auth"), "needs `secondary_url`".into()));
    }
    // A 302 to a private origin would only earn the client a 403.
    if m.mode == super::MirrorMode::Async && (primary.is_some() || secondary.is_some()) {
        return Err((
            path.key("mode"),
            "`async` redirects the client to the origin, which cannot pass on `auth`; use `sync`"
                .into(),
        ));
    }
    Ok((primary, secondary))
}

/// With `credentials: aws_chain`, the first of the `*_env` fields
/// (`access_key_id_env`, `secret_access_key_env`, `session_token_env`, as
/// given) that is set, and why that is an error: a bucket's and a private
/// origin's credentials take the same check.
pub(super) fn env_beside_chain(env: [&Option<String>; 3]) -> Option<(&'static str, &'static str)> {
    const FIELDS: [&str; 3] = [
        "access_key_id_env",
        "secret_access_key_env",
        "session_token_env",
    ];
    let (field, _) = FIELDS.into_iter().zip(env).find(|(_, v)| v.is_some())?;
    Some((
        field,
        "does not go with `credentials: aws_chain` (the chain reads AWS_ACCESS_KEY_ID and the \
         other sources itself)",
    ))
}

/// Headers a credential may not replace: they frame or route the request,
/// or (`range`) would make the origin send part of an object to store.
const RESERVED: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "range",
];

pub(super) fn validate(
    raw: &RawAuth,
    path: &FieldPath,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OriginAuth, Invalid> {
    let sigv4_fields = [
        ("region", raw.region.is_some()),
        ("service", raw.service.is_some()),
        ("access_key_id_env", raw.access_key_id_env.is_some()),
        ("secret_access_key_env", raw.secret_access_key_env.is_some()),
        ("session_token_env", raw.session_token_env.is_some()),
        ("credentials", raw.credentials.is_some()),
    ];
    let header_fields = [
        ("name", raw.name.is_some()),
        ("value_env", raw.value_env.is_some()),
    ];
    let foreign = |fields: &[(&str, bool)], kind: &str| -> Result<(), Invalid> {
        match fields.iter().find(|(_, set)| *set) {
            Some((f, _)) => Err((path.key(f), format!("does not go with `type: {kind}`"))),
            None => Ok(()),
        }
    };
    match raw.kind.as_deref() {
        None => Err((
            path.clone(),
            "needs `type`: `sigv4` or `header`".to_string(),
        )),
        Some("sigv4") => {
            foreign(&header_fields, "sigv4")?;
            sigv4(raw, path, env)
        }
        Some("header") => {
            foreign(&sigv4_fields, "header")?;
            header(raw, path, env)
        }
        Some(other) => Err((
            path.key("type"),
            format!("`{other}` is not an auth type; use `sigv4` or `header`"),
        )),
    }
}

/// The value of the variable a `*_env` field names.
fn from_env(
    path: &FieldPath,
    field: &str,
    var: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Invalid> {
    let Some(var) = var.filter(|v| !v.trim().is_empty()) else {
        return Err((
            path.clone(),
            format!("needs `{field}` (the name of an environment variable)"),
        ));
    };
    env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
        (
            path.key(field),
            format!("environment variable `{var}` is not set"),
        )
    })
}

fn sigv4(
    raw: &RawAuth,
    path: &FieldPath,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OriginAuth, Invalid> {
    let region = raw.region.as_deref().unwrap_or("");
    if region.trim().is_empty() || region.contains(char::is_whitespace) {
        let at = if raw.region.is_some() {
            path.key("region")
        } else {
            path.clone()
        };
        return Err((
            at,
            "`type: sigv4` needs `region` (e.g. `us-east-1`; `garage` for Garage)".into(),
        ));
    }
    let service = raw.service.as_deref().unwrap_or("s3");
    if service.is_empty() || service.contains(char::is_whitespace) {
        return Err((path.key("service"), "is not a service name".into()));
    }
    if raw.credentials == Some(RawCredentials::AwsChain) {
        // The process's chain, shared with `aws_chain` buckets and renewed
        // by `crate::credentials`: an origin bucket read with the role the
        // proxy runs as (instance profile, IRSA, Pod Identity).
        let env = [
            &raw.access_key_id_env,
            &raw.secret_access_key_env,
            &raw.session_token_env,
        ];
        if let Some((f, why)) = env_beside_chain(env) {
            return Err((path.key(f), why.into()));
        }
        return Ok(OriginAuth::SigV4(Arc::new(Signer::aws_chain(
            region, service,
        ))));
    }
    let key_id = from_env(
        path,
        "access_key_id_env",
        raw.access_key_id_env.as_deref(),
        env,
    )?;
    let secret = from_env(
        path,
        "secret_access_key_env",
        raw.secret_access_key_env.as_deref(),
        env,
    )?;
    let token = match raw.session_token_env.as_deref() {
        None => None,
        Some(var) => Some(from_env(path, "session_token_env", Some(var), env)?),
    };
    Ok(OriginAuth::SigV4(Arc::new(Signer::new(
        &key_id,
        &secret,
        token.as_deref(),
        region,
        service,
    ))))
}

fn header(
    raw: &RawAuth,
    path: &FieldPath,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OriginAuth, Invalid> {
    let Some(name) = &raw.name else {
        return Err((
            path.clone(),
            "`type: header` needs `name` (e.g. `authorization`)".into(),
        ));
    };
    let name = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| (path.key("name"), format!("`{name}` is not a header name")))?;
    if RESERVED.contains(&name.as_str()) {
        return Err((
            path.key("name"),
            format!("`{name}` cannot carry a credential"),
        ));
    }
    let var = raw.value_env.as_deref();
    let value = from_env(path, "value_env", var, env)?;
    let value = http::HeaderValue::from_str(&value).map_err(|_| {
        (
            path.key("value_env"),
            // The value itself is a secret: named by its variable only.
            format!(
                "the value of `{}` is not a valid header value",
                var.unwrap_or_default()
            ),
        )
    })?;
    Ok(OriginAuth::header(name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawAuth {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("AKID".into()),
            "SECRET" => Some("s3cret".into()),
            "TOKEN" => Some("Bearer t0ken".into()),
            "BAD" => Some("line\nbreak-secret".into()),
            _ => None,
        }
    }

    fn err(yaml: &str) -> (String, String) {
        let p = FieldPath::default().key("auth");
        let (at, msg) = validate(&raw(yaml), &p, &env).unwrap_err();
        (at.to_string(), msg)
    }

    #[test]
    fn accepts_both_types() {
        let p = FieldPath::default();
        let a = validate(
            &raw("{ type: sigv4, region: garage, access_key_id_env: KEY, secret_access_key_env: SECRET }"),
            &p,
            &env,
        )
        .unwrap();
        assert!(matches!(&a, OriginAuth::SigV4(s) if !s.uses_chain()));
        // The chain needs no variable at all.
        let c = validate(
            &raw("{ type: sigv4, region: eu-west-1, credentials: aws_chain }"),
            &p,
            &env,
        )
        .unwrap();
        assert!(matches!(&c, OriginAuth::SigV4(s) if s.uses_chain() && s.region() == "eu-west-1"));
        // `credentials: env` is the default, spelled out.
        let e = validate(
            &raw("{ type: sigv4, region: r, credentials: env, access_key_id_env: KEY, secret_access_key_env: SECRET }"),
            &p,
            &env,
        )
        .unwrap();
        assert!(matches!(&e, OriginAuth::SigV4(s) if !s.uses_chain()));
        let h = validate(
            &raw("{ type: header, name: Authorization, value_env: TOKEN }"),
            &p,
            &env,
        )
        .unwrap();
        match h {
            OriginAuth::Header { name, value } => {
                assert_eq!(name, "authorization");
                assert!(value.is_sensitive());
            }
            _ => panic!("not a header"),
        }
    }

    #[test]
    fn mistakes_point_at_their_field() {
        let cases = [
            ("{ region: r }", "auth", "needs `type`"),
            ("{ type: basic }", "auth.type", "`basic` is not an auth type"),
            (
                "{ type: sigv4, access_key_id_env: KEY, secret_access_key_env: SECRET }",
                "auth",
                "needs `region`",
            ),
            (
                "{ type: sigv4, region: r, access_key_id_env: NOPE, secret_access_key_env: SECRET }",
                "auth.access_key_id_env",
                "`NOPE` is not set",
            ),
            (
                "{ type: sigv4, region: r, secret_access_key_env: SECRET }",
                "auth",
                "needs `access_key_id_env`",
            ),
            (
                "{ type: sigv4, region: r, access_key_id_env: KEY, secret_access_key_env: SECRET, session_token_env: NOPE }",
                "auth.session_token_env",
                "`NOPE` is not set",
            ),
            ("{ type: sigv4, region: r, name: x }", "auth.name", "does not go with `type: sigv4`"),
            (
                "{ type: sigv4, region: r, credentials: aws_chain, secret_access_key_env: SECRET }",
                "auth.secret_access_key_env",
                "does not go with `credentials: aws_chain`",
            ),
            ("{ type: sigv4, credentials: aws_chain }", "auth", "needs `region`"),
            ("{ type: header, name: x, value_env: TOKEN, credentials: aws_chain }", "auth.credentials", "does not go with"),
            ("{ type: header, name: x, value_env: TOKEN, region: r }", "auth.region", "does not go with"),
            ("{ type: header, name: host, value_env: TOKEN }", "auth.name", "cannot carry"),
            ("{ type: header, name: \"a b\", value_env: TOKEN }", "auth.name", "not a header name"),
            ("{ type: header, name: x }", "auth", "needs `value_env`"),
            ("{ type: header, name: x, value_env: NOPE }", "auth.value_env", "`NOPE` is not set"),
        ];
        for (yaml, at, words) in cases {
            let (got_at, msg) = err(yaml);
            assert_eq!(got_at, at, "{yaml}: {msg}");
            assert!(msg.contains(words), "{yaml}: {msg}");
        }
    }

    #[test]
    fn a_bad_value_is_named_by_its_variable_only() {
        let (at, msg) = err("{ type: header, name: x, value_env: BAD }");
        assert_eq!(at, "auth.value_env");
        assert!(msg.contains("`BAD`") && !msg.contains("secret"), "{msg}");
    }
}
