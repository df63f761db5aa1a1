//! The connection a transfer reuses: the HEAD and GETs of one file go over one kept-alive HTTP/1.1
//! connection (hyper's `client::conn::http1`), over TCP or TLS, direct or through a proxy. A new one is
//! opened when the origin changes (a redirect), when the server closed the last one, or after an error.
//!
//! NTLM authenticates the connection (as Windows does): on a 401 offering NTLM, the request is sent again with the
//! NEGOTIATE, then with the AUTHENTICATE, all three on this connection; later requests on it need nothing.
//! Negotiate (Kerberos, RFC 4559) goes the same way: on a 401 offering Negotiate, the request is sent
//! again with our token on this connection, as often as the server answers 401 with a token of its own
//! (bounded), and the server's token on the final answer is checked (mutual authentication).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::credentials::{CredentialScheme, Credentials};
use super::negotiate_initiator as negotiate;
use super::ntlm_initiator::Initiator;
use super::peer_guard::PeerGuard;
use super::proxy::{Endpoint, Proxies};
use super::{ClientError, ClientSettings};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of a 401 body read (to keep the connection) before giving up on it.
const MAX_DRAINED: usize = 64 * 1024;
/// The longest CONNECT answer head.
const MAX_TUNNEL_HEAD: usize = 16 * 1024;
const USER_AGENT: &str = concat!("bcs/", env!("CARGO_PKG_VERSION"));

/// Scheme, host and port: what a connection is to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &Uri) -> Origin {
        let https = url.scheme_str() == Some("https");
        let host = url.host().unwrap_or_default();
        Origin {
            https,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: url.port_u16().unwrap_or(if https { 443 } else { 80 }),
        }
    }
}

struct Conn {
    origin: Origin,
    sender: SendRequest<Empty<Bytes>>,
    /// Plain http through a proxy: absolute-form targets.
    absolute_form: bool,
}

/// One transfer's client: its settings, resolved once, and the connection it keeps.
pub(crate) struct Client {
    settings: ClientSettings,
    proxies: Proxies,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Conn>,
    /// The only origin credentials are sent to (the job file's URL): see [`Client::trust_origin`].
    trusted: Option<String>,
    /// What every connection is checked against (a restricted job's): see [`connect`].
    guard: Option<PeerGuard>,
}

impl Client {
    /// Resolves the settings (the environment for PRECONFIG; TLS files are read at the first https URL).
    pub(crate) fn new(settings: &ClientSettings) -> Result<Client, ClientError> {
        let proxies = Proxies::resolve(&settings.proxy, |name| std::env::var(name).ok())?;
        // Never a silent fallback to no credentials: a build without GSS-API says so at once.
        settings.check()?;
        Ok(Client {
            settings: settings.clone(),
            proxies,
            tls: None,
            conn: None,
            trusted: None,
            guard: None,
        })
    }

    /// Checks every connection's addresses with `guard` before connecting (see [`connect`]). Default is
    /// none: any address.
    pub(crate) fn guarded(mut self, guard: Option<PeerGuard>) -> Client {
        self.guard = guard;
        self
    }

    /// Sends credentials to `url`'s origin (scheme, host, port) only.
    ///
    /// SECURITY: a redirect may lead anywhere; Basic sent there gives the password away, and an NTLM
    /// answer to another server's challenge can be cracked offline or relayed. A Negotiate token is a
    /// Kerberos ticket for `HTTP@host`: sent to another port or scheme of the same host (a redirect to
    /// another origin), another service there could replay it while it is fresh, and a redirect to
    /// another host would make us ask the KDC for a ticket to wherever the redirect names. As curl does
    /// without `--location-trusted`, credentials of every scheme stay with the origin the job names
    /// (tested by `negotiate_is_not_sent_where_a_redirect_leads` and
    /// `credentials_are_not_sent_where_a_redirect_leads` in tests/it).
    pub(crate) fn trust_origin(&mut self, url: &Uri) {
        self.trusted = Some(origin(url));
    }

    /// The credentials sent to `url`'s server: the job's, when it is the origin they go to.
    pub(crate) fn credentials_for(&self, url: &Uri) -> Option<&Credentials> {
        let trusted = self.trusted.as_deref() == Some(origin(url).as_str());
        self.settings.credentials.as_ref().filter(|_| trusted)
    }

    /// Whether the job has credentials (for whichever server).
    pub(crate) fn has_credentials(&self) -> bool {
        self.settings.credentials.is_some()
    }

    /// Sends a bodiless request and returns the answer (after NTLM's round trips when asked for them).
    pub(crate) async fn send(
        &mut self,
        method: &Method,
        url: &Uri,
        extra: &[(HeaderName, String)],
    ) -> Result<Response<Incoming>, ClientError> {
        let trusted = self.trusted.as_deref() == Some(origin(url).as_str());
        let basic = if trusted {
            self.basic_header(url)?
        } else {
            None
        };
        let mut headers = extra.to_vec();
        headers.extend(basic.map(|v| (header::AUTHORIZATION, v)));
        let response = self.send_once(method, url, &headers).await?;
        match self.settings.credentials.as_ref().filter(|_| trusted) {
            Some(c) if c.scheme == CredentialScheme::Ntlm && offers(&response, "NTLM") => {
                let initiator =
                    Initiator::new(&c.user, c.password().ok_or(ClientError::NoPassword)?);
                self.ntlm(method, url, extra, response, &initiator).await
            }
            Some(c)
                if c.scheme == CredentialScheme::Negotiate && offers(&response, "Negotiate") =>
            {
                self.negotiate(method, url, extra, response).await
            }
            _ => Ok(response),
        }
    }

    fn basic_header(&self, url: &Uri) -> Result<Option<String>, ClientError> {
        let Some(c) = self.settings.credentials.as_ref() else {
            return Ok(None);
        };
        if c.scheme != CredentialScheme::Basic {
            return Ok(None);
        }
        // SECURITY: Basic is the password in the clear; over plain http it is readable on the path.
        if url.scheme_str() != Some("https") && !c.allow_basic_over_http {
            return Err(ClientError::BasicOverHttp);
        }
        Ok(Some(basic_value(c)?))
    }

    /// NEGOTIATE and AUTHENTICATE on the connection that got the 401.
    async fn ntlm(
        &mut self,
        method: &Method,
        url: &Uri,
        extra: &[(HeaderName, String)],
        first: Response<Incoming>,
        initiator: &Initiator,
    ) -> Result<Response<Incoming>, ClientError> {
        drain(first).await?;
        let with = |token: &[u8]| {
            let mut h = extra.to_vec();
            let value = base64::engine::general_purpose::STANDARD.encode(token);
            h.push((header::AUTHORIZATION, format!("NTLM {value}")));
            h
        };
        let challenged = self
            .send_once(method, url, &with(initiator.negotiate()))
            .await?;
        let challenge = (challenged.status() == StatusCode::UNAUTHORIZED)
            .then(|| server_token(&challenged, "NTLM"))
            .flatten();
        let Some(challenge) = challenge else {
            // No challenge: the server refused NTLM; its answer (a 401) is the transfer's answer.
            return Ok(challenged);
        };
        drain(challenged).await?;
        let authenticate = initiator
            .authenticate(&challenge)
            .map_err(ClientError::Ntlm)?;
        self.send_once(method, url, &with(&authenticate)).await
    }

    /// Negotiate's legs on the connection that got the 401: our token, then the server's answers, until it
    /// stops answering 401 with a token. The final answer's token, when there is one, must complete the
    /// context (mutual authentication); a 401 without one is the transfer's answer (refused).
    async fn negotiate(
        &mut self,
        method: &Method,
        url: &Uri,
        extra: &[(HeaderName, String)],
        first: Response<Incoming>,
    ) -> Result<Response<Incoming>, ClientError> {
        drain(first).await?;
        let mut initiator = negotiate::Initiator::new(&Origin::of(url).host)?;
        let no_token = || ClientError::Negotiate("GSS-API gave no token to send".to_owned());
        let mut token = initiator.step(None).await?.ok_or_else(no_token)?;
        for _ in 0..negotiate::MAX_LEGS {
            let mut h = extra.to_vec();
            let value = base64::engine::general_purpose::STANDARD.encode(&token);
            h.push((header::AUTHORIZATION, format!("Negotiate {value}")));
            let response = self.send_once(method, url, &h).await?;
            let answer = server_token(&response, "Negotiate");
            if response.status() == StatusCode::UNAUTHORIZED {
                match answer {
                    Some(t) if !initiator.is_complete() => {
                        drain(response).await?;
                        token = initiator.step(Some(t)).await?.ok_or_else(no_token)?;
                        continue;
                    }
                    // Refused: the 401 is the transfer's answer (ERROR after the challenge).
                    _ => return Ok(response),
                }
            }
            // SECURITY: a server that cannot prove it holds the service key does not get to answer.
            if let Some(t) = answer {
                if !initiator.is_complete() {
                    initiator.step(Some(t)).await?;
                }
                if !initiator.is_complete() {
                    return Err(ClientError::Negotiate(
                        "the server's mutual authentication is incomplete".to_owned(),
                    ));
                }
            }
            return Ok(response);
        }
        Err(ClientError::Negotiate(format!(
            "the server asked for more than {} legs",
            negotiate::MAX_LEGS
        )))
    }

    /// One request on the kept connection (opened first if need be).
    async fn send_once(
        &mut self,
        method: &Method,
        url: &Uri,
        extra: &[(HeaderName, String)],
    ) -> Result<Response<Incoming>, ClientError> {
        let conn = self.connection(url).await?;
        let request = build_request(method, url, conn.absolute_form, extra)?;
        let result = match timeout(HEADER_TIMEOUT, conn.sender.send_request(request)).await {
            Err(_) => Err(ClientError::Timeout("the answer's header")),
            Ok(Err(e)) => Err(ClientError::Lost(Box::new(e))),
            Ok(Ok(response)) => Ok(response),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// The kept connection if it is to this origin and still open, else a new one.
    async fn connection(&mut self, url: &Uri) -> Result<&mut Conn, ClientError> {
        let origin = Origin::of(url);
        if let Some(conn) = self.conn.as_mut().filter(|c| c.origin == origin) {
            // Ready once the last answer's body was read; an error means the server closed it.
            if matches!(
                timeout(Duration::from_secs(5), conn.sender.ready()).await,
                Ok(Ok(()))
            ) {
                return Ok(self.conn.as_mut().expect("checked above"));
            }
        }
        self.conn = None;
        let conn = self.open(url, origin).await?;
        Ok(self.conn.insert(conn))
    }

    async fn open(&mut self, url: &Uri, origin: Origin) -> Result<Conn, ClientError> {
        let proxy = self.proxies.for_url(url).cloned();
        let via = proxy.clone().unwrap_or_else(|| Endpoint {
            host: origin.host.clone(),
            port: origin.port,
        });
        let mut tcp = match timeout(CONNECT_TIMEOUT, connect(&via, self.guard.as_ref())).await {
            Err(_) => return Err(ClientError::Timeout("connecting")),
            Ok(Err(Refused)) => return Err(ClientError::RefusedByPolicy),
            Ok(Ok(Err(source))) => {
                return Err(ClientError::Connect {
                    host: via.host,
                    port: via.port,
                    source,
                })
            }
            Ok(Ok(Ok(tcp))) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        if !origin.https {
            let sender = http1(tcp).await?;
            let absolute_form = proxy.is_some();
            return Ok(Conn {
                origin,
                sender,
                absolute_form,
            });
        }
        if proxy.is_some() {
            timeout(CONNECT_TIMEOUT, tunnel(&mut tcp, &origin))
                .await
                .map_err(|_| ClientError::Timeout("the proxy's tunnel"))??;
        }
        let config = match &self.tls {
            Some(config) => config.clone(),
            None => self.tls.insert(self.settings.tls.client_config()?).clone(),
        };
        let name = ServerName::try_from(origin.host.clone()).map_err(|_| {
            ClientError::Tls(rustls::Error::General(format!(
                "{:?} is not a server name",
                origin.host
            )))
        })?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = match timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
            Err(_) => return Err(ClientError::Timeout("the TLS handshake")),
            Ok(Err(e)) => return Err(handshake_error(e)),
            Ok(Ok(tls)) => tls,
        };
        let sender = http1(tls).await?;
        Ok(Conn {
            origin,
            sender,
            absolute_form: false,
        })
    }
}

/// A guard's refusal.
struct Refused;

/// A TCP connection to `via` (the server, or the proxy), at one of its addresses; with a `guard`, only
/// once every address the name resolves to is allowed.
///
/// SECURITY: the guard sees the addresses this connection is made to — resolved here, once, and then
/// connected to as they are — so a name that resolved to an allowed address when the job was checked
/// and resolves to a refused one now (DNS rebinding), or a redirect to a refused host, is refused
/// before any packet reaches it. One refused address refuses the name, as the job's check when it was
/// created does. Through a proxy, the proxy is what is connected to and checked; where an absolute-form
/// request or a CONNECT tunnel's target then leads is resolved by the proxy, and is its business.
async fn connect(
    via: &Endpoint,
    guard: Option<&PeerGuard>,
) -> Result<std::io::Result<TcpStream>, Refused> {
    let addresses = match tokio::net::lookup_host((via.host.as_str(), via.port)).await {
        Ok(addresses) => addresses.collect::<Vec<_>>(),
        Err(e) => return Ok(Err(e)),
    };
    if let Some(guard) = guard {
        if addresses.iter().any(|a| !guard.allows(&via.host, a.ip())) {
            return Err(Refused);
        }
    }
    Ok(TcpStream::connect(addresses.as_slice()).await)
}

/// hyper's HTTP/1.1 handshake over `io`; the connection's driver runs as its own task until it closes.
async fn http1<T>(io: T) -> Result<SendRequest<Empty<Bytes>>, ClientError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ClientError::Lost(Box::new(e)))?;
    tokio::spawn(connection);
    Ok(sender)
}

fn handshake_error(e: std::io::Error) -> ClientError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    match tls {
        Some(tls) => ClientError::Tls(tls),
        None => ClientError::Lost(Box::new(e)),
    }
}

/// Asks the proxy for a tunnel to `origin` (RFC 9110 §9.3.6) and reads its answer's head.
///
/// SECURITY: bytes after the head would come from the proxy, not from the server, yet be read as the
/// start of the TLS stream; an answer with any is refused.
async fn tunnel(tcp: &mut TcpStream, origin: &Origin) -> Result<(), ClientError> {
    let authority = if origin.host.contains(':') {
        format!("[{}]:{}", origin.host, origin.port)
    } else {
        format!("{}:{}", origin.host, origin.port)
    };
    let ask = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT}\r\n\r\n"
    );
    let lost = |e: std::io::Error| ClientError::Lost(Box::new(e));
    tcp.write_all(ask.as_bytes()).await.map_err(lost)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tcp.read(&mut buf).await.map_err(lost)?;
        if n == 0 {
            return Err(ClientError::ProxyRefused(0));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = tunnel_status(&head[..end + 4]).unwrap_or(0);
            if !(200..300).contains(&status) || end + 4 != head.len() {
                return Err(ClientError::ProxyRefused(status));
            }
            return Ok(());
        }
        if head.len() > MAX_TUNNEL_HEAD {
            return Err(ClientError::ProxyRefused(0));
        }
    }
}

/// The status of a CONNECT answer's head: `HTTP/1.x NNN ...`.
fn tunnel_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !(version == "HTTP/1.1" || version == "HTTP/1.0") || code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

fn build_request(
    method: &Method,
    url: &Uri,
    absolute_form: bool,
    extra: &[(HeaderName, String)],
) -> Result<Request<Empty<Bytes>>, ClientError> {
    let target = if absolute_form {
        url.to_string()
    } else {
        url.path_and_query().map_or("/", |p| p.as_str()).to_owned()
    };
    let authority = url.authority().map_or("", |a| a.as_str());
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(target)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, USER_AGENT)
        // BITS asks for identity; a compressed body would break ranges and sizes.
        .header(header::ACCEPT_ENCODING, "identity");
    for (name, value) in extra {
        let mut value = HeaderValue::from_str(value).map_err(|e| ClientError::Request(e.into()))?;
        if name == header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        builder = builder.header(name, value);
    }
    builder.body(Empty::new()).map_err(ClientError::Request)
}

fn basic_value(c: &Credentials) -> Result<String, ClientError> {
    let password = c.password().ok_or(ClientError::NoPassword)?;
    let pair = zeroize::Zeroizing::new(format!("{}:{}", c.user, password.expose()));
    Ok(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    ))
}

/// Whether a 401 offers `scheme` (one WWW-Authenticate header per scheme, as our server and IIS send).
fn offers(response: &Response<Incoming>, scheme: &str) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        && response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split([' ', ','])
                    .next()
                    .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            })
}

/// The token of `scheme` in the answer's WWW-Authenticate (`SCHEME BASE64`), if it carries one.
fn server_token(response: &Response<Incoming>, scheme: &str) -> Option<Vec<u8>> {
    response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (name, token) = v.split_once(' ')?;
            name.eq_ignore_ascii_case(scheme).then_some(token.trim())
        })
        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
}

/// Reads a small body to its end so that the connection can carry the next request; the whole body
/// within [`HEADER_TIMEOUT`] (a server dripping it a byte at a time holds nothing for longer).
async fn drain(response: Response<Incoming>) -> Result<(), ClientError> {
    let mut body = response.into_body();
    let mut read = 0usize;
    let deadline = tokio::time::Instant::now() + HEADER_TIMEOUT;
    while let Some(frame) = tokio::time::timeout_at(deadline, body.frame())
        .await
        .map_err(|_| ClientError::Timeout("an answer's body"))?
    {
        let frame = frame.map_err(|e| ClientError::Lost(Box::new(e)))?;
        read += frame.data_ref().map_or(0, Bytes::len);
        if read > MAX_DRAINED {
            return Err(ClientError::Timeout("the end of a long 401 body"));
        }
    }
    Ok(())
}

/// `scheme://host:port`, lowercase, with the scheme's default port made explicit.
fn origin(url: &Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let default = if scheme == "https" { 443 } else { 80 };
    let host = url.host().unwrap_or_default().to_ascii_lowercase();
    format!("{scheme}://{host}:{}", url.port_u16().unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SECURITY: credentials go to the job's own origin only; a redirect elsewhere gets none.
    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |u: &str| origin(&u.parse().unwrap());
        assert_eq!(o("https://Files.Corp/x"), o("https://files.corp:443/y"));
        assert_eq!(o("http://h/x"), "http://h:80");
        assert_ne!(o("https://files.corp/x"), o("https://evil.example/x"));
        assert_ne!(o("https://files.corp/x"), o("http://files.corp/x"));
        assert_ne!(o("https://files.corp/x"), o("https://files.corp:8443/x"));
        let mut client = Client::new(&ClientSettings::default()).unwrap();
        client.trust_origin(&"https://files.corp/x".parse().unwrap());
        assert_eq!(client.trusted.as_deref(), Some("https://files.corp:443"));
    }

    #[test]
    fn tunnel_answers() {
        assert_eq!(
            tunnel_status(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(tunnel_status(b"HTTP/1.0 200\r\n\r\n"), Some(200));
        assert_eq!(tunnel_status(b"HTTP/1.1 407 Proxy Auth\r\n\r\n"), Some(407));
        for bad in [
            &b""[..],
            b"HTTP/2 200 x\r\n",
            b"HTTP/1.1 2000 x\r\n",
            b"ICY 200 OK\r\n",
            b"HTTP/1.1 099 x\r\n",
        ] {
            assert_eq!(tunnel_status(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn requests_through_a_proxy_use_the_absolute_form() {
        let url: Uri = "http://files.example:8080/a/b?c".parse().unwrap();
        let direct = build_request(&Method::GET, &url, false, &[]).unwrap();
        assert_eq!(direct.uri().to_string(), "/a/b?c");
        let proxied = build_request(&Method::GET, &url, true, &[]).unwrap();
        assert_eq!(proxied.uri().to_string(), "http://files.example:8080/a/b?c");
        assert_eq!(proxied.headers()[header::HOST], "files.example:8080");
    }

    #[test]
    fn basic_is_refused_over_http_unless_allowed() {
        use crate::auth::Password;
        let settings = |allow| ClientSettings {
            credentials: Some(
                Credentials::basic("u", Password::from("p")).allow_basic_over_http(allow),
            ),
            ..ClientSettings::default()
        };
        let http: Uri = "http://h/f".parse().unwrap();
        let https: Uri = "https://h/f".parse().unwrap();
        let strict = Client::new(&settings(false)).unwrap();
        assert!(matches!(
            strict.basic_header(&http),
            Err(ClientError::BasicOverHttp)
        ));
        assert_eq!(
            strict.basic_header(&https).unwrap().as_deref(),
            Some("Basic dTpw")
        );
        let lax = Client::new(&settings(true)).unwrap();
        assert!(lax.basic_header(&http).unwrap().is_some());
    }
}
