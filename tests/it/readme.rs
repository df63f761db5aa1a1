//! The README's `bcs` commands, run as written (through `sh`, with `bcs` on the PATH) in a directory that
//! holds the files they name; where the README shows what a command prints, bcs prints that.

use std::path::Path;
use std::process::Command;

use crate::cli::{Running, BCS};
use crate::support::{run, with_stdin, write_file};

/// A README command, and the lines the README shows it printing (maybe none).
struct Example {
    command: String,
    output: Vec<String>,
}

/// `$ bcs …` lines of console blocks with the lines below them, and `cargo run --release -- …` lines of
/// sh blocks (which run bcs), from the README.
fn examples(readme: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut block = None;
    for line in readme.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            block = match block {
                None => Some(lang.to_owned()),
                Some(_) => None,
            };
            continue;
        }
        let command = match block.as_deref() {
            Some("console") => line.strip_prefix("$ "),
            Some("sh") => line
                .strip_prefix("cargo run --release -- ")
                .map(|rest| rest.trim_start()),
            _ => continue,
        };
        match command {
            Some(command) => {
                let command = command.split("  #").next().unwrap_or(command).trim();
                let command = command.strip_prefix("bcs ").unwrap_or(command);
                out.push(Example {
                    command: format!("bcs {command}"),
                    output: Vec::new(),
                });
            }
            None if block.as_deref() == Some("console") => {
                if let Some(last) = out.last_mut() {
                    last.output.push(line.to_owned());
                }
            }
            None => {}
        }
    }
    out
}

/// The subcommands that talk to `bcs serve`.
const MANAGEMENT: &[&str] = &[
    "group", "url", "auth", "limit", "cert", "user", "export", "apply",
];

/// Before its first `bcs` command, the README says how to get `bcs` on the PATH (issue 23.11).
#[test]
fn the_readme_says_how_to_get_bcs_before_using_it() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let first = readme.find("$ bcs ").unwrap();
    let before = &readme[..first];
    assert!(
        before.contains("cargo install --path .") && before.contains("target/release/bcs"),
        "{before}"
    );
}

#[test]
fn every_bcs_command_in_the_readme_runs_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let examples = examples(&readme);
    assert!(examples.len() >= 3, "{} commands found", examples.len());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, body) in [
        ("setup.exe", &b"setup"[..]),
        ("docs/guide.pdf", b"guide"),
        ("docs/img/logo.png", b"logo"),
        ("dist/app.zip", b"app"),
        ("some-file", b"file"),
        ("some-directory/inside.txt", b"inside"),
    ] {
        write_file(d, name, body);
    }
    let bin = Path::new(BCS).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let host_name = String::from_utf8(run("uname", &["-n"]).stdout).unwrap();
    // `bcs serve` runs in the background for the management commands after it, with its state here.
    let state = d.join("state");
    let state = state.to_str().unwrap();
    let mut service: Option<Running> = None;
    let mut port_taken = false;
    for example in &examples {
        let command = example.command.trim_end_matches('&').trim_end();
        let script = format!("cd '{}' && exec {command}", d.display());
        if command.starts_with("bcs serve") {
            let bcs = Running::spawn_with_env(
                Path::new("sh"),
                &["-c", &script],
                &[("PATH", &path), ("BCS_STATE", state)],
            );
            bcs.lines_until("bcs: serving");
            service = Some(bcs);
            continue;
        }
        let verb = command.split_whitespace().nth(1).unwrap_or_default();
        let managing = MANAGEMENT.contains(&verb) && !command.contains("--users");
        if port_taken && managing {
            continue;
        }
        if command.starts_with("bcs user add") || managing {
            assert!(
                !managing || service.is_some(),
                "{command}: no bcs serve before it"
            );
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &script])
                .env("PATH", &path)
                .env("HOME", d)
                .env("BCS_STATE", state);
            let out = with_stdin(&mut cmd, "readme password");
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("bind_failed") {
                eprintln!("skipping the rest of the walkthrough: {stderr}");
                port_taken = true;
                continue;
            }
            assert!(out.status.success(), "{command}: {out:?}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            if command.contains("--json") {
                let parsed: Result<serde_json::Value, _> = serde_json::from_str(&stdout);
                assert!(parsed.is_ok(), "{command}: {stdout}");
            }
            if !example.output.is_empty() {
                assert_eq!(
                    stdout.lines().collect::<Vec<_>>(),
                    example.output,
                    "{command}"
                );
            }
            continue;
        }
        assert!(
            example.command.starts_with("bcs host "),
            "{}",
            example.command
        );
        let bcs = Running::spawn_with_env(Path::new("sh"), &["-c", &script], &[("PATH", &path)]);
        let Ok(printed) = bcs.try_lines_until("Press Ctrl-C") else {
            let (_, stderr) = bcs.exited();
            // The README's fixed ports may be taken on this machine; bcs got as far as listening, so
            // everything before parsed and was accepted.
            assert!(stderr.contains("in use"), "{}: {stderr}", example.command);
            eprintln!("skipping the rest of {:?}: {stderr}", example.command);
            continue;
        };
        let (code, stderr) = bcs.stop("-TERM");
        assert_eq!(code, Some(0), "{}: {stderr}", example.command);
        assert!(!stderr.contains("warning"), "{}: {stderr}", example.command);
        if !example.output.is_empty() {
            let shown: Vec<String> = example
                .output
                .iter()
                .map(|l| l.replace("buildbox", host_name.trim()))
                .collect();
            assert_eq!(printed, shown, "{}", example.command);
        }
    }
    if let Some(service) = service {
        let (code, stderr) = service.stop("-TERM");
        assert_eq!(code, Some(0), "bcs serve: {stderr}");
    }
}
