//! The Machines panel: remote machines reached over SSH (a rented GPU). Add one from the
//! SSH line the provider shows, check its host key's fingerprints and trust it, test it;
//! its devices then join the Device picker (`cuda:0 @ gpu`). Every check is a short job.

use eframe::egui;

use super::i18n::{Lang, fill, tr};
use super::{Action, WorkbenchApp};
use crate::jobs::{Command, JobId, JobResult, JobUpdate};
use crate::remote::{Machine, Machines};

/// One machine as the panel shows it.
pub struct MachineView {
    pub machine: Machine,
    /// What a run can use there, once a test has asked (empty before, or without a
    /// compatible peft-workbench there).
    pub devices: Vec<String>,
    /// The last test's answer, or the last failure.
    pub report: Option<String>,
    /// Host keys offered and their fingerprints, waiting for the user's word.
    pub keys: Option<(Vec<String>, Vec<String>)>,
    /// The check running for it.
    pub busy: Option<JobId>,
}

#[derive(Default)]
pub struct MachinesPanel {
    /// The config folder the machines are kept in (None: the user's, see
    /// `remote::machines::config_dir`).
    dir: Option<std::path::PathBuf>,
    pub machines: Vec<MachineView>,
    pub new_name: String,
    pub new_line: String,
    /// Why the last add or the machines file failed.
    pub error: Option<String>,
    /// The program "Install" sends (empty: this one); a GPU machine takes the CUDA build.
    pub install_binary: String,
}

/// What the panel asks of the app.
pub enum MachineAction {
    Add,
    Remove(String),
    Test(String),
    ShowHostKeys(String),
    Trust(String),
    Install(String),
}

impl MachinesPanel {
    /// The machines added so far (from `machines.toml` in the user's config folder, or in
    /// `dir`).
    pub fn load(dir: Option<std::path::PathBuf>) -> Self {
        let loaded = match &dir {
            Some(d) => Machines::load_in(d),
            None => Machines::load(),
        };
        let (machines, error) = match loaded {
            Ok(m) => (m.machines, None),
            Err(e) => (Vec::new(), Some(crate::describe(&e))),
        };
        Self {
            machines: machines
                .into_iter()
                .map(|machine| MachineView {
                    machine,
                    devices: Vec::new(),
                    report: None,
                    keys: None,
                    busy: None,
                })
                .collect(),
            error,
            dir,
            ..Default::default()
        }
    }

    pub fn get(&self, name: &str) -> Option<&Machine> {
        self.machines
            .iter()
            .find(|m| m.machine.name == name)
            .map(|m| &m.machine)
    }

    /// `(machine, device)` of every device a test found on a remote machine.
    pub fn remote_devices(&self) -> Vec<(String, String)> {
        self.machines
            .iter()
            .flat_map(|m| {
                m.devices
                    .iter()
                    .map(|d| (m.machine.name.clone(), d.clone()))
            })
            .collect()
    }

    fn view(&mut self, name: &str) -> Option<&mut MachineView> {
        self.machines.iter_mut().find(|m| m.machine.name == name)
    }

    /// Takes in an update of one of its checks; false if the job is not the panel's.
    pub fn apply(&mut self, job: JobId, update: &JobUpdate, lang: Lang) -> bool {
        let Some(m) = self.machines.iter_mut().find(|m| m.busy == Some(job)) else {
            return false;
        };
        match update {
            JobUpdate::Text(_) => return true,
            JobUpdate::Progress { done, total } => {
                m.report = Some(fill(
                    lang,
                    "sending {} of {} MB",
                    &[
                        &format!("{:.1}", *done as f64 / 1e6),
                        &format!("{:.1}", *total as f64 / 1e6),
                    ],
                ));
                return true;
            }
            JobUpdate::Done(JobResult::Installed {
                binary,
                text,
                devices,
            }) => {
                m.machine.binary = Some(binary.clone());
                m.report = Some(fill(lang, "installed as {}; {}", &[binary, text]));
                m.devices = devices.clone();
                m.busy = None;
                if let Err(e) = self.save() {
                    self.error = Some(crate::describe(&e));
                }
                return true;
            }
            JobUpdate::Done(JobResult::Probed { text, devices }) => {
                m.report = Some(text.clone());
                m.devices = devices.clone();
            }
            JobUpdate::Done(JobResult::HostKeys { keys, fingerprints }) => {
                m.keys = Some((keys.clone(), fingerprints.clone()));
            }
            JobUpdate::Done(JobResult::Trusted { file }) => {
                m.keys = None;
                m.report = Some(format!("trusted; the keys are in {}", file.display()));
            }
            JobUpdate::Done(_) => {}
            JobUpdate::Failed(e) => m.report = Some(e.clone()),
            JobUpdate::Stopped => m.report = None,
        }
        m.busy = None;
        true
    }

    fn save(&self) -> anyhow::Result<()> {
        let all = Machines {
            machines: self.machines.iter().map(|m| m.machine.clone()).collect(),
        };
        match &self.dir {
            Some(d) => all.save_in(d),
            None => all.save(),
        }
    }
}

/// An SSH line split into words as a shell would: spaces separate, quotes ('…', "…") and a
/// backslash keep what they hold together.
pub fn split_ssh_line(line: &str) -> Result<Vec<String>, String> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => word.extend(chars.next()),
                        Some(x) => word.push(x),
                        None => return Err(format!("the quote {c} is not closed")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

impl WorkbenchApp {
    /// Carries out what the Machines panel asked.
    pub(super) fn machine_action(&mut self, action: MachineAction) {
        let panel = &mut self.machines;
        let job_for = |name: &str| -> Option<Machine> { panel.get(name).cloned() };
        match action {
            MachineAction::Add => {
                let added = split_ssh_line(&panel.new_line)
                    .map_err(anyhow::Error::msg)
                    .and_then(|line| Machine::new(panel.new_name.trim(), &line));
                match added {
                    Ok(m) if panel.get(&m.name).is_some() => {
                        panel.error = Some(format!("a machine `{}` exists already", m.name));
                    }
                    Ok(m) => {
                        panel.machines.push(MachineView {
                            machine: m,
                            devices: Vec::new(),
                            report: None,
                            keys: None,
                            busy: None,
                        });
                        match panel.save() {
                            Ok(()) => {
                                panel.error = None;
                                panel.new_name.clear();
                                panel.new_line.clear();
                            }
                            Err(e) => panel.error = Some(crate::describe(&e)),
                        }
                    }
                    Err(e) => panel.error = Some(crate::describe(&e)),
                }
            }
            MachineAction::Remove(name) => {
                panel.machines.retain(|m| m.machine.name != name);
                if let Err(e) = panel.save() {
                    panel.error = Some(crate::describe(&e));
                }
            }
            MachineAction::Test(name)
            | MachineAction::ShowHostKeys(name)
            | MachineAction::Trust(name)
            | MachineAction::Install(name)
                if job_for(&name).is_none() => {}
            MachineAction::Install(name) => {
                let machine = job_for(&name).expect("checked above");
                let binary = match panel.install_binary.trim() {
                    "" => std::env::current_exe().ok(),
                    path => Some(std::path::PathBuf::from(path)),
                };
                let Some(binary) = binary.filter(|b| b.is_file()) else {
                    let why = fill(
                        self.lang,
                        "no program to install at `{}`",
                        &[&panel.install_binary.trim()],
                    );
                    if let Some(m) = panel.view(&name) {
                        m.report = Some(why);
                    }
                    return;
                };
                let job = self.background.next_job_id();
                self.machine_job(
                    &name,
                    job,
                    Command::Install {
                        job,
                        machine,
                        binary,
                    },
                );
            }
            MachineAction::Test(name) => {
                let machine = job_for(&name).expect("checked above");
                let job = self.background.next_job_id();
                self.machine_job(&name, job, Command::ProbeMachine { job, machine });
            }
            MachineAction::ShowHostKeys(name) => {
                let machine = job_for(&name).expect("checked above");
                let job = self.background.next_job_id();
                self.machine_job(&name, job, Command::HostKeys { job, machine });
            }
            MachineAction::Trust(name) => {
                let machine = job_for(&name).expect("checked above");
                let keys = panel
                    .view(&name)
                    .and_then(|m| m.keys.as_ref().map(|k| k.0.clone()))
                    .unwrap_or_default();
                let job = self.background.next_job_id();
                self.machine_job(&name, job, Command::Trust { job, machine, keys });
            }
        }
    }

    fn machine_job(&mut self, name: &str, job: JobId, cmd: Command) {
        let sent = self.background.send(cmd);
        if let Some(m) = self.machines.view(name) {
            match sent {
                Ok(()) => m.busy = Some(job),
                Err(why) => m.report = Some(why),
            }
        }
    }
}

/// The panel, in the side panel under the device.
pub fn ui(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let panel = &mut app.machines;
    egui::CollapsingHeader::new(tr(ui, "Remote machines (SSH)"))
        .id_salt("machines")
        .show(ui, |ui| {
            for m in &panel.machines {
                let name = m.machine.name.clone();
                ui.horizontal_wrapped(|ui| {
                    ui.strong(&name);
                    ui.small(format!("ssh {}", m.machine.ssh.join(" ")));
                });
                ui.horizontal_wrapped(|ui| {
                    let idle = m.busy.is_none();
                    if ui
                        .add_enabled(idle, egui::Button::new(tr(ui, "Test connection")))
                        .on_hover_text(tr(ui, "System, GPUs, free disk and memory, and the peft-workbench there"))
                        .clicked()
                    {
                        actions.push(Action::Machine(MachineAction::Test(name.clone())));
                    }
                    if ui
                        .add_enabled(idle, egui::Button::new(tr(ui, "Host key…")))
                        .on_hover_text(tr(ui, "The fingerprints of the keys it offers, to compare with the provider's before trusting them"))
                        .clicked()
                    {
                        actions.push(Action::Machine(MachineAction::ShowHostKeys(name.clone())));
                    }
                    if ui
                        .add_enabled(idle, egui::Button::new(tr(ui, "Install")))
                        .on_hover_text(tr(ui, "Send the program below (with the built-in model and datasets) there, checked by SHA-256"))
                        .clicked()
                    {
                        actions.push(Action::Machine(MachineAction::Install(name.clone())));
                    }
                    if ui.small_button(tr(ui, "Remove")).clicked() {
                        actions.push(Action::Machine(MachineAction::Remove(name.clone())));
                    }
                    if !idle {
                        ui.spinner();
                    }
                });
                if let Some((_, fingerprints)) = &m.keys {
                    ui.label(tr(ui, "It offers these host keys; trust them only if the provider shows the same:"));
                    for f in fingerprints {
                        ui.small(f.as_str());
                    }
                    if ui.button(tr(ui, "Trust these keys")).clicked() {
                        actions.push(Action::Machine(MachineAction::Trust(name.clone())));
                    }
                }
                if let Some(report) = &m.report {
                    ui.small(report.as_str());
                }
                ui.separator();
            }
            if !panel.machines.is_empty() {
                let label = ui.label(tr(ui, "Program to install"));
                ui.add(
                    egui::TextEdit::singleline(&mut panel.install_binary)
                        .hint_text(tr(ui, "this program; a GPU machine: target/cuda/release/peft-workbench")),
                )
                .labelled_by(label.id);
                ui.separator();
            }
            let label = ui.label(tr(ui, "Name"));
            ui.add(egui::TextEdit::singleline(&mut panel.new_name).hint_text("gpu"))
                .labelled_by(label.id);
            let label = ui.label(tr(ui, "SSH command, as the provider shows it"));
            ui.add(
                egui::TextEdit::singleline(&mut panel.new_line)
                    .hint_text("ssh -p 23456 root@region-9.example.com"),
            )
            .labelled_by(label.id);
            if ui
                .button(tr(ui, "Add machine"))
                .on_hover_text(tr(ui, "Keys, agent and ~/.ssh/config are used as ssh uses them; no password is kept"))
                .clicked()
            {
                actions.push(Action::Machine(MachineAction::Add));
            }
            if let Some(e) = &panel.error {
                ui.colored_label(ui.visuals().error_fg_color, e.as_str());
            }
            if panel.machines.is_empty() {
                ui.small(tr(
                    ui,
                    "A run on a remote machine trains there and comes home here when it ends.",
                ));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ssh_line_splits_as_a_shell_splits_it() {
        let words =
            split_ssh_line(r#"ssh -p 23456 -o "ProxyJump=a b" -i '/keys/my key' root@h\ x"#)
                .unwrap();
        assert_eq!(
            words,
            [
                "ssh",
                "-p",
                "23456",
                "-o",
                "ProxyJump=a b",
                "-i",
                "/keys/my key",
                "root@h x"
            ]
        );
        assert!(split_ssh_line("ssh 'open").is_err());
        assert_eq!(split_ssh_line("  ").unwrap(), Vec::<String>::new());
    }
}
