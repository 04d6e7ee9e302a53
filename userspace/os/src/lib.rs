//! Linux facilities std does not expose, shared by every wecan process that opens sockets
//! (agent, CLI, client tool, test bed): socket options ([`sockopt`]), entering a named
//! network namespace ([`netns`]) and passing a socket to another process ([`fdpass`]).

pub mod fdpass;
pub mod netns;
pub mod sockopt;
