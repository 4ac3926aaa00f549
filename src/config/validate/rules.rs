//! The rules of a site: conditions, key rewrites, mirror and redirect
//! actions, origin URLs (each error names its field, as in `validate`).

use super::*;

pub(super) fn rule(
    cx: &Ctx,
    path: &FieldPath,
    rr: &RawRule,
) -> Result<crate::rules::Rule, ConfigError> {
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
    // The key has no leading `/` (AWS's examples write
    // `ReplaceKeyPrefixWith: /documents`): `http://h//documents/x`.
    for (field, v) in [
        ("replace_key_prefix_with", prefix_with),
        ("replace_key_with", key_with),
    ] {
        if v.as_deref().is_some_and(|v| v.starts_with('/')) {
            return Err(cx.err(
                &path.key(field),
                "starts with `/`; a key has none (the URL adds it): drop it",
            ));
        }
    }
    if let Some(t) = key_with {
        captures_exist(t, cond).map_err(|why| cx.err(&path.key("replace_key_with"), why))?;
    }
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
    let trust = crate::config::tls::trust_roots(m.tls.as_ref(), cx.base)
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
        crate::config::auth::mirror(m, path, cx.env).map_err(|(at, why)| cx.err(&at, why))?;
    let timeout_seconds = m.timeout_seconds.unwrap_or(10);
    if timeout_seconds == 0 {
        return Err(cx.err(&path.key("timeout_seconds"), "must be at least 1"));
    }
    let hp = path.key("headers");
    let names = |field: &str, list: &[String]| -> Result<Vec<String>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, n)| {
                let at = hp.key(field).index(i);
                let name = http::HeaderName::from_bytes(n.as_bytes())
                    .map(|h| h.as_str().to_string())
                    .map_err(|_| cx.err(&at, format!("`{n}` is not a header name")))?;
                // Listing one of these used to be ignored without a word.
                if field == "pass" && crate::mirror::never_passed(&name) {
                    return Err(cx.err(
                        &at,
                        format!(
                            "`{n}` is never passed to the origin: the answer is stored for \
                             every client (credentials, ranges, conditionals, encodings and \
                             hop-by-hop headers stay with the client)"
                        ),
                    ));
                }
                Ok(name)
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
        let name = k.to_ascii_lowercase();
        if crate::mirror::never_set(&name) {
            return Err(cx.err(
                &hp.key("set").key(k),
                if name == "host" {
                    "`host` can't be set: the origin's Host is its URL's authority (SPEC); put \
                     the name in `url`"
                        .to_string()
                } else {
                    format!(
                        "`{k}` can't be set: a range or condition makes every answer one that \
                         can't be stored, and framing and hop-by-hop headers belong to the \
                         connection"
                    )
                },
            ));
        }
        set.push((name, v.clone()));
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
    // Nothing to change: the `Location` would be the request's own URL.
    let changes_key = r.replace_key_prefix_with.is_some() || r.replace_key_with.is_some();
    if r.host.is_none() && r.protocol.is_none() && !changes_key {
        return Err(cx.err(
            path,
            "changes nothing (it would point at the request's own URL): set `host`, `protocol`, \
             `replace_key_prefix_with` or `replace_key_with`",
        ));
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

/// Every `$N` / `${N}` of a template names a group of the rule's
/// `key_regex` (`$0` is the whole match): a missing one would be an empty
/// string on every request.
fn captures_exist(template: &str, cond: &Condition) -> Result<(), String> {
    for piece in crate::rules::pieces(template) {
        let crate::rules::Piece::Capture(n) = piece else {
            continue;
        };
        match &cond.key_regex {
            None => return Err(format!("uses `${n}` but the condition has no `key_regex`")),
            Some(re) if n >= re.captures_len() => {
                return Err(format!(
                    "uses `${n}` but `key_regex` has {} group(s)",
                    re.captures_len() - 1
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
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
