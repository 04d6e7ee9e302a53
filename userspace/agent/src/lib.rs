//! The wecan relay agent and the `wecan` CLI.
//!
//! The agent runs beside the XDP program of `wecan-datapath` and does what XDP hands it:
//! - [`config`]: the TOML config; every error names the field and the fix;
//! - [`reconcile`]: turning intent (config, controller pushes, link state, CLI) into map
//!   entries, the route table flipped atomically;
//! - [`agent`]: the main loop, one thread owning the maps and the socket;
//! - [`handover`]: hitless upgrades, the running agent handing its socket and state to the
//!   new one;
//! - [`slowpath`]: packets XDP passes up (protected routes, neighbour misses, local delivery);
//! - [`gateway`]: an edge's access gateway: clients registering with a credential, attached
//!   and detached;
//! - [`hop_auth`]: verifying what the slow path receives and sealing what the agent sends;
//! - [`protection`]: the per-hop FEC/ARQ state of each protected link (`wecan-transport` does
//!   the protocol), published for `wecan protection`;
//! - [`probe`]: link probing (RTT, loss, jitter) of relay peers;
//! - [`liveness`]: the heartbeat XDP checks before vouching for this agent, and interface
//!   events that take links down at once;
//! - [`upstream`]: the controller connection (reports, long-polled routes);
//! - [`output`]: the CLI's tables and JSON.

pub mod agent;
pub mod config;
pub mod gateway;
pub mod handover;
pub mod hop_auth;
pub mod liveness;
pub mod output;
pub mod probe;
pub mod protection;
pub mod reconcile;
pub mod slowpath;
pub mod upstream;
