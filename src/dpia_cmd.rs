//! `passage dpia generate`: writes the DPIA artifacts of a deployment into a directory.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::ConfigArg;

/// DPIA commands.
#[derive(Debug, Subcommand)]
pub enum DpiaCommand {
    /// Generate the DPIA (CNIL JSON, HTML, Markdown), the Art. 30 record, the data-flow
    /// diagram, the WP248 screening, the action plan and the venue signage (EN, DE).
    Generate(GenerateArgs),
}

/// Options of `passage dpia generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Directory to write into (created if missing; files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Runs a DPIA command.
pub fn run(command: &DpiaCommand) -> anyhow::Result<()> {
    let DpiaCommand::Generate(args) = command;
    let config = args.config.load()?;
    let artifacts = passage_dpia::generate(&config);
    let cnil = serde_json::from_str(&artifacts.get("dpia.cnil.json").map(|a| a.text.clone()).unwrap_or_default())
        .context("the generated CNIL file does not parse")?;
    if let Err(problems) = passage_dpia::cnil::check(&cnil) {
        bail!("the generated CNIL file fails its structure check:\n{}", problems.join("\n"));
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    for file in &artifacts.files {
        let path = args.out.join(&file.name);
        // Written beside and renamed over, so a reader never sees half a file.
        let tmp = args.out.join(format!(".{}.tmp", file.name));
        std::fs::write(&tmp, &file.text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
        println!("{}", path.display());
    }
    eprintln!("DPIA version {}: {} files written to {}", artifacts.version, artifacts.files.len(), args.out.display());
    Ok(())
}
