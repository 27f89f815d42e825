//! An `sshd` of the test's own on 127.0.0.1 (Debian's openssh-server), with a temporary host
//! key and authorised client key: the remote machine of the remote-machine tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_peft-workbench")
}

pub fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen");
}

/// An `sshd` of its own on a free port of 127.0.0.1; stopped when dropped.
pub struct Sshd {
    dir: tempfile::TempDir,
    pub port: u16,
    pid: u32,
}

impl Sshd {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        keygen(&d.join("stranger_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nPidFile {d}/sshd.pid\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd (Debian's openssh-server) is installed");
        let ok = Command::new(sshd)
            .arg("-f")
            .arg(d.join("sshd_config"))
            .arg("-E")
            .arg(d.join("sshd.log"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "sshd started");
        // sshd creates its pid file before it writes the number: wait for the number (CI
        // once read the file empty and failed to parse it).
        let pid_file = d.join("sshd.pid");
        let start = std::time::Instant::now();
        let pid = loop {
            let read = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if let Ok(pid) = read.trim().parse() {
                break pid;
            }
            assert!(start.elapsed().as_secs() < 10, "sshd wrote no pid file");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        Self { dir, port, pid }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A server with the machine `loop` added (reaching it with the test's key, its runs in
    /// the folder `runs` of this server's folder) and its host key trusted.
    pub fn with_loop_machine(runs: &str) -> (Self, PathBuf) {
        let sshd = Self::start();
        let runs = sshd.path(runs);
        sshd.add("loop", "client_key", &runs);
        let o = sshd.cli(&["remote", "trust", "loop", "--yes"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (sshd, runs)
    }

    /// A dataset file named `name` on this machine only (a copy of a built-in split), as a
    /// user's own file that a remote run needs sent first.
    pub fn local_dataset(&self, name: &str) -> PathBuf {
        let data = self.path(name);
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/datasets/sentiment.train.jsonl"
            ),
            &data,
        )
        .unwrap();
        data
    }

    /// The SSH line of a machine reaching this server with `key`.
    pub fn ssh_line(&self, key: &str) -> Vec<String> {
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        [
            "ssh".to_string(),
            "-p".into(),
            self.port.to_string(),
            "-i".into(),
            self.path(key).display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.path("known_hosts").display()),
            format!("{user}@127.0.0.1"),
        ]
        .to_vec()
    }

    /// The CLI with this test's own config folder.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .env("PEFT_WORKBENCH_CONFIG", self.path("config"))
            .output()
            .unwrap()
    }

    /// Adds machine `name` reaching this server with `key`, running this test's binary, its
    /// runs in `runs_dir`.
    pub fn add(&self, name: &str, key: &str, runs_dir: &Path) {
        let mut args: Vec<String> = ["remote", "add", name, "--binary", bin(), "--runs-dir"]
            .map(String::from)
            .to_vec();
        args.push(runs_dir.display().to_string());
        args.push("--".into());
        args.extend(self.ssh_line(key));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = self.cli(&refs);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        // The daemons its sessions started (their runs folders are in this one's folder).
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(format!("serve --runs-dir {}", self.dir.path().display()))
            .status();
    }
}
