//! Machines reached over SSH: the user's rented GPU, driven from this machine. Transport is
//! the system's OpenSSH client and nothing else (no port is opened on either side): it
//! already knows the user's keys, agent, `~/.ssh/config`, `ProxyJump` and `known_hosts`, on
//! Linux, macOS and Windows alike, where an SSH crate would have to re-implement each.
//!
//! The remote side is this same program: a daemon, `peft-workbench serve`, owns the queue
//! and the runs there, and `peft-workbench attach` relays a connection to it: the jobs
//! protocol (`jobs::Command` in, `jobs::Event` out, one JSON object per line) on
//! stdin/stdout, so a [`RemoteBackend`] is a `jobs::Backend` like the local one, and a
//! dropped connection leaves the runs training. Commands cross as typed serde
//! data, never as shell text; the few arguments that do reach the remote shell (the binary,
//! the runs folder) are quoted by [`ssh::quote`].

pub mod backend;
pub mod install;
pub mod machines;
pub mod probe;
#[cfg(unix)]
pub mod serve;
pub mod ssh;
pub mod transfer;
pub mod upload;

pub use backend::RemoteBackend;
pub use machines::{Machine, Machines};

use serde::{Deserialize, Serialize};

/// The version of the attach protocol: both sides say theirs first and refuse another.
pub const PROTOCOL: u32 = 1;

/// The first line `attach` writes: who answers, and what it can train on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// The remote binary's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Its devices, as the Device picker names them (`cpu`, `cuda:0`).
    pub devices: Vec<String>,
}

impl Hello {
    /// This binary's hello.
    pub fn here() -> Self {
        Self {
            protocol: PROTOCOL,
            version: env!("CARGO_PKG_VERSION").to_string(),
            devices: crate::train::available_devices()
                .into_iter()
                .map(|d| d.name)
                .collect(),
        }
    }
}
