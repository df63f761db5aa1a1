//! The transport to `bcs serve`'s management API: one HTTP/1.1 request per connection, over the service's
//! Unix socket or over TLS to a remote service, under one deadline, with a bounded answer.
//!
//! SECURITY: the threat is talking to the wrong server, or sending credentials where they can be read. A
//! remote service is always verified against `--ca` (or the system's anchors); there is no switch that
//! turns verification off, and `http://` is refused, so a password or a client certificate only ever
//! travels over TLS (or the local socket, which only that machine's users reach).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bits_compact::client::TlsSettings;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use zeroize::Zeroizing;

use super::{ApiArgs, ManageError};

/// Connecting, the TLS handshake, the request and the whole answer, together. Longer than the service's
/// 60 s body deadline, so that a large `bcs apply` that the service takes is not reported as unreachable.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The largest answer read; a whole configuration with many URLs stays far below it.
const MAX_ANSWER: usize = 16 << 20;

/// Where the service is: its Unix socket, or an https URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Server {
    /// The local socket; plain HTTP with `Host: localhost`.
    Socket(PathBuf),
    /// A remote service over TLS.
    Https {
        /// `host:port` as written, for the Host header.
        authority: String,
        /// The host without IPv6 brackets, to connect to and to verify.
        host: String,
        port: u16,
        /// A path the API sits under, without the trailing slash (usually empty).
        base: String,
    },
}

impl Server {
    /// The service `args` name: `--server`, else the socket in the `--state` directory, else in the
    /// state directory `bcs serve` picks by default ($BCS_STATE first). With it, for errors, where it
    /// came from and how to name another.
    pub(crate) fn of(args: &ApiArgs) -> Result<(Self, String), ManageError> {
        if let Some(server) = &args.server {
            return Ok((server.clone(), "from --server".to_owned()));
        }
        let socket =
            |dir: &std::path::Path| Server::Socket(bits_compact::service::socket_path(dir));
        let elsewhere = "a service started with `--state DIR` is reached with --state DIR (or \
            BCS_STATE=DIR), one on another machine with --server https://HOST:PORT/";
        if let Some(dir) = &args.state {
            return Ok((
                socket(dir),
                format!("the socket in --state {}", dir.display()),
            ));
        }
        let dir = bits_compact::service::default_state_dir().ok_or(ManageError::NoStateDir)?;
        let from = match std::env::var_os("BCS_STATE").filter(|v| !v.is_empty()) {
            Some(_) => "the socket in $BCS_STATE",
            None => "the socket in the default state directory",
        };
        Ok((socket(&dir), format!("{from}; {elsewhere}")))
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Server::Socket(path) => write!(f, "{}", path.display()),
            Server::Https {
                authority, base, ..
            } => write!(f, "https://{authority}{base}/"),
        }
    }
}

impl FromStr for Server {
    type Err = String;

    /// `https://HOST[:PORT][/PATH/]`, or anything without `://` as a socket path.
    fn from_str(text: &str) -> Result<Self, String> {
        if !text.contains("://") {
            return match text.is_empty() {
                true => Err("expected a socket path or an https:// URL".into()),
                false => Ok(Server::Socket(PathBuf::from(text))),
            };
        }
        let uri: Uri = text.parse().map_err(|e| format!("not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(
                "only https:// (or a socket path): the API is never reached in the clear".into(),
            );
        }
        let authority = uri.authority().ok_or("the URL has no host")?;
        if authority.as_str().contains('@') {
            return Err("no user name in the URL; use --user".into());
        }
        if uri.query().is_some() {
            return Err("the URL cannot have a query".into());
        }
        Ok(Server::Https {
            authority: authority.as_str().to_owned(),
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(443),
            base: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// `text` as one path segment: everything but RFC 3986's unreserved characters percent-encoded, so that
/// the `/`, `:` and `+` of a prefix stay inside its segment.
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte))
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// What the service answered: its status and its JSON (`Null` when the body is empty, as for 204).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl Answer {
    /// The body of a success; an error status as `ManageError::Api`.
    pub(crate) fn into_result(self) -> Result<Value, ManageError> {
        match self.status.is_success() {
            true => Ok(self.body),
            false => Err(self.into_error()),
        }
    }

    /// The answer as an error, from the service's `{"code", "message"}` when it sent one.
    pub(crate) fn into_error(self) -> ManageError {
        let field = |name| {
            self.body
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (code, message) = match (field("code"), field("message")) {
            (Some(code), Some(message)) => (code, message),
            _ => (
                self.status.as_u16().to_string(),
                self.status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_lowercase(),
            ),
        };
        ManageError::Api {
            status: self.status,
            code,
            message,
        }
    }
}

/// One configured way to the service; each call opens its own connection.
pub(crate) struct Client {
    server: Server,
    /// Where `server` came from, for the unreachable error.
    tried: String,
    transport: Transport,
    authorization: Option<HeaderValue>,
}

/// How a connection is made.
enum Transport {
    Socket(PathBuf),
    Tls {
        connector: tokio_rustls::TlsConnector,
        host: String,
        port: u16,
    },
}

impl Client {
    /// The client for `args`: the server (default: the local socket), its TLS configuration, and Basic
    /// credentials when `--user` is given (the password asked now, before any connection).
    pub(crate) fn new(args: &ApiArgs) -> Result<Self, ManageError> {
        let (server, tried) = Server::of(args)?;
        let transport = match &server {
            Server::Https { host, port, .. } => Transport::Tls {
                connector: tls_config(args)?.into(),
                host: host.clone(),
                port: *port,
            },
            Server::Socket(_) if args.client_cert.is_some() => {
                return Err(ManageError::NeedsHttps("--client-cert"))
            }
            Server::Socket(path) => Transport::Socket(path.clone()),
        };
        let authorization = match &args.user {
            Some(user) => Some(basic(user, &server)?),
            None => None,
        };
        Ok(Client {
            server,
            tried,
            transport,
            authorization,
        })
    }

    /// The request, and the service's answer whatever its status.
    pub(crate) async fn fetch(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ManageError> {
        let request = self.request(method, path, body)?;
        tokio::time::timeout(TIMEOUT, self.exchange(request))
            .await
            .map_err(|_| ManageError::Timeout {
                server: self.server.to_string(),
                secs: TIMEOUT.as_secs(),
            })?
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Request<Full<Bytes>>, ManageError> {
        let (host, base) = match &self.server {
            Server::Socket(_) => ("localhost", ""),
            Server::Https {
                authority, base, ..
            } => (authority.as_str(), base.as_str()),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header(header::HOST, host)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("bcs/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(authorization) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, authorization.clone());
        }
        let bytes = match body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(bytes))
            .map_err(|e| ManageError::Invalid(format!("cannot make the request for {path}: {e}")))
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Answer, ManageError> {
        let stream = self.connect().await?;
        self.send(stream, request).await
    }

    /// A new connection to the service: its socket, or TCP and the TLS handshake.
    async fn connect(&self) -> Result<Box<dyn Io>, ManageError> {
        let cannot = |e: Box<dyn std::error::Error + Send + Sync>| self.unreachable(e);
        Ok(match &self.transport {
            Transport::Socket(path) => Box::new(
                UnixStream::connect(path)
                    .await
                    .map_err(|e| cannot(e.into()))?,
            ),
            Transport::Tls {
                connector,
                host,
                port,
            } => {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| cannot(e.into()))?;
                let name = ServerName::try_from(host.clone()).map_err(|e| cannot(e.into()))?;
                Box::new(
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| cannot(e.into()))?,
                )
            }
        })
    }

    async fn send<S>(&self, stream: S, request: Request<Full<Bytes>>) -> Result<Answer, ManageError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // A failure past the handshake (a TLS 1.3 client certificate refused, a service that closes
        // without answering) is still "could not talk to it", not an answer.
        let lost = |e: hyper::Error| self.unreachable(e.into());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(lost)?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await.map_err(lost)?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| self.bad_answer(format!("cannot read it: {e}")))?
            .to_bytes();
        driver.abort();
        let body = match bytes.is_empty() {
            true => Value::Null,
            false => match serde_json::from_slice(&bytes) {
                Ok(body) => body,
                Err(_) if !status.is_success() => Value::Null,
                Err(e) => return Err(self.bad_answer(format!("not JSON: {e}"))),
            },
        };
        Ok(Answer { status, body })
    }

    /// A GET of a server-sent event stream: each event's name and data go to `on_event` until it returns
    /// false or the stream ends. Only connecting and the answer's head are under the deadline; an error
    /// status is returned as the error it stands for.
    pub(crate) async fn events(
        &self,
        path: &str,
        mut on_event: impl FnMut(&str, &str) -> bool,
    ) -> Result<(), ManageError> {
        let mut request = self.request(Method::GET, path, None)?;
        request.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let timeout = || ManageError::Timeout {
            server: self.server.to_string(),
            secs: TIMEOUT.as_secs(),
        };
        let lost = |e: Box<dyn std::error::Error + Send + Sync>| self.unreachable(e);
        let (response, driver) = tokio::time::timeout(TIMEOUT, self.open(request))
            .await
            .map_err(|_| timeout())??;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            driver.abort();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(Answer { status, body }.into_error());
        }
        let mut pending: Vec<u8> = Vec::new();
        let (mut event, mut data) = (String::new(), String::new());
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| lost(e.into()))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&chunk);
            if pending.len() > MAX_ANSWER {
                return Err(self.bad_answer("an event too long".into()));
            }
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]).into_owned();
                if line.is_empty() {
                    if !data.is_empty() && !on_event(&event, &data) {
                        driver.abort();
                        return Ok(());
                    }
                    event.clear();
                    data.clear();
                } else if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_owned();
                } else if let Some(text) = line.strip_prefix("data: ") {
                    data.push_str(text);
                }
            }
        }
        driver.abort();
        Ok(())
    }

    /// Sends `request` on a new connection; the answer's head, and the task driving the connection.
    async fn open(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<
        (
            http::Response<hyper::body::Incoming>,
            tokio::task::JoinHandle<()>,
        ),
        ManageError,
    > {
        let cannot = |e: Box<dyn std::error::Error + Send + Sync>| self.unreachable(e);
        let io = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| cannot(e.into()))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| cannot(e.into()))?;
        Ok((response, driver))
    }

    fn unreachable(&self, source: Box<dyn std::error::Error + Send + Sync>) -> ManageError {
        ManageError::Unreachable {
            server: self.server.to_string(),
            tried: self.tried.clone(),
            source,
        }
    }

    fn bad_answer(&self, reason: String) -> ManageError {
        ManageError::BadAnswer {
            server: self.server.to_string(),
            reason,
        }
    }
}

/// A connection of either kind.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// `Authorization: Basic` for `user` (RFC 7617), the password from BCS_PASSWORD or the terminal.
fn basic(user: &str, server: &Server) -> Result<HeaderValue, ManageError> {
    use base64::Engine as _;
    let password = match std::env::var("BCS_PASSWORD") {
        Ok(password) => Zeroizing::new(password),
        Err(_) => rpassword::prompt_password(format!("Password for {user} at {server}: "))
            .map(Zeroizing::new)
            .map_err(ManageError::NoPassword)?,
    };
    let pair = Zeroizing::new(format!("{user}:{}", *password));
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
    let mut value = HeaderValue::from_str(&format!("Basic {}", *encoded))
        .map_err(|_| ManageError::Invalid(format!("--user {user:?} cannot be sent")))?;
    value.set_sensitive(true);
    Ok(value)
}

/// TLS 1.2 and 1.3, checking the server against `--ca` (else the system's anchors), and a client
/// certificate when one is given: the same trust the library's transfer client uses
/// ([`TlsSettings`]).
fn tls_config(args: &ApiArgs) -> Result<Arc<rustls::ClientConfig>, ManageError> {
    let env = || {
        std::env::var_os("BCS_CA")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let ca_file = args.ca.clone().or_else(env);
    if ca_file.is_none() && TlsSettings::system_bundle().is_none() {
        return Err(ManageError::NoAnchors);
    }
    let trust = TlsSettings {
        ca_file,
        pins: Vec::new(),
        client_certificate: args.client_cert.clone().zip(args.client_key.clone()),
    };
    trust.client_config().map_err(ManageError::Trust)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_only_unreserved_characters() {
        assert_eq!(
            segment("http://+:8080/app/"),
            "http%3A%2F%2F%2B%3A8080%2Fapp%2F"
        );
        assert_eq!(segment("tools/a.exe"), "tools%2Fa.exe");
        assert_eq!(segment("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(segment("a b%c?#"), "a%20b%25c%3F%23");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(segment("https://*:443/"), "https%3A%2F%2F%2A%3A443%2F");
    }

    #[test]
    fn servers_are_sockets_or_https() {
        assert_eq!(
            "/run/bcs.sock".parse::<Server>().unwrap(),
            Server::Socket("/run/bcs.sock".into())
        );
        assert_eq!(
            "relative.sock".parse::<Server>().unwrap(),
            Server::Socket("relative.sock".into())
        );
        let Server::Https {
            authority,
            host,
            port,
            base,
        } = "https://[::1]:9443/".parse::<Server>().unwrap()
        else {
            panic!("not https")
        };
        assert_eq!(
            (authority.as_str(), host.as_str(), port, base.as_str()),
            ("[::1]:9443", "::1", 9443, "")
        );
        let remote = "https://mgmt.example/api/".parse::<Server>().unwrap();
        assert_eq!(remote.to_string(), "https://mgmt.example/api/");
        assert!(matches!(remote, Server::Https { port: 443, ref base, .. } if base == "/api"));
        for bad in [
            "http://h:80/",
            "ftp://h/",
            "https://u:p@h/",
            "https://h/?x=1",
            "",
        ] {
            assert!(bad.parse::<Server>().is_err(), "{bad}");
        }
    }

    #[test]
    fn error_answers_keep_the_services_code() {
        let answer = Answer {
            status: StatusCode::NOT_FOUND,
            body: serde_json::json!({"code": "url_not_found", "message": "no such URL"}),
        };
        let e = answer.into_result().unwrap_err();
        assert_eq!(e.to_string(), "no such URL (url_not_found)");
        assert_eq!(e.exit_code(), 3);
        let bare = Answer {
            status: StatusCode::BAD_GATEWAY,
            body: Value::Null,
        };
        let e = bare.into_result().unwrap_err();
        assert_eq!(e.to_string(), "bad gateway (502)");
        assert_eq!(e.exit_code(), 1);
    }
}
