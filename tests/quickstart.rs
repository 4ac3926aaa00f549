//! The README's first command, `scripts/quickstart.sh`, run for real (with
//! the binary under test, free ports and a scratch data folder), and the
//! install-when-missing helper both scripts use.

mod common;
use common::*;
use std::process::Command;

#[test]
fn quickstart_script_shows_a_miss_then_a_hit() {
    let data = tempfile::tempdir().unwrap();
    let script = format!("{}/scripts/quickstart.sh", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(&script)
        .arg("--check")
        .env("BIN", binary())
        .env("PORT", free_port().to_string())
        .env("ORIGIN_PORT", free_port().to_string())
        .env("DATA", data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("miss from the origin, stored, then a bucket hit"));
    assert_eq!(
        std::fs::read_to_string(data.path().join("quickstart/hello.txt")).unwrap(),
        "hello from the origin\n"
    );
}

#[test]
fn missing_tools_are_installed_with_apt_get() {
    // A stand-in apt-get that records its calls and "installs" the tool.
    let bin = tempfile::tempdir().unwrap();
    let calls = bin.path().join("calls");
    let apt = bin.path().join("apt-get");
    std::fs::write(
        &apt,
        format!(
            "#!/bin/sh\necho \"$@\" >>{calls}\n[ \"$1\" = install ] && printf '#!/bin/sh\\n' >{dir}/op-tool-x && chmod +x {dir}/op-tool-x\nexit 0\n",
            calls = calls.display(),
            dir = bin.path().display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&apt).status().unwrap();
    let need = format!("{}/scripts/need.sh", env!("CARGO_MANIFEST_DIR"));
    let run = |cmd: &str| {
        Command::new("bash")
            .arg("-c")
            .arg(format!("source {need} && {cmd}"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.path().display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .output()
            .unwrap()
    };
    // Present: nothing installed.
    assert!(run("need bash").status.success());
    assert!(!calls.exists());
    // Missing: installed by package name, then found.
    let out = run("need op-tool-x op-tool-pkg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(log.contains("install -y -qq op-tool-pkg"), "{log}");
    // Both README commands use it for what the build needs.
    for script in ["test.sh", "quickstart.sh"] {
        let text =
            std::fs::read_to_string(format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        assert!(
            text.contains("need cmake"),
            "{script} does not install cmake"
        );
    }
}

/// `need_rust` (both README commands build): without cargo it installs
/// Rust through rustup's script (a stand-in `curl` serves one that
/// "installs" a cargo and a rustc into `$HOME/.cargo`); a rustc older than
/// Cargo.toml's `rust-version` is updated through rustup, or refused with
/// a message when rustup is absent.
#[test]
fn rust_is_installed_or_updated_when_missing_or_old() {
    let home = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let calls = bin.path().join("calls");
    let script = |name: &str, body: &str| {
        let p = bin.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    };
    // rustup's installer: a cargo and a rustc of version $RUSTC_SAYS.
    script(
        "curl",
        &format!(
            "echo \"curl $*\" >>{calls}\ncat <<'EOS'\nmkdir -p \"$HOME/.cargo/bin\"\nprintf '#!/bin/sh\\n' >\"$HOME/.cargo/bin/cargo\"\nprintf '#!/bin/sh\\necho rustc 1.99.0\\n' >\"$HOME/.cargo/bin/rustc\"\nchmod +x \"$HOME/.cargo/bin/cargo\" \"$HOME/.cargo/bin/rustc\"\necho 'export PATH=\"$HOME/.cargo/bin:$PATH\"' >\"$HOME/.cargo/env\"\nEOS",
            calls = calls.display()
        ),
    );
    let root = env!("CARGO_MANIFEST_DIR");
    let run = |path: String| {
        Command::new("bash")
            .arg("-c")
            .arg("source scripts/need.sh && need_rust && rustc --version")
            .current_dir(root)
            .env("HOME", home.path())
            .env("PATH", path)
            .output()
            .unwrap()
    };
    // No cargo anywhere on the PATH: installed, then found.
    let out = run(format!("{}:/usr/bin:/bin", bin.path().display()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1.99.0"));
    assert!(err.contains("installing Rust with rustup"), "{err}");
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(log.contains("https://sh.rustup.rs"), "{log}");

    // Too old, without rustup: refused, saying why.
    std::fs::write(
        home.path().join(".cargo/bin/rustc"),
        "#!/bin/sh\necho rustc 1.80.0\n",
    )
    .unwrap();
    let out = run(format!("{}:/usr/bin:/bin", bin.path().display()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("rustc 1.80.0 is older than"), "{err}");
    // Too old, with a rustup that cannot change it (a pinned toolchain):
    // refused after the update, saying so.
    script(
        "rustup",
        &format!("echo \"rustup $*\" >>{}", calls.display()),
    );
    let out = run(format!("{}:/usr/bin:/bin", bin.path().display()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("still 1.80.0 after 'rustup update stable'"),
        "{err}"
    );
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(log.contains("rustup update stable"), "{log}");
    // Too old, with rustup: updated.
    let rustc = home.path().join(".cargo/bin/rustc");
    script(
        "rustup",
        &format!(
            "printf '#!/bin/sh\\necho rustc 1.99.0\\n' >{}",
            rustc.display()
        ),
    );
    let out = run(format!("{}:/usr/bin:/bin", bin.path().display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1.99.0"));
}
