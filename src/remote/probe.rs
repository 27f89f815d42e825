//! "Test connection": what the remote machine is — system, GPUs, free disk and memory —
//! and whether a compatible `peft-workbench` answers there.

use anyhow::Result;

use super::{Hello, Machine, PROTOCOL, ssh};

/// Fixed shell text (nothing of the user's in it): the binary comes in as `$1`.
const SCRIPT: &str = r#"echo "os: $(uname -s)"
echo "arch: $(uname -m)"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
fi
df -Pk . 2>/dev/null | tail -n 1 | awk '{print "disk_free_kb: " $4}'
awk '/^MemTotal:/ {print "mem_total_kb: " $2} /^MemAvailable:/ {print "mem_available_kb: " $2}' /proc/meminfo 2>/dev/null
if hello=$("$1" attach --hello 2>/dev/null); then echo "hello: $hello"; else echo "hello:"; fi
"#;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    pub os: String,
    pub arch: String,
    /// `name, memory` of each GPU `nvidia-smi` lists.
    pub gpus: Vec<String>,
    pub disk_free_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub mem_available_bytes: Option<u64>,
    /// What the machine's `peft-workbench attach --hello` said, if it answered.
    pub hello: Option<Hello>,
}

impl Probe {
    /// Asks `machine` over SSH.
    pub fn run(machine: &Machine) -> Result<Self> {
        let out = ssh::run(machine, &["sh", "-c", SCRIPT, "probe", machine.binary()])?;
        Ok(Self::parse(&out))
    }

    fn parse(text: &str) -> Self {
        let mut p = Self::default();
        let kb = |v: &str| v.trim().parse::<u64>().ok().map(|k| k * 1024);
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "os" => p.os = value.to_string(),
                "arch" => p.arch = value.to_string(),
                "gpu" => p.gpus.push(value.to_string()),
                "disk_free_kb" => p.disk_free_bytes = kb(value),
                "mem_total_kb" => p.mem_total_bytes = kb(value),
                "mem_available_kb" => p.mem_available_bytes = kb(value),
                "hello" => p.hello = serde_json::from_str(value).ok(),
                _ => {}
            }
        }
        p
    }

    /// Whether the binary there speaks this one's protocol.
    pub fn compatible(&self) -> bool {
        self.hello.as_ref().is_some_and(|h| h.protocol == PROTOCOL)
    }

    /// What "Test connection" shows, a line per fact.
    pub fn describe(&self, machine: &Machine) -> String {
        let gb = |b: Option<u64>| b.map_or("?".into(), |b| format!("{:.1} GB", b as f64 / 1e9));
        let mut lines = vec![
            format!("{}: {} {}", machine.name, self.os, self.arch),
            match self.gpus.as_slice() {
                [] => "GPUs: none (nvidia-smi not found or lists none)".into(),
                gpus => format!("GPUs: {}", gpus.join("; ")),
            },
            format!("free disk (home): {}", gb(self.disk_free_bytes)),
            format!(
                "memory: {} available of {}",
                gb(self.mem_available_bytes),
                gb(self.mem_total_bytes)
            ),
        ];
        lines.push(match &self.hello {
            Some(h) if h.protocol == PROTOCOL => format!(
                "peft-workbench {} (protocol {}) at {}; devices: {}",
                h.version,
                h.protocol,
                machine.binary(),
                h.devices.join(", ")
            ),
            Some(h) => format!(
                "peft-workbench {} at {} speaks protocol {}, this one {PROTOCOL}: install this version there",
                h.version,
                machine.binary(),
                h.protocol
            ),
            None => format!(
                "no peft-workbench answers at {}: install one there",
                machine.binary()
            ),
        });
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probes_answer_is_read() {
        let p = Probe::parse(
            "os: Linux\narch: x86_64\ngpu: NVIDIA H200, 143771 MiB\ndisk_free_kb: 1000\n\
             mem_total_kb: 2000\nmem_available_kb: 1500\n\
             hello: {\"protocol\":1,\"version\":\"0.1.0\",\"devices\":[\"cpu\",\"cuda:0\"]}\n",
        );
        assert_eq!((p.os.as_str(), p.arch.as_str()), ("Linux", "x86_64"));
        assert_eq!(p.gpus, ["NVIDIA H200, 143771 MiB"]);
        assert_eq!(p.disk_free_bytes, Some(1_024_000));
        assert!(p.compatible());
        assert_eq!(p.hello.unwrap().devices, ["cpu", "cuda:0"]);
        let none = Probe::parse("os: Linux\narch: aarch64\nhello:\n");
        assert!(!none.compatible());
    }
}
