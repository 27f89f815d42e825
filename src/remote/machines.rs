//! The machines the user added, kept in `machines.toml` in the user's config folder
//! (`$PEFT_WORKBENCH_CONFIG`, else `$XDG_CONFIG_HOME/peft-workbench`, else
//! `~/.config/peft-workbench`). Only how to reach a machine is kept: no password, ever.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A remote machine: a name, and the `ssh` arguments that reach it, as the provider gave them
/// (`-p 23456 root@region-9.example.com`) or a `~/.ssh/config` host name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub name: String,
    /// The arguments after `ssh`: options, then the destination last.
    pub ssh: Vec<String>,
    /// The program to run there (default: `peft-workbench` on the remote PATH); a relative
    /// path is from the remote user's home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// Where runs are written there (default: `peft-workbench/runs` in the remote home).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_dir: Option<String>,
    /// Where `remote install` (and the window's Install) puts versions of the program there
    /// (default: `.peft-workbench/bin` in the remote home; a rented machine's larger data
    /// disk is often elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_dir: Option<String>,
}

impl Machine {
    /// A machine from an SSH line as a provider shows it (a leading `ssh` is dropped).
    pub fn new(name: &str, ssh_line: &[String]) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= 40
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !valid {
            bail!("`{name}` cannot name a machine: use letters, digits, `-`, `_` and `.`");
        }
        let mut ssh: Vec<String> = ssh_line.to_vec();
        if ssh.first().is_some_and(|s| s == "ssh") {
            ssh.remove(0);
        }
        match ssh.last() {
            None => bail!(
                "no SSH destination: give it as the provider shows it, e.g. -- ssh -p 23456 root@host"
            ),
            Some(d) if d.starts_with('-') => {
                bail!(
                    "the SSH line ends in the option `{d}`: the destination ([user@]host) comes last"
                )
            }
            Some(_) => {}
        }
        Ok(Self {
            name: name.to_string(),
            ssh,
            binary: None,
            runs_dir: None,
            install_dir: None,
        })
    }

    pub fn binary(&self) -> &str {
        self.binary.as_deref().unwrap_or("peft-workbench")
    }

    pub fn runs_dir(&self) -> &str {
        self.runs_dir.as_deref().unwrap_or("peft-workbench/runs")
    }

    pub fn install_dir(&self) -> &str {
        self.install_dir
            .as_deref()
            .unwrap_or(super::install::DEFAULT_FOLDER)
    }

    /// The destination, for messages (`root@region-9.example.com`).
    pub fn destination(&self) -> &str {
        self.ssh.last().map_or("", String::as_str)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Machines {
    #[serde(default, rename = "machine")]
    pub machines: Vec<Machine>,
}

/// The user's config folder for the workbench.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("PEFT_WORKBENCH_CONFIG") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("peft-workbench"));
    }
    if let Some(d) = std::env::var_os("APPDATA") {
        return Ok(PathBuf::from(d).join("peft-workbench"));
    }
    let home = std::env::var_os("HOME").context("no HOME to keep the machines in")?;
    Ok(PathBuf::from(home).join(".config/peft-workbench"))
}

impl Machines {
    /// The machines added so far (none when the file does not exist).
    pub fn load() -> Result<Self> {
        Self::load_in(&config_dir()?)
    }

    pub fn save(&self) -> Result<()> {
        self.save_in(&config_dir()?)
    }

    /// The machines kept in the config folder `dir`.
    pub fn load_in(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join("machines.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("{} is not a list of machines", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save_in(&self, dir: &std::path::Path) -> Result<()> {
        let path = dir.join("machines.toml");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::files::write_atomic(&path, toml::to_string(self)?.as_bytes())
    }

    pub fn get(&self, name: &str) -> Result<&Machine> {
        self.machines.iter().find(|m| m.name == name).with_context(|| {
            let known: Vec<&str> = self.machines.iter().map(|m| m.name.as_str()).collect();
            if known.is_empty() {
                format!("no machine `{name}`: add one with `peft-workbench remote add {name} -- ssh [options] [user@]host`")
            } else {
                format!("no machine `{name}` (known: {})", known.join(", "))
            }
        })
    }

    pub fn add(&mut self, m: Machine) -> Result<()> {
        if self.machines.iter().any(|x| x.name == m.name) {
            bail!(
                "a machine `{}` exists already: remove it first, or choose another name",
                m.name
            );
        }
        self.machines.push(m);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<Machine> {
        let i = self
            .machines
            .iter()
            .position(|m| m.name == name)
            .with_context(|| format!("no machine `{name}`"))?;
        Ok(self.machines.remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_providers_ssh_line_makes_a_machine() {
        let m = Machine::new("autodl", &line("ssh -p 23456 root@region-9.example.com")).unwrap();
        assert_eq!(m.ssh, ["-p", "23456", "root@region-9.example.com"]);
        assert_eq!(m.destination(), "root@region-9.example.com");
        assert_eq!(m.binary(), "peft-workbench");
        assert!(Machine::new("a b", &line("host")).is_err());
        assert!(Machine::new("x", &line("ssh")).is_err());
        assert!(Machine::new("x", &line("ssh host -p")).is_err());
        let mut all = Machines::default();
        all.add(m.clone()).unwrap();
        assert!(all.add(m).is_err(), "names are unique");
        let text = toml::to_string(&all).unwrap();
        let back: Machines = toml::from_str(&text).unwrap();
        assert_eq!(back.machines, all.machines);
        assert!(
            back.get("nope")
                .unwrap_err()
                .to_string()
                .contains("known: autodl")
        );
    }
}
