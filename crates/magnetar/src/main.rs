//! `magnetar`: the broker binary. Owns configuration, the command line and the wiring of the
//! layers below (metadata store, broker core, Kafka/Pulsar/HTTP listeners).

mod admin_cli;
mod cluster_mode;
use magnetar::config;
mod standalone;
mod tokens_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "magnetar",
    version,
    about = "Kafka wire protocol on a Pulsar architecture"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a standalone broker with embedded storage and metadata in one process.
    Standalone(StandaloneArgs),
    /// Runs a cluster broker: metadata and ownership in etcd, data in an object store; start
    /// several, each with its own ports/host and data dir.
    Broker(BrokerArgs),
    /// Administers a running broker through its REST API (pulsar-admin's command shape).
    Admin(admin_cli::AdminArgs),
    /// Creates and checks the JWT tokens the broker accepts (pulsar tokens' command shape).
    Tokens(tokens_cli::TokensArgs),
}

#[derive(clap::Args, Debug)]
pub struct StandaloneArgs {
    /// Config file: TOML (`*.toml`, `version = 1`) or a Pulsar/KoP properties file
    /// (`broker.conf`, `standalone.conf`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for ledgers and metadata [default: ./data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address every listener binds to [default: 127.0.0.1]
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Kafka listener port; 0 picks a free port [default: 9092]
    #[arg(long, value_name = "N")]
    kafka_port: Option<u16>,
    /// Pulsar listener port; 0 picks a free port [default: 6650]
    #[arg(long, value_name = "N")]
    pulsar_port: Option<u16>,
    /// HTTP listener port (health, version); 0 picks a free port [default: 8080]
    #[arg(long, value_name = "N")]
    http_port: Option<u16>,
    /// Serve the Confluent Schema Registry API on this port; 0 picks a free port [default:
    /// off; `schema_registry.port` 8081 when `schema_registry.enabled`]
    #[arg(long, value_name = "N")]
    schema_registry_port: Option<u16>,
    /// Host name clients are told to connect to [default: the bind address]
    #[arg(long, value_name = "HOST")]
    advertised_host: Option<String>,
    /// The object store: standalone, tiered storage offloads sealed segments there; `broker`,
    /// every partition's data lives there (`s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix`, `file:///absolute/path`, `memory://`)
    #[arg(long, value_name = "URL")]
    object_store: Option<String>,
}

/// `magnetar broker`: the standalone flags plus the metadata store; cluster mode is required.
#[derive(clap::Args, Debug)]
pub struct BrokerArgs {
    #[command(flatten)]
    common: StandaloneArgs,
    /// The etcd cluster, Pulsar's metadataStoreUrl form: `etcd:http://h1:2379[,http://h2:2379]`
    /// [default: `[cluster] metadata_store`]
    #[arg(long, value_name = "URL")]
    metadata_store: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Standalone(args) => {
            tune_malloc();
            standalone::main(args, standalone::Mode::Standalone)
        }
        Command::Broker(args) => {
            tune_malloc();
            standalone::main(
                args.common,
                standalone::Mode::Cluster {
                    metadata_store: args.metadata_store,
                },
            )
        }
        Command::Admin(args) => admin_cli::main(args),
        Command::Tokens(args) => tokens_cli::main(args),
    }
}

/// Largest allocation glibc's malloc serves from its heaps instead of a fresh `mmap`.
const MALLOC_MMAP_THRESHOLD_BYTES: i32 = 32 << 20;
/// Free memory at the top of a malloc heap kept for reuse before it is given back to the kernel.
const MALLOC_TRIM_THRESHOLD_BYTES: i32 = 64 << 20;

/// The broker's hot paths allocate buffers of hundreds of KiB to tens of MiB per request (a
/// produce batch's write buffer, a fetch response at its computed size). With glibc's defaults
/// each such buffer starts at or above the mmap threshold, or is trimmed away when freed, so
/// every request page-faults fresh zeroed pages in: `clear_page_erms` was 17 % of the broker's
/// samples in a produce + consume profile (`perf/results/2026-12-04/hotpath/`). Serving them from
/// the heap and keeping up to [`MALLOC_TRIM_THRESHOLD_BYTES`] of free memory for reuse removes
/// that; the cost is at most that much resident memory kept after a burst. Other allocators
/// (musl) are left alone.
///
/// The number of malloc arenas is also capped at one per core (glibc's default is eight per
/// core): the blocking pool's many threads each took an arena, and memory freed in one was kept
/// there, so after a 300 MB produce + consume burst the broker held 158 MB of anonymous memory
/// instead of 82 MB, for no CPU gain (0.103 core-s per 100 MB either way).
///
/// When `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or `MALLOC_ARENA_MAX` is in the
/// environment, the operator's choice stands and nothing is changed.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = [
            "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_ARENA_MAX",
        ]
        .iter()
        .any(|k| std::env::var_os(k).is_some());
        if !user_set {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let arenas = i32::try_from(cores).unwrap_or(i32::MAX).max(2);
            #[allow(unsafe_code, reason = "mallopt: glibc's documented tuning call")]
            // SAFETY: mallopt takes two integers, touches no caller memory, and is called
            // before any other thread exists.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES);
                libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES);
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
    }
}
