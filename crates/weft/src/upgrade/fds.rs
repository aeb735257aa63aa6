//! Descriptors over a Unix socket: `SCM_RIGHTS` (unix(7)) through rustix's safe wrappers, so
//! received descriptors arrive as `OwnedFd`s and no `unsafe` is needed here.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

/// The most descriptors one message may carry: Linux's `SCM_MAX_FD`.
pub(super) const MAX_FDS: usize = 253;
/// The longest protocol line either side accepts, in bytes.
const MAX_LINE: usize = 64 * 1024;

/// Sends `line` (one JSON message and its newline) with `fds` attached to its first byte.
pub(super) async fn send_with_fds(
    stream: &mut UnixStream,
    line: &[u8],
    fds: &[OwnedFd],
) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::other(format!(
            "{} listening sockets: at most {MAX_FDS} can be handed over",
            fds.len()
        )));
    }
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let sent = stream
        .async_io(Interest::WRITABLE, || {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
                return Err(io::Error::other(
                    "descriptors do not fit the control buffer",
                ));
            }
            sendmsg(
                &*stream,
                &[IoSlice::new(line)],
                &mut control,
                SendFlags::NOSIGNAL,
            )
            .map_err(io::Error::from)
        })
        .await?;
    // The descriptors went with the first byte; the rest of a long line follows plainly.
    stream.write_all(&line[sent..]).await
}

/// Receives one line and the descriptors attached to it (close-on-exec, so a child process
/// never inherits them).
pub(super) async fn recv_with_fds(stream: &mut UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut buf = vec![0u8; 4096];
    let (len, fds) = stream
        .async_io(Interest::READABLE, || {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let msg = recvmsg(
                &*stream,
                &mut [IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(io::Error::from)?;
            let mut fds = Vec::new();
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = message {
                    fds.extend(received);
                }
            }
            Ok((msg.bytes, fds))
        })
        .await?;
    buf.truncate(len);
    if len == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if buf.last() != Some(&b'\n') {
        let rest = read_line(stream).await?;
        buf.extend_from_slice(&rest);
    }
    Ok((buf, fds))
}

/// Reads one newline-terminated line, a byte at a time so nothing after it is consumed (the
/// protocol alternates, and a peer's next message may carry descriptors).
pub(super) async fn read_line(stream: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let byte = stream.read_u8().await?;
        line.push(byte);
        if byte == b'\n' {
            return Ok(line);
        }
        if line.len() > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "upgrade message longer than 64 KiB",
            ));
        }
    }
}

/// The user id of the process at the other end (`SO_PEERCRED`).
pub(super) fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let cred = rustix::net::sockopt::socket_peercred(stream).map_err(io::Error::from)?;
    Ok(cred.uid.as_raw())
}

/// True when `fd` is a listening socket (`SO_ACCEPTCONN`).
pub(super) fn is_listening(fd: &OwnedFd) -> bool {
    rustix::net::sockopt::socket_acceptconn(fd).unwrap_or(false)
}
