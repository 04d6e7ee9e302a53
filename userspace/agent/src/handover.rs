//! Hitless upgrades: a new agent takes the running one's UDP socket and state over a Unix
//! socket, as Envoy's hot restart and HAProxy's seamless reload pass their listeners on.
//! Packets keep queueing on the one socket while the two agents swap, the heartbeat lease
//! is extended across the swap, and the new agent carries on from the old one's state, so
//! peers see no change.
//!
//! The exchange, on the abstract Unix socket `@wecan-agent:<pin dir>` (in the relay's
//! network namespace), only between processes of the same user:
//! 1. new → old: [`REQUEST`].
//! 2. The old agent stops its loop (it writes no map from then on), extends the lease by
//!    [`GRACE`] and sends its [`Handoff`] (postcard, after its length as 8 bytes
//!    big-endian) with the UDP socket attached (`SCM_RIGHTS`): probe statistics, replay
//!    windows, and every protected link's state with the sender epoch.
//! 3. The new agent takes the maps over, restores the state, attaches, beats, and answers
//!    [`CONFIRM`].
//! 4. The old agent exits, leaving the datapath attached. Without a confirmation within
//!    [`GRACE`] (the new agent failed), it carries on as before.

use std::{
    io::{ErrorKind, Read, Write},
    net::UdpSocket,
    os::{
        fd::AsRawFd,
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixListener, UnixStream},
    },
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use log::warn;
use serde::{Deserialize, Serialize};
use wecan_os::fdpass;

use wecan_transport::carry;

use crate::{
    gateway::GatewayState, hop_auth::AuthState, probe::ProberState, protection::ProtectedLinks,
};

/// What a new agent sends to ask for the handover (with the protocol version).
pub const REQUEST: &[u8; 12] = b"TAKEOVER v1\n";
/// What it answers once it runs.
pub const CONFIRM: &[u8; 3] = b"OK\n";
/// How long the old agent waits for the confirmation, with its lease extended as long.
pub const GRACE: Duration = Duration::from_secs(3);
/// Largest state accepted (retransmit buffers and held packets included).
const MAX_STATE: u64 = 1 << 30;

/// Everything the old agent hands over besides its socket (it sends its protection state
/// by reference, `P = &ProtectedLinks`).
#[derive(Serialize, Deserialize)]
pub struct Handoff<P = ProtectedLinks> {
    pub node_id: u32,
    pub prober: ProberState,
    pub auth: AuthState,
    pub protection: P,
    /// The access gateway's clients, on an edge.
    pub gateway: Option<GatewayState>,
}

fn address(pin_dir: &Path) -> Result<SocketAddr> {
    let name = format!("wecan-agent:{}", pin_dir.display());
    SocketAddr::from_abstract_name(name.as_bytes()).context("handover socket name")
}

/// The running agent's end: where a successor asks for the handover.
pub struct Listener(UnixListener);

impl Listener {
    pub fn bind(pin_dir: &Path) -> Result<Self> {
        let l = UnixListener::bind_addr(&address(pin_dir)?).with_context(|| {
            format!("handover socket for {}: is another agent running there?", pin_dir.display())
        })?;
        l.set_nonblocking(true)?;
        Ok(Self(l))
    }

    /// A handover request from a process of this user, if one is waiting.
    pub fn accept(&self) -> Option<UnixStream> {
        let (conn, _) = self.0.accept().ok()?;
        let request = || -> Result<()> {
            // SAFETY: no arguments.
            let me = unsafe { libc::geteuid() };
            let uid = fdpass::peer_uid(&conn)?;
            if uid != me {
                bail!("from user {uid}, not {me}");
            }
            conn.set_nonblocking(false)?;
            conn.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut got = [0u8; REQUEST.len()];
            (&conn).read_exact(&mut got)?;
            if &got != REQUEST {
                bail!(
                    "not a handover request of this version: {:?}",
                    String::from_utf8_lossy(&got)
                );
            }
            Ok(())
        };
        match request() {
            Ok(()) => Some(conn),
            Err(e) => {
                warn!("handover request refused: {e:#}");
                None
            }
        }
    }
}

/// The old agent's side: sends `state` with `socket`; `true` once the successor confirmed
/// it runs.
pub fn hand_over(
    mut conn: UnixStream,
    socket: &UdpSocket,
    state: &Handoff<&ProtectedLinks>,
) -> Result<bool> {
    let bytes =
        carry::at(Instant::now(), || postcard::to_stdvec(state)).context("encoding the state")?;
    fdpass::send_with_fd(&conn, &(bytes.len() as u64).to_be_bytes(), socket.as_raw_fd())
        .context("sending the socket")?;
    conn.write_all(&bytes).context("sending the state")?;
    conn.set_read_timeout(Some(GRACE))?;
    let mut answer = [0u8; CONFIRM.len()];
    match conn.read_exact(&mut answer) {
        Ok(()) => Ok(&answer == CONFIRM),
        Err(e) if matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::WouldBlock) => Ok(false),
        Err(e) => Err(e).context("waiting for the new agent"),
    }
}

/// The new agent's side: asks the agent running for `pin_dir` (if any) to hand over, and
/// returns its state and socket once it stopped, with the connection to confirm on.
pub fn request(pin_dir: &Path) -> Result<Option<(Handoff, UdpSocket, Confirmation)>> {
    let mut conn = match UnixStream::connect_addr(&address(pin_dir)?) {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(None),
        Err(e) => return Err(e).context("connecting to the running agent"),
    };
    conn.write_all(REQUEST).context("asking the running agent to hand over")?;
    // It first finishes the turn of its loop it is in.
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut len = [0u8; 8];
    let (mut got, mut fd) = (0, None);
    while got < len.len() {
        let (n, f) = fdpass::recv_with_fd(&conn, &mut len[got..])
            .context("receiving the running agent's socket")?;
        if n == 0 {
            bail!("the running agent closed the handover (it refused, see its log)");
        }
        got += n;
        fd = fd.or(f);
    }
    let socket = UdpSocket::from(fd.context("the running agent sent no socket")?);
    let len = u64::from_be_bytes(len);
    if len > MAX_STATE {
        bail!("the running agent's state is {len} bytes, more than {MAX_STATE}");
    }
    let mut bytes = vec![0u8; len as usize];
    conn.read_exact(&mut bytes).context("receiving the running agent's state")?;
    let state = carry::at(Instant::now(), || postcard::from_bytes(&bytes)).context(
        "the running agent's state does not decode: a version this agent cannot take over from",
    )?;
    Ok(Some((state, socket, Confirmation(conn))))
}

/// The connection to the old agent, which waits for the word to exit.
pub struct Confirmation(UnixStream);

impl Confirmation {
    /// Tells the old agent to exit: this one runs.
    pub fn confirm(mut self) -> Result<()> {
        self.0.write_all(CONFIRM).context("confirming the handover")
    }
}
