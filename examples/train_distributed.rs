//! Data-parallel training on burn-collective: start the orchestrator and the node processes (on
//! one machine or several), or several workers as threads of one process (one per device).
//!
//! ```text
//! # one machine, two processes (three terminals):
//! cargo run --release --example train_distributed -- orchestrator --port 3000
//! cargo run --release --example train_distributed -- node --node 0 --nodes 2 \
//!     --orchestrator ws://127.0.0.1:3000 --host 127.0.0.1 --port 3001 --out runs/dist
//! cargo run --release --example train_distributed -- node --node 1 --nodes 2 \
//!     --orchestrator ws://127.0.0.1:3000 --host 127.0.0.1 --port 3002 --out runs/dist
//! # two workers in one process:
//! cargo run --release --example train_distributed -- threads --workers 2 --out runs/dist
//! ```
//!
//! Each worker trains on its shard of every batch; the workers all-reduce their gradients and
//! hold identical parameters (score-train's `distributed` module). Worker 0 writes the
//! checkpoint (`OUT/checkpoint.bin`); `--resume` continues from it with any number of workers that
//! divides the batch. Workloads: the 2-D ring MLP, or the MNIST U-Net of `mnist_ve_sde` (whose
//! `--sample-only OUT/checkpoint.bin` then draws digits from the result).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use clap::{Args, Parser, Subcommand, ValueEnum};
use score_sde::backend::{Selected, SelectedAutodiff};
use score_sde::burn;
use score_sde::mnist::{BatchSource, MnistJobConfig, build_model};
use score_sde::score_core::{AnySde, GaussianMixture, NoiseKey, NoiseSource, VeSde};
use score_sde::score_data::mnist::{Mnist, Scaling, Split};
use score_sde::score_nets::{Parameterization, ScoreModel, TimeEmbeddingConfig, TimeMlpConfig};
use score_sde::score_train::{
    DataParallel, EmaConfig, Loss, NodeAddress, SdeLoss, Trainer, TrainerConfig, run_orchestrator,
};

/// Data-parallel training across devices and machines.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Serve burn-collective's orchestrator (every node connects to it); runs until Ctrl-C.
    Orchestrator {
        /// Port to listen on (all interfaces).
        #[arg(long, default_value_t = 3000)]
        port: u16,
    },
    /// One node process of a multi-node run (one worker per process).
    Node {
        /// This node's index, 0..nodes (node 0 writes the checkpoints).
        #[arg(long)]
        node: usize,
        /// Number of node processes.
        #[arg(long)]
        nodes: usize,
        /// The orchestrator, ws://host:port.
        #[arg(long)]
        orchestrator: String,
        /// This machine's address as the other nodes reach it.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// The port this node serves its tensors on (open it to the other nodes).
        #[arg(long)]
        port: u16,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Several workers in this process, one thread per device.
    Threads {
        /// Number of workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[command(flatten)]
        train: TrainArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Time-conditioned MLP on the 8-Gaussian ring, continuous-time VE loss.
    Ring,
    /// The MNIST U-Net of the main job (mnist_ve_sde's model, loss and trainer settings).
    Mnist,
}

#[derive(Debug, Clone, Args)]
struct TrainArgs {
    /// What to train.
    #[arg(long, value_enum, default_value_t = Workload::Ring)]
    workload: Workload,
    /// Training steps.
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Batch size of a step, over all workers (each trains on batch / workers).
    #[arg(long)]
    batch: Option<usize>,
    /// Output directory (worker 0's checkpoint and loss history).
    #[arg(long, default_value = "runs/distributed")]
    out: PathBuf,
    /// Continue from OUT/checkpoint.bin (worker 0's); without it an old checkpoint is replaced.
    #[arg(long)]
    resume: bool,
    /// Seconds a collective call may wait for the other workers before this one stops.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Seconds joining may wait for every worker to start (raise it for nodes started by hand).
    #[arg(long, default_value_t = 60)]
    join_timeout_s: u64,
    /// MNIST directory (the mnist workload).
    #[arg(long, env = "SCORE_SDE_MNIST_DIR", default_value_os_t = score_sde::score_data::mnist::default_dir())]
    data_dir: PathBuf,
}

type A = SelectedAutodiff;

fn main() -> Result<()> {
    quiet_logs();
    match Cli::parse().role {
        Role::Orchestrator { port } => {
            println!("orchestrator listening on port {port} (Ctrl-C to stop)");
            run_orchestrator(port)?;
        }
        Role::Node {
            node,
            nodes,
            orchestrator,
            host,
            port,
            train,
        } => {
            let address = NodeAddress {
                orchestrator,
                host,
                port,
            };
            let dp = DataParallel::node(node, nodes, &address)?;
            worker(dp, &train)?;
        }
        Role::Threads { workers, train } => {
            let handles: Vec<_> = (0..workers)
                .map(|rank| {
                    let train = train.clone();
                    std::thread::spawn(move || -> Result<()> {
                        worker(DataParallel::threads(rank, workers)?, &train)
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("a worker thread panicked")?;
            }
        }
    }
    Ok(())
}

/// burn's WebSocket server installs an INFO-level log subscriber (a line per tensor transfer)
/// unless the program has one: this one shows warnings and errors, or what `RUST_LOG` asks for.
fn quiet_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// Trains one worker's part of the run.
fn worker(dp: DataParallel, args: &TrainArgs) -> Result<()> {
    let dp = dp
        .with_op_timeout(Duration::from_secs(args.timeout_s))
        .with_join_timeout(Duration::from_secs(args.join_timeout_s));
    let rank = dp.rank();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let ckpt = args.out.join("checkpoint.bin");
    if rank == 0 && !args.resume && ckpt.exists() {
        std::fs::remove_file(&ckpt)?;
    }
    let dev = Default::default();
    match args.workload {
        Workload::Ring => {
            let ring = GaussianMixture::ring(8, 4.0, 0.2)?;
            let sde = VeSde::new(0.05, 10.0)?;
            let net = TimeMlpConfig::new(2)
                .with_seed(0)
                .with_hidden_size(128)
                .with_num_layers(3)
                .with_embedding(TimeEmbeddingConfig::new().with_dim(64))
                .init::<A>(&dev)?;
            let model = ScoreModel::new(net, AnySde::Ve(sde), Parameterization::Noise);
            let config = TrainerConfig::new()
                .with_steps(args.steps)
                .with_learning_rate(2e-3)
                .with_warmup_steps(100)
                .with_ema(EmaConfig::new().with_decay(0.995))
                .with_checkpoint_every(Some(100));
            let batch = args.batch.unwrap_or(256);
            let data = |step: u64| {
                ring.sample::<A>(batch, &NoiseSource::new(77), NoiseKey::new(step, 0), &dev)
            };
            train(dp, args, model, config, &SdeLoss::new(sde)?, data)
        }
        Workload::Mnist => {
            let mut cfg = MnistJobConfig::new(&args.data_dir);
            cfg.out_dir = args.out.clone();
            cfg.steps = args.steps;
            if let Some(b) = args.batch {
                cfg.batch_size = b;
            }
            cfg.validate()?;
            let train_set = Mnist::load(&cfg.data_dir, Split::Train)?;
            // The SDE as mnist_ve_sde computes it, so its --sample-only reads this checkpoint.
            let sde = score_sde::mnist::sde::<Selected>(&cfg, &train_set, &dev)?;
            let model = build_model::<A>(&cfg, sde, &dev)?;
            let mut config = score_sde::mnist::trainer_config(&cfg);
            config.history_csv = None;
            let mut source = BatchSource::new(
                train_set.to_f32(Scaling::MinusOneOne),
                cfg.batch_size,
                cfg.seed,
            );
            let loss = score_sde::mnist::loss(&cfg, sde)?;
            train(dp, args, model, config, &loss, |step| {
                source.batch::<A>(step, &dev)
            })
        }
    }
}

fn train<M, L, F, const D: usize>(
    dp: DataParallel,
    args: &TrainArgs,
    model: M,
    config: TrainerConfig,
    loss: &L,
    data: F,
) -> Result<()>
where
    M: AutodiffModule<A> + Clone,
    L: Loss<A, M, D>,
    F: FnMut(u64) -> Tensor<A, D>,
{
    let (rank, world) = (dp.rank(), dp.world());
    let config = config
        .with_checkpoint_path((rank == 0).then(|| args.out.join("checkpoint.bin")))
        .with_history_csv((rank == 0).then(|| args.out.join("loss.csv")))
        .with_progress(rank == 0);
    let mut trainer = Trainer::resume_or_new(model, config)?;
    trainer.join(dp)?;
    println!(
        "worker {rank} of {world}: joined at step {} of {}",
        trainer.step(),
        args.steps
    );
    let report = trainer.fit(loss, data, &mut ())?;
    let stats = trainer
        .data_parallel()
        .map(|d| d.comm_stats())
        .unwrap_or_default();
    trainer.leave()?;
    let per_step = stats.seconds / stats.calls.max(1) as f64;
    let mb = stats.bytes as f64 / stats.calls.max(1) as f64 / 1e6;
    println!(
        "worker {rank}: {} steps at {:.1} steps/s, last loss {:.4}; all-reduce {:.2} ms/step for {:.3} MB of gradients ({:.1} ms/MB)",
        report.steps_run,
        report.steps_per_sec,
        report.last_loss.unwrap_or(f64::NAN),
        per_step * 1e3,
        mb,
        per_step * 1e3 / mb.max(1e-12),
    );
    Ok(())
}
