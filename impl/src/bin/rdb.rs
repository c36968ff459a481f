//! `rdb`: the command-line client of an rdb cluster.

use clap::{Parser, Subcommand};
use rdb_server::client::Client;
use rdb_server::tls::{TlsCredentials, TlsFiles};
use std::path::PathBuf;
use std::process::ExitCode;

/// Client of an rdb cluster. It finds the leader by itself: give it any or all servers.
///
///   rdb --servers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 put greeting hello
#[derive(Debug, Parser)]
#[command(name = "rdb", version, verbatim_doc_comment)]
struct Args {
    /// Server addresses (HOST:PORT), separated by commas.
    #[arg(
        long,
        env = "RDB_SERVERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001"
    )]
    servers: Vec<String>,
    /// Client TLS certificate (PEM), signed by --tls-ca. With --tls-key and --tls-ca it turns
    /// on mutual TLS; all three or none.
    #[arg(long, env = "RDB_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "RDB_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM); servers must present a certificate it signed for
    /// the DNS name server.rdb.
    #[arg(long, env = "RDB_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set KEY to VALUE.
    Put {
        /// The key.
        key: String,
        /// The value (stored as its UTF-8 bytes).
        value: String,
    },
    /// Print the value of KEY (exit 1 when it does not exist).
    Get {
        /// The key.
        key: String,
    },
    /// Remove KEY.
    Delete {
        /// The key.
        key: String,
    },
    /// Print every server's role, term, leader, commit and applied index.
    Status,
    /// Hand leadership to the member ID, and wait until it leads. The leader holds writes
    /// back meanwhile, and gives up after an election timeout if ID cannot take over.
    TransferLeader {
        /// The node id of the member to hand leadership to.
        id: u64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rdb: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let names = ["--tls-cert", "--tls-key", "--tls-ca"];
    let tls = TlsFiles::from_parts(args.tls_cert, args.tls_key, args.tls_ca, names)?
        .map(|files| files.load())
        .transpose()?;
    if let Command::Status = args.command {
        return Ok(status(&args.servers, tls.as_ref()).await);
    }
    let mut client = Client::with_tls(args.servers, tls)?;
    match args.command {
        Command::Put { key, value } => {
            let response = client.put(&key, value.into_bytes()).await?;
            println!("OK index={} existed={}", response.index, response.existed);
        }
        Command::Delete { key } => {
            let response = client.delete(&key).await?;
            println!("OK index={} existed={}", response.index, response.existed);
        }
        Command::Get { key } => match client.get(&key).await? {
            Some(value) => println!("{}", String::from_utf8_lossy(&value)),
            None => {
                eprintln!("rdb: key `{key}` not found");
                return Ok(ExitCode::from(1));
            }
        },
        Command::TransferLeader { id } => {
            let response = client.transfer_leader(id).await?;
            println!("OK leader={} term={}", response.leader_id, response.term);
        }
        Command::Status => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(servers: &[String], tls: Option<&TlsCredentials>) -> ExitCode {
    let mut reachable = 0;
    for server in servers {
        match Client::status_with_tls(server, tls).await {
            Ok(status) => {
                reachable += 1;
                let leader = if status.leader_id == 0 {
                    "none".to_owned()
                } else {
                    format!("{} ({})", status.leader_id, status.leader_addr)
                };
                let transfer = if status.transferring_to == 0 {
                    String::new()
                } else {
                    format!(" transferring_to={}", status.transferring_to)
                };
                println!(
                    "{server}: id={} role={} term={} leader={leader} last_index={} commit={} applied={}{transfer}",
                    status.id, status.role, status.term, status.last_log_index, status.commit_index, status.applied_index
                );
            }
            Err(error) => println!("{server}: unreachable ({error})"),
        }
    }
    if reachable == 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
