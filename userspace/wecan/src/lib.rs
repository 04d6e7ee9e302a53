//! wecan userspace: the library behind the agent, the CLI and the client.
//!
//! Following Katran's split, the XDP program stays small and this library owns its maps:
//! loading and attaching ([`datapath`]), the TOML config ([`config`]), kernel interface
//! and route information over netlink ([`netlink`]), the agent's slow path ([`slowpath`]),
//! relay packets for the client tool ([`client`]) and operator-facing output ([`output`]);
//! link probing ([`probe`]), route computation ([`routing`]), the controller
//! ([`controller`], [`api`]) and the agent's side of it ([`agent`], [`upstream`]); and the
//! per-hop protection of slow-path flows: FEC ([`fec`]), ARQ ([`arq`]), the pipeline that
//! combines them on a hop ([`hop`]) and the agent's state per link ([`protect`]).

pub mod agent;
pub mod api;
pub mod arq;
pub mod client;
pub mod config;
pub mod control;
pub mod controller;
pub mod datapath;
pub mod fec;
pub mod hop;
pub mod netlink;
pub mod netns;
pub mod output;
pub mod prng;
pub mod probe;
pub mod protect;
pub mod routing;
pub mod slowpath;
pub mod sockopt;
pub mod upstream;
