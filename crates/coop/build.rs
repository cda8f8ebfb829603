//! Puts the git commit into `coop --version`: `coop 0.1.0 (abc1234
//! 2026-12-03)`, the short hash and the commit's date.
//!
//! Outside a git checkout, or without `git`, the version says `unknown`;
//! the build never fails for it. The script runs again when the commit
//! changes: it watches `HEAD` and the branch `HEAD` names, wherever git
//! keeps them (in a worktree `.git` is a file, and the branch lives in the
//! main checkout's directory, so the paths come from `git rev-parse`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let version = match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["log", "-1", "--format=%cs"]),
    ) {
        (Some(hash), Some(date)) => format!("{hash} {date}"),
        (Some(hash), None) => hash,
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=COOP_GIT_VERSION={version}");

    // What to watch: HEAD (a checkout or a commit), its reflog (every move
    // of HEAD, commits on its branch included), packed-refs, and the branch
    // HEAD points at (through its directory while the branch is packed).
    // Only paths that exist: cargo reruns a script every time if a watched
    // path is missing.
    let mut watch = Vec::new();
    for name in ["HEAD", "logs/HEAD", "packed-refs"] {
        watch.extend(git_path(name));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|b| git_path(&b)) {
        match branch.exists() {
            true => watch.push(branch),
            false => watch.extend(branch.parent().map(Path::to_path_buf)),
        }
    }
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Where git keeps `name` (`HEAD`, `refs/heads/main`): relative to this
/// directory in a plain checkout, absolute in a worktree; joining handles
/// both.
fn git_path(name: &str) -> Option<PathBuf> {
    let path = git(&["rev-parse", "--git-path", name])?;
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
}

/// One line of `git`'s output, run in this crate's directory; `None` if
/// git is missing, fails, or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.trim();
    (!line.is_empty()).then(|| line.to_string())
}
