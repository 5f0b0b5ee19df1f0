//! `passage accounts`: staff accounts for the analytics service's pages and APIs.
//!
//! The password comes from `PASSAGE_ACCOUNT_PASSWORD`, never from the command line (shell
//! history, process listings). The TOTP secret is printed once, for the holder's
//! authenticator app; the file keeps it, the password hash and only hashes of tokens (mode
//! 0600).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use passage_policy::accounts::{self, Role};
use passage_wire::Id;
use zeroize::Zeroizing;

/// Account commands.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account (password from PASSAGE_ACCOUNT_PASSWORD); prints its TOTP secret.
    Add(AddArgs),
    /// Remove an account and end its sessions.
    Remove {
        #[command(flatten)]
        file: FileArg,
        /// The account.
        #[arg(long)]
        name: String,
    },
}

/// The accounts file.
#[derive(Debug, Args)]
pub struct FileArg {
    /// The accounts file (created when absent).
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
}

/// Roles a staff account can have.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum StaffRole {
    /// Every venue.
    Operator,
    /// The listed venues only.
    Manager,
    /// The data protection officer: DPIA, register, audit log.
    Dpo,
}

/// Options of `passage accounts add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    file: FileArg,
    /// Account name (A-Z a-z 0-9 . - _).
    #[arg(long)]
    name: String,
    /// Role.
    #[arg(long, value_enum)]
    role: StaffRole,
    /// A venue the account may see (repeat for several; required for managers).
    #[arg(long = "venue")]
    venues: Vec<String>,
}

/// Runs an account command.
pub fn run(command: &AccountsCommand) -> anyhow::Result<()> {
    match command {
        AccountsCommand::Add(args) => {
            let Ok(password) = std::env::var("PASSAGE_ACCOUNT_PASSWORD").map(Zeroizing::new) else {
                bail!("set PASSAGE_ACCOUNT_PASSWORD to the new account's password (at least 12 characters)");
            };
            let venues = args
                .venues
                .iter()
                .map(|v| Id::new(v).with_context(|| format!("--venue {v:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let role = match args.role {
                StaffRole::Operator => Role::Operator,
                StaffRole::Manager => Role::VenueManager,
                StaffRole::Dpo => Role::Dpo,
            };
            let path = &args.file.file;
            let mut all = accounts::load(path).with_context(|| format!("cannot read {}", path.display()))?;
            let enrolment = all.add(&args.name, &password, role, venues, &mut rand::rng())?;
            accounts::save(path, &all).with_context(|| format!("cannot write {}", path.display()))?;
            println!("account {} added to {}", args.name, path.display());
            println!("totp secret: {}", enrolment.secret);
            println!("totp uri:    {}", enrolment.uri);
            Ok(())
        }
        AccountsCommand::Remove { file, name } => {
            let mut all = accounts::load(&file.file).with_context(|| format!("cannot read {}", file.file.display()))?;
            all.remove(name)?;
            accounts::save(&file.file, &all).with_context(|| format!("cannot write {}", file.file.display()))?;
            println!("account {name} removed");
            Ok(())
        }
    }
}
