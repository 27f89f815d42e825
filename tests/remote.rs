//! Remote machines through a real OpenSSH server: each test starts its own `sshd` on
//! 127.0.0.1 with a temporary host key and an authorised test key, the "remote" being this
//! machine under temporary folders. (`.ci/run` installs Debian's openssh-server.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_peft-workbench")
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen");
}

/// An `sshd` of its own on a free port of 127.0.0.1; stopped when dropped.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    pid: u32,
}

impl Sshd {
    fn start() -> Self {
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
        let pid_file = d.join("sshd.pid");
        let start = std::time::Instant::now();
        while !pid_file.exists() {
            assert!(start.elapsed().as_secs() < 10, "sshd wrote no pid file");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Self { dir, port, pid }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The SSH line of a machine reaching this server with `key`.
    fn ssh_line(&self, key: &str) -> Vec<String> {
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
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .env("PEFT_WORKBENCH_CONFIG", self.path("config"))
            .output()
            .unwrap()
    }

    /// Adds machine `name` reaching this server with `key`, running this test's binary, its
    /// runs in `runs_dir`.
    fn add(&self, name: &str, key: &str, runs_dir: &Path) {
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
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An unknown host is not connected to but asked about (its fingerprint shown); once
/// trusted, Test connection tells the system and the workbench there. A changed host key is
/// refused, saying so; a key the server does not accept is an authentication error.
#[test]
fn host_keys_are_checked_and_failures_explained() {
    let sshd = Sshd::start();
    let runs = sshd.path("remote runs");
    sshd.add("loop", "client_key", &runs);
    let o = sshd.cli(&["remote", "list"]);
    assert!(text(&o).starts_with("loop\tssh -p"), "{}", text(&o));

    let o = sshd.cli(&["remote", "test", "loop"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("not a known host yet") && text(&o).contains("remote trust loop"),
        "{}",
        text(&o)
    );
    let o = sshd.cli(&["remote", "trust", "loop", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let fingerprint = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(sshd.path("host_key.pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout);
    let sha = fingerprint.split_whitespace().nth(1).unwrap();
    assert!(
        text(&o).contains(sha),
        "the host key's fingerprint is shown: {}",
        text(&o)
    );

    let o = sshd.cli(&["remote", "test", "loop"]);
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("loop: Linux"), "{said}");
    assert!(said.contains("free disk (home): "), "{said}");
    assert!(
        said.contains("(protocol 1)") && said.contains("devices: cpu"),
        "{said}"
    );

    // Trusting again over a known key is refused.
    let o = sshd.cli(&["remote", "trust", "loop", "--yes"]);
    assert!(
        !o.status.success() && text(&o).contains("already in"),
        "{}",
        text(&o)
    );

    // A key the server does not accept.
    sshd.add("stranger", "stranger_key", &runs);
    let o = sshd.cli(&["remote", "test", "stranger"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("authentication failed"), "{}", text(&o));

    // The server's key replaced: what known_hosts holds no longer matches.
    let other = sshd.path("other_host_key");
    keygen(&other);
    let known = std::fs::read_to_string(sshd.path("known_hosts")).unwrap();
    let old_key = std::fs::read_to_string(sshd.path("host_key.pub")).unwrap();
    let new_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let old = old_key.split_whitespace().nth(1).unwrap();
    let new = new_key.split_whitespace().nth(1).unwrap();
    std::fs::write(sshd.path("known_hosts"), known.replace(old, new)).unwrap();
    let o = sshd.cli(&["remote", "test", "loop"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("has changed"), "{}", text(&o));
}

/// A LoRA run trained through SSH streams its progress, ends, and comes home: the run's
/// folder there — in a runs folder named with spaces, quotes and `$(...)` — arrives here
/// checked, marked with its machine, its adapter bit for bit that of the same run trained
/// here. `remote runs` lists it; `remote pull` brings finished runs not here yet.
#[test]
fn a_run_trains_on_the_remote_and_comes_home_equal_to_the_local_one() {
    let sshd = Sshd::start();
    let runs = sshd.path("remote runs 'q' $(touch pwned)");
    sshd.add("loop", "client_key", &runs);
    let o = sshd.cli(&["remote", "trust", "loop", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/lora.toml");
    let settings = [
        "--steps",
        "6",
        "--set",
        "eval_every=3",
        "--set",
        "eval_examples=8",
    ];
    let home = sshd.path("home/first run");
    let home_arg = home.display().to_string();
    let mut args = vec!["train", preset];
    args.extend(settings);
    args.extend(["--on", "loop", "--out", &home_arg]);
    let o = sshd.cli(&args);
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("connected to loop"), "{said}");
    assert!(said.contains("eval      6"), "live evaluations: {said}");
    assert!(said.contains("files came home into"), "{said}");
    assert!(!sshd.path("pwned").exists() && !Path::new("pwned").exists());
    let remote_runs: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(remote_runs.len(), 1, "{remote_runs:?}");
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(config.contains("machine = \"loop\""), "{config}");
    assert!(
        !home.join("checkpoint").exists(),
        "the checkpoint stays there"
    );

    let local = sshd.path("local");
    let mut args = vec!["train", preset];
    args.extend(settings);
    let local_out = local.display().to_string();
    args.extend(["--out", &local_out, "--quiet"]);
    let o = sshd.cli(&args);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["adapter_model.safetensors", "adapter_config.json"] {
        let a = std::fs::read(home.join("adapter").join(f)).unwrap();
        let b = std::fs::read(local.join("adapter").join(f)).unwrap();
        assert!(a == b, "{f} differs");
    }

    let o = sshd.cli(&["remote", "runs", "loop"]);
    let name = remote_runs[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(text(&o).trim(), format!("{name}\tlora\tfinished"));
    let pulled = sshd.path("pulled");
    let pulled_arg = pulled.display().to_string();
    let o = sshd.cli(&["remote", "pull", "loop", "--runs-dir", &pulled_arg]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        pulled
            .join(&name)
            .join("adapter/adapter_model.safetensors")
            .is_file()
    );
    let o = sshd.cli(&["remote", "pull", "loop", "--runs-dir", &pulled_arg]);
    assert!(text(&o).contains("not here already"), "{}", text(&o));
    // A name that would leave the runs folder there is refused before anything runs.
    let o = sshd.cli(&["remote", "pull", "loop", "../x", "--runs-dir", &pulled_arg]);
    assert!(!o.status.success() && text(&o).contains("not the name of a run folder"));
}
