//! Data-parallel training on burn's own collective operations (`burn-collective`).
//!
//! Each worker — a device of this process, or a process on this or another machine — holds the
//! same model. At every step it takes its shard of the step's batch (rows
//! `rank·n/W .. (rank+1)·n/W` of the batch `data(step)` returns, with the loss's noise drawn at
//! the matching sample offset, so the union over the `W` workers is exactly the single-worker
//! batch and its noise), computes the gradient of its shard's mean loss, and all-reduces the
//! gradients (mean) together with the loss in **one** flat tensor. Every worker then clips by the
//! same global norm and applies the same Adam step, so the parameters stay identical.
//!
//! Joining ([`Trainer::join`](crate::Trainer::join)) registers the worker with burn-collective and
//! hands every worker worker 0's whole training state — model, EMA, Adam moments, step, history,
//! as the bytes of a checkpoint — through an all-reduce (sum) in which the others contribute
//! zeros, which is exact. A worker whose settings differ from worker 0's (steps, learning rate,
//! seed, …) makes every worker fail with [`TrainError::Collective`]. Only worker 0 writes
//! checkpoints, the loss history and runs the evaluation hook; a resumed run may use any worker
//! count that divides the batch, because the checkpoint holds nothing per worker.
//!
//! burn-collective 0.21 has no time-outs: a collective call whose peer died waits for ever. Every
//! call here runs under a watchdog, and one that gets no answer within
//! [`op_timeout`](DataParallel::with_op_timeout) (60 s by default; joining waits
//! [`join_timeout`](DataParallel::with_join_timeout), also 60 s) becomes
//! [`TrainError::Collective`] with [`CollectiveFailure::TimedOut`]. The process should then exit
//! (the stalled call keeps a thread and burn-collective's state): the last checkpoint is intact
//! and the run resumes from it.
//!
//! Topologies:
//! - [`DataParallel::threads`]: `W` workers in one process (one per device, e.g. GPUs), each in its
//!   own thread;
//! - [`DataParallel::node`]: one worker per process, processes joined through burn's orchestrator
//!   ([`run_orchestrator`]) over WebSockets, on one machine or several.
//!
//! Two workers as threads, each on half of every batch of 256, end where one worker on the whole
//! batch ends:
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::module::{Module, Param};
//! use burn::tensor::{Tensor, backend::Backend};
//! use score_core::{NoiseKey, NoiseSource, ScoreFn};
//! use score_train::{DataParallel, DenoisingScoreMatching, Trainer, TrainerConfig};
//! type B = Autodiff<NdArray<f32>>;
//!
//! /// The score of N(0, c²I) with c learned: s(x) = −x·θ.
//! #[derive(Module, Debug)]
//! struct Precision<B: Backend> { theta: Param<Tensor<B, 1>> }
//! impl<B: Backend> ScoreFn<B, 2> for Precision<B> {
//!     fn score(&self, x: Tensor<B, 2>, _t: Tensor<B, 1>) -> Tensor<B, 2> {
//!         -x * self.theta.val().unsqueeze_dim(0)
//!     }
//! }
//! let run = |parallel: Option<DataParallel>| {
//!     let dev = Default::default();
//!     let model = Precision::<B> { theta: Param::from_tensor(Tensor::ones([1], &dev)) };
//!     let config = TrainerConfig::new().with_steps(100).with_learning_rate(0.01);
//!     let mut trainer = Trainer::new(model, config).unwrap();
//!     if let Some(dp) = parallel {
//!         trainer.join(dp).unwrap();
//!     }
//!     // The whole batch of the step: each worker takes its rows of it.
//!     let data = |step: u64| {
//!         NoiseSource::new(9).normal::<B, 2>([256, 2], NoiseKey::new(step, 0), &dev).mul_scalar(2.0)
//!     };
//!     trainer.fit(&DenoisingScoreMatching::new(1.0).unwrap(), data, &mut ()).unwrap();
//!     trainer.leave().unwrap();
//!     trainer.model().theta.val().into_scalar()
//! };
//! let workers: Vec<_> = (0..2)
//!     .map(|rank| std::thread::spawn(move || run(Some(DataParallel::threads(rank, 2).unwrap()))))
//!     .collect();
//! let thetas: Vec<f32> = workers.into_iter().map(|w| w.join().unwrap()).collect();
//! assert_eq!(thetas[0], thetas[1]); // identical parameters on every worker
//! assert!((thetas[0] - run(None)).abs() < 1e-5); // and those of one worker on the whole batch
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::cast::ToElement;
use burn_collective::{CollectiveConfig, CollectiveError, PeerId, ReduceOperation};
use burn_communication::Address;

use crate::error::{Result, TrainError};

/// How a collective operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CollectiveFailure {
    /// No answer within the time-out: a peer died, hangs or cannot be reached.
    TimedOut(Duration),
    /// burn-collective stopped with an error or a panic (its message).
    Failed(String),
    /// The workers disagree: other settings, batch sizes or models (what differs).
    Mismatch(String),
}

impl std::fmt::Display for CollectiveFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TimedOut(d) => write!(
                f,
                "got no answer within {:.0} s (a peer died, hangs or cannot be reached)",
                d.as_secs_f64()
            ),
            Self::Failed(m) => write!(f, "failed: {m}"),
            Self::Mismatch(m) => write!(f, "the workers disagree: {m}"),
        }
    }
}

/// One worker's place in a data-parallel run and how it reaches the others. See the module docs.
#[derive(Debug, Clone)]
pub struct DataParallel {
    rank: usize,
    world: usize,
    config: CollectiveConfig,
    op_timeout: Duration,
    join_timeout: Duration,
    stats: Arc<Mutex<CommStats>>,
}

/// What the gradient all-reduces of a data-parallel worker cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommStats {
    /// All-reduces of the gradients (one a step).
    pub calls: u64,
    /// Wall time spent in them, seconds (waiting for the slowest worker included).
    pub seconds: f64,
    /// Bytes of gradient (and loss) each worker contributed, in all.
    pub bytes: u64,
}

/// Where a node process finds the orchestrator and where its peers find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// The orchestrator, `ws://host:port` (started by [`run_orchestrator`]).
    pub orchestrator: String,
    /// This node's host name or IP address as the other nodes reach it.
    pub host: String,
    /// The port this node serves its tensors on (all interfaces); the peers connect to
    /// `ws://host:port`.
    pub port: u16,
}

impl DataParallel {
    /// Worker `rank` of `world` workers that are threads of this process, one per device.
    pub fn threads(rank: usize, world: usize) -> Result<Self> {
        check_rank(rank, world)?;
        let config = CollectiveConfig::default().with_num_devices(world);
        Ok(Self::with_config(rank, world, config))
    }

    /// Worker of node process `node` of `nodes`, one worker per process, joined through the
    /// orchestrator at `address.orchestrator`.
    pub fn node(node: usize, nodes: usize, address: &NodeAddress) -> Result<Self> {
        check_rank(node, nodes)?;
        let ws = |name: &'static str, value: &str| -> Result<Address> {
            let rest = value.strip_prefix("ws://").ok_or_else(|| {
                TrainError::invalid(name, value, "must be a WebSocket address ws://host:port")
            })?;
            let port_ok = rest
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(TrainError::invalid(
                    name,
                    value,
                    "must be a WebSocket address ws://host:port",
                ));
            }
            Ok(value.parse().expect("Address parsing is infallible"))
        };
        let orchestrator = ws("orchestrator", &address.orchestrator)?;
        if address.host.is_empty() || address.host.contains('/') {
            return Err(TrainError::invalid(
                "host",
                &address.host,
                "must be a host name or IP address",
            ));
        }
        if address.port == 0 {
            return Err(TrainError::invalid("port", 0, "must be a fixed port"));
        }
        let this = ws("host", &format!("ws://{}:{}", address.host, address.port))?;
        let config = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(nodes as u32)
            .with_global_address(orchestrator)
            .with_node_address(this)
            .with_data_service_port(address.port);
        Ok(Self::with_config(node, nodes, config))
    }

    fn with_config(rank: usize, world: usize, config: CollectiveConfig) -> Self {
        Self {
            rank,
            world,
            config,
            op_timeout: Duration::from_secs(60),
            join_timeout: Duration::from_secs(60),
            stats: Arc::default(),
        }
    }

    /// How long a collective call during training may wait for the other workers (60 s).
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// How long joining may wait for all workers to start and hand over worker 0's state (60 s;
    /// raise it for nodes started by hand on several machines).
    pub fn with_join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// This worker's rank, `0..world`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of workers.
    pub fn world(&self) -> usize {
        self.world
    }

    /// The time-out of collective calls during training.
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// What the gradient all-reduces cost so far (shared by clones of this value).
    pub fn comm_stats(&self) -> CommStats {
        *self.stats.lock().expect("stats lock")
    }

    /// The rows of a batch of `batch` that this worker trains on.
    pub fn shard(&self, batch: usize) -> Result<std::ops::Range<usize>> {
        if batch == 0 || !batch.is_multiple_of(self.world) {
            return Err(TrainError::InvalidConfig {
                name: "batch size",
                value: batch.to_string(),
                reason: "must be a positive multiple of the number of data-parallel workers",
            });
        }
        let n = batch / self.world;
        Ok(self.rank * n..(self.rank + 1) * n)
    }

    fn peer(&self) -> PeerId {
        PeerId(self.rank as u32)
    }

    /// Registers this worker (waits for all of them, at most the join time-out).
    pub(crate) fn register<B: Backend>(&self, device: &B::Device) -> Result<()> {
        let (peer, device, config) = (self.peer(), device.clone(), self.config.clone());
        self.watch("joining", self.join_timeout, move || {
            burn_collective::register::<B>(peer, device, config)
        })
    }

    /// Leaves the collective (closes the connection to the orchestrator).
    pub(crate) fn finish<B: Backend>(&self) -> Result<()> {
        let peer = self.peer();
        self.watch("leaving", self.op_timeout, move || {
            burn_collective::finish_collective::<B>(peer)
        })
    }

    /// All-reduces `tensor` across the workers.
    pub(crate) fn all_reduce<B: Backend>(
        &self,
        what: &'static str,
        tensor: burn::tensor::Tensor<B, 1>,
        op: ReduceOperation,
        timeout: Duration,
    ) -> Result<burn::tensor::Tensor<B, 1>> {
        use burn::tensor::TensorPrimitive;
        let peer = self.peer();
        let prim = tensor.into_primitive().tensor();
        let out = self.watch(what, timeout, move || {
            burn_collective::all_reduce::<B>(peer, prim, op)
        })?;
        Ok(burn::tensor::Tensor::from_primitive(
            TensorPrimitive::Float(out),
        ))
    }

    /// Hands worker 0's `bytes` to every worker: an all-reduce (sum) in which the others give
    /// zeros, one byte per element (exact in every float type burn has, f16 and bf16 included),
    /// after a header of the same kind with the length and the digest of the settings, which
    /// every worker compares with its own.
    pub(crate) fn share_bytes<B: Backend>(
        &self,
        bytes: Option<Vec<u8>>,
        digest: u64,
        device: &B::Device,
    ) -> Result<Vec<u8>> {
        let header = bytes.as_ref().map(|b| {
            let mut h = (b.len() as u64).to_le_bytes().to_vec();
            h.extend_from_slice(&digest.to_le_bytes());
            h
        });
        let header = self.sum_bytes::<B>(header.as_deref(), 16, device)?;
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        let (len, theirs) = (word(0) as usize, word(8));
        self.agree::<B>(
            "comparing settings",
            theirs == digest,
            "the trainer settings of worker(s) {} differ from worker 0's",
            device,
        )?;
        self.sum_bytes::<B>(bytes.as_deref(), len, device)
    }

    /// The first `len` bytes of the element-wise sum over workers of `mine` (zeros where
    /// `None`), one byte per element; padded to the worker count (a ring needs ≥ W elements).
    fn sum_bytes<B: Backend>(
        &self,
        mine: Option<&[u8]>,
        len: usize,
        device: &B::Device,
    ) -> Result<Vec<u8>> {
        use burn::tensor::TensorData;
        let n = len.max(self.world);
        let mut values = vec![0f32; n];
        for (v, &b) in values.iter_mut().zip(mine.unwrap_or_default()) {
            *v = f32::from(b);
        }
        let t = Tensor::<B, 1>::from_data(TensorData::new(values, [n]), device);
        let t = self.all_reduce(
            "sharing worker 0's state",
            t,
            ReduceOperation::Sum,
            self.join_timeout,
        )?;
        Ok(host_values(t)
            .into_iter()
            .take(len)
            .map(|v| v.to_u8())
            .collect())
    }

    /// Every worker says whether `ok`; if any is not, all of them return
    /// [`CollectiveFailure::Mismatch`] with `what` naming the ranks that were not (`{}`).
    pub(crate) fn agree<B: Backend>(
        &self,
        op: &'static str,
        ok: bool,
        what: &str,
        device: &B::Device,
    ) -> Result<()> {
        use burn::tensor::TensorData;
        let width = self.world.max(2);
        let mut flags = vec![0f32; width];
        flags[self.rank] = f32::from(u8::from(!ok));
        let flags = Tensor::<B, 1>::from_data(TensorData::new(flags, [width]), device);
        let flags = self.all_reduce(op, flags, ReduceOperation::Sum, self.join_timeout)?;
        let failed: Vec<usize> = host_values(flags)
            .into_iter()
            .enumerate()
            .filter(|(_, v)| *v != 0.0)
            .map(|(i, _)| i)
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        Err(self.failure(
            op,
            CollectiveFailure::Mismatch(what.replace("{}", &format!("{failed:?}"))),
        ))
    }

    pub(crate) fn failure(&self, op: &'static str, failure: CollectiveFailure) -> TrainError {
        TrainError::Collective {
            rank: self.rank,
            op,
            failure,
        }
    }

    /// Runs a blocking burn-collective call on its own thread and waits at most `timeout`.
    fn watch<T: Send + 'static>(
        &self,
        op: &'static str,
        timeout: Duration,
        call: impl FnOnce() -> std::result::Result<T, CollectiveError> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("collective-{op}"))
            .spawn(move || {
                let _ = tx.send(call());
            })
            .map_err(|e| self.failure(op, CollectiveFailure::Failed(e.to_string())))?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failure(op, CollectiveFailure::Failed(describe(&e)))),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(self.failure(op, CollectiveFailure::TimedOut(timeout)))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.failure(
                op,
                CollectiveFailure::Failed("burn-collective panicked".into()),
            )),
        }
    }
}

/// All-reduces (mean) every parameter gradient of `model` in `grads` and the shard's loss, as
/// one flat tensor; returns the batch's loss.
pub(crate) fn all_reduce_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    dp: &DataParallel,
    model: &M,
    grads: &mut GradientsParams,
    shard_loss: Tensor<B::InnerBackend, 1>,
) -> Result<f64> {
    struct Gather<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        parts: Vec<Tensor<B::InnerBackend, 1>>,
        present: HashSet<ParamId>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.parts.push(g.reshape([-1]));
                self.present.insert(param.id);
            }
        }
    }
    struct Scatter<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        flat: Tensor<B::InnerBackend, 1>,
        at: usize,
        present: HashSet<ParamId>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scatter<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.present.contains(&param.id) {
                let dims: [usize; D] = param.val().dims();
                let n: usize = dims.iter().product();
                let g = self.flat.clone().narrow(0, self.at, n).reshape(dims);
                self.at += n;
                self.grads.register(param.id, g);
            }
        }
    }
    let mut gather = Gather::<B> {
        grads,
        parts: Vec::new(),
        present: HashSet::new(),
    };
    model.visit(&mut gather);
    let Gather {
        grads,
        mut parts,
        present,
    } = gather;
    parts.push(shard_loss);
    let flat = score_core::tensor::cat(parts, 0);
    let n = flat.dims()[0];
    let start = std::time::Instant::now();
    let flat = dp.all_reduce(
        "all-reduce of the gradients",
        flat,
        ReduceOperation::Mean,
        dp.op_timeout,
    )?;
    {
        let mut stats = dp.stats.lock().expect("stats lock");
        stats.calls += 1;
        stats.seconds += start.elapsed().as_secs_f64();
        stats.bytes += (n * std::mem::size_of::<f32>()) as u64;
    }
    let loss = flat.clone().narrow(0, n - 1, 1).into_scalar().to_f64();
    model.visit(&mut Scatter::<B> {
        grads,
        flat,
        at: 0,
        present,
    });
    Ok(loss)
}

/// A 1-D tensor's values on the host.
fn host_values<B: Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("f64 data")
}

/// burn-collective's error, with what it means here where that is not plain from its name.
fn describe(e: &CollectiveError) -> String {
    match e {
        CollectiveError::LocalServerMissing => "burn-collective's server in this process \
            stopped (it panics when a peer's connection closes: a peer likely died)"
            .into(),
        other => format!("{other:?}"),
    }
}

fn check_rank(rank: usize, world: usize) -> Result<()> {
    if world == 0 {
        return Err(TrainError::invalid("workers", 0, "must be at least 1"));
    }
    if rank >= world {
        return Err(TrainError::InvalidConfig {
            name: "rank",
            value: rank.to_string(),
            reason: "must be below the number of workers",
        });
    }
    Ok(())
}

/// Serves burn-collective's orchestrator on `port` (all interfaces) until the process is
/// interrupted (Ctrl-C). Every node of a multi-node run connects to it at `ws://host:port`.
pub fn run_orchestrator(port: u16) -> Result<()> {
    // burn's orchestrator only logs a failure to bind; bind once here to report it.
    drop(
        std::net::TcpListener::bind(("0.0.0.0", port))
            .map_err(|e| TrainError::io(format!("orchestrator port {port}"), e))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| TrainError::io(format!("orchestrator on port {port}"), e))?;
    runtime.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(r: Result<impl std::fmt::Debug>) -> (&'static str, String) {
        match r {
            Err(TrainError::InvalidConfig { name, value, .. }) => (name, value),
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn ranks_and_addresses_are_checked() {
        assert_eq!(invalid(DataParallel::threads(2, 2)), ("rank", "2".into()));
        assert_eq!(
            invalid(DataParallel::threads(0, 0)),
            ("workers", "0".into())
        );
        let good = NodeAddress {
            orchestrator: "ws://10.0.0.1:3000".into(),
            host: "10.0.0.2".into(),
            port: 3001,
        };
        let dp = DataParallel::node(1, 2, &good).unwrap();
        assert_eq!((dp.rank(), dp.world()), (1, 2));
        let no_scheme = NodeAddress {
            orchestrator: "10.0.0.1:3000".into(),
            ..good.clone()
        };
        assert_eq!(
            invalid(DataParallel::node(0, 2, &no_scheme)),
            ("orchestrator", "10.0.0.1:3000".into())
        );
        let no_port = NodeAddress {
            orchestrator: "ws://10.0.0.1".into(),
            ..good.clone()
        };
        assert_eq!(
            invalid(DataParallel::node(0, 2, &no_port)).0,
            "orchestrator"
        );
        let url_host = NodeAddress {
            host: "ws://10.0.0.2".into(),
            ..good.clone()
        };
        assert_eq!(invalid(DataParallel::node(0, 2, &url_host)).0, "host");
        let any_port = NodeAddress { port: 0, ..good };
        assert_eq!(invalid(DataParallel::node(0, 2, &any_port)).0, "port");
    }

    #[test]
    fn shards_split_the_batch_in_rank_order() {
        let shards: Vec<_> = (0..4)
            .map(|r| DataParallel::threads(r, 4).unwrap().shard(256).unwrap())
            .collect();
        assert_eq!(shards, vec![0..64, 64..128, 128..192, 192..256]);
        let dp = DataParallel::threads(1, 4).unwrap();
        assert_eq!(invalid(dp.shard(250)), ("batch size", "250".into()));
        assert_eq!(invalid(dp.shard(0)), ("batch size", "0".into()));
    }

    #[test]
    fn failures_say_what_happened() {
        let dp = DataParallel::threads(1, 2).unwrap();
        let e = dp.failure(
            "all-reduce of the gradients",
            CollectiveFailure::TimedOut(Duration::from_secs(60)),
        );
        assert_eq!(
            e.to_string(),
            "data-parallel worker 1, all-reduce of the gradients: got no answer within 60 s \
             (a peer died, hangs or cannot be reached)"
        );
        assert!(describe(&CollectiveError::LocalServerMissing).contains("a peer likely died"));
    }
}
