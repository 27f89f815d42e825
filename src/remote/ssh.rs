//! Driving the system's `ssh`: the command line, quoting for the remote shell, what its
//! failures mean, and trusting a host key the user has checked.

use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};

use super::Machine;

/// `arg` as one word for a POSIX shell, whatever it holds: single-quoted, with each `'`
/// written as `'\''`. (The remote command of `ssh` is one string the remote shell splits.)
pub fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// `ssh` to `machine` running `argv` there (each word quoted). Host keys are always checked
/// (`StrictHostKeyChecking=yes` comes first, so it wins over any later setting) and ssh never
/// prompts (`BatchMode=yes`): an unknown host, a changed key or a missing key is an error to
/// show, not a question on a terminal the window does not have.
pub fn command(machine: &Machine, argv: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .args([
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
        ])
        .args(&machine.ssh);
    let remote: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    c.arg(remote.join(" "));
    c
}

/// What an `ssh` failure means, from its exit status 255 and its messages, as one line for
/// the user with what to do.
pub fn explain(machine: &Machine, stderr: &str) -> String {
    let dest = machine.destination();
    let name = &machine.name;
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        format!(
            "the host key of {dest} has changed since it was trusted, so ssh refused to connect: \
             this may be an attack, or the machine was reinstalled. If you know it was, remove \
             the old key (ssh-keygen -R HOST) and run `peft-workbench remote trust {name}`"
        )
    } else if stderr.contains("Host key verification failed")
        || stderr.contains("host key is known")
    {
        format!(
            "{dest} is not a known host yet: check its key's fingerprint and trust it with \
             `peft-workbench remote trust {name}`"
        )
    } else if stderr.contains("Permission denied") || stderr.contains("Too many authentication") {
        format!(
            "authentication failed for {dest}: the server accepted none of your SSH keys. Add \
             your public key there (ssh-copy-id, or the provider's console) or load it into \
             your SSH agent (ssh-add); passwords are not asked for here"
        )
    } else if stderr.contains("Connection refused")
        || stderr.contains("Could not resolve")
        || stderr.contains("timed out")
        || stderr.contains("No route to host")
    {
        let why = last_line(stderr);
        format!("cannot reach {dest}: {why}")
    } else {
        format!("ssh to {dest} failed: {}", last_line(stderr))
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message")
}

/// Runs `argv` on `machine` and returns its standard output; a failure of ssh itself is
/// explained, one of the remote command is given with its message.
pub fn run(machine: &Machine, argv: &[&str]) -> Result<String> {
    let out = command(machine, argv)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh: is OpenSSH's client installed?")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(255) => bail!("{}", explain(machine, &stderr)),
        _ => bail!(
            "{} on {} failed: {}",
            argv.first().copied().unwrap_or("the command"),
            machine.name,
            last_line(&stderr)
        ),
    }
}

/// Where `ssh` would connect and keep host keys for `machine`: `(host, port, known_hosts)`,
/// from `ssh -G` (the user's `~/.ssh/config` applied).
fn resolved(machine: &Machine) -> Result<(String, String, std::path::PathBuf)> {
    let out = Command::new("ssh")
        .arg("-G")
        .args(&machine.ssh)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh: is OpenSSH's client installed?")?;
    if !out.status.success() {
        bail!(
            "ssh -G: {}",
            last_line(&String::from_utf8_lossy(&out.stderr))
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .map(str::to_string)
    };
    let host = value("hostname").context("ssh -G names no host")?;
    let port = value("port").unwrap_or_else(|| "22".into());
    let file = value("userknownhostsfile")
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .context("ssh -G names no known_hosts file")?;
    let file = match file.strip_prefix("~/") {
        Some(rest) => {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(rest)
        }
        None => std::path::PathBuf::from(file),
    };
    Ok((host, port, file))
}

/// The host keys `machine` offers, as `known_hosts` lines, with their fingerprints
/// (`ssh-keygen -l`), for the user to compare with what the provider shows.
pub fn offered_keys(machine: &Machine) -> Result<(Vec<String>, Vec<String>)> {
    let (host, port, _) = resolved(machine)?;
    let out = Command::new("ssh-keyscan")
        .args(["-p", &port, "-t", "ed25519,ecdsa,rsa", "--", &host])
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh-keyscan")?;
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        bail!("{host}:{port} offered no host key (is it reachable, and an SSH server?)");
    }
    let mut keygen = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run ssh-keygen")?;
    {
        use std::io::Write;
        let mut stdin = keygen.stdin.take().context("ssh-keygen's input")?;
        stdin.write_all(lines.join("\n").as_bytes())?;
        stdin.write_all(b"\n")?;
    }
    let printed = keygen.wait_with_output()?;
    let fingerprints = String::from_utf8_lossy(&printed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    Ok((lines, fingerprints))
}

/// Adds the host keys `lines` (from [`offered_keys`], checked by the user) to the known_hosts
/// file ssh uses for `machine`. A host already known with other keys is refused: that is the
/// changed-key case, which the user settles with `ssh-keygen -R` first.
pub fn trust(machine: &Machine, lines: &[String]) -> Result<std::path::PathBuf> {
    let (host, port, file) = resolved(machine)?;
    let name = if port == "22" {
        host.clone()
    } else {
        format!("[{host}]:{port}")
    };
    let known = Command::new("ssh-keygen")
        .args(["-F", &name, "-f"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh-keygen")?;
    if known.status.success() && !known.stdout.is_empty() {
        bail!(
            "{name} is already in {} with a key; if ssh says it changed, remove the old one first \
             (ssh-keygen -R '{name}' -f {})",
            file.display(),
            file.display()
        );
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut text = std::fs::read_to_string(&file).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    crate::files::write_atomic(&file, text.as_bytes())?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_reach_a_shell_untouched() {
        for word in [
            "plain",
            "with space",
            "it's",
            "$(touch x)",
            "a'b\"c`d`",
            "",
            "~/x",
        ] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), word);
        }
    }

    #[test]
    fn ssh_failures_are_explained() {
        let m = Machine::new("gpu", &["root@h".to_string()]).unwrap();
        let said = |e: &str| explain(&m, e);
        assert!(
            said("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@")
                .contains("has changed")
        );
        assert!(
            said("No ED25519 host key is known for h\nHost key verification failed.")
                .contains("remote trust gpu")
        );
        assert!(said("root@h: Permission denied (publickey).").contains("authentication failed"));
        assert!(
            said("ssh: connect to host h port 22: Connection refused")
                .contains("cannot reach root@h")
        );
    }
}
