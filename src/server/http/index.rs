//! The index at a group's root (`GET /Segment/`, when the group has it on): the URLs the caller may read,
//! with their sizes and dates, as HTML, or as JSON for `Accept: application/json`. And the page shown for
//! a path no URL serves (a browser at `http://host:port/`): the groups the request can reach that have
//! an index, each a link to it.
//!
//! SECURITY: the index must not tell anyone what they may not download. Each URL is listed only if the
//! caller's identity passes that URL's own rule, decided as a GET of it would be; an anonymous caller in a
//! group with schemes who may read nothing is challenged, as for a URL.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::access;
use super::peer::ConnInfo;
use super::response::Reject;
use super::site::Site;
use crate::auth::Granted;
use crate::files::ResponseBody;
use crate::url::{UrlGroup, UrlSuffix};

/// One listed URL.
struct Listed {
    suffix: String,
    href: String,
    size: u64,
    modified: String,
}

/// Answers `GET` or `HEAD` of a group's root.
pub(crate) async fn respond<B>(
    req: &Request<B>,
    group: &UrlGroup,
    site: &Site,
    conn: &ConnInfo,
) -> Result<(Response<ResponseBody>, Granted), Reject> {
    let granted = access::authenticate(req, group, site, conn).await?;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(Reject::MethodNotAllowed);
    }
    let identity = &granted.identity;
    let base = req.uri().path().trim_end_matches('/');
    let listed: Vec<Listed> = group
        .entries()
        .into_iter()
        .filter(|entry| access::may_read(group, entry, identity))
        .filter_map(|entry| {
            let version = entry.source.serving().stat().ok()?;
            Some(Listed {
                suffix: entry.suffix.as_str().to_owned(),
                href: format!("{base}/{}", entry.suffix.encoded()),
                size: version.len,
                modified: version.last_modified.to_str().unwrap_or("").to_owned(),
            })
        })
        .collect();
    if listed.is_empty() && !identity.is_authenticated() && group.auth().any_enabled() {
        return Err(access::denied(group, conn, identity));
    }
    let json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let prefix = group.prefix().to_string();
    let (text, content_type) = if json {
        (json_index(&prefix, &listed), "application/json")
    } else {
        (html_index(&prefix, &listed), "text/html; charset=utf-8")
    };
    let len = text.len();
    let body = if req.method() == Method::HEAD {
        ResponseBody::empty()
    } else {
        ResponseBody::bytes(text)
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    // The list changes as URLs come and go, and differs per caller.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((response, granted))
}

/// The page for a path no URL serves, naming those of `groups` that have an index (what their own
/// root would list anyway); `None` when none has.
pub(super) fn groups_page(groups: &[&UrlGroup]) -> Option<String> {
    let mut segments: Vec<&str> = groups
        .iter()
        .filter(|g| g.index())
        .map(|g| g.prefix().segment())
        .collect();
    if segments.is_empty() {
        return None;
    }
    segments.sort_unstable_by_key(|s| s.to_lowercase());
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n\
         <body><h1>Not Found</h1>\n<p>No URL here serves this path. URL groups here:</p>\n<ul>\n",
    );
    for segment in segments {
        // A prefix's segment is a valid suffix segment; encoded, it is the link's path.
        let href = UrlSuffix::new(segment).map_or_else(|_| segment.to_owned(), |s| s.encoded());
        out.push_str(&format!(
            "<li><a href=\"/{}/\">/{}/</a></li>\n",
            escape_html(&href),
            escape_html(segment)
        ));
    }
    out.push_str("</ul>\n</body></html>\n");
    Some(out)
}

fn html_index(prefix: &str, listed: &[Listed]) -> String {
    let title = escape_html(prefix);
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><h1>{title}</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n"
    );
    for l in listed {
        out.push_str(&format!(
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td></tr>\n",
            escape_html(&l.href),
            escape_html(&l.suffix),
            l.size,
            escape_html(&l.modified)
        ));
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

fn json_index(prefix: &str, listed: &[Listed]) -> String {
    let urls: Vec<serde_json::Value> = listed
        .iter()
        .map(|l| {
            serde_json::json!({
                "suffix": l.suffix,
                "href": l.href,
                "size": l.size,
                "modified": l.modified,
            })
        })
        .collect();
    serde_json::json!({ "prefix": prefix, "urls": urls }).to_string()
}

/// Text as HTML character data or a quoted attribute value.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_break_out_of_the_page() {
        let listed = [Listed {
            suffix: "<script>alert(1)</script>\"x".into(),
            href: "/G/%3Cscript%3E".into(),
            size: 3,
            modified: "Thu, 01 Jan 1970 00:00:00 GMT".into(),
        }];
        let html = html_index("http://+:80/G/", &listed);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;x"));
        let json: serde_json::Value = serde_json::from_str(&json_index("p", &listed)).unwrap();
        assert_eq!(json["urls"][0]["suffix"], "<script>alert(1)</script>\"x");
        assert_eq!(json["urls"][0]["size"], 3);
    }
}
