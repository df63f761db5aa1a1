//! Binding a port's listening sockets.

use std::net::{IpAddr, SocketAddr, TcpListener};

use super::ServerError;

/// Binds `port` on each address. An IPv6 wildcard that the machine cannot bind (no IPv6) is skipped when
/// another address was bound.
pub(super) fn bind(addrs: &[IpAddr], port: u16) -> Result<Vec<TcpListener>, ServerError> {
    let mut sockets = Vec::new();
    let mut skipped = None;
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        match bind_one(addr) {
            Ok(socket) => sockets.push(socket),
            Err(e) if ip.is_ipv6() && ip.is_unspecified() && no_ipv6(&e) => {
                skipped = Some((addr, e))
            }
            Err(source) => return Err(ServerError::Bind { addr, source }),
        }
    }
    match (sockets.is_empty(), skipped) {
        (true, Some((addr, source))) => Err(ServerError::Bind { addr, source }),
        (_, Some((addr, e))) => {
            tracing::warn!(%addr, error = %e, "IPv6 is not available; listening on IPv4 only");
            Ok(sockets)
        }
        _ => Ok(sockets),
    }
}

/// Whether sockets bound to `bound` receive connections to `ip`: one is bound to `ip` itself, or to the
/// unspecified address of its family (IPv6 sockets are `IPV6_V6ONLY`, so `::` does not take IPv4).
pub(super) fn covers(mut bound: impl Iterator<Item = IpAddr>, ip: IpAddr) -> bool {
    bound.any(|b| b == ip || (b.is_unspecified() && b.is_ipv4() == ip.is_ipv4()))
}

fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(97 /* EAFNOSUPPORT */) | Some(99 /* EADDRNOTAVAIL */)
    )
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // So that `::` and `0.0.0.0` can both be bound on one port.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
