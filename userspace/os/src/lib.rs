//! Linux facilities std does not expose, shared by every wecan process that opens sockets
//! (agent, CLI, client tool, test bed): socket options ([`sockopt`]) and entering a named
//! network namespace ([`netns`]).

pub mod netns;
pub mod sockopt;
