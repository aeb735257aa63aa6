//! Listening sockets inherited from systemd socket activation (`sd_listen_fds(3)`), so that a
//! restart queues connections in the socket systemd holds instead of refusing them, or handed
//! over by the proxy this process replaces (`weft proxy --upgrade`).
//!
//! systemd passes sockets as file descriptors 3, 4, ... with `LISTEN_FDS` (how many),
//! `LISTEN_PID` (for whom) and `LISTEN_FDNAMES` (colon-separated names, from `FileDescriptorName=`
//! or `systemd-socket-activate --fdname=`). The unsafe step from a raw descriptor to a socket
//! is the `listenfd` crate's, which also checks that each descriptor is a TCP listener.

use std::io;
use std::net::{SocketAddr, TcpListener};

/// The inherited listening sockets not yet claimed by a router or the admin server.
#[derive(Debug, Default)]
pub struct Inherited {
    /// `(name, socket)`; `None` once taken.
    sockets: Vec<Option<(String, TcpListener)>>,
}

impl Inherited {
    /// Takes the sockets passed to this process, if any, and clears `LISTEN_FDS` and
    /// `LISTEN_PID` so no child inherits them. Call it early, before other threads start (it
    /// changes the environment).
    ///
    /// # Errors
    /// A passed descriptor that is not a TCP listening socket (a UDP or Unix socket, a file),
    /// naming its position and name.
    pub fn from_env() -> io::Result<Inherited> {
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .map(|n| n.split(':').map(str::to_owned).collect())
            .unwrap_or_default();
        std::env::remove_var("LISTEN_FDNAMES");
        let mut fds = listenfd::ListenFd::from_env();
        let mut sockets = Vec::with_capacity(fds.len());
        for i in 0..fds.len() {
            let name = names.get(i).cloned().unwrap_or_default();
            match fds.take_tcp_listener(i) {
                Ok(Some(socket)) => sockets.push(Some((name, socket))),
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "inherited socket {} ({}): not a TCP listening socket: {e}",
                            i + 3,
                            if name.is_empty() { "unnamed" } else { &name }
                        ),
                    ))
                }
            }
        }
        Ok(Inherited { sockets })
    }

    /// Sockets handed over by a running proxy (binary upgrade), each named after its router's
    /// label or `admin`.
    pub fn from_sockets(sockets: Vec<(String, TcpListener)>) -> Inherited {
        Inherited {
            sockets: sockets.into_iter().map(Some).collect(),
        }
    }

    /// True when no socket was passed (or all were taken).
    pub fn is_empty(&self) -> bool {
        self.sockets.iter().all(Option::is_none)
    }

    /// The socket for a listener named `name` (a router's label, or `admin`) configured at
    /// `addr`: the first unclaimed socket with that name and address, else with that name (a
    /// router with several servers has several sockets of one name, so the address decides
    /// first), else the first whose local address is `addr`. `None` when there is none: the
    /// caller binds `addr` itself.
    pub fn take(&mut self, name: &str, addr: SocketAddr) -> Option<TcpListener> {
        let at = |l: &TcpListener| l.local_addr().is_ok_and(|a| a == addr);
        let find = |f: &dyn Fn(&str, &TcpListener) -> bool| {
            self.sockets
                .iter()
                .position(|s| s.as_ref().is_some_and(|(n, l)| f(n, l)))
        };
        let i = find(&|n, l| n == name && at(l))
            .or_else(|| find(&|n, _| n == name))
            .or_else(|| find(&|_, l| at(l)))?;
        self.sockets[i].take().map(|(_, l)| l)
    }

    /// The sockets nobody claimed, described by name and address (for an error at start: a
    /// socket systemd listens on that no router serves would accept and never answer).
    pub fn unclaimed(&self) -> Vec<String> {
        self.sockets
            .iter()
            .flatten()
            .map(|(n, l)| {
                let addr = l.local_addr().map_or("?".into(), |a| a.to_string());
                if n.is_empty() {
                    addr
                } else {
                    format!("{n} ({addr})")
                }
            })
            .collect()
    }

    /// A tokio listener from an inherited socket.
    ///
    /// # Errors
    /// The socket cannot be made non-blocking or registered with the runtime.
    pub fn into_tokio(socket: TcpListener) -> io::Result<tokio::net::TcpListener> {
        socket.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_by_name_then_by_address_once() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        let mut inh = Inherited {
            sockets: vec![Some(("outbound".into(), a)), Some((String::new(), b))],
        };
        let any: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(inh.take("outbound", any).is_some());
        assert!(inh.take("outbound", any).is_none(), "taken once");
        assert_eq!(inh.unclaimed(), vec![b_addr.to_string()]);
        assert!(inh.take("inbound", b_addr).is_some(), "by address");
        assert!(inh.is_empty());
    }
}
